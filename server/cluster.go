package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kvd-io/kvd/internal/proposal"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	peerv1 "github.com/kvd-io/kvd/proto/peer/v1"
)

// Membership errors; see toStatus for their codes.
var (
	// ErrMemberExists: a member with that name or raft address exists.
	ErrMemberExists = errors.New("member already exists")
	// ErrMemberNotFound: no member has that name.
	ErrMemberNotFound = errors.New("member not found")
	// ErrUnsafeReconfig: the change would leave the cluster unable to reach
	// quorum with its currently healthy members.
	ErrUnsafeReconfig = errors.New("unsafe reconfiguration")
	// ErrLearnerLagging: a learner is too far behind to be promoted.
	ErrLearnerLagging = errors.New("learner is too far behind the leader to be promoted")
	// ErrNotLearner: promotion of a member that already votes.
	ErrNotLearner = errors.New("member is not a learner")
	// ErrRemoved: this member was removed from the cluster.
	ErrRemoved = errors.New("this member was removed from the cluster")
)

// promoteMaxLag is how many log entries a learner may trail the leader's
// commit index, and how many revisions (writes) its state may trail the
// leader's, and still be promoted: more, and the new voter would slow every
// commit while it catches up. Both count because one entry may carry a
// batch of writes.
const promoteMaxLag = 1000

// forwardedKey marks a cluster request a member forwarded to the leader, so
// that the receiver never forwards it again.
const forwardedKey = "kvd-forwarded"

// clusterService serves kv.v1.ClusterService.
type clusterService struct {
	kvv1.UnimplementedClusterServiceServer
	s *Server
}

func (c *clusterService) MemberList(ctx context.Context, _ *kvv1.MemberListRequest) (*kvv1.MemberListResponse, error) {
	members, err := c.s.members()
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvv1.MemberListResponse{Header: c.s.header(c.s.fsm.Revision()), Members: members}, nil
}

func (c *clusterService) MemberAdd(ctx context.Context, req *kvv1.MemberAddRequest) (*kvv1.MemberAddResponse, error) {
	if err := validateNewMember(req); err != nil {
		return nil, toStatus(err)
	}
	if fwd, ok, err := onLeader(ctx, c.s, func(ctx context.Context, cc kvv1.ClusterServiceClient) (*kvv1.MemberAddResponse, error) {
		return cc.MemberAdd(ctx, req)
	}); ok {
		return fwd, err
	}
	if err := c.s.addMember(ctx, req); err != nil {
		return nil, toStatus(err)
	}
	members, err := c.s.members()
	if err != nil {
		return nil, toStatus(err)
	}
	resp := &kvv1.MemberAddResponse{Header: c.s.header(c.s.fsm.Revision()), Members: members}
	for _, m := range members {
		if m.GetName() == req.GetName() {
			resp.Member = m
		}
	}
	return resp, nil
}

func (c *clusterService) MemberPromote(ctx context.Context, req *kvv1.MemberPromoteRequest) (*kvv1.MemberPromoteResponse, error) {
	if fwd, ok, err := onLeader(ctx, c.s, func(ctx context.Context, cc kvv1.ClusterServiceClient) (*kvv1.MemberPromoteResponse, error) {
		return cc.MemberPromote(ctx, req)
	}); ok {
		return fwd, err
	}
	if err := c.s.promoteMember(ctx, req.GetName()); err != nil {
		return nil, toStatus(err)
	}
	members, err := c.s.members()
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvv1.MemberPromoteResponse{Header: c.s.header(c.s.fsm.Revision()), Members: members}, nil
}

func (c *clusterService) MemberRemove(ctx context.Context, req *kvv1.MemberRemoveRequest) (*kvv1.MemberRemoveResponse, error) {
	if req.GetName() == "" {
		return nil, toStatus(fmt.Errorf("%w: name is required", ErrInvalidMember))
	}
	call := func(ctx context.Context, cc kvv1.ClusterServiceClient) (*kvv1.MemberRemoveResponse, error) {
		return cc.MemberRemove(ctx, req)
	}
	if req.GetName() == c.s.cfg.Name && c.s.IsLeader() {
		// Removing the leader: hand leadership over first, then let the new
		// leader do the removal, however the request reached this member.
		if err := c.s.raft.LeadershipTransfer().Error(); err != nil {
			return nil, toStatus(fmt.Errorf("%w: move leadership before removing the leader: %w", ErrNotApplied, err))
		}
		return forwardToLeader(ctx, c.s, call)
	}
	if fwd, ok, err := onLeader(ctx, c.s, call); ok {
		return fwd, err
	}
	if err := c.s.removeMember(ctx, req.GetName()); err != nil {
		return nil, toStatus(err)
	}
	members, err := c.s.members()
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvv1.MemberRemoveResponse{Header: c.s.header(c.s.fsm.Revision()), Members: members}, nil
}

