// Package client is the Go SDK of kvd, a Raft-replicated key-value store with
// etcd v3 semantics.
//
// The API follows etcd's clientv3: a Client built from a Config, the small
// interfaces KV, Cluster, Maintenance and Watcher that it implements,
// functional OpOptions for reads, writes and watches, and a Txn builder:
//
//	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7379"}})
//	if err != nil { ... }
//	defer c.Close()
//	_, err = c.Put(ctx, "greeting", "hello")
//	resp, err := c.Get(ctx, "greet", client.WithPrefix())
//
// Leases (Grant, KeepAlive, Revoke) attach keys to a TTL. Package concurrency
// builds sessions, mutexes and elections on them, client-side. Lock, Unlock,
// Campaign, Proclaim, Leader, Observe and Resign call the cluster's lock and
// election services instead, which run the same recipes in the member, over
// the same keys, with a lease the caller keeps alive.
//
// # Endpoints and failover
//
// A Client keeps one gRPC connection per endpoint, dialed lazily. Before a
// request is sent on an endpoint, its connection must be READY; an endpoint
// that cannot get there within Config.DialTimeout is skipped, and nothing was
// sent to it. The client sticks to the endpoint that last answered.
//
// What is retried on another endpoint depends on whether the request may have
// taken effect:
//
//   - Reads (Get, MemberList, a Txn whose operations are all reads) move to the
//     next endpoint on any Unavailable error.
//   - Writes (Put, Delete, a Txn with a write, Compact) and membership changes
//     (MemberAdd, MemberPromote, MemberRemove, LeaderTransfer) move to the
//     next endpoint only when nothing was sent, or when the server marked the
//     error as certainly not applied (see apierr.IsNotApplied: no leader,
//     leadership moving). Any other failure of a write, such as a connection
//     that broke after the request left, is returned to the caller: the write
//     may have been applied.
//   - Errors that describe the request (InvalidArgument, NotFound,
//     AlreadyExists, OutOfRange, FailedPrecondition and the like) are never
//     retried.
//   - The Maintenance calls (Status, HashKV, Snapshot, Defragment) name the
//     one endpoint they ask, and are never sent to another.
//   - Watches move to another endpoint when their stream fails, as described
//     below.
//
// When every endpoint failed in a retryable way (during a leader election, or
// while the cluster is unreachable), the client waits with an exponential
// backoff (Config.RetryBackoff up to Config.MaxRetryBackoff) and tries again
// until the call's context ends. Give calls a context with a deadline: with
// context.Background a call blocks until some endpoint can serve it. The
// error returned when the context ends wraps both the context's error and the
// last error from the cluster, so errors.Is(err, context.DeadlineExceeded) and
// apierr.IsNotApplied(err) both work on it.
//
// The exception is a refused certificate: when every endpoint refused the
// TLS handshake over one (a member certificate from a CA Config.TLS does not
// trust, one not valid for the endpoint's name, a client certificate the
// members do not accept or an expired one), the call fails at once with a
// *CertificateError that says why, since retrying with the same
// certificates cannot succeed. Watches and lease keep-alives, which outlive
// such a mistake, keep retrying until it is fixed.
//
// # Streams
//
// Gets, puts, deletes and transactions of up to 256 KiB do not each make a
// gRPC call: the calls to one endpoint share a long-lived bidirectional
// stream (KVService.Stream) that carries requests and results with ids,
// several to a message when calls are concurrent. A unary call costs client
// and member an HTTP/2 stream, headers and trailers, and a goroutine each;
// on the stream a request costs a few microseconds, which more than doubled
// the requests a three-member cluster serves on two CPUs. Nothing else
// changes: each request is answered as its unary call would be, with the same
// errors, and follows the same retry policy. A request sent on a stream that
// then broke is as uncertain as a unary call whose connection broke; one the
// stream never sent is marked not applied. When a member shuts down, it
// tells its streams, which finish what they sent and give way to new ones.
// Larger requests, and endpoints that do not serve streams, get unary calls;
// Config.UnaryCalls turns streams off.
//
// # Watches
//
// Watch follows a key or a range and returns a channel of WatchResponses,
// as etcd's Watcher does:
//
//	for resp := range c.Watch(ctx, "config/", client.WithPrefix()) {
//		if err := resp.Err(); err != nil { ... } // compacted, refused, ...
//		for _, ev := range resp.Events { ... }
//	}
//
// All the watchers of a client share one WatchService stream per endpoint,
// opened with the metadata "kvd-require-leader: true", so that a member cut
// off from its leader ends the stream instead of going silent. When a
// stream fails (the member died, shut down, or lost its leader), each of
// its watchers is created again on another endpoint, retried as a read is,
// from the revision after the last revision it received whole (or after
// the last progress notification it received, when that is higher): the
// channel carries every event once and in order, with no gap, across any
// number of moves. A revision whose events arrived in fragments
// (WithFragment) counts only once complete, and is delivered whole. If the
// revision to resume from has been compacted meanwhile, the channel gets a
// response with CompactRevision and Canceled set, then closes.
// RequestProgress asks for a progress notification on every channel.
//
// Compact discards old history (through the raft log, for every member);
// Defragment gives a member's free file space back.
//
// # Keys and ranges
//
// Keys and values are Go strings holding arbitrary bytes. A range is the
// half-open interval [key, end); an end of "\x00" means every key from key on,
// and an empty end means the single key. WithPrefix and PrefixEnd compute the
// end that selects every key with a prefix.
package client
