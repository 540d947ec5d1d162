package bench

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvd-io/kvd/client"
)

// The watch workloads.
const (
	// OpWatchLatency measures the time from a put's acknowledgement to the
	// arrival of its event at each watcher, as etcd's watch-latency does.
	OpWatchLatency Op = "watch-latency"
	// OpWatch measures fan-out: events delivered per second to many
	// watchers of one key, as etcd's watch benchmark does.
	OpWatch Op = "watch"
)

// WatchConfig describes a watch workload: Streams x WatchersPerStream
// watchers of one key, then PutTotal puts to that key.
type WatchConfig struct {
	// Op is OpWatchLatency or OpWatch; they differ only in what the report
	// is read for (latency or events per second) and in their defaults.
	Op Op
	// Streams is the number of watch streams, one per connection given to
	// NewWatchRunner. At least 1.
	Streams int
	// WatchersPerStream is the number of watchers created on each stream.
	// At least 1.
	WatchersPerStream int
	// PutTotal is the number of puts. At least 1.
	PutTotal int
	// PutRate caps the puts per second; zero means no limit.
	PutRate float64
	// PutClients is the number of goroutines sending the puts, each waiting
	// for its answer before the next. At least 1.
	PutClients int
	// KeySize and ValSize are the sizes in bytes of the watched key (random,
	// new for each run) and of the values put. KeySize at least 1.
	KeySize, ValSize int
	// PrevKV asks for the previous key-value pair in every event.
	PrevKV bool
	// RequestTimeout bounds each put; zero means only the run's context.
	RequestTimeout time.Duration
	// Drain bounds how long the run waits, after the last put, for the
	// events still on their way; those that have not arrived by then count
	// as missing. Zero means one minute.
	Drain time.Duration
	// Seed seeds the watched key; zero means a seed from the clock.
	Seed uint64
}

// DefaultWatchConfig returns the defaults of etcd's benchmark for op:
// watch-latency with 10 streams of 10 watchers and 1,000 puts at 100 per
// second; watch with 10 streams of 100 watchers and 1,000 puts, no rate
// limit. Keys and values are 32 bytes.
func DefaultWatchConfig(op Op) WatchConfig {
	c := WatchConfig{Op: op, Streams: 10, WatchersPerStream: 10, PutTotal: 1000, PutRate: 100,
		PutClients: 1, KeySize: 32, ValSize: 32}
	if op == OpWatch {
		c.WatchersPerStream, c.PutRate = 100, 0
	}
	return c
}

// Validate reports the first problem with c.
func (c WatchConfig) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch {
	case c.Op != OpWatchLatency && c.Op != OpWatch:
		return bad("unknown watch op %q: want watch-latency or watch", c.Op)
	case c.Streams < 1:
		return bad("streams %d: must be at least 1", c.Streams)
	case c.WatchersPerStream < 1:
		return bad("watchers per stream %d: must be at least 1", c.WatchersPerStream)
	case c.PutTotal < 1:
		return bad("put total %d: must be at least 1", c.PutTotal)
	case c.PutRate < 0:
		return bad("put rate %g: must not be negative", c.PutRate)
	case c.PutClients < 1:
		return bad("put clients %d: must be at least 1", c.PutClients)
	case c.KeySize < 1:
		return bad("key size %d: must be at least 1", c.KeySize)
	case c.ValSize < 0:
		return bad("value size %d: must not be negative", c.ValSize)
	case c.RequestTimeout < 0:
		return bad("request timeout %v: must not be negative", c.RequestTimeout)
	case c.Drain < 0:
		return bad("drain %v: must not be negative", c.Drain)
	}
	return nil
}

func (c WatchConfig) watchers() int { return c.Streams * c.WatchersPerStream }

func (c WatchConfig) drain() time.Duration {
	if c.Drain == 0 {
		return time.Minute
	}
	return c.Drain
}

