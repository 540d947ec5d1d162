package observe_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/observe"
)

// start runs a server on a free port and stops it when the test ends.
func start(t *testing.T, cfg observe.Config, src observe.Source, m *observe.Metrics) *observe.Server {
	t.Helper()
	cfg.Addr = "127.0.0.1:0"
	cfg.Logger = slog.New(slog.DiscardHandler)
	srv, err := observe.NewServer(cfg, src, m)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
	})
	return srv
}

// get fetches a path from srv and returns the status code and body.
func get(t *testing.T, srv *observe.Server, path string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + srv.Addr() + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name    string
		cfg     observe.Config
		wantErr string // a fragment of the error; empty means valid
	}{
		{name: "zero value", cfg: observe.Config{}},
		{name: "defaults", cfg: observe.DefaultConfig()},
		{name: "port 0", cfg: observe.Config{Addr: "127.0.0.1:0"}},
		{name: "all interfaces", cfg: observe.Config{Addr: ":7381"}},
		{name: "no port", cfg: observe.Config{Addr: "127.0.0.1"}, wantErr: `"127.0.0.1"`},
		{name: "named port", cfg: observe.Config{Addr: "localhost:http"}, wantErr: `port "http"`},
		{name: "port too big", cfg: observe.Config{Addr: "localhost:70000"}, wantErr: `port "70000"`},
		{name: "negative ready wait", cfg: observe.Config{ReadyWait: -time.Second}, wantErr: "ready wait -1s"},
		{name: "ready wait too long", cfg: observe.Config{ReadyWait: time.Hour}, wantErr: "ready wait 1h0m0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := tt.cfg
			err := tt.cfg.Validate()
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Validate() = %v, want nil", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate() = %v, want an error quoting %s", err, tt.wantErr)
			}
			if tt.cfg != before {
				t.Fatalf("Validate changed the config: %+v, was %+v", tt.cfg, before)
			}
		})
	}
}

func TestNewServerRequiresSource(t *testing.T) {
	if _, err := observe.NewServer(observe.Config{Addr: "127.0.0.1:0"}, nil, nil); err == nil {
		t.Fatal("NewServer with a nil Source succeeded")
	}
}

func TestHealthz(t *testing.T) {
	srv := start(t, observe.Config{}, &fakeSource{}, nil) // no leader: still healthy
	code, body := get(t, srv, "/healthz")
	if code != http.StatusOK || body != "ok\n" {
		t.Fatalf("/healthz = %d %q, want 200 \"ok\\n\"", code, body)
	}
}

func TestReadyz(t *testing.T) {
	tests := []struct {
		name      string
		src       *fakeSource
		wait      time.Duration
		wantCode  int
		wantErr   error // what Ready wraps
		wantInMsg string
	}{
		{
			name:     "leader known and caught up",
			src:      leaderSource(),
			wantCode: http.StatusOK,
		},
		{
			name:      "no leader",
			src:       &fakeSource{state: "Candidate", commit: 5, applied: 5},
			wantCode:  http.StatusServiceUnavailable,
			wantErr:   observe.ErrNoLeader,
			wantInMsg: "no leader known",
		},
		{
			name:      "applied lags",
			src:       &fakeSource{state: "Follower", leader: true, commit: 10, applied: 7},
			wait:      20 * time.Millisecond,
			wantCode:  http.StatusServiceUnavailable,
			wantErr:   observe.ErrApplyBehind,
			wantInMsg: "applied 7, commit 10",
		},
		{
			// The fake catches up on its fourth look, well inside the wait.
			name:     "applied catches up within the wait",
			src:      &fakeSource{state: "Follower", leader: true, commit: 10, applied: 7, catchUpAfter: 4},
			wait:     30 * time.Second,
			wantCode: http.StatusOK,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := start(t, observe.Config{ReadyWait: tt.wait}, tt.src, nil)
			code, body := get(t, srv, "/readyz")
			if code != tt.wantCode || !strings.Contains(body, tt.wantInMsg) {
				t.Fatalf("/readyz = %d %q, want %d containing %q", code, body, tt.wantCode, tt.wantInMsg)
			}
			if tt.wantErr != nil {
				if err := observe.Ready(context.Background(), tt.src, tt.wait); !errors.Is(err, tt.wantErr) {
					t.Fatalf("Ready() = %v, want %v", err, tt.wantErr)
				}
			}
		})
	}
}

