package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	peerv1 "github.com/kvd-io/kvd/proto/peer/v1"
)

// fetchReadIndex is the read-index queue's fetch: the leader confirms its own
// leadership; a follower asks the leader.
func (s *Server) fetchReadIndex(ctx context.Context) (uint64, error) {
	if s.raft.State() == raft.Leader {
		return s.leaderReadIndex(ctx)
	}
	conn, leader, addr, err := s.leaderConn(ctx)
	if errors.Is(err, errSelfIsLeader) {
		return s.leaderReadIndex(ctx)
	}
	if err != nil {
		return 0, err
	}
	resp, err := peerv1.NewPeerServiceClient(conn).ReadIndex(ctx, &peerv1.ReadIndexRequest{})
	if err != nil {
		s.peerFailed(addr, err)
		return 0, fmt.Errorf("%w: read index from leader %s: %w", ErrNoLeader, leader, err)
	}
	return resp.GetIndex(), nil
}

// leaderReadIndex notes the commit index, then confirms with a quorum that
// this member still leads, counting only followers' answers to messages sent
// after the confirmation began (see package leadership: raft's VerifyLeader
// also counts answers to older messages, which a leader resuming from a
// stall finds waiting in its sockets). Only a leader that has applied the
// first command of its term answers: before that its commit index may miss
// entries that an earlier leader committed.
func (s *Server) leaderReadIndex(ctx context.Context) (uint64, error) {
	term := s.raft.CurrentTerm()
	if s.readyTerm.Load() != term {
		return 0, ErrNotReady
	}
	cfg := s.raft.GetConfiguration()
	if err := cfg.Error(); err != nil {
		return 0, fmt.Errorf("%w: read configuration: %w", ErrNoLeader, err)
	}
	var voters []raft.ServerID
	for _, srv := range cfg.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			voters = append(voters, srv.ID)
		}
	}
	round := s.confirm.Begin(term, raft.ServerID(s.cfg.Name), voters)
	index := s.raft.CommitIndex()
	// VerifyLeader makes raft send heartbeats now, rather than at its next
	// tick; its own verdict is not trusted.
	verified := s.raft.VerifyLeader()
	s.metrics.LeadershipRoundBegun()
	if s.cfg.UnsafeVerifyLeader {
		// Deliberately unsafe; see Config.UnsafeVerifyLeader.
		if err := verified.Error(); err != nil {
			return 0, fmt.Errorf("%w: confirm leadership: %w", ErrNoLeader, err)
		}
		return index, nil
	}
	if err := round.Wait(ctx); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNoLeader, err)
	}
	if s.raft.CurrentTerm() != term {
		return 0, fmt.Errorf("%w: term changed while confirming leadership", ErrNoLeader)
	}
	return index, nil
}

// errReadNotConfirmed answers a linearizable read whose read index did not
// come before its deadline drew near (see answerBy).
var errReadNotConfirmed = fmt.Errorf("%w: no leader confirmed the read in time", ErrNoLeader)

// linearize waits until this member's state reflects every write that was
// acknowledged before the call.
func (s *Server) linearize(ctx context.Context) error {
	if s.cfg.UnsafeLocalReads {
		return nil // deliberately broken; see Config.UnsafeLocalReads
	}
	ctx, cancel := s.withDefaultTimeout(ctx)
	defer cancel()
	early := ctx
	if dl, ok := answerBy(ctx); ok {
		var cancelEarly context.CancelFunc
		early, cancelEarly = context.WithDeadline(ctx, dl)
		defer cancelEarly()
	}
	index, err := s.reads.ReadIndex(early)
	if err != nil {
		if early.Err() != nil && ctx.Err() == nil {
			return errReadNotConfirmed
		}
		return err
	}
	return s.waitApplied(ctx, index)
}

// waitApplied waits until the state machine has applied index. Log entries
// that never reach the state machine (raft's no-op at the start of a term,
// barriers) can sit at the top of the log, so when the state machine is
// behind the index, the entries in between are checked: if none of them is
// for the state machine, it is caught up.
func (s *Server) waitApplied(ctx context.Context, index uint64) error {
	var poll *time.Ticker // made only when there is something to wait for
	for {
		changed := s.fsm.AppliedChanged()
		if s.caughtUp(index) {
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
			return fmt.Errorf("waiting for index %d (applied %d): %w", index, s.fsm.AppliedIndex(), ctx.Err())
		case <-s.stop:
			return ErrStopped
		}
	}
}

// caughtUp reports whether the state machine reflects every entry up to
// index (see waitApplied).
func (s *Server) caughtUp(index uint64) bool {
	applied := s.fsm.AppliedIndex()
	return applied >= index || s.onlyRaftEntries(applied+1, index)
}

// waitAppliedBy is waitApplied with a deadline, which costs a timer only
// when there is something to wait for.
func (s *Server) waitAppliedBy(deadline time.Time, index uint64) error {
	if s.caughtUp(index) {
		return nil
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	return s.waitApplied(ctx, index)
}

// onlyRaftEntries reports whether the log holds entries from..to and none of
// them is applied by the state machine. It looks at a few entries at most.
func (s *Server) onlyRaftEntries(from, to uint64) bool {
	if to < from || to-from >= 8 || s.raft.AppliedIndex() < to {
		return false
	}
	for i := from; i <= to; i++ {
		var l raft.Log
		if err := s.raftLog.GetLog(i, &l); err != nil {
			return false
		}
		if l.Type == raft.LogCommand || l.Type == raft.LogConfiguration {
			return false
		}
	}
	return true
}