// WatchRunner drives one run of a watch workload. Build it with
// NewWatchRunner; call Run once. Progress may be called from any goroutine.
type WatchRunner struct {
	cfg     WatchConfig
	streams []client.Watcher
	put     client.KV
	key     string
	value   string

	acks     sync.Map     // revision (int64) -> unix nanoseconds of its put's acknowledgement
	received atomic.Int64 // events received
	expected atomic.Int64 // events due: successful puts x watchers, once the puts are done
	start    atomic.Int64 // unix nanoseconds of the first put; zero before
	last     atomic.Int64 // nanoseconds from start to the last event received

	events *Histogram // acknowledgement to arrival, every event
	puts   *Histogram // every successful put

	errMu  sync.Mutex
	errors map[string]int64
}

// NewWatchRunner validates cfg and returns a runner that creates
// WatchersPerStream watchers on each of streams (len(streams) must be
// cfg.Streams; give each its own client, as each client shares one stream
// per endpoint among its watchers) and puts through put.
func NewWatchRunner(cfg WatchConfig, streams []client.Watcher, put client.KV) (*WatchRunner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(streams) != cfg.Streams {
		return nil, fmt.Errorf("%w: %d watch connections given for streams %d", ErrInvalidConfig, len(streams), cfg.Streams)
	}
	if put == nil {
		return nil, fmt.Errorf("%w: no connection to put through", ErrInvalidConfig)
	}
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	return &WatchRunner{
		cfg:     cfg,
		streams: streams,
		put:     put,
		key:     watchKey(cfg.KeySize, cfg.Seed),
		value:   randomValue(cfg.ValSize, cfg.Seed),
		events:  &Histogram{},
		puts:    &Histogram{},
		errors:  map[string]int64{},
	}, nil
}

// watchKey returns a printable key of size bytes, different for every seed,
// so that a run does not see the events of an earlier one.
func watchKey(size int, seed uint64) string {
	rng := rand.New(rand.NewPCG(seed, 0x77617463))
	b := make([]byte, (size+1)/2)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return hex.EncodeToString(b)[:size]
}

// Key returns the key the run watches and writes.
func (w *WatchRunner) Key() string { return w.key }

// Progress reports the events received so far out of those due.
func (w *WatchRunner) Progress() Progress {
	p := Progress{Done: w.received.Load(), Total: w.cfg.PutTotal * w.cfg.watchers()}
	if s := w.start.Load(); s != 0 {
		p.Elapsed = time.Since(time.Unix(0, s))
	}
	return p
}

// Run creates the watchers (untimed), sends the puts, waits for their
// events (at most Drain after the last put), cancels the watchers and
// returns the report: Latency holds each event's time from its put's
// acknowledgement to its arrival (zero when it arrived first), ByKind["put"]
// the puts' latencies, and RequestsPerSec is events per second from the
// first put to the last event. Events that never arrived are counted under
// "EventMissing", failed puts under "Put" and their code, a watch that ended
// early under "WatchEnded". When ctx ends first, the report holds what
// arrived and the error is ctx's.
func (w *WatchRunner) Run(ctx context.Context) (*Report, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	chans, err := w.createWatchers(wctx)
	if err != nil {
		return w.report(0), err
	}

	var recv sync.WaitGroup
	for _, ch := range chans {
		recv.Go(func() { w.receive(ch) })
	}
	ok := w.sendPuts(ctx)
	expected := ok * int64(len(chans))
	w.expected.Store(expected)
	w.waitEvents(ctx, expected)
	cancel()
	recv.Wait()

	missing := max(expected-w.received.Load(), 0)
	if missing > 0 {
		w.addError("EventMissing", missing)
	}
	rep := w.report(expected)
	if err := ctx.Err(); err != nil {
		rep.Interrupted = true
		return rep, err
	}
	return rep, nil
}