func TestMetrics(t *testing.T) {
	src := leaderSource()
	m := observe.NewMetrics(src)
	srv := start(t, observe.Config{}, src, m)

	m.LeaderChanged()
	m.LeaderChanged()
	m.ObserveApply(2*time.Millisecond, 8)
	m.ObserveEntry(1)
	m.ObserveEntry(40)
	m.ObserveReadIndex(300 * time.Microsecond)
	m.ObserveSnapshot(observe.SnapshotPersist, time.Second, nil)
	m.ObserveSnapshot(observe.SnapshotRestore, 2*time.Second, errors.New("corrupt"))
	m.ObserveLogAppend(400*time.Microsecond, true)
	m.ObserveLogAppend(2*time.Millisecond, false)
	m.ObserveLogDurableWait(0)
	m.ObserveLogDurableWait(300 * time.Microsecond)
	m.ObserveLogCheckpoint(3*time.Millisecond, 120)
	m.ObserveLogCheckpoint(time.Millisecond, 30)

	code, body := get(t, srv, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`kvd_raft_state{state="leader"} 1`,
		`kvd_raft_state{state="follower"} 0`,
		`kvd_raft_state{state="candidate"} 0`,
		`kvd_raft_state{state="shutdown"} 0`,
		`kvd_raft_term 3`,
		`kvd_raft_commit_index 42`,
		`kvd_raft_applied_index 42`,
		`kvd_raft_last_log_index 43`,
		`kvd_db_size_bytes 32768`,
		`kvd_store_revision 17`,
		`kvd_raft_has_leader 1`,
		`kvd_raft_is_learner 0`,
		`kvd_raft_leader_changes_total 2`,
		`kvd_fsm_apply_duration_seconds_sum 0.002`,
		`kvd_fsm_apply_duration_seconds_count 1`,
		`kvd_fsm_apply_batch_size_bucket{le="4"} 0`,
		`kvd_fsm_apply_batch_size_bucket{le="8"} 1`,
		`kvd_fsm_apply_batch_size_sum 8`,
		`kvd_raft_entry_proposals_bucket{le="1"} 1`,
		`kvd_raft_entry_proposals_bucket{le="32"} 1`,
		`kvd_raft_entry_proposals_bucket{le="64"} 2`,
		`kvd_raft_entry_proposals_sum 41`,
		`kvd_read_index_duration_seconds_sum 0.0003`,
		`kvd_read_index_duration_seconds_count 1`,
		`kvd_snapshot_duration_seconds_sum{kind="persist",result="ok"} 1`,
		`kvd_snapshot_duration_seconds_count{kind="persist",result="ok"} 1`,
		`kvd_snapshot_duration_seconds_sum{kind="restore",result="error"} 2`,
		`kvd_snapshot_duration_seconds_count{kind="restore",result="error"} 1`,
		`kvd_raft_log_append_duration_seconds_bucket{mode="background",le="0.0005"} 1`,
		`kvd_raft_log_append_duration_seconds_count{mode="background"} 1`,
		`kvd_raft_log_append_duration_seconds_bucket{mode="sync",le="0.001"} 0`,
		`kvd_raft_log_append_duration_seconds_sum{mode="sync"} 0.002`,
		`kvd_raft_log_durable_wait_seconds_bucket{le="5e-05"} 1`,
		`kvd_raft_log_durable_wait_seconds_bucket{le="0.0005"} 2`,
		`kvd_raft_log_durable_wait_seconds_count 2`,
		`kvd_raft_log_checkpoint_duration_seconds_count 2`,
		`kvd_raft_log_checkpoint_duration_seconds_sum 0.004`,
		`kvd_raft_log_checkpoint_entries_total 150`,
		`go_goroutines `,
		`process_start_time_seconds `,
	} {
		if !hasLine(body, want) {
			t.Errorf("/metrics has no line %q", want)
		}
	}
	if t.Failed() {
		t.Logf("/metrics:\n%s", body)
	}
}

