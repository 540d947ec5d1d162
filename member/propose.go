package member

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/fsm"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
)

// Writes: Propose and ProposeAsync take an encoded fsm.v1.Command
// (fsm.EncodeCommand) from any member. The leader appends it through its
// proposal buffer (package proposal), which groups the writes that arrive
// while an entry is being committed; a follower forwards it to the leader
// (Peers.Propose) and relays the answer. The answer is the state machine's
// response for the command; a domain error the state machine returned (a
// lease that does not exist, say) is the error.

// Propose puts cmd through the log and waits for the state machine's
// response, or for ctx to end (a ctx without a deadline gets the member's
// request timeout). Its errors wrap ErrNotApplied when the write certainly
// was not applied, ErrOutcomeUnknown when it may have been.
func (m *Member) Propose(ctx context.Context, cmd []byte) (any, error) {
	if m.IsLeader() {
		return m.proposeHere(ctx, cmd)
	}
	return m.forward(ctx, cmd)
}

// ProposeAsync is Propose for a caller that does not wait, such as a stream
// with many writes in flight: fn is called once, with what Propose would
// return for a context ending at deadline. On the leader no goroutine waits
// for the write meanwhile; a follower forwards it from a worker.
func (m *Member) ProposeAsync(cmd []byte, deadline time.Time, fn func(res any, err error)) {
	if m.IsLeader() {
		m.proposeHereAsync(cmd, deadline, fn)
		return
	}
	m.workers.Submit(func() {
		ctx, cancel := context.WithDeadline(m.ctx, deadline)
		defer cancel()
		fn(m.forward(ctx, cmd))
	})
}

// ProposeLocal is ProposeAsync for a command another member forwarded to
// this one as its leader: it is appended here or refused (ErrNotApplied),
// never forwarded again.
func (m *Member) ProposeLocal(cmd []byte, deadline time.Time, fn func(res any, err error)) {
	if !m.IsLeader() {
		fn(nil, fmt.Errorf("%w: %s is not the leader", ErrNotApplied, m.cfg.Name))
		return
	}
	m.proposeHereAsync(cmd, deadline, fn)
}

// proposeHere appends cmd through this member's proposal buffer and waits
// for it to be applied, or for ctx to end.
func (m *Member) proposeHere(ctx context.Context, cmd []byte) (any, error) {
	if err := m.enterProposal(); err != nil {
		return nil, err
	}
	defer m.proposals.leave()
	ctx, cancel := m.withDefaultTimeout(ctx)
	defer cancel()
	return m.buffer.Propose(ctx, cmd)
}

// proposeHereAsync is proposeHere with a callback: nobody waits for the
// write meanwhile.
func (m *Member) proposeHereAsync(cmd []byte, deadline time.Time, fn func(res any, err error)) {
	if err := m.enterProposal(); err != nil {
		fn(nil, err)
		return
	}
	m.buffer.Submit(cmd, deadline, func(res any, err error) {
		m.proposals.leave()
		fn(res, err)
	})
}

// proposeCommand encodes and appends a command of the member's own through
// this member's log, which must lead.
func (m *Member) proposeCommand(ctx context.Context, t fsmv1.CommandType, msg proto.Message) (any, error) {
	cmd, err := fsm.EncodeCommand(t, msg)
	if err != nil {
		return nil, err
	}
	return m.proposeHere(ctx, cmd)
}

// enterProposal admits a proposal through the proposals gate, which Drain
// closes and waits on; the caller leaves it once the proposal is answered.
func (m *Member) enterProposal() error {
	if !m.proposals.enter() {
		return fmt.Errorf("%w: %s is shutting down", ErrNotApplied, m.cfg.Name)
	}
	if err := m.Err(); err != nil {
		m.proposals.leave()
		return err
	}
	return nil
}

// membersCanBatch reports whether every server in the raft configuration
// can apply batch commands.
func (m *Member) membersCanBatch() bool { return m.membersHave(fsm.FeatureBatchCommands) }

// allHaveFeature reports whether every server in cfg has published feature.
// A server that has published nothing yet (a member just added) may be of
// an older version, so it counts as lacking it.
func allHaveFeature(cfg raft.Configuration, members map[string]*fsmv1.MemberAttributes, feature string) bool {
	for _, srv := range cfg.Servers {
		if !fsm.HasFeature(members[string(srv.ID)], feature) {
			return false
		}
	}
	return true
}

