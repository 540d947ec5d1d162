// Package nemesis injects faults into a running cluster and heals them.
//
// A Nemesis is one kind of fault (kill the leader, isolate the leader,
// pause a random member, remove a member and add it back, move
// leadership, ...). Nemeses are looked up by name in a registry built by
// Registry; a family name (kill, pause, partition, member-churn,
// leader-transfer, leader-stall; member and transfer are short for
// member-churn and leader-transfer) stands for all its variants, and mixed
// for every family that is supported and needs no run settings of its own
// (leader-stall needs an op timeout longer than its stall). A
// family can be registered as unsupported, for a fault that needs a
// feature kvd does not have: asking for it is then an error that says so,
// never a silent no-op.
//
// The membership nemeses act through the Go SDK, as an operator would:
// member-churn removes a member (MemberRemove), waits for it to exit with
// status 3 (or kills it), wipes its data directory, and its Heal starts it
// again with --join, as a voter or as a learner then promoted. kvd refuses
// a change that would cost quorum (FailedPrecondition); such a Start
// returns ErrSkipped, which the runner logs without counting it as a fault
// or a harness error. leader-transfer calls LeaderTransfer, to a random
// other voter or without a target.
//
// A Schedule picks the fault of each cycle: the requested families take
// turns in an order shuffled by the seed, and each family's variants take
// turns too, so a short run still covers them.
//
// The partition shapes (Halves, Isolate, MajoritiesRing, Bridge) are pure
// functions from the member list to a Grudge: for each member, the members
// whose packets it drops.
package nemesis
