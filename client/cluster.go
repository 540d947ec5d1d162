package client

import (
	"context"

	"google.golang.org/grpc"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Cluster reports and changes cluster membership. *Client implements it.
//
// The changes (MemberAdd, MemberPromote, MemberRemove, LeaderTransfer) are
// forwarded by the member that receives them to the leader, and are retried
// like writes: on another endpoint only when nothing was sent or the server
// marked the error as certainly not applied (apierr.IsNotApplied). A refusal
// (FailedPrecondition: the change would cost quorum, or the learner lags;
// AlreadyExists; NotFound; InvalidArgument) is returned at once.
type Cluster interface {
	// MemberList lists the members as the serving member knows them, from
	// its local state. It is retried like a read.
	MemberList(ctx context.Context) (*MemberListResponse, error)

	// MemberAdd adds the member name, whose raft transport is at raftAddr,
	// to the cluster, as a voter unless WithLearner is given. The new member
	// is then started with an empty data dir and joins. A voter is refused
	// when the cluster could not reach quorum with its healthy members after
	// the change. Options: WithLearner, WithClientAddr.
	MemberAdd(ctx context.Context, name, raftAddr string, opts ...MemberOption) (*MemberAddResponse, error)

	// MemberPromote makes the learner name a voter. It is refused while the
	// learner lags far behind the leader.
	MemberPromote(ctx context.Context, name string) (*MemberPromoteResponse, error)

	// MemberRemove removes the member name. Removing the leader first moves
	// leadership to another voter. It is refused when the remaining healthy
	// voters could not reach quorum.
	MemberRemove(ctx context.Context, name string) (*MemberRemoveResponse, error)

	// LeaderTransfer moves leadership to the voter named to, or, when to is
	// empty, to the most up-to-date voter. The response names the leader
	// after the transfer, as far as the old leader knows it.
	LeaderTransfer(ctx context.Context, to string) (*LeaderTransferResponse, error)
}

// Member is one member of the cluster.
type Member = kvv1.Member

// MemberListResponse lists the members, sorted by name, in Members.
type MemberListResponse struct{ *kvv1.MemberListResponse }

// MemberAddResponse holds the added member in Member and the membership
// after the change in Members.
type MemberAddResponse struct{ *kvv1.MemberAddResponse }

// MemberPromoteResponse holds the membership after the change in Members.
type MemberPromoteResponse struct{ *kvv1.MemberPromoteResponse }

// MemberRemoveResponse holds the membership after the change in Members.
type MemberRemoveResponse struct{ *kvv1.MemberRemoveResponse }

// LeaderTransferResponse names the leader after the transfer in Leader; it
// is empty when no new leader was known yet when the old one answered.
type LeaderTransferResponse struct{ *kvv1.LeaderTransferResponse }

// MemberOption configures MemberAdd.
type MemberOption func(*kvv1.MemberAddRequest)

// WithLearner adds the member as a non-voting learner, to be promoted with
// MemberPromote once it has caught up. Adding a learner never risks quorum.
func WithLearner() MemberOption {
	return func(r *kvv1.MemberAddRequest) { r.IsLearner = true }
}

// WithClientAddr records the new member's client (gRPC API) address, as
// host:port, with the membership change, so that the other members can reach
// it before it publishes the address itself. Without it the address is empty
// until the new member runs.
func WithClientAddr(addr string) MemberOption {
	return func(r *kvv1.MemberAddRequest) { r.ClientAddr = addr }
}

// MemberList lists the cluster's members. See Cluster.MemberList.
func (c *Client) MemberList(ctx context.Context) (*MemberListResponse, error) {
	var resp *kvv1.MemberListResponse
	err := c.invoke(ctx, kindRead, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = kvv1.NewClusterServiceClient(cc).MemberList(ctx, &kvv1.MemberListRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &MemberListResponse{resp}, nil
}

// MemberAdd adds a member. See Cluster.MemberAdd.
func (c *Client) MemberAdd(ctx context.Context, name, raftAddr string, opts ...MemberOption) (*MemberAddResponse, error) {
	req := &kvv1.MemberAddRequest{Name: name, RaftAddr: raftAddr}
	for _, o := range opts {
		o(req)
	}
	var resp *kvv1.MemberAddResponse
	err := c.invoke(ctx, kindWrite, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = kvv1.NewClusterServiceClient(cc).MemberAdd(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &MemberAddResponse{resp}, nil
}

// MemberPromote promotes a learner. See Cluster.MemberPromote.
func (c *Client) MemberPromote(ctx context.Context, name string) (*MemberPromoteResponse, error) {
	req := &kvv1.MemberPromoteRequest{Name: name}
	var resp *kvv1.MemberPromoteResponse
	err := c.invoke(ctx, kindWrite, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = kvv1.NewClusterServiceClient(cc).MemberPromote(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &MemberPromoteResponse{resp}, nil
}

// MemberRemove removes a member. See Cluster.MemberRemove.
func (c *Client) MemberRemove(ctx context.Context, name string) (*MemberRemoveResponse, error) {
	req := &kvv1.MemberRemoveRequest{Name: name}
	var resp *kvv1.MemberRemoveResponse
	err := c.invoke(ctx, kindWrite, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = kvv1.NewClusterServiceClient(cc).MemberRemove(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &MemberRemoveResponse{resp}, nil
}

// LeaderTransfer moves leadership. See Cluster.LeaderTransfer.
func (c *Client) LeaderTransfer(ctx context.Context, to string) (*LeaderTransferResponse, error) {
	req := &kvv1.LeaderTransferRequest{To: to}
	var resp *kvv1.LeaderTransferResponse
	err := c.invoke(ctx, kindWrite, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = kvv1.NewClusterServiceClient(cc).LeaderTransfer(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &LeaderTransferResponse{resp}, nil
}
