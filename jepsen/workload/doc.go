// Package workload generates the operations of a jepsen run, performs them
// through kvd's Go client, and hands the history to the matching checker.
//
//   - register: reads, writes and compare-and-set (a Txn comparing the
//     value) on a few keys at a time. Each key takes a bounded number of
//     operations, then its slot moves to a fresh key, which keeps
//     porcupine's search small. Written values are unique.
//   - set: each operation adds a unique element (a key under a prefix);
//     after the run, every member is read.
//   - lock: clients, each with its own session, take one Mutex, write a
//     register guarded by their fencing token, and release; others read the
//     register.
//   - lease: clients grant leases, attach keys, keep some alive and never
//     renew others, and read the keys linearizably; after the run, once
//     every lease's expiry bound has passed, every member is read.
//
// Classify decides what an error means for the history: fail when the
// operation certainly did not take effect, info when it might have.
//
// Workloads that need features kvd does not have yet (watch) are
// registered as unsupported and refuse to run.
package workload
