// Package concurrency builds sessions, locks and leader elections on kvd's
// leases, transactions and watches, with the semantics of etcd's clientv3
// concurrency package.
//
// A Session is a lease that a client keeps alive in the background. Keys
// written under a session disappear when it ends: Close revokes the lease,
// and a client that dies or is cut off stops renewing it, so the cluster
// expires it (after its TTL; a leader change can add an election timeout,
// never take time away).
//
// A Mutex is a lock over a key prefix. Each contender writes one key under
// the prefix, attached to its session's lease; the contender whose key has
// the lowest create revision holds the lock, and every other waits for the
// deletion of the key created just before its own, so waiters are served in
// the order they arrived and a release wakes one waiter only.
//
// An Election is the same queue, where the holder is the leader and its
// key's value is the leader's proposal, which Proclaim may change and which
// Observe follows.
//
// # What a lock guarantees
//
// Lock returns once the cluster has confirmed, in a linearizable read after
// the wait, that the caller's key is the oldest under the prefix: at that
// instant nobody else holds the lock. It cannot promise that nobody else
// holds it later, while the caller acts on it. In an asynchronous network a
// holder can pause (a GC pause, a stopped VM, a slow disk) or be cut off for
// longer than its lease's TTL: the cluster then expires the lease, the next
// waiter acquires the lock, and the paused holder, when it resumes, still
// believes it holds it. No lock service can prevent that; the protected
// resource must check.
//
// The fencing token does that: Mutex.Token is the create revision of the
// holder's key, and every later acquisition of the same lock has a larger
// one. Send the token with each write to the protected resource and have
// the resource refuse a write whose token is lower than one it has seen.
// When the resource is kvd itself, guard the write with Mutex.IsOwner in a
// transaction: it succeeds only while the holder's key still exists with
// its create revision, which is exactly while the lock is held.
package concurrency