// createWatchers creates the watchers, the streams in parallel and the
// watchers of one stream in turn (each Watch returns once its member has
// created the watcher).
func (w *WatchRunner) createWatchers(ctx context.Context) ([]client.WatchChan, error) {
	var opts []client.OpOption
	if w.cfg.PrevKV {
		opts = append(opts, client.WithPrevKV())
	}
	chans := make([]client.WatchChan, w.cfg.watchers())
	var wg sync.WaitGroup
	for s, stream := range w.streams {
		wg.Go(func() {
			for j := range w.cfg.WatchersPerStream {
				chans[s*w.cfg.WatchersPerStream+j] = stream.Watch(ctx, w.key, opts...)
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("creating %d watchers: %w", len(chans), err)
	}
	return chans, nil
}

// receive counts one watcher's events until its channel closes (the run
// cancels every watcher at its end) or the watch fails.
func (w *WatchRunner) receive(ch client.WatchChan) {
	got := 0
	for resp := range ch {
		if err := resp.Err(); err != nil {
			if got < w.cfg.PutTotal {
				w.addError("WatchEnded: "+ErrorCode(err), 1)
			}
			return
		}
		now := time.Now()
		for _, ev := range resp.Events {
			var took time.Duration
			if v, ok := w.acks.Load(ev.GetKv().GetModRevision()); ok {
				took = max(now.Sub(time.Unix(0, v.(int64))), 0)
			}
			w.events.Record(took)
			got++
		}
		if n := len(resp.Events); n > 0 {
			w.received.Add(int64(n))
			if s := w.start.Load(); s != 0 {
				storeMax(&w.last, int64(now.Sub(time.Unix(0, s))))
			}
		}
	}
}

// sendPuts sends PutTotal puts of the key from PutClients goroutines at
// most PutRate per second and returns how many succeeded.
func (w *WatchRunner) sendPuts(ctx context.Context) int64 {
	start := time.Now()
	w.start.Store(start.UnixNano())
	var next, ok atomic.Int64
	var wg sync.WaitGroup
	for range w.cfg.PutClients {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(w.cfg.PutTotal) {
					return
				}
				if w.cfg.PutRate > 0 && !sleepUntil(ctx, start.Add(time.Duration(float64(i)/w.cfg.PutRate*float64(time.Second)))) {
					return
				}
				if w.putOnce(ctx) {
					ok.Add(1)
				}
			}
		})
	}
	wg.Wait()
	return ok.Load()
}

func (w *WatchRunner) putOnce(ctx context.Context) bool {
	if w.cfg.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, w.cfg.RequestTimeout)
		defer cancel()
	}
	t0 := time.Now()
	resp, err := w.put.Put(ctx, w.key, w.value)
	acked := time.Now()
	if err != nil {
		if ctx.Err() == nil || !errors.Is(err, ctx.Err()) {
			w.addError("Put: "+ErrorCode(err), 1)
		}
		return false
	}
	w.acks.Store(resp.Header.GetRevision(), acked.UnixNano())
	w.puts.Record(acked.Sub(t0))
	return true
}

// waitEvents waits until expected events have arrived, ctx ends, or Drain
// has passed.
func (w *WatchRunner) waitEvents(ctx context.Context, expected int64) {
	deadline := time.Now().Add(w.cfg.drain())
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for w.received.Load() < expected && time.Now().Before(deadline) {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// sleepUntil waits until t; it returns false when ctx ends first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

func (w *WatchRunner) addError(code string, n int64) {
	w.errMu.Lock()
	w.errors[code] += n
	w.errMu.Unlock()
}

// report builds the report of a run whose puts made expected events due.
func (w *WatchRunner) report(expected int64) *Report {
	rep := &Report{
		Op:           w.cfg.Op,
		Clients:      w.cfg.watchers(),
		Conns:        w.cfg.Streams,
		Elapsed:      time.Duration(w.last.Load()),
		Latency:      w.events,
		ByKind:       map[Op]*Histogram{OpPut: w.puts},
		ErrorsByCode: map[string]int64{},
		Events:       true,
	}
	w.errMu.Lock()
	for code, n := range w.errors {
		rep.ErrorsByCode[code] = n
		rep.Errors += n
	}
	w.errMu.Unlock()
	rep.Total = max(expected, w.received.Load())
	return rep
}
