package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/client"
)

// memKV is an in-memory client.KV that counts what it is sent and fails the
// requests that fail picks.
type memKV struct {
	fail func(n int) error // n counts this connection's requests from 1; nil: none fail

	mu     sync.Mutex
	n      int
	puts   map[string]int // key -> times written, txn puts included
	gets   map[string]int
	txns   int
	values map[int]bool // lengths of the values written
}

var _ client.KV = (*memKV)(nil)

func newMemKV(fail func(int) error) *memKV {
	return &memKV{fail: fail, puts: map[string]int{}, gets: map[string]int{}, values: map[int]bool{}}
}

func (m *memKV) begin() error {
	m.mu.Lock()
	m.n++
	n := m.n
	m.mu.Unlock()
	if m.fail != nil {
		return m.fail(n)
	}
	return nil
}

func (m *memKV) Put(_ context.Context, key, val string, _ ...client.OpOption) (*client.PutResponse, error) {
	if err := m.begin(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.puts[key]++
	m.values[len(val)] = true
	return &client.PutResponse{}, nil
}

func (m *memKV) Get(_ context.Context, key string, _ ...client.OpOption) (*client.GetResponse, error) {
	if err := m.begin(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gets[key]++
	return &client.GetResponse{}, nil
}

func (m *memKV) Delete(context.Context, string, ...client.OpOption) (*client.DeleteResponse, error) {
	return nil, errors.New("memKV: no deletes in benchmarks")
}

func (m *memKV) Do(context.Context, client.Op) (client.OpResponse, error) {
	return client.OpResponse{}, errors.New("memKV: Do is not used")
}

func (m *memKV) Txn(context.Context) client.Txn { return &memTxn{m: m} }

type memTxn struct {
	m    *memKV
	cmps int
	ops  int
}

func (t *memTxn) If(cmps ...client.Cmp) client.Txn {
	for _, c := range cmps {
		if c.Err() == nil {
			t.cmps++
		}
	}
	return t
}
func (t *memTxn) Then(ops ...client.Op) client.Txn { t.ops += len(ops); return t }
func (t *memTxn) Else(...client.Op) client.Txn     { return t }

func (t *memTxn) Commit() (*client.TxnResponse, error) {
	if t.cmps != 1 {
		return nil, fmt.Errorf("txn with %d valid compares, want 1", t.cmps)
	}
	if err := t.m.begin(); err != nil {
		return nil, err
	}
	t.m.mu.Lock()
	defer t.m.mu.Unlock()
	t.m.txns++
	t.m.puts["txn"] += t.ops
	return &client.TxnResponse{}, nil
}

func (m *memKV) requests() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.n
}

func kvs(ms ...*memKV) []client.KV {
	out := make([]client.KV, len(ms))
	for i, m := range ms {
		out[i] = m
	}
	return out
}

func mustRun(t *testing.T, cfg Config, conns []client.KV) *Report {
	t.Helper()
	r, err := NewRunner(cfg, conns)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	rep, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func TestRunSendsTotalSpreadOverConns(t *testing.T) {
	conns := []*memKV{newMemKV(nil), newMemKV(nil), newMemKV(nil)}
	cfg := DefaultConfig(OpPut)
	cfg.Clients, cfg.Conns, cfg.Total, cfg.KeySpace, cfg.ValSize = 9, 3, 1000, 50, 256
	rep := mustRun(t, cfg, kvs(conns...))
	if rep.Total != 1000 || rep.Errors != 0 || rep.Latency.Count() != 1000 {
		t.Errorf("report total/errors/latencies = %d/%d/%d, want 1000/0/1000", rep.Total, rep.Errors, rep.Latency.Count())
	}
	sent := 0
	for i, m := range conns {
		sent += m.requests()
		if m.requests() > 0 && (!m.values[256] || len(m.values) != 1) {
			t.Errorf("connection %d got values of lengths %v, want only 256", i, m.values)
		}
	}
	if sent != 1000 {
		t.Errorf("connections got %d requests, want 1000", sent)
	}
}

// TestClientsShareConnsRoundRobin holds every request until all nine
// clients have sent one, so each client sends exactly one: client i must use
// connection i mod 3.
func TestClientsShareConnsRoundRobin(t *testing.T) {
	var mu sync.Mutex
	arrived := 0
	all := make(chan struct{})
	hold := func(int) error {
		mu.Lock()
		arrived++
		if arrived == 9 {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
			return nil
		case <-time.After(10 * time.Second):
			return errors.New("not every client sent a request")
		}
	}
	conns := []*memKV{newMemKV(hold), newMemKV(hold), newMemKV(hold)}
	cfg := DefaultConfig(OpPut)
	cfg.Clients, cfg.Conns, cfg.Total = 9, 3, 9
	rep := mustRun(t, cfg, kvs(conns...))
	if rep.Errors != 0 {
		t.Fatalf("errors %v", rep.ErrorsByCode)
	}
	for i, m := range conns {
		if m.requests() != 3 {
			t.Errorf("connection %d got %d requests, want 3", i, m.requests())
		}
	}
}

func TestRunCountsErrorsByCode(t *testing.T) {
	fail := func(n int) error {
		switch {
		case n%10 == 0:
			return status.Error(codes.Unavailable, "no leader")
		case n%25 == 1:
			return fmt.Errorf("client: %w", context.DeadlineExceeded)
		}
		return nil
	}
	m := newMemKV(fail)
	cfg := DefaultConfig(OpPut)
	cfg.Clients, cfg.Total = 4, 100
	rep := mustRun(t, cfg, kvs(m))
	want := map[string]int64{"Unavailable": 10, "DeadlineExceeded": 4}
	if rep.Total != 100 || rep.Errors != 14 || rep.Latency.Count() != 86 {
		t.Errorf("total/errors/successes = %d/%d/%d, want 100/14/86", rep.Total, rep.Errors, rep.Latency.Count())
	}
	for code, n := range want {
		if rep.ErrorsByCode[code] != n {
			t.Errorf("errors by code = %v, want %v", rep.ErrorsByCode, want)
		}
	}
	if m.requests() != 100 {
		t.Errorf("sent %d requests, want 100", m.requests())
	}
}

func TestRunGetTxnMixed(t *testing.T) {
	t.Run("get one key", func(t *testing.T) {
		m := newMemKV(nil)
		cfg := DefaultConfig(OpGet)
		cfg.Key, cfg.Total, cfg.Clients = "k", 50, 5
		mustRun(t, cfg, kvs(m))
		if m.gets["k"] != 50 || len(m.gets) != 1 || len(m.puts) != 0 {
			t.Errorf("gets %v puts %v, want 50 gets of k", m.gets, m.puts)
		}
	})
	t.Run("txn", func(t *testing.T) {
		m := newMemKV(nil)
		cfg := DefaultConfig(OpTxn)
		cfg.Total, cfg.TxnOps, cfg.KeySpace = 20, 3, 10
		rep := mustRun(t, cfg, kvs(m))
		if m.txns != 20 || m.puts["txn"] != 60 || rep.Errors != 0 {
			t.Errorf("%d txns with %d puts, %d errors; want 20 txns, 60 puts, 0 errors", m.txns, m.puts["txn"], rep.Errors)
		}
	})
	t.Run("mixed", func(t *testing.T) {
		m := newMemKV(nil)
		cfg := DefaultConfig(OpMixed)
		cfg.Total, cfg.KeySpace, cfg.ReadRatio, cfg.Seed = 400, 20, 0.5, 42
		rep := mustRun(t, cfg, kvs(m))
		reads, writes := rep.ByKind[OpGet].Count(), rep.ByKind[OpPut].Count()
		if reads+writes != 400 || reads == 0 || writes == 0 {
			t.Errorf("mixed: %d reads and %d writes, want 400 with both", reads, writes)
		}
		s := rep.Summary()
		if s.Ops["get"].Count != reads || s.Ops["put"].Count != writes {
			t.Errorf("summary ops = %+v", s.Ops)
		}
	})
}

func TestRunForADuration(t *testing.T) {
	m := newMemKV(nil)
	cfg := DefaultConfig(OpPut)
	cfg.Total, cfg.Duration, cfg.Clients = 0, 20*time.Millisecond, 2
	rep := mustRun(t, cfg, kvs(m))
	if rep.Total == 0 || rep.Total != int64(m.requests()) {
		t.Errorf("report total %d, requests sent %d: want the same, above zero", rep.Total, m.requests())
	}
}

func TestRunWithRateLimit(t *testing.T) {
	m := newMemKV(nil)
	cfg := DefaultConfig(OpPut)
	cfg.Total, cfg.Rate, cfg.Clients = 20, 1e5, 4
	if rep := mustRun(t, cfg, kvs(m)); rep.Total != 20 {
		t.Errorf("total %d, want 20", rep.Total)
	}
}

func TestRunInterrupted(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	m := newMemKV(func(n int) error {
		if n == 10 {
			cancel()
		}
		return nil
	})
	cfg := DefaultConfig(OpPut)
	cfg.Total, cfg.Duration = 0, time.Hour
	r, err := NewRunner(cfg, kvs(m))
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(ctx)
	if !errors.Is(err, context.Canceled) || !rep.Interrupted {
		t.Fatalf("Run = %v, interrupted %v; want context.Canceled and interrupted", err, rep.Interrupted)
	}
	if rep.Total < 9 {
		t.Errorf("report total %d, want the requests answered before the cancel", rep.Total)
	}
}

func TestNewRunnerChecksConns(t *testing.T) {
	cfg := DefaultConfig(OpPut)
	cfg.Clients, cfg.Conns = 4, 2
	if _, err := NewRunner(cfg, kvs(newMemKV(nil))); !errors.Is(err, ErrInvalidConfig) {
		t.Errorf("NewRunner with 1 connection for conns 2 = %v, want ErrInvalidConfig", err)
	}
}

func TestPrefillWritesEveryKeyOnce(t *testing.T) {
	m1, m2 := newMemKV(nil), newMemKV(nil)
	cfg := DefaultConfig(OpMixed)
	cfg.KeySpace, cfg.Clients, cfg.Conns, cfg.ValSize = 30, 4, 2, 16
	n, err := prefill(cfg, kvs(m1, m2))
	if err != nil || n != 30 {
		t.Fatalf("Prefill = %d, %v; want 30, nil", n, err)
	}
	for i := range uint64(30) {
		k := KeyAt(i, 8)
		if got := m1.puts[k] + m2.puts[k]; got != 1 {
			t.Errorf("key %d written %d times, want once", i, got)
		}
	}

	failing := newMemKV(func(n int) error { return status.Error(codes.Unavailable, "down") })
	if _, err := prefill(cfg, kvs(failing, failing)); err == nil || !strings.Contains(err.Error(), "Unavailable: 30") {
		t.Errorf("Prefill on a failing cluster = %v, want the failures by code", err)
	}
}

func prefill(cfg Config, conns []client.KV) (int64, error) {
	r, err := NewPrefill(cfg, conns)
	if err != nil {
		return 0, err
	}
	return Prefill(context.Background(), r)
}

func TestSummaryJSON(t *testing.T) {
	m := newMemKV(func(n int) error {
		if n%5 == 0 {
			return status.Error(codes.Unavailable, "x")
		}
		return nil
	})
	cfg := DefaultConfig(OpPut)
	cfg.Total, cfg.Clients = 50, 2
	rep := mustRun(t, cfg, kvs(m))
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(strings.TrimSpace(buf.String()), "\n"); n != 0 {
		t.Errorf("JSON summary spans %d lines, want one", n+1)
	}
	var got map[string]any
	if err := json.Unmarshal(buf.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{"op", "clients", "conns", "total", "errors", "errors_by_code", "duration_s",
		"requests_per_sec", "p50_ms", "p90_ms", "p99_ms", "p999_ms", "min_ms", "mean_ms", "max_ms"} {
		if _, ok := got[field]; !ok {
			t.Errorf("JSON summary has no %q: %s", field, buf.String())
		}
	}
	if got["op"] != "put" || got["total"] != 50.0 || got["errors"] != 10.0 || got["clients"] != 2.0 {
		t.Errorf("JSON summary = %s", buf.String())
	}
	if codes, _ := got["errors_by_code"].(map[string]any); codes["Unavailable"] != 10.0 {
		t.Errorf("errors_by_code = %v, want Unavailable: 10", got["errors_by_code"])
	}
	if _, ok := got["ops"]; ok {
		t.Error("a put run's summary has ops, want them only for mixed")
	}
}

func TestWriteText(t *testing.T) {
	rep := &Report{Op: OpPut, Clients: 1, Conns: 1, Total: 4, Errors: 1, Elapsed: time.Second,
		Latency: &Histogram{}, ErrorsByCode: map[string]int64{"Unavailable": 1}}
	for _, d := range []time.Duration{time.Millisecond, 2 * time.Millisecond, 3 * time.Millisecond} {
		rep.Latency.Record(d)
	}
	var buf bytes.Buffer
	if err := rep.WriteText(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"Summary:", "Requests/sec:\t3.0000", "Response time histogram:", "Latency distribution:",
		"10% in 1.000 ms", "50% in 2.0", "99.9% in 3.000 ms", "Error distribution:", "[1]\tUnavailable"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}
