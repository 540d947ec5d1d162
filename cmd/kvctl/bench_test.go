package main

import (
	"context"
	"encoding/json"
	"net"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/bench"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// benchFake is a kvd member for bench tests: it counts what it is sent and
// fails every failEvery-th put with Unavailable (not marked not-applied, so
// the client does not retry it).
type benchFake struct {
	kvv1.UnimplementedKVServiceServer
	kvv1.UnimplementedMaintenanceServiceServer

	failEvery int

	mu       sync.Mutex
	statuses int
	puts     map[string]int // key -> puts, txn puts included
	valSizes map[int]int
	failed   int
	ranges   []*kvv1.RangeRequest
	txns     []*kvv1.TxnRequest
}

func serveBenchFake(t *testing.T, failEvery int) (*benchFake, string) {
	t.Helper()
	f := &benchFake{failEvery: failEvery, puts: map[string]int{}, valSizes: map[int]int{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	kvv1.RegisterKVServiceServer(s, f)
	kvv1.RegisterMaintenanceServiceServer(s, f)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return f, lis.Addr().String()
}

func (f *benchFake) Status(context.Context, *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statuses++
	return &kvv1.StatusResponse{Header: &kvv1.ResponseHeader{}, RaftState: "Leader", LeaderId: 1}, nil
}

func (f *benchFake) Put(_ context.Context, r *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.puts[string(r.Key)]++
	f.valSizes[len(r.Value)]++
	if f.failEvery > 0 && f.total()%f.failEvery == 0 {
		f.failed++
		return nil, status.Error(codes.Unavailable, "fake: failing on purpose")
	}
	return &kvv1.PutResponse{Header: &kvv1.ResponseHeader{}}, nil
}

// total is the number of puts received; f.mu is held.
func (f *benchFake) total() int {
	n := 0
	for _, c := range f.valSizes {
		n += c
	}
	return n
}

func (f *benchFake) Range(_ context.Context, r *kvv1.RangeRequest) (*kvv1.RangeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ranges = append(f.ranges, r)
	return &kvv1.RangeResponse{Header: &kvv1.ResponseHeader{}}, nil
}

func (f *benchFake) Txn(_ context.Context, r *kvv1.TxnRequest) (*kvv1.TxnResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.txns = append(f.txns, r)
	return &kvv1.TxnResponse{Header: &kvv1.ResponseHeader{}, Succeeded: true}, nil
}

// runBench runs kvctl bench with -w json against endpoints and decodes the
// summary.
func runBench(t *testing.T, endpoints string, args ...string) bench.Summary {
	t.Helper()
	return runBenchGlobal(t, endpoints, nil, args...)
}

// runBenchGlobal is runBench with more global flags before bench.
func runBenchGlobal(t *testing.T, endpoints string, global []string, args ...string) bench.Summary {
	t.Helper()
	cmd := append([]string{"--endpoints", endpoints, "-w", "json"}, global...)
	out, errOut, err := runKvctl(t, nil, "", append(append(cmd, "bench"), args...)...)
	if err != nil {
		t.Fatalf("kvctl bench %q: %v (stderr %q)", args, err, errOut)
	}
	var s bench.Summary
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		t.Fatalf("kvctl bench %q printed %q: %v", args, out, err)
	}
	return s
}

func TestBenchPutCountsTotalsAndErrors(t *testing.T) {
	a, epA := serveBenchFake(t, 10)
	b, epB := serveBenchFake(t, 10)
	s := runBench(t, epA+","+epB, "put", "--clients", "8", "--conns", "4", "--total", "200",
		"--val-size", "256", "--key-space", "10")

	a.mu.Lock()
	defer a.mu.Unlock()
	b.mu.Lock()
	defer b.mu.Unlock()
	// Connections 0 and 2 go to the first endpoint, 1 and 3 to the second;
	// each is checked with a Status before the run.
	if a.statuses != 2 || b.statuses != 2 {
		t.Errorf("statuses = %d and %d, want 2 and 2", a.statuses, b.statuses)
	}
	if got := a.total() + b.total(); got != 200 {
		t.Errorf("servers got %d puts, want 200 (no retries)", got)
	}
	if a.valSizes[256]+b.valSizes[256] != 200 {
		t.Errorf("value sizes %v and %v, want 256 bytes", a.valSizes, b.valSizes)
	}
	for k := range a.puts {
		if len(k) != 8 {
			t.Errorf("key %q is not 8 bytes", k)
		}
	}
	failed := int64(a.failed + b.failed)
	if s.Op != "put" || s.Clients != 8 || s.Conns != 4 || s.Total != 200 || s.Errors != failed ||
		s.ErrorsByCode["Unavailable"] != failed || failed == 0 {
		t.Errorf("summary %+v, want 200 puts by 8 clients on 4 conns with %d Unavailable errors", s, failed)
	}
	if s.RequestsPerSec <= 0 || s.P50Ms <= 0 || s.P999Ms < s.P50Ms {
		t.Errorf("summary %+v lacks throughput or percentiles", s)
	}
}

func TestBenchGet(t *testing.T) {
	tests := []struct {
		name         string
		global       []string
		args         []string
		wantPuts     int    // prefill
		wantKey      string // every range's key; empty: several keys
		serializable bool
	}{
		{"default key", nil, []string{"get", "--total", "30"}, 0, bench.KeyAt(0, 8), false},
		{"prefill serializable", []string{"--consistency", "s"}, []string{"get", "--total", "30", "--prefill"}, 1, bench.KeyAt(0, 8), true},
		{"named key", nil, []string{"get", "foo", "--total", "30", "--prefill"}, 1, "foo", false},
		{"key space", nil, []string{"get", "--total", "30", "--key-space", "5", "--prefill", "--clients", "3"}, 5, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ep := serveBenchFake(t, 0)
			if s := runBenchGlobal(t, ep, tt.global, tt.args...); s.Total != 30 || s.Errors != 0 {
				t.Fatalf("summary %+v, want 30 requests without errors", s)
			}
			f.mu.Lock()
			defer f.mu.Unlock()
			if got := f.total(); got != tt.wantPuts {
				t.Errorf("prefill put %d keys, want %d", got, tt.wantPuts)
			}
			if len(f.ranges) != 30 {
				t.Fatalf("server got %d ranges, want 30", len(f.ranges))
			}
			keys := map[string]bool{}
			for _, r := range f.ranges {
				keys[string(r.Key)] = true
				if r.Serializable != tt.serializable {
					t.Errorf("range serializable = %v, want %v", r.Serializable, tt.serializable)
				}
			}
			if tt.wantKey != "" && (len(keys) != 1 || !keys[tt.wantKey]) {
				t.Errorf("ranges read %v, want only %q", keys, tt.wantKey)
			}
		})
	}
}

func TestBenchTxnAndMixed(t *testing.T) {
	f, ep := serveBenchFake(t, 0)
	if s := runBench(t, ep, "txn", "--total", "20", "--txn-ops", "3", "--key-space", "10"); s.Total != 20 || s.Errors != 0 {
		t.Fatalf("txn summary %+v", s)
	}
	f.mu.Lock()
	for _, r := range f.txns {
		if len(r.Compare) != 1 || len(r.Success) != 3 || len(r.Failure) != 0 {
			t.Fatalf("txn with %d compares, %d then and %d else ops; want 1, 3, 0", len(r.Compare), len(r.Success), len(r.Failure))
		}
	}
	f.mu.Unlock()

	s := runBench(t, ep, "mixed", "--total", "100", "--read-ratio", "0.5", "--key-space", "10", "--seed", "7", "--prefill")
	if s.Total != 100 || s.Ops["get"].Count+s.Ops["put"].Count != 100 {
		t.Errorf("mixed summary %+v, want 100 requests split into gets and puts", s)
	}
}

func TestBenchTextReport(t *testing.T) {
	_, ep := serveBenchFake(t, 0)
	out := mustRun(t, ep, "", "bench", "put", "--total", "20", "--duration", "10s")
	for _, want := range []string{"Summary:", "put, 1 clients on 1 connections", "20 requests, 0 errors",
		"Requests/sec:", "Response time histogram:", "Latency distribution:", "99.9% in"} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
}

func TestBenchFailures(t *testing.T) {
	_, ep := serveBenchFake(t, 1) // every put fails
	_, _, err := runKvctl(t, nil, "", "--endpoints", ep, "bench", "put", "--total", "5")
	if err == nil || !strings.Contains(err.Error(), "every request failed") {
		t.Errorf("bench on a failing server: %v, want every request failed", err)
	}
	_, _, err = runKvctl(t, nil, "", "--endpoints", deadAddr(t), "--dial-timeout", "200ms", "--command-timeout", "500ms", "bench", "put", "--total", "5")
	if err == nil || !strings.Contains(err.Error(), "connection 0 to") {
		t.Errorf("bench on a dead endpoint: %v, want a connection error", err)
	}
}

// TestBenchBadFlags runs bench with flags that are rejected before any
// request is sent.
func TestBenchBadFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"no clients", []string{"put", "--clients", "0"}, "clients 0: must be at least 1"},
		{"conns over clients", []string{"put", "--conns", "5", "--clients", "2"}, "conns 5 is more than clients 2"},
		{"no end", []string{"put", "--total", "0"}, "the run would never end"},
		{"negative duration", []string{"put", "--duration", "-1s"}, "duration -1s"},
		{"negative rate", []string{"put", "--rate", "-1"}, "rate -1"},
		{"key space too big", []string{"put", "--key-size", "1", "--key-space", "1000"}, "key space 1000 does not fit in keys of 1 bytes"},
		{"key and key space", []string{"get", "k", "--key-space", "10"}, "a KEY and --key-space cannot be used together"},
		{"read ratio", []string{"mixed", "--read-ratio", "2"}, "read ratio 2"},
		{"txn ops", []string{"txn", "--txn-ops", "2"}, "txn ops 2 is more than key space 1"},
		{"bad number", []string{"put", "--total", "many"}, `invalid argument "many"`},
		{"put has no --key: it is the TLS key", []string{"put", "--key", "k"}, "--cert and --key go together"},
		{"nor has get: its key is an argument", []string{"get", "k", "--key", "k"}, "--cert and --key go together"},
		{"one key to get", []string{"get", "a", "b"}, "accepts at most 1 arg(s), received 2"},
		{"arguments", []string{"put", "x"}, `unknown command "x" for "kvctl bench put"`},
		{"unknown workload", []string{"scan"}, `unknown command "scan" for "kvctl bench"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The endpoint does not exist; none of these may reach it.
			args := append([]string{"--endpoints", "127.0.0.1:1", "--command-timeout", "200ms", "bench"}, tt.args...)
			_, _, err := runKvctl(t, nil, "", args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}
