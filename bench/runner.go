package bench

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/client"
)

// Runner drives one run of a workload over a set of connections. Build it
// with NewRunner; call Run once. Progress may be called from any goroutine
// while Run is going.
type Runner struct {
	cfg   Config
	conns []client.KV
	gen   generator
	value string

	issued atomic.Uint64 // requests handed to clients, including one about to be sent
	done   atomic.Int64  // requests answered
	start  atomic.Int64  // unix nanoseconds of the start; zero before Run

	latency *Histogram        // every successful request
	byKind  map[Op]*Histogram // successful requests by what was sent (mixed only)
	errMu   sync.Mutex        // guards errors
	errors  map[string]int64  // failed requests by code
	ranFor  atomic.Int64      // nanoseconds from the start to the last answer
}

// NewRunner validates cfg and returns a runner that sends its requests on
// conns, one per connection: len(conns) must be cfg.Conns. Client i uses
// conns[i mod len(conns)].
func NewRunner(cfg Config, conns []client.KV) (*Runner, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(conns) != cfg.Conns {
		return nil, fmt.Errorf("%w: %d connections given for conns %d", ErrInvalidConfig, len(conns), cfg.Conns)
	}
	if cfg.Seed == 0 {
		cfg.Seed = uint64(time.Now().UnixNano())
	}
	r := &Runner{
		cfg:     cfg,
		conns:   conns,
		gen:     generator{cfg: cfg},
		value:   randomValue(cfg.ValSize, cfg.Seed),
		latency: &Histogram{},
		errors:  map[string]int64{},
	}
	if cfg.Op == OpMixed {
		r.byKind = map[Op]*Histogram{OpGet: {}, OpPut: {}}
	}
	return r, nil
}

// randomValue returns n random bytes, as etcd's benchmark writes.
func randomValue(n int, seed uint64) string {
	rng := rand.New(rand.NewPCG(seed, 0x6b7664))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return string(b)
}

// Progress is how far a run has come.
type Progress struct {
	Done    int64         // requests answered
	Total   int           // Config.Total (zero: no limit)
	Elapsed time.Duration // since the start; zero before it
	Limit   time.Duration // Config.Duration (zero: no limit)
}

// Progress reports how far the run has come.
func (r *Runner) Progress() Progress {
	p := Progress{Done: r.done.Load(), Total: r.cfg.Total, Limit: r.cfg.Duration}
	if s := r.start.Load(); s != 0 {
		p.Elapsed = time.Since(time.Unix(0, s))
	}
	return p
}

// Run sends the workload's requests and returns the report once every
// client has stopped: after Total requests, when Duration has passed (the
// requests then in flight are waited for and counted), or when ctx ends. In
// the last case the report holds what was answered before, its Interrupted
// is set, and the error is ctx's.
func (r *Runner) Run(ctx context.Context) (*Report, error) {
	states, err := r.prepare(ctx)
	defer r.release(states)
	if err != nil {
		return r.report(), err
	}
	start := time.Now()
	r.start.Store(start.UnixNano())
	var stopAt time.Time
	if r.cfg.Duration > 0 {
		stopAt = start.Add(r.cfg.Duration)
	}
	var wg sync.WaitGroup
	for i := range r.cfg.Clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(r.cfg.Seed, uint64(i)))
			r.client(ctx, r.conns[i%len(r.conns)], states[i], rng, start, stopAt)
		})
	}
	wg.Wait()
	rep := r.report()
	if err := ctx.Err(); err != nil {
		rep.Interrupted = true
		return rep, err
	}
	return rep, nil
}

// client is one client's loop: take the next request number, wait for the
// rate limit, send, record.
func (r *Runner) client(ctx context.Context, kv client.KV, st *clientState, rng *rand.Rand, start, stopAt time.Time) {
	for ctx.Err() == nil {
		i := r.issued.Add(1) - 1
		if r.cfg.Total > 0 && i >= uint64(r.cfg.Total) {
			return
		}
		if !stopAt.IsZero() && !time.Now().Before(stopAt) {
			return
		}
		if r.cfg.Rate > 0 && !r.pace(ctx, i, start, stopAt) {
			return
		}
		req := r.gen.next(i, rng)
		t0 := time.Now()
		err := r.send(ctx, kv, st, req)
		took := time.Since(t0)
		if err != nil && ctx.Err() != nil {
			return // cut short by the end of the run, not a failure of the cluster
		}
		r.record(req.kind, took, err)
		storeMax(&r.ranFor, int64(time.Since(start)))
	}
}

