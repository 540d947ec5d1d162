package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kvd-io/kvd/observe"
	peerv1 "github.com/kvd-io/kvd/proto/peer/v1"
)

// readIndexer batches the read-index requests of concurrent linearizable
// reads: one fetch (one quorum round on the leader, one RPC on a follower)
// answers every request that was waiting when it began. A request that
// arrives during a fetch waits for the next one, because the index of a fetch
// that began before the read arrived could miss writes acknowledged before
// the read.
type readIndexer struct {
	reqs    chan chan readIndexResult
	fetch   func(context.Context) (uint64, error)
	timeout time.Duration
	stop    <-chan struct{}
	metrics *observe.Metrics // may be nil
}

type readIndexResult struct {
	index uint64
	err   error
}

func newReadIndexer(fetch func(context.Context) (uint64, error), timeout time.Duration, stop <-chan struct{}, m *observe.Metrics) *readIndexer {
	return &readIndexer{reqs: make(chan chan readIndexResult, 1024), fetch: fetch, timeout: timeout, stop: stop, metrics: m}
}

// run serves batches until stop is closed.
func (r *readIndexer) run() {
	for {
		var batch []chan readIndexResult
		select {
		case <-r.stop:
			return
		case w := <-r.reqs:
			batch = append(batch, w)
		}
	drain:
		for {
			select {
			case w := <-r.reqs:
				batch = append(batch, w)
			default:
				break drain
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), r.timeout)
		start := time.Now()
		index, err := r.fetch(ctx)
		cancel()
		r.metrics.ObserveReadIndex(time.Since(start))
		for _, w := range batch {
			w <- readIndexResult{index: index, err: err} // buffered: never blocks
		}
	}
}

// readIndex returns an index that a linearizable read must wait for.
func (r *readIndexer) readIndex(ctx context.Context) (uint64, error) {
	w := make(chan readIndexResult, 1)
	select {
	case r.reqs <- w:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-r.stop:
		return 0, ErrStopped
	}
	select {
	case res := <-w:
		return res.index, res.err
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-r.stop:
		return 0, ErrStopped
	}
}

// fetchReadIndex is the readIndexer's fetch: the leader confirms its own
// leadership; a follower asks the leader.
func (s *Server) fetchReadIndex(ctx context.Context) (uint64, error) {
	if s.raft.State() == raft.Leader {
		return s.leaderReadIndex()
	}
	conn, leader, err := s.leaderConn(ctx)
	if errors.Is(err, errSelfIsLeader) {
		return s.leaderReadIndex()
	}
	if err != nil {
		return 0, err
	}
	resp, err := peerv1.NewPeerServiceClient(conn).ReadIndex(ctx, &peerv1.ReadIndexRequest{})
	if err != nil {
		s.peerFailed(conn, err)
		return 0, fmt.Errorf("%w: read index from leader %s: %w", ErrNoLeader, leader, err)
	}
	return resp.GetIndex(), nil
}

// leaderReadIndex notes the commit index, then confirms with a quorum that
// this member still leads. Only a leader that has applied the first command
// of its term answers: before that its commit index may miss entries that an
// earlier leader committed.
func (s *Server) leaderReadIndex() (uint64, error) {
	term := s.raft.CurrentTerm()
	if s.readyTerm.Load() != term {
		return 0, ErrNotReady
	}
	index := s.raft.CommitIndex()
	if err := s.raft.VerifyLeader().Error(); err != nil {
		return 0, fmt.Errorf("%w: confirm leadership: %w", ErrNoLeader, err)
	}
	if s.raft.CurrentTerm() != term {
		return 0, fmt.Errorf("%w: term changed while confirming leadership", ErrNoLeader)
	}
	return index, nil
}

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
	index, err := s.reads.readIndex(early)
	if err != nil {
		if early.Err() != nil && ctx.Err() == nil {
			return fmt.Errorf("%w: no leader confirmed the read in time", ErrNoLeader)
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
		applied := s.fsm.AppliedIndex()
		if applied >= index || s.onlyRaftEntries(applied+1, index) {
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
			return fmt.Errorf("waiting for index %d (applied %d): %w", index, applied, ctx.Err())
		case <-s.stop:
			return ErrStopped
		}
	}
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
