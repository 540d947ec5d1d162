package main

import (
	"context"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/server/servertest"
)

// etcdReport is the shape of etcd benchmark's report with --precise.
const etcdReport = `bench with linearizable range

Summary:
  Total:	2.5e+00 secs.
  Slowest:	0.0301 secs.
  Fastest:	0.000211 secs.
  Average:	0.0049 secs.
  Stddev:	0.002 secs.
  Requests/sec:	19998.5

Response time histogram:
  0.000211 [1]	|
  0.0301 [2]	|∎

Latency distribution:
  10% in 0.0021 secs.
  25% in 0.0031 secs.
  50% in 0.0043 secs.
  75% in 0.0061 secs.
  90% in 0.0079 secs.
  95% in 0.009 secs.
  99% in 0.0150 secs.
  99.9% in 2.5e-02 secs.

Error distribution:
  [3]	rpc error: code = Unavailable desc = etcdserver: leader changed
  [2]	context deadline exceeded
`

func TestParseEtcdReport(t *testing.T) {
	m, err := parseEtcdReport(etcdReport, 50000)
	if err != nil {
		t.Fatal(err)
	}
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }
	if !near(m.rps, 19998.5) || !near(m.seconds, 2.5) || !near(m.p50, 4.3) || !near(m.p90, 7.9) ||
		!near(m.p99, 15) || !near(m.p999, 25) || m.errors != 5 || m.total != 50000 {
		t.Errorf("parsed %+v", m)
	}
	if _, err := parseEtcdReport("Error: dial failed", 1); err == nil {
		t.Error("a report without Requests/sec parsed")
	}
}

func TestParsePerfReport(t *testing.T) {
	text := strings.Join([]string{
		"# Samples: 12K of event 'cpu-clock:ppp'",
		"#",
		"    20.00%  [k] finish_task_switch.isra.0                     -      -",
		"    10.00%  [.] runtime.mallocgc",
		"     5.00%  [.] go.etcd.io/bbolt.(*Tx).Commit",
		"     5.00%  [.] go.etcd.io/bbolt.(*node).spill",
		"     1.50%  [.] github.com/hashicorp/raft.(*Raft).runLeader.func1",
		"",
	}, "\n")
	samples, symbols, pkgs := parsePerfReport(text)
	if samples != "12K" {
		t.Errorf("samples %q, want 12K", samples)
	}
	if len(symbols) != 5 || symbols[0].name != "finish_task_switch.isra.0" || symbols[2].name != "go.etcd.io/bbolt.(*Tx).Commit" {
		t.Errorf("symbols %+v", symbols)
	}
	want := []share{{"kernel", 20}, {"go.etcd.io/bbolt", 10}, {"runtime", 10}, {"github.com/hashicorp/raft", 1.5}}
	if !slices.Equal(pkgs, want) {
		t.Errorf("packages %+v, want %+v", pkgs, want)
	}
}

func TestWorkloadArgs(t *testing.T) {
	w := workload{op: "get", consistency: "s", clients: 100, conns: 10, total: 500}
	kv := strings.Join(kvctlArgs(w, "a:1,b:2"), " ")
	et := strings.Join(etcdArgs(w), " ")
	for _, want := range []string{"--consistency s", "bench get", "--clients 100", "--conns 10", "--total 500", "bench-key --prefill"} {
		if !strings.Contains(kv, want) {
			t.Errorf("kvctl args %q lack %q", kv, want)
		}
	}
	for _, want := range []string{"--conns 10", "--clients 100", "range bench-key", "--consistency s", "--total 500"} {
		if !strings.Contains(et, want) {
			t.Errorf("etcd args %q lack %q", et, want)
		}
	}
	p := workload{op: "put", clients: 1, conns: 1, total: 3, targetLeader: true, keySpace: 7}
	if kv := strings.Join(kvctlArgs(p, "a:1"), " "); !strings.Contains(kv, "--key-space 7 --sequential-keys") || !strings.Contains(kv, "--target-leader") {
		t.Errorf("kvctl put args %q", kv)
	}
	if et := strings.Join(etcdArgs(p), " "); !strings.Contains(et, "--key-space-size 7 --sequential-keys") || !strings.Contains(et, "--target-leader") {
		t.Errorf("etcd put args %q", et)
	}
}