func (c *clusterService) LeaderTransfer(ctx context.Context, req *kvv1.LeaderTransferRequest) (*kvv1.LeaderTransferResponse, error) {
	if fwd, ok, err := onLeader(ctx, c.s, func(ctx context.Context, cc kvv1.ClusterServiceClient) (*kvv1.LeaderTransferResponse, error) {
		return cc.LeaderTransfer(ctx, req)
	}); ok {
		return fwd, err
	}
	leader, err := c.s.transferLeadership(ctx, req.GetTo())
	if err != nil {
		return nil, toStatus(err)
	}
	return &kvv1.LeaderTransferResponse{Header: c.s.header(c.s.fsm.Revision()), Leader: leader}, nil
}

// onLeader runs call against the leader when this member is not the leader
// and the request was not already forwarded. ok reports whether it did; then
// resp and err are the leader's answer.
func onLeader[R any](ctx context.Context, s *Server, call func(context.Context, kvv1.ClusterServiceClient) (R, error)) (resp R, ok bool, err error) {
	if s.IsLeader() {
		return resp, false, nil
	}
	if isForwarded(ctx) {
		return resp, true, toStatus(fmt.Errorf("%w: %s is not the leader", ErrNotApplied, s.cfg.Name))
	}
	resp, err = forwardToLeader(ctx, s, call)
	if errors.Is(err, errSelfIsLeader) {
		return resp, false, nil
	}
	return resp, true, err
}

// forwardToLeader runs call against the leader's ClusterService, marking the
// request as forwarded. It returns errSelfIsLeader when this member leads.
func forwardToLeader[R any](ctx context.Context, s *Server, call func(context.Context, kvv1.ClusterServiceClient) (R, error)) (R, error) {
	var zero R
	ctx, cancel := s.withDefaultTimeout(ctx)
	defer cancel()
	conn, leader, _, err := s.leaderConn(ctx)
	if errors.Is(err, errSelfIsLeader) {
		return zero, err
	}
	if err != nil {
		return zero, toStatus(err)
	}
	ctx = metadata.AppendToOutgoingContext(ctx, forwardedKey, "1")
	resp, err := call(ctx, kvv1.NewClusterServiceClient(conn))
	if err != nil {
		return zero, relayError(leader, err)
	}
	return resp, nil
}

func isForwarded(ctx context.Context) bool {
	md, _ := metadata.FromIncomingContext(ctx)
	return len(md.Get(forwardedKey)) > 0
}

// ErrInvalidMember: a member request with a missing or malformed field.
var ErrInvalidMember = errors.New("invalid member")

func validateNewMember(req *kvv1.MemberAddRequest) error {
	if req.GetName() == "" {
		return fmt.Errorf("%w: name is required", ErrInvalidMember)
	}
	if _, _, err := net.SplitHostPort(req.GetRaftAddr()); err != nil {
		return fmt.Errorf("%w: raft address %q: %v", ErrInvalidMember, req.GetRaftAddr(), err)
	}
	if a := req.GetClientAddr(); a != "" {
		if _, _, err := net.SplitHostPort(a); err != nil {
			return fmt.Errorf("%w: client address %q: %v", ErrInvalidMember, a, err)
		}
	}
	return nil
}

// findServer returns the member of cfg with the given name.
func findServer(cfg raft.Configuration, name string) (raft.Server, error) {
	for _, srv := range cfg.Servers {
		if string(srv.ID) == name {
			return srv, nil
		}
	}
	return raft.Server{}, fmt.Errorf("%w: %q", ErrMemberNotFound, name)
}

func (s *Server) configuration() (raft.Configuration, uint64, error) {
	f := s.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, 0, err
	}
	return f.Configuration(), f.Index(), nil
}

// healthyVoters counts the voters of cfg that answer, this member included.
func (s *Server) healthyVoters(cfg raft.Configuration) (voters, healthy int) {
	for _, srv := range cfg.Servers {
		if srv.Suffrage != raft.Voter {
			continue
		}
		voters++
		if s.health.healthy(string(srv.ID)) {
			healthy++
		}
	}
	return voters, healthy
}

