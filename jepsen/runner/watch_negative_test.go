package runner

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/kvd-io/kvd/jepsen/checker"
)

// watchDropEvery is how often the broken build drops an event: each
// member's hub hands out a few thousand events in the run, so every
// watcher loses dozens.
const watchDropEvery = 97

// TestWatchNegativeControl runs the watch workload against kvd's
// deliberately broken build (-tags kvd_unsafe, --unsafe-watch-drop-every:
// every Nth event a member's watch hub hands out is dropped) and asserts
// that the checker reports the missing events; the same schedule against
// the release build, a member killed under the watchers (so that one of
// them resumes elsewhere), must pass.
func TestWatchNegativeControl(t *testing.T) {
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
			cfg := watchNegativeControlConfig(bin, tt.unsafe)
			name := "release"
			if tt.unsafe {
				name = "unsafe"
			}
			cfg.OutDir = filepath.Join(runs, fmt.Sprintf("%s-watch-negative-control-%s", time.Now().Format("20060102-150405"), name))
			cfg.Logf = t.Logf
			res, err := Run(ctx, cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%s build:\n%s", name, res.Summary())
			details, ok := res.Checker.Details.(checker.WatchResult)
			if !ok {
				t.Fatalf("no watch checker result: %+v", res.Checker)
			}
			t.Logf("%d events checked from %d watchers, %d committed writes", details.EventsChecked, len(details.Watchers), details.Committed)
			if res.Verdict != tt.verdict {
				t.Fatalf("verdict %s, want %s (%v); anomalies %v; run in %s", res.Verdict, tt.verdict, res.Problems, details.Anomalies, cfg.OutDir)
			}
			if res.FaultsInjected != 1 {
				t.Fatalf("faults injected: %d, want 1", res.FaultsInjected)
			}
			if details.EventsChecked < 1000 {
				t.Fatalf("only %d events checked", details.EventsChecked)
			}
			if !tt.unsafe {
				return
			}
			// Every watcher's member drops events: each must be caught
			// with gaps, and the gaps must be what was named.
			for _, w := range details.Watchers {
				if w.Missing == 0 {
					t.Errorf("watcher on %s: no missing event found (%+v)", w.Node, w)
				}
			}
			if !strings.Contains(strings.Join(res.Problems, "; "), "missing events") {
				t.Fatalf("problems %v do not name the missing events", res.Problems)
			}
			t.Logf("anomalies, e.g.: %s", strings.Join(details.Anomalies[:min(3, len(details.Anomalies))], "; "))
		})
	}
}

// watchNegativeControlConfig is the watch workload with one member killed
// for 5s.
func watchNegativeControlConfig(bin string, unsafe bool) Config {
	cfg := DefaultConfig()
	cfg.Workload = "watch"
	cfg.Nemesis = "kill-one"
	cfg.TimeLimit = 14 * time.Second
	cfg.Warmup = 4 * time.Second
	cfg.FaultDuration = 5 * time.Second
	cfg.HealDuration = 2 * time.Second
	cfg.FinalPhase = 3 * time.Second
	cfg.Quiet = time.Second
	cfg.KvdBin = bin
	cfg.Seed = 1
	if unsafe {
		cfg.KvdArgs = []string{fmt.Sprintf("--unsafe-watch-drop-every=%d", watchDropEvery)}
	}
	return cfg
}
