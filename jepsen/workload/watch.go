package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/jepsen/checker"
	"github.com/kvd-io/kvd/jepsen/history"
)

// WatchConfig shapes the watch workload.
type WatchConfig struct {
	// Prefix starts every key; the watchers watch it.
	Prefix string
	// Keys is how many keys the writers write.
	Keys int
	// TxnShare is the share of writes that put one value to two keys in a
	// transaction (one revision, two events); the rest are puts.
	TxnShare float64
	// PerClient is how many watchers each member's client runs, each
	// checked on its own. Above one, they share the client's stream, and
	// the member sends them one response per single-key change (shared
	// watch responses), so faults are tried on that path too.
	PerClient int
}

// DefaultWatchConfig returns 5 keys, a fifth of the writes transactions,
// two watchers per client.
func DefaultWatchConfig() WatchConfig {
	return WatchConfig{Prefix: "jepsen/w/", Keys: 5, TxnShare: 0.2, PerClient: 2}
}

// Watch is the watch workload: clients write unique values to a few keys
// while watchers on every member (Config.PerClient of them through one SDK
// client per member that starts at that member and fails over to the
// others) record every event of the prefix from revision 1 on. The final read lists the prefix; the
// watchers then run until they have been told (by an event or a progress
// notification) that they have every event through its revision.
type Watch struct {
	cfg    WatchConfig
	values atomic.Int64

	mu       sync.Mutex
	watchers []*watchRun
}

// watchRun is one watcher in progress.
type watchRun struct {
	node   string
	proc   int
	cli    *client.Client
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	events  []string
	through int64 // the highest header revision received
	err     error // why the channel ended, if it did
}

func (w *watchRun) reached() (int64, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.through, w.err != nil
}

// NewWatch returns a watch workload.
func NewWatch(cfg WatchConfig) *Watch { return &Watch{cfg: cfg} }

// Name implements Workload.
func (w *Watch) Name() string { return "watch" }

// IsWrite implements Workload.
func (w *Watch) IsWrite(f string) bool { return f == checker.FWrite }

// Next implements Workload: a put of a fresh value to one key, or a
// transaction putting it to two.
func (w *Watch) Next(rng *rand.Rand) history.Event {
	first := rng.Intn(w.cfg.Keys)
	keys := []string{w.key(first)}
	if w.cfg.Keys > 1 && rng.Float64() < w.cfg.TxnShare {
		keys = append(keys, w.key((first+1+rng.Intn(w.cfg.Keys-1))%w.cfg.Keys))
		sort.Strings(keys)
	}
	return history.Event{F: checker.FWrite, Values: keys, Value: history.Str(strconv.FormatInt(w.values.Add(1), 10))}
}

func (w *Watch) key(i int) string { return fmt.Sprintf("%s%04d", w.cfg.Prefix, i) }

// Apply implements Workload.
func (w *Watch) Apply(ctx context.Context, kv client.KV, op history.Event) history.Event {
	if op.F != checker.FWrite || op.Value == nil || len(op.Values) == 0 {
		return history.Event{Type: history.Fail, F: op.F, Error: "unknown operation " + op.F}
	}
	var rev int64
	var err error
	if len(op.Values) == 1 {
		var resp *client.PutResponse
		if resp, err = kv.Put(ctx, op.Values[0], *op.Value); err == nil {
			rev = resp.Header.GetRevision()
		}
	} else {
		var ops []client.Op
		for _, k := range op.Values {
			ops = append(ops, client.OpPut(k, *op.Value))
		}
		var resp *client.TxnResponse
		if resp, err = kv.Txn(ctx).Then(ops...).Commit(); err == nil {
			rev = resp.Header.GetRevision()
		}
	}
	c := completion(op, err, false)
	c.Value, c.Values, c.Revision = op.Value, op.Values, rev
	return c
}

// Observe implements Observer: it starts Config.PerClient watchers per
// member, each recorded as one operation that Final completes.
func (w *Watch) Observe(ctx context.Context, env FinalEnv) error {
	names := sortedNames(env.Members)
	for i, name := range names {
		eps := make([]string, 0, len(names))
		for j := range names {
			eps = append(eps, env.Members[names[(i+j)%len(names)]])
		}
		cli, err := env.client(eps...)
		if err != nil {
			w.stop()
			return fmt.Errorf("watcher on %s: %w", name, err)
		}
		for range max(w.cfg.PerClient, 1) {
			wctx, cancel := context.WithCancel(ctx)
			r := &watchRun{node: name, proc: env.NewProcess(), cli: cli, cancel: cancel, done: make(chan struct{})}
			env.Record(history.Event{Type: history.Invoke, Process: r.proc, F: checker.FWatch, Node: name})
			w.mu.Lock()
			w.watchers = append(w.watchers, r)
			w.mu.Unlock()
			go r.run(wctx, w.cfg.Prefix)
		}
	}
	return nil
}