func TestMetricsSourceStates(t *testing.T) {
	src := &fakeSource{state: "Candidate", learner: true}
	srv := start(t, observe.Config{}, src, observe.NewMetrics(src))
	_, body := get(t, srv, "/metrics")
	for _, want := range []string{
		`kvd_raft_state{state="candidate"} 1`,
		`kvd_raft_state{state="leader"} 0`,
		`kvd_raft_has_leader 0`,
		`kvd_raft_is_learner 1`,
	} {
		if !hasLine(body, want) {
			t.Errorf("/metrics has no line %q", want)
		}
	}
}

func TestGRPCInterceptors(t *testing.T) {
	m := observe.NewMetrics(nil)
	srv := start(t, observe.Config{}, leaderSource(), m)
	ctx := context.Background()

	unary := m.UnaryServerInterceptor()
	put := &grpc.UnaryServerInfo{FullMethod: "/kv.v1.KVService/Put"}
	ok := func(context.Context, any) (any, error) { return "resp", nil }
	fail := func(context.Context, any) (any, error) { return nil, status.Error(codes.Unavailable, "no leader") }
	for range 2 {
		if resp, err := unary(ctx, "req", put, ok); resp != "resp" || err != nil {
			t.Fatalf("unary interceptor = %v, %v; want the handler's answer", resp, err)
		}
	}
	if _, err := unary(ctx, "req", put, fail); status.Code(err) != codes.Unavailable {
		t.Fatalf("unary interceptor error = %v, want the handler's Unavailable", err)
	}

	stream := m.StreamServerInterceptor()
	watch := &grpc.StreamServerInfo{FullMethod: "/kv.v1.WatchService/Watch", IsServerStream: true}
	if err := stream(nil, nil, watch, func(any, grpc.ServerStream) error { return nil }); err != nil {
		t.Fatal(err)
	}
	plainErr := errors.New("boom") // not a status: counted as Unknown
	if err := stream(nil, nil, watch, func(any, grpc.ServerStream) error { return plainErr }); err != plainErr {
		t.Fatalf("stream interceptor error = %v, want the handler's", err)
	}

	_, body := get(t, srv, "/metrics")
	for _, want := range []string{
		`kvd_grpc_requests_total{code="OK",method="/kv.v1.KVService/Put"} 2`,
		`kvd_grpc_requests_total{code="Unavailable",method="/kv.v1.KVService/Put"} 1`,
		`kvd_grpc_request_duration_seconds_count{method="/kv.v1.KVService/Put"} 3`,
		`kvd_grpc_requests_total{code="OK",method="/kv.v1.WatchService/Watch"} 1`,
		`kvd_grpc_requests_total{code="Unknown",method="/kv.v1.WatchService/Watch"} 1`,
		`kvd_grpc_request_duration_seconds_count{method="/kv.v1.WatchService/Watch"} 2`,
		`kvd_grpc_request_duration_seconds_bucket{method="/kv.v1.KVService/Put",le="0.0001"} `,
	} {
		if !hasLine(body, want) {
			t.Errorf("/metrics has no line %q", want)
		}
	}
	if strings.Contains(body, `code="NotFound"`) {
		t.Error("/metrics exports a code that never occurred")
	}
	if strings.Contains(body, "kvd_raft_term") {
		t.Error("metrics without a Source export source gauges")
	}
}

