// Package watch turns a member's change feed into watchers' events: the
// state machine reports what each revision changed (Hub.Applied), and the
// hub hands each watcher the events of its key range, exactly once and in
// revision order, on the stream the watcher belongs to.
//
// # Synced and unsynced watchers
//
// A synced watcher has been sent (queued on its stream) every event up to
// the hub's current revision; the changes of each new revision are queued
// for it as they are applied, on the state machine's goroutine, which never
// waits: when a stream's queue is full, its watchers that the new revision
// concerns become unsynced instead, remembering the first revision they
// miss. An unsynced watcher (one that started at a past revision, fell
// behind, or lived through a snapshot restore) is caught up by the hub's own
// goroutine from a ring of recent revisions kept in memory, or from the
// store's history, as fast as its stream drains, and becomes synced again
// when it reaches the current revision. A watcher's next revision only moves
// forward, and moves past a revision only once that revision's events are
// queued: so no event is skipped or sent twice.
//
// # What is bounded
//
// Memory does not grow with a slow reader: a stream queues at most
// Config.StreamQueue events (and at most Config.StreamQueueBytes of them,
// but always at least one revision's), and its sender holds at most one
// queue's worth more while gRPC's flow control makes it wait for a slow
// client (server.TestStalledWatcherDoesNotSlowWriters measures about 8 MiB
// held for a client that stopped reading 40 MiB of events), the ring keeps at most
// Config.RingRevisions revisions and Config.RingBytes of events, and an
// unsynced watcher holds nothing but its next revision. Writers never wait
// for watchers: a watcher that cannot keep up is read from the store later.
//
// # Order within a revision
//
// The events of one revision (a transaction may change several keys) are
// sent in key order, whether they come from the feed or from the store's
// history, which is kept by key.
//
// # Progress
//
// A stream's progress (RequestProgress) is a revision through which every
// event of every one of its watchers has been queued before the progress
// answer itself: the lowest of the current revision (for synced watchers)
// and the revision before each unsynced watcher's next one.
package watch
