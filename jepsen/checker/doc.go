// Package checker decides whether a jepsen history is correct.
//
//   - Register checks read, write and compare-and-set operations on
//     independent keys for linearizability with porcupine, one model per key.
//     An operation whose outcome is unknown (info) may have taken effect at
//     any point after its invocation, or never: it is given a return time
//     after the end of the history and any output is accepted for it. A read
//     that failed is dropped, as is a write that certainly failed.
//   - Set checks that every acknowledged add is in every member's final read
//     (else it is lost), that nothing appears that was never added (phantom),
//     that no add reported as certainly failed appears (unexpected), and that
//     an element seen by one final read is not missing from a later one.
//   - Lock checks the lock workload: the guarded register is linearizable,
//     the fencing tokens of applied writes strictly increase in revision
//     order, and no two holders' tenures overlap while each one's lease was
//     guaranteed alive.
//   - Lease checks that no read misses a key of a lease before the lease's
//     deadline (its last acknowledged renewal plus TTL), that no read finds
//     one after the lease's expiry bound, that a lease's keys go together,
//     and that the final reads find no key of an expired lease.
//   - Stats measures availability (the share of ok operations per phase and
//     per fault) and recovery time (from each heal to the first acknowledged
//     write after it), and decides liveness: enough operations succeeded
//     before the first fault, the cluster took writes after the final heal,
//     and its health check passed.
//
// Checkers are pure functions of the history, so a saved run can be checked
// again (see the jepsen command's check subcommand).
package checker
