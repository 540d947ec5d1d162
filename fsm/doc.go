// Package fsm is kvd's replicated state machine: it applies the commands that
// raft has committed to the state database (DATA/state.db) and answers reads
// from it.
//
// # Layers
//
// Three packages share the work; each knows only the one below it:
//
//   - fsm (this package): the raft side. raft's BatchingFSM (ApplyBatch,
//     Snapshot, Restore), the command envelopes and their dispatch table,
//     validation, LeaderStart and member attributes, the applied index, the
//     change feed (Feed), and the exported API the server uses.
//   - internal/mvcc: the revisioned key-value store with etcd v3's
//     semantics (put, delete-range, txn and compares; Range at the current
//     or a past revision; History; HashKV), inside a bbolt transaction it is
//     given. Its TxnWrite reports what each transaction changed.
//   - internal/backend: the bbolt file: opening it (and discarding an older
//     kvd's file that was not closed cleanly), batching applied writes into
//     one pending transaction that short reads read through, fsynced
//     commits, failure, close, copy (Backup), size, and swapping in a
//     restored file.
//
// ApplyBatch runs inside backend.Batch: for each entry it decodes the
// command and hands key-value commands to an mvcc.TxnWrite, cluster
// commands to the meta and members buckets, then records the applied index
// in the same transaction.
//
// # Contract
//
// Apply is deterministic. Given the same log, every member reaches the same
// bytes: no wall clock, no randomness, no map iteration order reaches the
// database. Commands are fsm.v1.Command envelopes; the handler for each type
// is found in a table built by New.
//
// # Error policy
//
// A command that cannot be decoded, an unknown command type that is not marked
// ignorable, and any storage failure stop the process: a member that cannot
// apply what a quorum committed must not keep serving a diverged state. A
// domain failure (a key that is invalid, a lease that does not exist) is a
// result: it is returned through raft's ApplyFuture.Response and nothing of the
// command is written. A compare that does not hold is not a failure at all; it
// is a transaction that answers succeeded=false.
//
// # Storage
//
// The database holds these buckets (and those of leases, alarms and auth):
//
//   - meta: applied raft index and term and the cluster id (fsm's); the
//     store revision and compact revision, and the format the data is
//     kept in (mvcc's: a database or snapshot of a newer format is
//     refused, mvcc.ErrNewerFormat).
//   - revisions (mvcc's history): every version of every key, keyed by the
//     revision that wrote it and the key, each linked to the version it
//     replaced; deletions are tombstones. Every read finds the versions it
//     returns there through mvcc's key index, which is kept in memory and
//     built from this bucket whenever the database is opened; watches
//     catching up walk it, and compaction trims it. A database of an older
//     kvd is converted when it is opened: history in the older "history"
//     bucket (by key, then revision) is moved here, and the "keys" bucket
//     of live values, which the key index replaced, is dropped.
//   - members (fsm's): the addresses each member published through the log.
//
// The applied raft index is written in the same transaction as the data it
// covers, so a restarted member skips what its state already holds instead of
// applying it twice (raft's NoSnapshotRestoreOnStart).
//
// # Change feed
//
// Config.Feed, when set, is told what each ApplyBatch changed (one Change
// per revision, its events in the order the operations applied them) once
// the entries are visible to reads, and when Restore replaced the state;
// see Feed for the contract. Watch is meant to be built on it. Replaying
// from history (mvcc's ReadView.History) yields the same events per
// revision, but in key order within a revision, since history is keyed by
// revision and key and does not record the order of operations.
//
// # Durability
//
// Applied entries are committed to the state database in batches (every
// 100 ms or 10,000 entries, and before a snapshot, a long read and close),
// and every commit is fsynced: the file on disk is a complete database as
// of its last commit, whatever a crash cuts short, and raft replays the log
// after it. Snapshots therefore refer to the state database instead of
// copying it (see Snapshot and SnapshotStore): a snapshot commits what was
// applied, and the database is copied only when raft sends it to a
// follower.
//
// An older kvd's state (commits not fsynced, snapshots that are full
// copies) found without the marker of a clean close (CleanMarker) is
// discarded, and the member restores its newest snapshot and replays the
// log after it.
package fsm
