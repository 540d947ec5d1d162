// Package opstream is kvd's multiplexed stream protocol: many concurrent
// calls ride one long-lived bidirectional gRPC stream per connection, each
// op with an id unique among those in flight, each result carrying the id of
// the op it answers. It holds both halves and the connection pool that uses
// them:
//
//   - Mux, the client half: ops queued while another call is sending go out
//     together in the next message; a receive loop hands each result to the
//     call waiting for its id.
//   - Server, the member's half: results that complete together share a
//     message (up to MaxResultBytes), sent by whichever goroutine completes
//     them, with no goroutine woken only to send.
//   - Pool, one lazily dialed connection per address and, on each, the
//     stream its calls share. The SDK keeps one for its endpoints, and every
//     member one for the other members.
//
// The SDK uses it for KVService.Stream, members for PeerService.ProposeStream.
//
// # Draining
//
// When a member shuts down it sends a response with draining set. The client
// then sends nothing more on that stream and half-closes it; the member
// answers every op it received before that and ends the stream. New calls go
// to a new stream (Pool retires the draining one but keeps it until it has
// answered).
//
// # Errors
//
// Errors are gRPC status errors that say what a caller may retry: an op that
// never left (UnsentError) is marked not applied (apierr.IsNotApplied) and
// is safe to retry anywhere; one that left and got no answer (BrokenError) is
// not, for a write may have been applied. A server that does not serve the
// stream (an older version: Unimplemented) is reported as ErrNotServed, and
// the caller sends the op as a unary call instead.
package opstream
