// Package member is one kvd member without its API: a hashicorp/raft node
// whose state machine is package fsm, its lifecycle (bootstrap, join,
// removal, shutdown), the health of the other members, and the two entries
// every request goes through: Propose (and ProposeAsync) for writes,
// Linearize (and LinearizeAsync) for linearizable reads. It knows nothing of
// gRPC: package rpc serves the API over it, package internal/peer
// implements the calls it makes to other members (Peers), and package
// server assembles them.
//
// # Writes
//
// Any member accepts any write. The leader appends it to the raft log
// through its proposal buffer (package internal/proposal), which gives the
// writes that arrive while an entry is being committed one entry together,
// and answers once it is committed on a quorum and applied; a follower
// forwards the encoded command to the leader and relays the answer.
//
// # Reads
//
// A linearizable read follows etcd's ReadIndex: the leader notes its commit
// index and confirms with a quorum that it still leads, counting only
// answers to heartbeats sent after the confirmation began (package
// internal/leadership); reads that wait together share one confirmation
// (package internal/readindex). A follower asks the leader for the index.
// The serving member waits until its state machine has applied it. A new
// leader serves no linearizable read until the first command of its term
// (fsm.v1.LeaderStart) is applied, because only then does its commit index
// cover every entry of earlier terms.
//
// # Errors
//
// Errors are the sentinels of errors.go, wrapped with what went wrong.
// ErrNotApplied means the request certainly did not reach the log and may
// be retried anywhere; ErrOutcomeUnknown means a write may or may not have
// been applied. An error another member answered (a leader's answer to a
// forwarded write) is passed on as it came.
package member
