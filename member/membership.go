package member

import (
	"context"
	"fmt"
	"net"
	"sort"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kvd-io/kvd/internal/memberid"
	"github.com/kvd-io/kvd/internal/proposal"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// promoteMaxLag is how many log entries a learner may trail the leader's
// commit index, and how many revisions (writes) its state may trail the
// leader's, and still be promoted: more, and the new voter would slow every
// commit while it catches up. Both count because one entry may carry a
// batch of writes.
const promoteMaxLag = 1000

// ValidateMemberAdd reports what is wrong with a request to add a member
// (ErrInvalidMember), before anything is sent or changed.
func ValidateMemberAdd(req *kvv1.MemberAddRequest) error {
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

func (m *Member) configuration() (raft.Configuration, uint64, error) {
	f := m.raft.GetConfiguration()
	if err := f.Error(); err != nil {
		return raft.Configuration{}, 0, err
	}
	return f.Configuration(), f.Index(), nil
}

// healthyVoters counts the voters of cfg that answer, this member included.
func (m *Member) healthyVoters(cfg raft.Configuration) (voters, healthy int) {
	for _, srv := range cfg.Servers {
		if srv.Suffrage != raft.Voter {
			continue
		}
		voters++
		if m.health.healthy(string(srv.ID)) {
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

// AddMember adds a member to the cluster, as a voter or a learner. Only
// the leader can. A change after which the healthy voters could not form a
// quorum is refused (ErrUnsafeReconfig), as etcd's strict reconfiguration
// check does. Adding a member that is already there with the same address
// and role succeeds: a join retried after success.
func (m *Member) AddMember(ctx context.Context, req *kvv1.MemberAddRequest) error {
	if err := ValidateMemberAdd(req); err != nil {
		return err
	}
	cfg, index, err := m.configuration()
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
		voters, healthy := m.healthyVoters(cfg)
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
		if _, err := m.proposeCommand(ctx, fsmv1.CommandType_COMMAND_TYPE_PUBLISH_MEMBER,
			&fsmv1.MemberAttributes{Name: req.GetName(), ClientAddr: req.GetClientAddr()}); err != nil {
			return err
		}
	}
	timeout := m.cfg.RequestTimeout
	var f raft.IndexFuture
	if req.GetIsLearner() {
		f = m.raft.AddNonvoter(id, addr, index, timeout)
	} else {
		f = m.raft.AddVoter(id, addr, index, timeout)
	}
	if err := f.Error(); err != nil {
		return fmt.Errorf("add %s: %w", id, proposal.Outcome(err))
	}
	m.log.Info("member added", "name", id, "raft_addr", addr, "learner", req.GetIsLearner())
	return nil
}

// PromoteMember makes a learner a voter once it has caught up with the
// leader. Only the leader can.
func (m *Member) PromoteMember(ctx context.Context, name string) error {
	cfg, index, err := m.configuration()
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
	if err := m.checkLearnerCaughtUp(ctx, name); err != nil {
		return err
	}
	voters, healthy := m.healthyVoters(cfg)
	if m.health.healthy(name) {
		healthy++
	}
	if err := checkQuorumAfter(voters+1, healthy, "promoting "+name); err != nil {
		return err
	}
	if err := m.raft.AddVoter(target.ID, target.Address, index, m.cfg.RequestTimeout).Error(); err != nil {
		return fmt.Errorf("promote %s: %w", name, proposal.Outcome(err))
	}
	m.log.Info("learner promoted", "name", name)
	return nil
}

// checkLearnerCaughtUp asks the learner how far it has applied and compares
// that with the leader's commit index.
func (m *Member) checkLearnerCaughtUp(ctx context.Context, name string) error {
	attrs, err := m.fsm.Members()
	if err != nil {
		return err
	}
	addr := attrs[name].GetClientAddr()
	if addr == "" {
		return fmt.Errorf("%w: %s has not published its address, so it is not running yet", ErrLearnerLagging, name)
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	st, err := m.peers.Status(ctx, addr)
	if err != nil {
		return fmt.Errorf("%w: ask %s for its progress: %w", ErrLearnerLagging, name, err)
	}
	commit := m.raft.CommitIndex()
	if lag := int64(commit) - int64(st.AppliedIndex); lag > promoteMaxLag {
		return fmt.Errorf("%w: %s has applied index %d, the leader has committed %d (%d behind, at most %d allowed); wait and retry",
			ErrLearnerLagging, name, st.AppliedIndex, commit, lag, promoteMaxLag)
	}
	rev := m.fsm.Revision()
	if lag := rev - st.Revision; lag > promoteMaxLag {
		return fmt.Errorf("%w: %s is at revision %d, the leader at %d (%d writes behind, at most %d allowed); wait and retry",
			ErrLearnerLagging, name, st.Revision, rev, lag, promoteMaxLag)
	}
	return nil
}

// RemoveMember removes a member and tells it so. Only the leader can, and
// not itself: leadership must move first (TransferLeadership).
func (m *Member) RemoveMember(ctx context.Context, name string) error {
	cfg, index, err := m.configuration()
	if err != nil {
		return err
	}
	target, err := findServer(cfg, name)
	if err != nil {
		return err
	}
	if name == m.cfg.Name {
		return fmt.Errorf("%w: the leader cannot remove itself; leadership did not move", ErrNotApplied)
	}
	if target.Suffrage == raft.Voter {
		voters, healthy := m.healthyVoters(cfg)
		if m.health.healthy(name) {
			healthy--
		}
		if err := checkQuorumAfter(voters-1, healthy, "removing "+name); err != nil {
			return err
		}
	}
	attrs, _ := m.fsm.Members()
	if err := m.raft.RemoveServer(target.ID, index, m.cfg.RequestTimeout).Error(); err != nil {
		return fmt.Errorf("remove %s: %w", name, proposal.Outcome(err))
	}
	m.log.Info("member removed", "name", name)
	if addr := attrs[name].GetClientAddr(); addr != "" {
		m.notifyRemoved(ctx, name, addr)
	}
	return nil
}

// notifyRemoved tells a removed member, best effort, so that it stops serving
// now rather than when it notices on its own.
func (m *Member) notifyRemoved(ctx context.Context, name, addr string) {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	err := m.peers.NotifyRemoved(ctx, addr, name, m.ClusterID())
	if err != nil {
		m.log.Warn("could not tell the removed member; it will stop when it notices", "name", name, "error", err)
	}
}

// TransferLeadership hands leadership to the voter named to, or to any
// voter when to is empty, and returns the new leader's name once this member
// knows it. Only the leader can.
func (m *Member) TransferLeadership(ctx context.Context, to string) (string, error) {
	var f raft.Future
	if to == "" {
		f = m.raft.LeadershipTransfer()
	} else {
		cfg, _, err := m.configuration()
		if err != nil {
			return "", err
		}
		target, err := findServer(cfg, to)
		switch {
		case err != nil:
			return "", err
		case target.Suffrage != raft.Voter:
			return "", fmt.Errorf("%w: %q is a learner and cannot lead", ErrInvalidMember, to)
		case to == m.cfg.Name:
			return to, nil // already there
		}
		f = m.raft.LeadershipTransferToServer(target.ID, target.Address)
	}
	if err := f.Error(); err != nil {
		return "", fmt.Errorf("%w: leadership transfer: %w", ErrNotApplied, err)
	}
	// Wait until this member knows the new leader, so the answer names it.
	deadline := time.Now().Add(m.leaderWait())
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if _, id := m.raft.LeaderWithID(); id != "" && string(id) != m.cfg.Name {
			return string(id), nil
		}
		select { // polling raft's view; no channel exposes it
		case <-time.After(10 * time.Millisecond):
		case <-m.ctx.Done():
			return "", ErrStopped
		}
	}
	_, id := m.raft.LeaderWithID()
	return string(id), nil
}

// Members lists the raft configuration as this member knows it, with each
// member's published client address and health, sorted by name.
func (m *Member) Members() ([]*kvv1.Member, error) {
	cfg, _, err := m.configuration()
	if err != nil {
		return nil, err
	}
	attrs, err := m.fsm.Members()
	if err != nil {
		return nil, err
	}
	_, leaderID := m.raft.LeaderWithID()
	var out []*kvv1.Member
	for _, srv := range cfg.Servers {
		name := string(srv.ID)
		mem := &kvv1.Member{
			Id:         memberid.FromName(name),
			Name:       name,
			RaftAddr:   string(srv.Address),
			ClientAddr: attrs[name].GetClientAddr(),
			IsLearner:  srv.Suffrage != raft.Voter,
			IsLeader:   srv.ID == leaderID,
			Healthy:    m.health.healthy(name),
		}
		if t, ok := m.health.lastContact(name); ok {
			mem.LastContact = timestamppb.New(t)
		}
		out = append(out, mem)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}