// forward sends an encoded command to the leader and relays its answer.
func (m *Member) forward(ctx context.Context, cmd []byte) (any, error) {
	ctx, cancel := m.withDefaultTimeout(ctx)
	defer cancel()
	addr, _, err := m.leaderAddr(ctx)
	if errors.Is(err, ErrSelfIsLeader) {
		return m.proposeHere(ctx, cmd) // this member won the election meanwhile
	}
	if err != nil {
		return nil, err
	}
	encoded, err := m.peers.Propose(ctx, addr, cmd)
	if err != nil {
		return nil, err
	}
	result := &fsmv1.Result{}
	if err := proto.Unmarshal(encoded, result); err != nil {
		return nil, fmt.Errorf("%w: decode leader's result: %w", ErrOutcomeUnknown, err)
	}
	m.waitRevision(ctx, resultRevision(result))
	return fsm.DecodeResult(result), nil
}

// resultRevision is the store revision a write's result reports: that of a
// key-value write, or of a lease revocation's deletes; zero for other
// commands.
func resultRevision(r *fsmv1.Result) int64 {
	switch {
	case r.GetPut() != nil:
		return r.GetPut().GetHeader().GetRevision()
	case r.GetDeleteRange() != nil:
		return r.GetDeleteRange().GetHeader().GetRevision()
	case r.GetTxn() != nil:
		return r.GetTxn().GetHeader().GetRevision()
	case r.GetLeaseRevoke() != nil:
		return r.GetLeaseRevoke().GetHeader().GetRevision()
	}
	return 0
}

// waitRevision waits until this member's store shows revision rev, or ctx
// ends. A follower answers a write it forwarded only once it has applied
// the write itself, as an etcd member does: a serializable read of this
// member made after the answer then sees the write. The wait is short: the
// leader pushes its commit index as it applies (package commitpush). Should
// ctx end first, the write is answered all the same, since it is applied;
// only that read-your-writes promise is then not kept.
func (m *Member) waitRevision(ctx context.Context, rev int64) {
	for rev > 0 {
		changed := m.fsm.AppliedChanged()
		if m.fsm.VisibleRevision() >= rev {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// LeaderAddr returns the leader's API address and name. During an
// election, or while this member has not yet learned the new leader's
// address, it waits up to leaderWait (bounded by ctx). It returns
// ErrSelfIsLeader when this member leads, and ErrNoLeader when there is
// still no leader it can reach; then nothing has been sent.
func (m *Member) LeaderAddr(ctx context.Context) (addr, name string, err error) {
	return m.leaderAddr(ctx)
}

func (m *Member) leaderAddr(ctx context.Context) (string, string, error) {
	wait := m.leaderWait()
	if dl, ok := answerBy(ctx); ok {
		wait = min(wait, time.Until(dl))
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for {
		changed := m.fsm.AppliedChanged()
		addr, leader, err := m.tryLeaderAddr(ctx)
		if err == nil || !errors.Is(err, ErrNoLeader) {
			return addr, leader, err
		}
		select {
		case <-changed:
		case <-poll.C:
		case <-deadline.C:
			return "", leader, err
		case <-ctx.Done():
			return "", leader, err
		case <-m.ctx.Done():
			return "", leader, ErrStopped
		}
	}
}

// leaderWait is how long a request waits for a leader to appear: long
// enough to ride out one election.
func (m *Member) leaderWait() time.Duration {
	return 2*m.cfg.ElectionTimeout + m.cfg.HeartbeatTimeout
}

func (m *Member) tryLeaderAddr(ctx context.Context) (string, string, error) {
	if m.ctx.Err() != nil {
		return "", "", ErrStopped
	}
	_, leaderID := m.raft.LeaderWithID()
	if leaderID == "" {
		return "", "", ErrNoLeader
	}
	leader := string(leaderID)
	if leader == m.cfg.Name {
		if m.raft.State() == raft.Leader {
			return "", leader, ErrSelfIsLeader
		}
		return "", leader, fmt.Errorf("%w: leadership is changing", ErrNoLeader)
	}
	members, err := m.fsm.Members()
	if err != nil {
		return "", leader, err
	}
	addr := members[leader].GetClientAddr()
	if addr == "" {
		return "", leader, fmt.Errorf("%w: leader %s has not published its address yet", ErrNoLeader, leader)
	}
	if err := m.peers.Ready(ctx, addr); err != nil {
		return "", leader, fmt.Errorf("%w: leader %s at %s is unreachable: %w", ErrNoLeader, leader, addr, err)
	}
	return addr, leader, nil
}

// answerBy returns when a member should give up waiting for the cluster
// and answer "no leader": a little before the caller's deadline, so that the
// caller hears that certain answer rather than its own timeout.
func answerBy(ctx context.Context) (time.Time, bool) {
	dl, ok := ctx.Deadline()
	if !ok {
		return dl, false
	}
	return earlyDeadline(dl), true
}

// earlyDeadline is answerBy's time for a call due at dl.
func earlyDeadline(dl time.Time) time.Time {
	left := time.Until(dl)
	return dl.Add(-min(left/5, 500*time.Millisecond))
}

func (m *Member) withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, m.cfg.RequestTimeout)
}
