// Package raftlog is the raft log of a member: raft-boltdb (or any
// raft.LogStore) behind a write-ahead journal, written by the leader while it
// replicates. It makes an append cost one fdatasync instead of bbolt's two,
// and takes the leader's append out of the way of replication, without
// anything treating an entry as committed before it is on disk on a quorum.
//
// # The journal
//
// raft-boltdb stores each append with a bbolt commit: the changed pages
// (three or four, scattered), an fdatasync, the meta page, a second
// fdatasync, so that the meta page never reaches the disk before the pages it
// points to. Raft needs only the first part of that promise on its write
// path: once StoreLogs returns, the entries must survive a crash. So the
// Store writes each append as records to a journal file (one write and one
// fdatasync: the same promise) and copies the entries into the log store
// later, in a checkpoint that carries many appends in one bbolt commit.
//
// The journal is two preallocated files. Appends go to the active one; a
// checkpoint switches appends to the other (empty) file, writes the entries
// of the first into the log store, and then empties it, by rewriting its
// header with a new generation. Records carry a CRC seeded with their file's
// generation, so an emptied file needs no rewrite: its old records no longer
// check out. After a crash the records of both files are written into the
// log store, the older generation first, before raft reads the log. Until
// a checkpoint has them in the log store, entries are also kept in memory,
// where reads find them.
//
// Deleting entries that the journal holds (raft does when a new leader's log
// conflicts with a follower's, or when it compacts its whole log) first
// checkpoints everything and empties both files, so that a replay can never
// bring deleted entries back.
//
// # The leader writes while it replicates
//
// hashicorp/raft's leader appends new entries to its own log before it sends
// them to followers, so every write would wait for two disk writes in a row:
// the leader's, then a follower's. Raft does not need that order (Ongaro's
// thesis, section 10.2.1, and etcd's leader writes in parallel too); it needs
// only that nothing counts an entry as committed until it is on disk on a
// quorum. The library counts the leader's copy as soon as StoreLogs returns,
// so on the leader Store returns at once and writes in the background, and
// three gates keep the promise instead:
//
//   - The state machine (Store.FSM) applies an entry only once this member's
//     copy is on disk. Applying is what answers the client and what reads see.
//   - The commit index the leader sends followers (Store.Transport) is capped
//     at its durable index, so no follower applies an entry the leader could
//     still lose.
//   - Configuration entries are written synchronously, because the library
//     starts the next membership change as soon as one commits.
//
// An entry the library commits while the leader's copy is still being
// written is therefore held back everywhere until that copy is on disk, at
// which point it is on disk on the leader and on the followers whose
// acknowledgements committed it. If the leader crashes first the entry may be
// lost, but no client was answered and no member applied it.
//
// Followers write synchronously: their acknowledgement promises the leader
// that the entries are on disk.
package raftlog
