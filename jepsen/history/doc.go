// Package history records and reads the operations of a jepsen run.
//
// A history is a sequence of Events, one JSON object per line in
// history.jsonl. Every client operation appears twice: an invocation
// (Type "invoke") when the logical client is about to send it, and a
// completion when it returned: "ok" (it happened), "fail" (it certainly did
// not happen) or "info" (its outcome is unknown: a timeout, a broken
// connection, a lost leadership). A process has at most one operation in
// flight, so an invocation is completed by the next event of the same
// process. An operation with no completion at all (the run stopped first) is
// treated as "info".
//
// Events of Process ControlProcess are not client operations: they mark the
// phases of the run, the faults the nemesis injected and healed, what kvd
// did wrong that a nemesis saw (incidents), and the cluster's health checks, so that a saved history can be checked again
// without the run.
//
// Times are nanoseconds since the start of the run, read from the monotonic
// clock under the recorder's lock, so the file's order is the time order.
package history
