// Package observe exposes a kvd member to operators: Prometheus metrics,
// liveness and readiness probes, and pprof, on an HTTP listener of its own
// (Config.Addr, 127.0.0.1:7381 by default), apart from the gRPC API.
//
// The package knows nothing of raft or the state machine. The member hands it
// a Source, which it reads when /metrics is scraped or /readyz is asked, and
// feeds a *Metrics with the events only it sees (applies, snapshots, leader
// changes, read indexes, gRPC calls). A nil *Metrics is valid and records
// nothing, so a member can run without metrics in tests:
//
//	m := observe.NewMetrics(src)
//	g := grpc.NewServer(
//		grpc.ChainUnaryInterceptor(m.UnaryServerInterceptor()),
//		grpc.ChainStreamInterceptor(m.StreamServerInterceptor()),
//	)
//	o, err := observe.NewServer(observe.Config{Addr: ":7381"}, src, m)
//	if err != nil { ... }
//	defer o.Shutdown(ctx)
//
// # Endpoints
//
//   - /healthz answers 200 "ok" while the process serves HTTP.
//   - /readyz answers 200 when a leader is known and this member has applied
//     everything up to the commit index it saw when the request arrived,
//     waiting up to Config.ReadyWait for it to catch up; otherwise 503 with
//     the reason as plain text. See Ready.
//   - /metrics serves the Metrics' own registry (never the global one); it is
//     absent when NewServer is given a nil *Metrics.
//   - /debug/pprof/ serves net/http/pprof, registered on the server's own mux.
//     (Importing net/http/pprof also registers it on http.DefaultServeMux;
//     kvd must never serve that mux.)
//
// None of these endpoints authenticates its callers, and pprof reveals the
// process's internals: keep Config.Addr on loopback or a private network.
//
// # Metrics
//
// Read from the Source at scrape time (gauges):
//
//	kvd_raft_state{state="leader|follower|candidate|shutdown"}  1 for the current state
//	kvd_raft_term, kvd_raft_commit_index, kvd_raft_applied_index,
//	kvd_raft_last_log_index, kvd_db_size_bytes, kvd_store_revision,
//	kvd_raft_has_leader, kvd_raft_is_learner
//
// Fed by the member:
//
//	kvd_raft_leader_changes_total                       Metrics.LeaderChanged
//	kvd_fsm_apply_duration_seconds, kvd_fsm_apply_batch_size  Metrics.ObserveApply
//	kvd_snapshot_duration_seconds{kind,result}          Metrics.ObserveSnapshot
//	kvd_read_index_duration_seconds                     Metrics.ObserveReadIndex
//	kvd_raft_log_append_duration_seconds{mode}          Metrics.ObserveLogAppend
//	kvd_raft_log_durable_wait_seconds                   Metrics.ObserveLogDurableWait
//	kvd_raft_log_checkpoint_duration_seconds            Metrics.ObserveLogCheckpoint
//	kvd_raft_log_checkpoint_entries_total               Metrics.ObserveLogCheckpoint
//	kvd_grpc_requests_total{method,code}                the gRPC interceptors
//	kvd_grpc_request_duration_seconds{method}           the gRPC interceptors
//
// plus the Go runtime (go_*) and process (process_*) collectors.
package observe
