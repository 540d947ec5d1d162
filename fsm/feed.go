package fsm

import (
	"github.com/kvd-io/kvd/internal/auth"
	"github.com/kvd-io/kvd/internal/mvcc"
)

// Change is what one revision changed: the events of the key-value
// transaction that wrote it, in the order its operations applied them
// (see mvcc.Event for what each holds).
type Change struct {
	Revision int64
	Events   []mvcc.Event
}

// Feed is told what the applied log changes in the store, for a consumer
// such as watch. Set it in Config.Feed; a nil Feed costs nothing.
//
// Both methods are called on the goroutine that applies the log (raft's FSM
// goroutine; Restore, at start, may run on NewRaft's caller), one call at a
// time, never concurrently with each other or with ApplyBatch or Restore.
// They must return quickly: the next entries are not applied until they
// do. They may read the FSM (Range, Revision, HashKV and the like: the
// state they see holds at least what was reported) but must not call back
// into its write path (ApplyBatch, Apply, Restore, Snapshot, Close), which
// would deadlock or reorder the log.
type Feed interface {
	// Applied is called after each ApplyBatch that changed keys, once its
	// entries are applied and visible to reads: a Range issued after
	// Applied is called sees them. changes holds one Change per revision
	// the batch wrote, in revision order. Over the FSM's life every
	// revision is reported exactly once: entries at or below the applied
	// index that raft replays after a restart are skipped, not reported
	// again. Commands that change no key report nothing: LeaderStart,
	// member attributes, a txn whose branch only reads, a delete that
	// matched nothing. A COMMAND_TYPE_BATCH entry reports one Change per
	// inner command that wrote, each its own revision.
	//
	// The changes slice and the Events slices are the consumer's to keep:
	// the FSM does not touch them again. The KeyValues in the events may be
	// shared with the responses to the requests that made them: treat them
	// as immutable.
	Applied(changes []Change)
	// Restored is called after Restore replaced the state with a snapshot,
	// with the revision of the new state. The changes between the last
	// revision reported and this one were never reported (and may not be
	// in the new state's history at all): a consumer must re-read what it
	// needs from the store. Applied reports the revisions after this one.
	Restored(revision int64)
	// AuthChanged is called with the auth state after each command that
	// changed it, in order with Applied: the changes of the revisions
	// applied before the command have been reported, those after it have
	// not (a batch's changes are split around it). After Restore it is
	// called with the restored state, before Restored. A consumer that
	// authorizes what it hands out (watchers) re-checks it here.
	AuthChanged(s *auth.State)
}

// LeaseEvent is one change to the leases: a grant (TTL set), a revoke
// (Revoked), or a checkpoint of the remaining TTL (Checkpoint set,
// RemainingTTL possibly zero: cleared).
type LeaseEvent struct {
	ID           int64
	TTL          int64
	Revoked      bool
	Checkpoint   bool
	RemainingTTL int64
}

// LeaseFeed is told what the applied log does to leases, for the member's
// lease clock (which decides expiry on the leader). Set it in
// Config.Leases. Its methods are called as Feed's are: on the applying
// goroutine, after the batch is applied and visible, one call at a time;
// they must return quickly and must not call the FSM's write path.
type LeaseFeed interface {
	// LeasesChanged reports a batch's lease changes, in log order. A
	// revoke of a lease that did not exist, or a checkpoint of one, is
	// not reported.
	LeasesChanged(events []LeaseEvent)
	// LeasesRestored is called after Restore replaced the state: the
	// consumer must re-read every lease (FSM.Leases).
	LeasesRestored()
}
