package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvd-io/kvd/jepsen/checker"
	"github.com/kvd-io/kvd/jepsen/cluster"
)

// liveEnv gates the tests that run real clusters: they need root and take
// tens of seconds, so `go test ./...` skips them; `make jepsen-short` sets
// KVD_JEPSEN_LIVE=1.
const liveEnv = "KVD_JEPSEN_LIVE"

// TestNegativeControl runs the register workload against kvd's deliberately
// broken build (-tags kvd_unsafe, --unsafe-local-reads: linearizable reads
// served from local state) while the leader is isolated, and asserts that
// the checker reports the stale reads. If it does not, a green run of the
// suite proves nothing. The same schedule against the release build must
// pass, so the anomaly is the switch's, not the harness's.
//
// The schedule makes the anomaly certain rather than likely: every client
// talks to one member only, so two of them keep reading from the isolated
// old leader, whose state stops at the partition while the majority elects
// a new leader and keeps writing. (Followers that lag by a few milliseconds
// serve stale reads too, even before the fault.)
func TestNegativeControl(t *testing.T) {
	runs := liveRuns(t)
	for _, tt := range []struct {
		name    string
		unsafe  bool
		verdict string
	}{
		{"release build passes", false, checker.Valid},
		{"unsafe build is caught", true, checker.Invalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			bin := controlKvd(ctx, t, tt.unsafe)
			cfg := negativeControlConfig(bin, tt.unsafe)
			name := "release"
			if tt.unsafe {
				name = "unsafe"
			}
			cfg.OutDir = filepath.Join(runs, fmt.Sprintf("%s-negative-control-%s", time.Now().Format("20060102-150405"), name))
			cfg.Logf = t.Logf
			res, err := Run(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s build:\n%s", name, res.Summary())
			if res.Verdict != tt.verdict {
				t.Fatalf("verdict %s, want %s (%v); run in %s", res.Verdict, tt.verdict, res.Problems, cfg.OutDir)
			}
			if res.FaultsInjected != 1 {
				t.Fatalf("faults injected: %d, want 1", res.FaultsInjected)
			}
			if !tt.unsafe {
				return
			}
			details, ok := res.Checker.Details.(checker.RegisterResult)
			if !ok || len(details.Anomalies) == 0 {
				t.Fatalf("invalid, but no key named as not linearizable: %+v", res.Checker)
			}
			t.Logf("%d keys not linearizable, e.g. %s:\n%s", len(details.Anomalies), details.Anomalies[0].Key,
				strings.Join(details.Anomalies[0].Ops, "\n"))
			// Followers that lag serve stale reads too; make sure the
			// isolated leader's are among the anomalies.
			w := res.Stats.Faults[0]
			if n := readsVia(details.Anomalies, w.Nodes[0], w.Start, w.End); n == 0 {
				t.Fatalf("no anomalous key has a read served by the isolated member %s during the partition", w.Nodes[0])
			} else {
				t.Logf("%d reads served by the isolated member %s during the partition are in non-linearizable keys", n, w.Nodes[0])
			}
		})
	}
}

// negativeControlConfig is the register workload with the leader isolated
// for 10s, every client pinned to one member.
func negativeControlConfig(bin string, unsafe bool) Config {
	cfg := DefaultConfig()
	cfg.Workload = "register"
	cfg.Nemesis = "partition-leader"
	cfg.TimeLimit = 20 * time.Second
	cfg.Warmup = 4 * time.Second
	cfg.FaultDuration = 10 * time.Second
	cfg.HealDuration = 2 * time.Second
	cfg.FinalPhase = 3 * time.Second
	cfg.Quiet = time.Second
	cfg.ClientEndpoints = "one"
	cfg.UnsafeLocalReads = unsafe
	cfg.KvdBin = bin
	cfg.Seed = 1
	return cfg
}