// checkQuorumAfter refuses a change after which the healthy voters could not
// form a quorum (etcd's strict reconfiguration check).
func checkQuorumAfter(votersAfter, healthyAfter int, what string) error {
	quorum := votersAfter/2 + 1
	if healthyAfter < quorum {
		return fmt.Errorf("%w: after %s the cluster would have %d voters, needing %d for quorum, but only %d of them are healthy; heal or remove unhealthy members first",
			ErrUnsafeReconfig, what, votersAfter, quorum, healthyAfter)
	}
	return nil
}

func (s *Server) addMember(ctx context.Context, req *kvv1.MemberAddRequest) error {
	cfg, index, err := s.configuration()
	if err != nil {
		return err
	}
	id, addr := raft.ServerID(req.GetName()), raft.ServerAddress(req.GetRaftAddr())
	for _, srv := range cfg.Servers {
		sameAddr := srv.Address == addr
		if srv.ID == id && sameAddr && (srv.Suffrage == raft.Voter) == !req.GetIsLearner() {
			return nil // already done: a join that is retried after success
		}
		if srv.ID == id {
			return fmt.Errorf("%w: %s (raft address %s)", ErrMemberExists, srv.ID, srv.Address)
		}
		if sameAddr {
			return fmt.Errorf("%w: %s already uses raft address %s", ErrMemberExists, srv.ID, srv.Address)
		}
	}
	if !req.GetIsLearner() {
		voters, healthy := s.healthyVoters(cfg)
		// The new member is not running yet as far as anyone knows. A
		// single voter may still grow (as etcd allows): that is how a
		// cluster rebuilt with --force-new-cluster gets its members back.
		if !(voters == 1 && healthy == 1) {
			if err := checkQuorumAfter(voters+1, healthy, "adding voter "+req.GetName()); err != nil {
				return err
			}
		}
	}
	if req.GetClientAddr() != "" {
		// Record the client address now, so that the new member is
		// reachable for forwarding before it publishes itself.
		if _, err := s.applyLocal(ctx, fsmv1.CommandType_COMMAND_TYPE_PUBLISH_MEMBER,
			&fsmv1.MemberAttributes{Name: req.GetName(), ClientAddr: req.GetClientAddr()}); err != nil {
			return err
		}
	}
	timeout := s.cfg.RequestTimeout
	var f raft.IndexFuture
	if req.GetIsLearner() {
		f = s.raft.AddNonvoter(id, addr, index, timeout)
	} else {
		f = s.raft.AddVoter(id, addr, index, timeout)
	}
	if err := f.Error(); err != nil {
		return fmt.Errorf("add %s: %w", id, proposal.Outcome(err))
	}
	s.log.Info("member added", "name", id, "raft_addr", addr, "learner", req.GetIsLearner())
	return nil
}

func (s *Server) promoteMember(ctx context.Context, name string) error {
	cfg, index, err := s.configuration()
	if err != nil {
		return err
	}
	target, err := findServer(cfg, name)
	if err != nil {
		return err
	}
	if target.Suffrage == raft.Voter {
		return fmt.Errorf("%w: %q already votes", ErrNotLearner, name)
	}
	if err := s.checkLearnerCaughtUp(ctx, name); err != nil {
		return err
	}
	voters, healthy := s.healthyVoters(cfg)
	if s.health.healthy(name) {
		healthy++
	}
	if err := checkQuorumAfter(voters+1, healthy, "promoting "+name); err != nil {
		return err
	}
	if err := s.raft.AddVoter(target.ID, target.Address, index, s.cfg.RequestTimeout).Error(); err != nil {
		return fmt.Errorf("promote %s: %w", name, proposal.Outcome(err))
	}
	s.log.Info("learner promoted", "name", name)
	return nil
}