// run follows the prefix from revision 1 until ctx ends or the channel
// closes.
func (r *watchRun) run(ctx context.Context, prefix string) {
	defer close(r.done)
	ch := r.cli.Watch(ctx, prefix, client.WithPrefix(), client.WithRev(1))
	for resp := range ch {
		r.mu.Lock()
		if err := resp.Err(); err != nil {
			r.err = err
			r.mu.Unlock()
			return
		}
		member := strconv.FormatUint(resp.Header.GetMemberId(), 16)
		for _, e := range resp.Events {
			typ := "put"
			if e.GetType() == client.EventTypeDelete {
				typ = "delete"
			}
			r.events = append(r.events, checker.FormatWatchEvent(checker.WatchEvent{
				Revision: e.GetKv().GetModRevision(), Type: typ, Key: string(e.GetKv().GetKey()),
				Value: string(e.GetKv().GetValue()), Member: member}))
		}
		r.through = max(r.through, resp.Header.GetRevision())
		r.mu.Unlock()
	}
	r.mu.Lock()
	if r.err == nil && ctx.Err() == nil {
		r.err = errors.New("the watch channel closed without a reason")
	}
	r.mu.Unlock()
}

// Final implements Workload: a linearizable read of the prefix, then the
// watchers run until each has been told it has every event through the
// read's revision (asking for progress notifications, as no write comes
// any more), or until ctx ends; then they stop and their operations
// complete: ok when caught up, info otherwise.
func (w *Watch) Final(ctx context.Context, env FinalEnv) error {
	defer w.stop()
	rev, err := w.finalRead(ctx, env)
	if err != nil {
		w.complete(env, 0)
		return err
	}
	w.mu.Lock()
	watchers := append([]*watchRun(nil), w.watchers...)
	w.mu.Unlock()
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		behind := 0
		for _, r := range watchers {
			if through, ended := r.reached(); through < rev && !ended {
				behind++
				_ = r.cli.RequestProgress(ctx)
			}
		}
		if behind == 0 {
			break
		}
		select {
		case <-ctx.Done():
			w.complete(env, rev)
			return fmt.Errorf("%d watchers did not catch up with revision %d: %w", behind, rev, ctx.Err())
		case <-tick.C:
		}
	}
	w.complete(env, rev)
	return nil
}

// finalRead lists the prefix (linearizable, through any member), retried
// until it succeeds or ctx ends, and returns its revision.
func (w *Watch) finalRead(ctx context.Context, env FinalEnv) (int64, error) {
	names := sortedNames(env.Members)
	eps := make([]string, 0, len(names))
	for _, n := range names {
		eps = append(eps, env.Members[n])
	}
	cli, err := env.client(eps...)
	if err != nil {
		return 0, err
	}
	defer cli.Close()
	proc := env.NewProcess()
	for {
		env.Record(history.Event{Type: history.Invoke, Process: proc, F: checker.FReadAll})
		rctx, cancel := context.WithTimeout(ctx, env.OpTimeout)
		resp, err := cli.Get(rctx, w.cfg.Prefix, client.WithPrefix())
		cancel()
		c := history.Event{Type: Classify(err, true), Process: proc, F: checker.FReadAll}
		if err != nil {
			c.Error = err.Error()
		} else {
			c.Revision = resp.Header.GetRevision()
			c.Values = []string{}
			for _, kv := range resp.Kvs {
				c.Values = append(c.Values, checker.FormatPair(string(kv.Key), kv.ModRevision, string(kv.Value)))
			}
		}
		env.Record(c)
		if err == nil {
			return c.Revision, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("final read: %w", err)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// complete stops the watchers and records their completions.
func (w *Watch) complete(env FinalEnv, rev int64) {
	w.mu.Lock()
	watchers := w.watchers
	w.watchers = nil
	w.mu.Unlock()
	// Every watcher ends before any client closes: a member's watchers
	// share one, and closing it under a running watcher would end that
	// watcher with an error.
	for _, r := range watchers {
		r.cancel()
	}
	for _, r := range watchers {
		<-r.done
	}
	for _, r := range watchers {
		r.cli.Close() // closing a shared client again is harmless
	}
	for _, r := range watchers {
		r.mu.Lock()
		c := history.Event{Type: history.OK, Process: r.proc, F: checker.FWatch, Node: r.node,
			Values: r.events, Revision: r.through}
		switch {
		case r.err != nil:
			c.Type, c.Error = history.Info, r.err.Error()
		case rev == 0 || r.through < rev:
			c.Type, c.Error = history.Info, fmt.Sprintf("stopped at revision %d, before the final read's %d", r.through, rev)
		}
		r.mu.Unlock()
		env.Record(c)
	}
}

// stop ends watchers that Final did not complete (the run ended early):
// their operations stay open, which the checker counts as unknown.
func (w *Watch) stop() {
	w.mu.Lock()
	watchers := w.watchers
	w.watchers = nil
	w.mu.Unlock()
	for _, r := range watchers {
		r.cancel()
	}
	for _, r := range watchers {
		<-r.done
		r.cli.Close()
	}
}

// Check implements Workload.
func (w *Watch) Check(events []history.Event, _ CheckOptions) (Report, error) {
	res, err := checker.CheckWatch(events)
	if err != nil {
		return Report{}, err
	}
	return Report{Verdict: res.Verdict, Problems: res.Problems, Details: res}, nil
}