func TestInclusiveShares(t *testing.T) {
	text := strings.Join([]string{
		"    79.43%     0.00%  [.] runtime.goexit.abi0                          -      -",
		"    17.49%     0.11%  [.] go.etcd.io/bbolt.(*Tx).Commit               -      -",
		"    19.43%     0.23%  [k] schedule                                     -      -",
		"     4.46%     0.80%  [.] runtime.schedule",
	}, "\n")
	got := inclusiveShares(text, []string{"schedule", "missing", "go.etcd.io/bbolt.(*Tx).Commit"})
	want := []share{{"schedule", 19.43}, {"go.etcd.io/bbolt.(*Tx).Commit", 17.49}}
	if !slices.Equal(got, want) {
		t.Errorf("inclusiveShares = %+v, want %+v", got, want)
	}
}

// The hand-written watch and lease client speaks kvd's services: watchers
// are confirmed, leases granted, renewed and revoked.
func TestRawClientAgainstKVD(t *testing.T) {
	c := servertest.New(t, 1)
	addrs := []string{c.Member(c.Names()[0]).Server.ClientAddr()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	w, err := openIdleWatchers(ctx, kvdAPI, addrs, 3, 4, "k")
	if err != nil {
		t.Fatal(err)
	}
	w.close()

	l, err := grantLeases(ctx, kvdAPI, addrs, 20, 3)
	if err != nil {
		t.Fatal(err)
	}
	kctx, stop := context.WithTimeout(ctx, 2500*time.Millisecond)
	defer stop()
	if err := l.keepAlive(kctx, 2); err != nil {
		t.Fatal(err)
	}
	// Two renewals a second per lease for 2.5 s: at least one round each.
	if l.renewed.Load() < 20 || l.failed.Load() != 0 {
		t.Errorf("renewed %d, failed %d; want at least 20 and none", l.renewed.Load(), l.failed.Load())
	}
	if err := l.revoke(ctx); err != nil {
		t.Fatal(err)
	}
	cli, err := client.New(client.Config{Endpoints: addrs})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ls, err := cli.Leases(ctx)
	if err != nil || len(ls.GetLeases()) != 0 {
		t.Errorf("leases after revoke: %v %v, want none", ls, err)
	}
}

func TestParseEtcdSection(t *testing.T) {
	text := "Put summary:\n  Requests/sec:\t99.5\n  50% in 0.002 secs.\n\nWatch events summary:\n  Requests/sec:\t1234.5\n  50% in 0.0005 secs.\n  99% in 0.003 secs.\n"
	i := strings.Index(text, "Watch events summary:")
	m, err := parseEtcdReport(text[i:], 0)
	if err != nil || m.rps != 1234.5 || math.Abs(m.p50-0.5) > 1e-9 || math.Abs(m.p99-3) > 1e-9 {
		t.Errorf("parsed %+v, %v", m, err)
	}
}

// Compaction and defragmentation through the hand-written client on kvd:
// the compaction reaches the current revision, the probes run during the
// defragmentation, and sizes are read before and after.
func TestCompactAndDefragAgainstKVD(t *testing.T) {
	c := servertest.New(t, 1)
	addrs := []string{c.Member(c.Names()[0]).Server.ClientAddr()}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range 50 {
		if _, err := rawCall(ctx, addrs[0], kvdKVAPI.put, putReq("k", strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	var s compactionSide
	calls := 0
	dirs := func() []int64 { calls++; return []int64{int64(calls)} }
	if err := compactAndDefrag(ctx, kvdKVAPI, addrs, dirs, t.Logf, &s); err != nil {
		t.Fatal(err)
	}
	if s.revision < 51 || s.compact <= 0 || s.defrag <= 0 || calls != 2 || len(s.beforeDir) != 1 || len(s.afterDir) != 1 {
		t.Errorf("result %+v after %d size readings", s, calls)
	}
	cli, err := client.New(client.Config{Endpoints: addrs})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Get(ctx, "k", client.WithRev(s.revision-1)); err == nil {
		t.Errorf("a read below the compacted revision %d succeeded", s.revision)
	}
}
