package rpc

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/member"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// forwardedKey marks a cluster request a member passed on to the leader, so
// that the receiver never passes it on again.
const forwardedKey = "kvd-forwarded"

// clusterService serves kv.v1.ClusterService. Membership changes only the
// leader can make; a follower passes them on to it.
type clusterService struct {
	kvv1.UnimplementedClusterServiceServer
	node  ClusterNode
	conns LeaderConns
}

func (c *clusterService) MemberList(ctx context.Context, _ *kvv1.MemberListRequest) (*kvv1.MemberListResponse, error) {
	members, err := c.node.Members()
	if err != nil {
		return nil, err
	}
	return &kvv1.MemberListResponse{Header: c.node.Header(c.node.Revision()), Members: members}, nil
}

func (c *clusterService) MemberAdd(ctx context.Context, req *kvv1.MemberAddRequest) (*kvv1.MemberAddResponse, error) {
	if err := member.ValidateMemberAdd(req); err != nil {
		return nil, err
	}
	if fwd, ok, err := onLeader(ctx, c, func(ctx context.Context, cc kvv1.ClusterServiceClient) (*kvv1.MemberAddResponse, error) {
		return cc.MemberAdd(ctx, req)
	}); ok {
		return fwd, err
	}
	if err := c.node.AddMember(ctx, req); err != nil {
		return nil, err
	}
	members, err := c.node.Members()
	if err != nil {
		return nil, err
	}
	resp := &kvv1.MemberAddResponse{Header: c.node.Header(c.node.Revision()), Members: members}
	for _, m := range members {
		if m.GetName() == req.GetName() {
			resp.Member = m
		}
	}
	return resp, nil
}

func (c *clusterService) MemberPromote(ctx context.Context, req *kvv1.MemberPromoteRequest) (*kvv1.MemberPromoteResponse, error) {
	if fwd, ok, err := onLeader(ctx, c, func(ctx context.Context, cc kvv1.ClusterServiceClient) (*kvv1.MemberPromoteResponse, error) {
		return cc.MemberPromote(ctx, req)
	}); ok {
		return fwd, err
	}
	if err := c.node.PromoteMember(ctx, req.GetName()); err != nil {
		return nil, err
	}
	members, err := c.node.Members()
	if err != nil {
		return nil, err
	}
	return &kvv1.MemberPromoteResponse{Header: c.node.Header(c.node.Revision()), Members: members}, nil
}

func (c *clusterService) MemberRemove(ctx context.Context, req *kvv1.MemberRemoveRequest) (*kvv1.MemberRemoveResponse, error) {
	if req.GetName() == "" {
		return nil, fmt.Errorf("%w: name is required", member.ErrInvalidMember)
	}
	call := func(ctx context.Context, cc kvv1.ClusterServiceClient) (*kvv1.MemberRemoveResponse, error) {
		return cc.MemberRemove(ctx, req)
	}
	if req.GetName() == c.node.Name() && c.node.IsLeader() {
		// Removing the leader: hand leadership over first, then let the new
		// leader do the removal, however the request reached this member.
		if _, err := c.node.TransferLeadership(ctx, ""); err != nil {
			return nil, fmt.Errorf("%w: move leadership before removing the leader: %w", member.ErrNotApplied, err)
		}
		return forwardToLeader(ctx, c, call)
	}
	if fwd, ok, err := onLeader(ctx, c, call); ok {
		return fwd, err
	}
	if err := c.node.RemoveMember(ctx, req.GetName()); err != nil {
		return nil, err
	}
	members, err := c.node.Members()
	if err != nil {
		return nil, err
	}
	return &kvv1.MemberRemoveResponse{Header: c.node.Header(c.node.Revision()), Members: members}, nil
}

func (c *clusterService) LeaderTransfer(ctx context.Context, req *kvv1.LeaderTransferRequest) (*kvv1.LeaderTransferResponse, error) {
	if fwd, ok, err := onLeader(ctx, c, func(ctx context.Context, cc kvv1.ClusterServiceClient) (*kvv1.LeaderTransferResponse, error) {
		return cc.LeaderTransfer(ctx, req)
	}); ok {
		return fwd, err
	}
	leader, err := c.node.TransferLeadership(ctx, req.GetTo())
	if err != nil {
		return nil, err
	}
	return &kvv1.LeaderTransferResponse{Header: c.node.Header(c.node.Revision()), Leader: leader}, nil
}

// onLeader runs call against the leader when this member is not the leader
// and the request was not already passed on. ok reports whether it did;
// then resp and err are the leader's answer.
func onLeader[R any](ctx context.Context, c *clusterService, call func(context.Context, kvv1.ClusterServiceClient) (R, error)) (resp R, ok bool, err error) {
	if c.node.IsLeader() {
		return resp, false, nil
	}
	if isForwarded(ctx) {
		return resp, true, fmt.Errorf("%w: %s is not the leader", member.ErrNotApplied, c.node.Name())
	}
	resp, err = forwardToLeader(ctx, c, call)
	if errors.Is(err, member.ErrSelfIsLeader) {
		return resp, false, nil
	}
	return resp, true, err
}

// forwardToLeader runs call against the leader's ClusterService, marking
// the request as passed on. It returns member.ErrSelfIsLeader when this
// member leads.
func forwardToLeader[R any](ctx context.Context, c *clusterService, call func(context.Context, kvv1.ClusterServiceClient) (R, error)) (R, error) {
	var zero R
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.node.RequestTimeout())
		defer cancel()
	}
	addr, leader, err := c.node.LeaderAddr(ctx)
	if err != nil {
		return zero, err
	}
	cc, err := c.conns.Conn(ctx, addr)
	if err != nil {
		return zero, fmt.Errorf("%w: leader %s at %s is unreachable: %w", member.ErrNoLeader, leader, addr, err)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, forwardedKey, "1")
	resp, err := call(ctx, kvv1.NewClusterServiceClient(cc))
	if err != nil {
		return zero, relayed(leader, err)
	}
	return resp, nil
}

// relayed is the error of a membership request the leader was asked to
// serve: what it answered, or, when the call failed after it was sent, a
// status that says the change may or may not have been made.
func relayed(leader string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%w: pass on to leader %s: %w", member.ErrOutcomeUnknown, leader, err)
	}
	switch st.Code() {
	case codes.Unavailable, codes.Canceled, codes.Internal:
		if apierr.IsNotApplied(err) {
			return err
		}
		return status.Errorf(codes.Unknown, "passing the request to leader %s failed after sending; it may or may not have been applied: %s", leader, st.Message())
	case codes.DeadlineExceeded:
		return status.Errorf(codes.DeadlineExceeded, "passing the request to leader %s timed out; it may or may not have been applied", leader)
	default:
		return err
	}
}

func isForwarded(ctx context.Context) bool {
	return len(metadata.ValueFromIncomingContext(ctx, forwardedKey)) > 0
}
