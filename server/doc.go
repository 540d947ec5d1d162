// Package server runs one kvd member: a hashicorp/raft node whose state
// machine is package fsm, and the gRPC services that clients and other
// members call.
//
// # Writes
//
// Any member accepts any write. The leader appends it to the raft log and
// answers once it is committed on a quorum and applied; a follower forwards
// the encoded command to the leader (PeerService.Propose) and relays the
// answer.
//
// # Reads
//
// Reads are linearizable unless the request asks for a serializable one. A
// linearizable read follows etcd's ReadIndex: the leader notes its commit
// index, confirms with a quorum that it is still the leader (one round of
// heartbeats serves every read that arrived before the round began, and only
// answers to heartbeats sent after the round began count: see package
// leadership), and the serving member waits until its state machine has
// applied that index. A
// follower asks the leader for the index (PeerService.ReadIndex) and waits for
// its own state to catch up. A new leader serves no linearizable read until
// the first command of its term (fsm.v1.LeaderStart) is applied, because only
// then does its commit index cover every entry of earlier terms.
//
// # Errors
//
// Errors cross the API as gRPC status codes from one table (errors.go).
// Unavailable marked with apierr.NotApplied means the request certainly did
// not reach the log and may be retried anywhere; Unknown and
// DeadlineExceeded mean a write's outcome is unknown.
package server
