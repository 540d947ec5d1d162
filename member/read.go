package member

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kvd-io/kvd/internal/readindex"
)

// Reads: a linearizable read follows etcd's ReadIndex. The leader notes its
// commit index and confirms with a quorum that it still leads (package
// leadership: only answers to heartbeats sent after the confirmation began
// count); a follower asks the leader for that index (Peers.ReadIndex). The
// serving member then waits until its state machine has applied the index.
// Reads that wait together share one fetch (package readindex). A new
// leader serves none until it has applied the first command of its term
// (LeaderStart): only then does its commit index cover every entry of
// earlier terms.

// Linearize waits until this member's state reflects every write that was
// acknowledged before the call. When no read index comes before ctx's
// deadline draws near (answerBy), it returns ErrNoLeader ("no leader
// confirmed the read in time"), so that the caller hears that certain answer
// rather than its own timeout.
func (m *Member) Linearize(ctx context.Context) error {
	if m.cfg.UnsafeLocalReads {
		return nil // deliberately broken; see Config.UnsafeLocalReads
	}
	// The read index is due a little before the call's deadline (the
	// request timeout when the call has none; see answerBy), so that the
	// client hears "not confirmed" rather than its own timeout. No context
	// is made for either deadline unless the state machine has to be
	// waited for: a linearizable read is the hot path.
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(m.cfg.RequestTimeout)
	}
	index, err := m.reads.ReadIndexBy(ctx, earlyDeadline(dl))
	switch {
	case errors.Is(err, readindex.ErrNotConfirmed):
		return errReadNotConfirmed
	case err != nil:
		return err
	}
	if !ok && !m.caughtUp(index) {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl)
		defer cancel()
	}
	return m.waitApplied(ctx, index)
}

// LinearizeAsync is Linearize for a caller that does not wait, such as the
// linearizable reads of one stream message: fn is called once, on a worker,
// when this member's state reflects every write acknowledged before the
// call, or with the error that kept it from it, by deadline at the latest.
// ready is when to give up waiting for a read index (ErrNoLeader); deadline
// bounds the wait for the state machine to apply it.
func (m *Member) LinearizeAsync(ready, deadline time.Time, fn func(err error)) {
	if m.cfg.UnsafeLocalReads {
		fn(nil) // deliberately broken; see Config.UnsafeLocalReads
		return
	}
	m.reads.Await(ready, func(index uint64, err error) {
		switch {
		case errors.Is(err, readindex.ErrNotConfirmed):
			fn(errReadNotConfirmed)
		case err != nil:
			fn(err)
		default:
			fn(m.waitAppliedBy(deadline, index))
		}
	})
}

// ReadIndex is the leader's half of a follower's linearizable read
// (PeerService.ReadIndex): it returns the commit index once this member has
// confirmed that it leads. A member that does not lead refuses.
func (m *Member) ReadIndex(ctx context.Context) (uint64, error) {
	if !m.IsLeader() {
		return 0, fmt.Errorf("%w: %s is not the leader", ErrNoLeader, m.cfg.Name)
	}
	return m.reads.ReadIndex(ctx)
}

// errReadNotConfirmed answers a linearizable read whose read index did not
// come before its deadline drew near (see answerBy).
var errReadNotConfirmed = fmt.Errorf("%w: no leader confirmed the read in time", ErrNoLeader)

// fetchReadIndex is the read-index queue's fetch: the leader confirms its
// own leadership; a follower asks the leader.
func (m *Member) fetchReadIndex(ctx context.Context) (uint64, error) {
	if m.raft.State() == raft.Leader {
		return m.leaderReadIndex(ctx)
	}
	addr, leader, err := m.leaderAddr(ctx)
	if errors.Is(err, ErrSelfIsLeader) {
		return m.leaderReadIndex(ctx)
	}
	if err != nil {
		return 0, err
	}
	index, err := m.peers.ReadIndex(ctx, addr)
	if err != nil {
		return 0, fmt.Errorf("%w: read index from leader %s: %w", ErrNoLeader, leader, err)
	}
	return index, nil
}