// storeMax sets a to v if v is larger.
func storeMax(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if cur >= v || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// pace waits until request i's slot, start + i/Rate. It returns false when
// the run ends first.
func (r *Runner) pace(ctx context.Context, i uint64, start, stopAt time.Time) bool {
	at := start.Add(time.Duration(float64(i) / r.cfg.Rate * float64(time.Second)))
	if !stopAt.IsZero() && at.After(stopAt) {
		return false
	}
	d := time.Until(at)
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// alwaysBelow is the mod revision a txn's compare is checked against: every
// key's mod revision is below it, so the compare always holds and the txn
// always writes.
const alwaysBelow = math.MaxInt64

func (r *Runner) send(ctx context.Context, kv client.KV, st *clientState, req request) error {
	if r.cfg.RequestTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.cfg.RequestTimeout)
		defer cancel()
	}
	switch req.kind {
	case OpLeaseKeepAlive:
		_, err := st.lease.KeepAliveOnce(ctx, st.leaseID)
		return err
	case OpLock:
		return r.lockCycle(ctx, kv, st, req.keys[0])
	case OpGet:
		var opts []client.OpOption
		if r.cfg.Serializable {
			opts = append(opts, client.WithSerializable())
		}
		_, err := kv.Get(ctx, req.keys[0], opts...)
		return err
	case OpTxn:
		puts := make([]client.Op, len(req.keys))
		for j, k := range req.keys {
			puts[j] = client.OpPut(k, r.value)
		}
		_, err := kv.Txn(ctx).
			If(client.Compare(client.ModRevision(req.keys[0]), "<", alwaysBelow)).
			Then(puts...).
			Commit()
		return err
	default:
		_, err := kv.Put(ctx, req.keys[0], r.value)
		return err
	}
}

func (r *Runner) record(kind Op, took time.Duration, err error) {
	r.done.Add(1)
	if err != nil {
		code := ErrorCode(err)
		r.errMu.Lock()
		r.errors[code]++
		r.errMu.Unlock()
		return
	}
	r.latency.Record(took)
	if h := r.byKind[kind]; h != nil {
		h.Record(took)
	}
}

// ErrorCode names the kind of a failed request: the gRPC code of the error
// (Unavailable, DeadlineExceeded, ...), with deadline and cancellation errors
// that carry no status named after their context error.
func ErrorCode(err error) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "DeadlineExceeded"
	case errors.Is(err, context.Canceled):
		return "Canceled"
	case errors.Is(err, client.ErrClosed):
		return "ClientClosed"
	}
	return status.Code(err).String()
}

func (r *Runner) report() *Report {
	rep := &Report{
		Op:           r.cfg.Op,
		Clients:      r.cfg.Clients,
		Conns:        r.cfg.Conns,
		Elapsed:      time.Duration(r.ranFor.Load()),
		Latency:      r.latency,
		ErrorsByCode: map[string]int64{},
	}
	r.errMu.Lock()
	for code, n := range r.errors {
		rep.ErrorsByCode[code] = n
		rep.Errors += n
	}
	r.errMu.Unlock()
	rep.Total = r.latency.Count() + rep.Errors
	if r.byKind != nil {
		rep.ByKind = map[Op]*Histogram{}
		for k, h := range r.byKind {
			rep.ByKind[k] = h
		}
	}
	return rep
}

// NewPrefill returns the runner that writes, once each and untimed, every
// key that a run of cfg reads: the single Key, or every key of the key space
// in order, with cfg's clients (at most one per key), connections and value
// size. Run it with Prefill.
func NewPrefill(cfg Config, conns []client.KV) (*Runner, error) {
	p := cfg.prefillConfig()
	if len(conns) < p.Conns {
		return nil, fmt.Errorf("%w: %d connections given for conns %d", ErrInvalidConfig, len(conns), p.Conns)
	}
	return NewRunner(p, conns[:p.Conns])
}

// Prefill runs a runner from NewPrefill. It returns the number of keys
// written, and an error when any write failed.
func Prefill(ctx context.Context, r *Runner) (int64, error) {
	rep, err := r.Run(ctx)
	if err != nil {
		return rep.Total - rep.Errors, fmt.Errorf("prefill: %w", err)
	}
	if rep.Errors > 0 {
		return rep.Total - rep.Errors, fmt.Errorf("prefill: %d of %d puts failed (%s)", rep.Errors, rep.Total, rep.errorList())
	}
	return rep.Total, nil
}
