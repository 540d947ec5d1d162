package observe

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Source is what the observability server reads from the member. The member
// implements it; the package calls it on HTTP handler goroutines (a /metrics
// scrape, a /readyz probe), possibly several at once and at any time after
// NewMetrics or NewServer, including before raft has started and after it has
// stopped. Every method must be safe for concurrent use, cheap and
// non-blocking: no raft round trip, no disk read.
type Source interface {
	// RaftState is raft's state as raft.RaftState.String spells it:
	// "Leader", "Follower", "Candidate" or "Shutdown".
	RaftState() string
	// RaftTerm is the member's current raft term.
	RaftTerm() uint64
	// CommitIndex is the highest log index the member knows to be committed.
	CommitIndex() uint64
	// AppliedIndex is the highest log index whose effect reads on this member
	// can see. Entries that never reach the state machine (raft's no-op and
	// barrier entries) count as applied once everything before them is, or
	// /readyz could wait forever for an index the state machine never sees.
	AppliedIndex() uint64
	// LastLogIndex is the index of the last entry in the member's raft log.
	LastLogIndex() uint64
	// DBSizeBytes is the size of the state database.
	DBSizeBytes() int64
	// Revision is the store's current revision.
	Revision() int64
	// KnownLeader reports whether the member knows a leader right now.
	KnownLeader() bool
	// IsLearner reports whether the member is a non-voting member.
	IsLearner() bool
}

var (
	// ErrNoLeader is returned by Ready when the member knows no leader.
	ErrNoLeader = errors.New("no leader known")
	// ErrApplyBehind is returned by Ready when the member has not applied up
	// to the commit index within the wait.
	ErrApplyBehind = errors.New("applied index is behind the commit index")
)

// readyPoll is how often Ready looks at the applied index while it waits.
const readyPoll = 5 * time.Millisecond

// Ready reports whether the member can serve: it returns nil when src knows a
// leader and has applied up to the commit index it reported when Ready
// began, waiting up to maxWait (or until ctx ends) for it to catch up. It
// returns an error wrapping ErrNoLeader or ErrApplyBehind otherwise; the
// error's text is the reason /readyz gives.
func Ready(ctx context.Context, src Source, maxWait time.Duration) error {
	if !src.KnownLeader() {
		return ErrNoLeader
	}
	commit := src.CommitIndex() // first: the target must not move while we wait
	if src.AppliedIndex() >= commit {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, maxWait)
	defer cancel()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			applied := src.AppliedIndex()
			if applied >= commit {
				return nil
			}
			return fmt.Errorf("%w: applied %d, commit %d after waiting %v", ErrApplyBehind, applied, commit, maxWait)
		case <-tick.C:
			if src.AppliedIndex() >= commit {
				return nil
			}
		}
	}
}