// checkLearnerCaughtUp asks the learner how far it has applied and compares
// that with the leader's commit index.
func (s *Server) checkLearnerCaughtUp(ctx context.Context, name string) error {
	attrs, err := s.fsm.Members()
	if err != nil {
		return err
	}
	addr := attrs[name].GetClientAddr()
	if addr == "" {
		return fmt.Errorf("%w: %s has not published its address, so it is not running yet", ErrLearnerLagging, name)
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	conn, err := s.peers.Ready(ctx, addr)
	if err != nil {
		return fmt.Errorf("%w: %s is unreachable: %w", ErrLearnerLagging, name, err)
	}
	st, err := kvv1.NewMaintenanceServiceClient(conn).Status(ctx, &kvv1.StatusRequest{})
	if err != nil {
		return fmt.Errorf("%w: ask %s for its progress: %w", ErrLearnerLagging, name, err)
	}
	commit := s.raft.CommitIndex()
	if lag := int64(commit) - int64(st.GetAppliedIndex()); lag > promoteMaxLag {
		return fmt.Errorf("%w: %s has applied index %d, the leader has committed %d (%d behind, at most %d allowed); wait and retry",
			ErrLearnerLagging, name, st.GetAppliedIndex(), commit, lag, promoteMaxLag)
	}
	rev := s.fsm.Revision()
	if lag := rev - st.GetHeader().GetRevision(); lag > promoteMaxLag {
		return fmt.Errorf("%w: %s is at revision %d, the leader at %d (%d writes behind, at most %d allowed); wait and retry",
			ErrLearnerLagging, name, st.GetHeader().GetRevision(), rev, lag, promoteMaxLag)
	}
	return nil
}

func (s *Server) removeMember(ctx context.Context, name string) error {
	cfg, index, err := s.configuration()
	if err != nil {
		return err
	}
	target, err := findServer(cfg, name)
	if err != nil {
		return err
	}
	if name == s.cfg.Name {
		return fmt.Errorf("%w: the leader cannot remove itself; leadership did not move", ErrNotApplied)
	}
	if target.Suffrage == raft.Voter {
		voters, healthy := s.healthyVoters(cfg)
		if s.health.healthy(name) {
			healthy--
		}
		if err := checkQuorumAfter(voters-1, healthy, "removing "+name); err != nil {
			return err
		}
	}
	attrs, _ := s.fsm.Members()
	if err := s.raft.RemoveServer(target.ID, index, s.cfg.RequestTimeout).Error(); err != nil {
		return fmt.Errorf("remove %s: %w", name, proposal.Outcome(err))
	}
	s.log.Info("member removed", "name", name)
	if addr := attrs[name].GetClientAddr(); addr != "" {
		s.notifyRemoved(ctx, name, addr)
	}
	return nil
}

// notifyRemoved tells a removed member, best effort, so that it stops serving
// now rather than when it notices on its own.
func (s *Server) notifyRemoved(ctx context.Context, name, addr string) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	conn, err := s.peers.Ready(ctx, addr)
	if err == nil {
		_, err = peerv1.NewPeerServiceClient(conn).MemberRemoved(ctx, &peerv1.MemberRemovedRequest{Name: name, ClusterId: s.clusterID.Load()})
	}
	if err != nil {
		s.log.Warn("could not tell the removed member; it will stop when it notices", "name", name, "error", err)
	}
}

func (s *Server) transferLeadership(ctx context.Context, to string) (string, error) {
	var f raft.Future
	if to == "" {
		f = s.raft.LeadershipTransfer()
	} else {
		cfg, _, err := s.configuration()
		if err != nil {
			return "", err
		}
		target, err := findServer(cfg, to)
		switch {
		case err != nil:
			return "", err
		case target.Suffrage != raft.Voter:
			return "", fmt.Errorf("%w: %q is a learner and cannot lead", ErrInvalidMember, to)
		case to == s.cfg.Name:
			return to, nil // already there
		}
		f = s.raft.LeadershipTransferToServer(target.ID, target.Address)
	}
	if err := f.Error(); err != nil {
		return "", fmt.Errorf("%w: leadership transfer: %w", ErrNotApplied, err)
	}
	// Wait until this member knows the new leader, so the answer names it.
	deadline := time.Now().Add(s.leaderWait())
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if _, id := s.raft.LeaderWithID(); id != "" && string(id) != s.cfg.Name {
			return string(id), nil
		}
		time.Sleep(10 * time.Millisecond) // polling raft's view; no channel exposes it
	}
	_, id := s.raft.LeaderWithID()
	return string(id), nil
}

// members lists the raft configuration with each member's published client
// address and health, sorted by name.
func (s *Server) members() ([]*kvv1.Member, error) {
	cfg, _, err := s.configuration()
	if err != nil {
		return nil, err
	}
	attrs, err := s.fsm.Members()
	if err != nil {
		return nil, err
	}
	_, leaderID := s.raft.LeaderWithID()
	var out []*kvv1.Member
	for _, srv := range cfg.Servers {
		name := string(srv.ID)
		m := &kvv1.Member{
			Id:         MemberID(name),
			Name:       name,
			RaftAddr:   string(srv.Address),
			ClientAddr: attrs[name].GetClientAddr(),
			IsLearner:  srv.Suffrage != raft.Voter,
			IsLeader:   srv.ID == leaderID,
			Healthy:    s.health.healthy(name),
		}
		if t, ok := s.health.lastContact(name); ok {
			m.LastContact = timestamppb.New(t)
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