// readsVia counts the reads in anomalies that clients pinned to member sent
// between from and to (ns).
func readsVia(anomalies []checker.RegisterAnomaly, member string, from, to int64) int {
	n := 0
	for _, a := range anomalies {
		for _, op := range a.Ops {
			var call float64
			if _, err := fmt.Sscanf(op, "[%fs..", &call); err != nil {
				continue
			}
			at := int64(call * 1e9)
			if at >= from && at <= to && strings.Contains(op, "@"+member+": read()") {
				n++
			}
		}
	}
	return n
}

// TestLeaseNegativeControl runs the lease and lock workloads against kvd's
// deliberately broken build run with --unsafe-early-lease-expiry (the
// leader expires every lease after a quarter of its TTL and does not extend
// leases when it takes over), without faults, and asserts that both
// checkers report it: kept-alive keys vanish before their lease's deadline,
// and a second holder takes the lock while the first one's lease is still
// guaranteed alive. The lease workload against the release build must pass
// (the lock workload's release run is in make jepsen-short).
func TestLeaseNegativeControl(t *testing.T) {
	runs := liveRuns(t)
	for _, tt := range []struct {
		workload string
		unsafe   bool
		verdict  string
		// problem is what the problems must mention when invalid.
		problem string
	}{
		{"lease", false, checker.Valid, ""},
		{"lease", true, checker.Invalid, "before its deadline"},
		{"lock", true, checker.Invalid, "overlapping tenures"},
	} {
		name := "release"
		if tt.unsafe {
			name = "unsafe"
		}
		t.Run(tt.workload+" "+name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			bin := controlKvd(ctx, t, tt.unsafe)
			cfg := DefaultConfig()
			cfg.Workload = tt.workload
			cfg.Nemesis = "none"
			cfg.TimeLimit = 15 * time.Second
			cfg.Warmup = 3 * time.Second
			cfg.FinalPhase = 2 * time.Second
			cfg.Quiet = time.Second
			cfg.Seed = 1
			cfg.KvdBin = bin
			if tt.unsafe {
				cfg.KvdArgs = []string{"--unsafe-early-lease-expiry"}
			}
			cfg.OutDir = filepath.Join(runs, fmt.Sprintf("%s-negative-control-%s-%s", time.Now().Format("20060102-150405"), tt.workload, name))
			cfg.Logf = t.Logf
			res, err := Run(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s build:\n%s", name, res.Summary())
			if res.Verdict != tt.verdict {
				t.Fatalf("verdict %s, want %s (%v); run in %s", res.Verdict, tt.verdict, res.Problems, cfg.OutDir)
			}
			if tt.problem != "" && !strings.Contains(strings.Join(res.Problems, "; "), tt.problem) {
				t.Fatalf("problems %v do not mention %q; run in %s", res.Problems, tt.problem, cfg.OutDir)
			}
		})
	}
}

// liveRuns skips a live jepsen test unless liveEnv is set, fails it unless
// it runs as root, and returns where its runs go (KVD_JEPSEN_RUNS, else a
// temporary directory).
func liveRuns(t *testing.T) string {
	t.Helper()
	if os.Getenv(liveEnv) != "1" {
		t.Skipf("set %s=1 (as root) to run live jepsen tests", liveEnv)
	}
	if !cluster.IsRoot() {
		t.Fatal("live jepsen tests need root")
	}
	if runs := os.Getenv("KVD_JEPSEN_RUNS"); runs != "" {
		return runs
	}
	return t.TempDir()
}

// controlKvd is the kvd binary of a control's run: the release build, or
// the kvd_unsafe one when unsafe; from KVD_JEPSEN_KVD or
// KVD_JEPSEN_KVD_UNSAFE (make builds them once), else built now.
func controlKvd(ctx context.Context, t *testing.T, unsafe bool) string {
	t.Helper()
	env := "KVD_JEPSEN_KVD"
	if unsafe {
		env = "KVD_JEPSEN_KVD_UNSAFE"
	}
	if bin := os.Getenv(env); bin != "" {
		return bin
	}
	bin, err := BuildKvd(ctx, t.TempDir(), unsafe)
	if err != nil {
		t.Fatal(err)
	}
	return bin
}