// leaderReadIndex notes the commit index, then confirms with a quorum that
// this member still leads, counting only followers' answers to messages sent
// after the confirmation began (see package leadership: raft's VerifyLeader
// also counts answers to older messages, which a leader resuming from a
// stall finds waiting in its sockets). Only a leader that has applied the
// first command of its term answers: before that its commit index may miss
// entries that an earlier leader committed.
func (m *Member) leaderReadIndex(ctx context.Context) (uint64, error) {
	term := m.raft.CurrentTerm()
	if m.readyTerm.Load() != term {
		return 0, ErrNotReady
	}
	cfg, _, err := m.configuration()
	if err != nil {
		return 0, fmt.Errorf("%w: read configuration: %w", ErrNoLeader, err)
	}
	var voters []raft.ServerID
	for _, srv := range cfg.Servers {
		if srv.Suffrage == raft.Voter {
			voters = append(voters, srv.ID)
		}
	}
	round := m.confirm.Begin(term, raft.ServerID(m.cfg.Name), voters)
	index := m.raft.CommitIndex()
	// VerifyLeader makes raft send heartbeats now, rather than at its next
	// tick; its own verdict is not trusted.
	verified := m.raft.VerifyLeader()
	m.obs.LeadershipRoundBegun()
	if m.cfg.UnsafeVerifyLeader {
		// Deliberately unsafe; see Config.UnsafeVerifyLeader.
		if err := verified.Error(); err != nil {
			return 0, fmt.Errorf("%w: confirm leadership: %w", ErrNoLeader, err)
		}
		return index, nil
	}
	if err := round.Wait(ctx); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNoLeader, err)
	}
	if m.raft.CurrentTerm() != term {
		return 0, fmt.Errorf("%w: term changed while confirming leadership", ErrNoLeader)
	}
	return index, nil
}

// waitApplied waits until the state machine has applied index. Log entries
// that never reach the state machine (raft's no-op at the start of a term,
// barriers) can sit at the top of the log, so when the state machine is
// behind the index, the entries in between are checked: if none of them is
// for the state machine, it is caught up.
func (m *Member) waitApplied(ctx context.Context, index uint64) error {
	var poll *time.Ticker // made only when there is something to wait for
	for {
		changed := m.fsm.AppliedChanged()
		if m.caughtUp(index) {
			return nil
		}
		if poll == nil {
			poll = time.NewTicker(5 * time.Millisecond)
			defer poll.Stop()
		}
		select {
		case <-changed:
		case <-poll.C:
		case <-ctx.Done():
			return fmt.Errorf("waiting for index %d (applied %d): %w", index, m.fsm.AppliedIndex(), ctx.Err())
		case <-m.ctx.Done():
			return ErrStopped
		}
	}
}

// caughtUp reports whether the state machine reflects every entry up to
// index (see waitApplied).
func (m *Member) caughtUp(index uint64) bool {
	applied := m.fsm.AppliedIndex()
	return applied >= index || m.onlyRaftEntries(applied+1, index)
}

// waitAppliedBy is waitApplied with a deadline, which costs a timer only
// when there is something to wait for.
func (m *Member) waitAppliedBy(deadline time.Time, index uint64) error {
	if m.caughtUp(index) {
		return nil
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	return m.waitApplied(ctx, index)
}

// onlyRaftEntries reports whether the log holds entries from..to and none of
// them is applied by the state machine. It looks at a few entries at most.
func (m *Member) onlyRaftEntries(from, to uint64) bool {
	if to < from || to-from >= 8 || m.raft.AppliedIndex() < to {
		return false
	}
	for i := from; i <= to; i++ {
		var l raft.Log
		if err := m.raftLog.GetLog(i, &l); err != nil {
			return false
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return false
		}
	}
	return true
}
