package bench_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/kvd-io/kvd/bench"
	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/server/servertest"
)

// clients returns n clients of an in-process three-member cluster, client i
// on member i mod 3, closed when the test ends.
func clients(t *testing.T, c *servertest.Cluster, n int) []*client.Client {
	t.Helper()
	names := c.Names()
	out := make([]*client.Client, n)
	for i := range out {
		cli, err := client.New(client.Config{Endpoints: []string{c.Member(names[i%len(names)]).Server.ClientAddr()}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cli.Close() })
		out[i] = cli
	}
	return out
}

func runCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// Every watcher on every stream gets every put's event once: the run counts
// puts x watchers events, none missing, and one latency per event.
func TestWatchRunnerCountsEveryEvent(t *testing.T) {
	c := servertest.New(t, 3)
	cs := clients(t, c, 4)
	for _, op := range []bench.Op{bench.OpWatchLatency, bench.OpWatch} {
		t.Run(string(op), func(t *testing.T) {
			cfg := bench.DefaultWatchConfig(op)
			cfg.Streams, cfg.WatchersPerStream, cfg.PutTotal, cfg.PutClients = 3, 4, 20, 2
			cfg.PutRate = 0
			cfg.RequestTimeout = 10 * time.Second
			streams := []client.Watcher{cs[0], cs[1], cs[2]}
			w, err := bench.NewWatchRunner(cfg, streams, cs[3])
			if err != nil {
				t.Fatal(err)
			}
			rep, err := w.Run(runCtx(t))
			if err != nil {
				t.Fatal(err)
			}
			const want = 3 * 4 * 20
			if rep.Total != want || rep.Errors != 0 || rep.Latency.Count() != want {
				t.Fatalf("total %d, errors %d (%v), events recorded %d; want %d, 0, %d", rep.Total, rep.Errors, rep.ErrorsByCode, rep.Latency.Count(), want, want)
			}
			if got := rep.ByKind[bench.OpPut].Count(); got != 20 {
				t.Errorf("puts recorded: %d, want 20", got)
			}
			if !rep.Events || rep.Summary().Unit != "events" || rep.RequestsPerSec() <= 0 {
				t.Errorf("report not marked as events: %+v", rep.Summary())
			}
			if p := w.Progress(); p.Done != want || p.Total != want {
				t.Errorf("progress %+v, want %d of %d", p, want, want)
			}
			// The key holds the last put: the run really wrote it.
			g, err := cs[3].Get(runCtx(t), w.Key())
			if err != nil || len(g.Kvs) != 1 || g.Kvs[0].Version != 20 {
				t.Errorf("get %q: %v %v, want version 20", w.Key(), g, err)
			}
		})
	}
}

func TestWatchConfigValidate(t *testing.T) {
	for _, edit := range []func(*bench.WatchConfig){
		func(c *bench.WatchConfig) { c.Op = bench.OpPut },
		func(c *bench.WatchConfig) { c.Streams = 0 },
		func(c *bench.WatchConfig) { c.WatchersPerStream = 0 },
		func(c *bench.WatchConfig) { c.PutTotal = 0 },
		func(c *bench.WatchConfig) { c.PutRate = -1 },
		func(c *bench.WatchConfig) { c.PutClients = 0 },
		func(c *bench.WatchConfig) { c.KeySize = 0 },
		func(c *bench.WatchConfig) { c.Drain = -time.Second },
	} {
		cfg := bench.DefaultWatchConfig(bench.OpWatch)
		edit(&cfg)
		if err := cfg.Validate(); !errors.Is(err, bench.ErrInvalidConfig) {
			t.Errorf("%+v: Validate() = %v, want ErrInvalidConfig", cfg, err)
		}
	}
	if err := bench.DefaultWatchConfig(bench.OpWatchLatency).Validate(); err != nil {
		t.Errorf("defaults: %v", err)
	}
	if _, err := bench.NewWatchRunner(bench.DefaultWatchConfig(bench.OpWatch), nil, nil); !errors.Is(err, bench.ErrInvalidConfig) {
		t.Errorf("no streams: %v, want ErrInvalidConfig", err)
	}
}

// Lease keep-alive: each client renews its own lease; every renewal
// succeeds and the leases are revoked when the run ends.
func TestRunnerLeaseKeepAlive(t *testing.T) {
	c := servertest.New(t, 3)
	cs := clients(t, c, 2)
	cfg := bench.DefaultConfig(bench.OpLeaseKeepAlive)
	cfg.Clients, cfg.Conns, cfg.Total = 4, 2, 200
	cfg.RequestTimeout = 10 * time.Second
	r, err := bench.NewRunner(cfg, []client.KV{cs[0], cs[1]})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(runCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total != 200 || rep.Errors != 0 || rep.Latency.Count() != 200 {
		t.Fatalf("total %d, errors %d (%v), recorded %d", rep.Total, rep.Errors, rep.ErrorsByCode, rep.Latency.Count())
	}
	ls, err := cs[0].Leases(runCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(ls.GetLeases()); n != 0 {
		t.Errorf("%d leases left after the run, want 0", n)
	}
}

// Lock: clients on different members take the one mutex in turn; every
// cycle completes, and no lock key is left behind.
func TestRunnerLock(t *testing.T) {
	c := servertest.New(t, 3)
	cs := clients(t, c, 3)
	cfg := bench.DefaultConfig(bench.OpLock)
	cfg.Clients, cfg.Conns, cfg.Total = 6, 3, 60
	cfg.RequestTimeout = 20 * time.Second
	cfg.LockName = "test-lock"
	r, err := bench.NewRunner(cfg, []client.KV{cs[0], cs[1], cs[2]})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := r.Run(runCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Total != 60 || rep.Errors != 0 || rep.Latency.Count() != 60 {
		t.Fatalf("total %d, errors %d (%v), recorded %d", rep.Total, rep.Errors, rep.ErrorsByCode, rep.Latency.Count())
	}
	g, err := cs[0].Get(runCtx(t), "test-lock", client.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Kvs) != 0 {
		t.Errorf("%d lock keys left after the run, want 0", len(g.Kvs))
	}
}

// The lease and lock workloads need the lease API: a plain client.KV is
// refused with a clear error before the clock starts.
func TestRunnerCoordinationNeedsAClient(t *testing.T) {
	for _, op := range []bench.Op{bench.OpLeaseKeepAlive, bench.OpLock} {
		cfg := bench.DefaultConfig(op)
		cfg.Total = 1
		r, err := bench.NewRunner(cfg, []client.KV{kvOnly{}})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Run(runCtx(t)); !errors.Is(err, bench.ErrInvalidConfig) {
			t.Errorf("%s on a plain KV: %v, want ErrInvalidConfig", op, err)
		}
	}
}

// kvOnly is a client.KV and nothing more.
type kvOnly struct{ client.KV }