func TestPprof(t *testing.T) {
	srv := start(t, observe.Config{}, leaderSource(), nil)
	for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/goroutine?debug=1"} {
		if code, _ := get(t, srv, path); code != http.StatusOK {
			t.Errorf("%s = %d, want 200", path, code)
		}
	}
}

func TestNilMetrics(t *testing.T) {
	var m *observe.Metrics
	m.LeaderChanged()
	m.ObserveApply(time.Millisecond, 1)
	m.ObserveEntry(1)
	m.ObserveSnapshot(observe.SnapshotPersist, time.Second, nil)
	m.ObserveReadIndex(time.Millisecond)
	m.ObserveLogAppend(time.Millisecond, true)
	m.ObserveLogDurableWait(time.Millisecond)
	m.ObserveLogCheckpoint(time.Millisecond, 1)

	resp, err := m.UnaryServerInterceptor()(context.Background(), "req", &grpc.UnaryServerInfo{FullMethod: "/x/Y"},
		func(context.Context, any) (any, error) { return "resp", nil })
	if resp != "resp" || err != nil {
		t.Fatalf("nil unary interceptor = %v, %v; want the handler's answer", resp, err)
	}
	called := false
	err = m.StreamServerInterceptor()(nil, nil, &grpc.StreamServerInfo{FullMethod: "/x/Z"},
		func(any, grpc.ServerStream) error { called = true; return nil })
	if !called || err != nil {
		t.Fatalf("nil stream interceptor: called=%v err=%v", called, err)
	}

	srv := start(t, observe.Config{}, leaderSource(), m)
	if code, _ := get(t, srv, "/metrics"); code != http.StatusNotFound {
		t.Fatalf("/metrics without Metrics = %d, want 404", code)
	}
}

func TestHotPathsDoNotAllocate(t *testing.T) {
	m := observe.NewMetrics(nil)
	unary := m.UnaryServerInterceptor()
	info := &grpc.UnaryServerInfo{FullMethod: "/kv.v1.KVService/Range"}
	handler := func(context.Context, any) (any, error) { return nil, nil }
	ctx := context.Background()
	unary(ctx, nil, info, handler) // resolve the method's children once
	for name, fn := range map[string]func(){
		"LeaderChanged":         m.LeaderChanged,
		"ObserveApply":          func() { m.ObserveApply(time.Millisecond, 16) },
		"ObserveEntry":          func() { m.ObserveEntry(16) },
		"ObserveReadIndex":      func() { m.ObserveReadIndex(time.Millisecond) },
		"ObserveSnapshot":       func() { m.ObserveSnapshot(observe.SnapshotPersist, time.Second, nil) },
		"ObserveLogAppend":      func() { m.ObserveLogAppend(time.Millisecond, true) },
		"ObserveLogDurableWait": func() { m.ObserveLogDurableWait(time.Millisecond) },
		"ObserveLogCheckpoint":  func() { m.ObserveLogCheckpoint(time.Millisecond, 10) },
		"unary":                 func() { _, _ = unary(ctx, nil, info, handler) },
	} {
		if n := testing.AllocsPerRun(100, fn); n != 0 {
			t.Errorf("%s allocates %v times per call, want 0", name, n)
		}
	}
}

func TestShutdownStopsListener(t *testing.T) {
	srv, err := observe.NewServer(observe.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)}, leaderSource(), nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := srv.Addr()
	if code, _ := get(t, srv, "/healthz"); code != http.StatusOK {
		t.Fatalf("/healthz = %d before shutdown", code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatalf("second Shutdown: %v", err)
	}
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Fatalf("%s still accepts connections after Shutdown", addr)
	}
}

// hasLine reports whether text has the line want, or when want ends in a
// space (a name and labels without a value), a line that starts with it.
func hasLine(text, want string) bool {
	for line := range strings.Lines(text) {
		line = strings.TrimSuffix(line, "\n")
		if line == want || strings.HasSuffix(want, " ") && strings.HasPrefix(line, want) {
			return true
		}
	}
	return false
}
