// Package runner runs one jepsen test end to end and analyses its history.
//
// Run sets up a cluster (package cluster), starts Config.Concurrency
// logical clients that issue the workload's operations at Config.Rate and
// record them, and drives the nemesis schedule:
//
//	warm-up (no faults) -> cycles of [fault for FaultDuration, heal,
//	HealDuration] until TimeLimit -> final heal -> clients keep running for
//	FinalPhase (recovery is measured here) -> clients stop -> Quiet ->
//	health check (one leader, every member at the same applied index and
//	revision, within RecoveryTimeout) -> final reads -> teardown -> Analyze.
//
// Analyze turns a history into a Result: the workload checker's verdict,
// availability per phase and per fault, recovery times, and liveness. It
// needs only the run directory, so a saved run can be checked again.
//
// The run directory holds config.json, history.jsonl, nemesis.log,
// harness.log, results.json, history.html (register), logs/<node>.log and,
// when the run failed or KeepData is set, data/<node>.
package runner
