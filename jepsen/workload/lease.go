package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/jepsen/checker"
	"github.com/kvd-io/kvd/jepsen/history"
)

// LeaseConfig shapes the lease workload.
type LeaseConfig struct {
	// Prefix starts every key; a lease's keys are Prefix<id in hex>/<n>.
	Prefix string
	// TTL is every lease's TTL, in seconds.
	TTL int64
	// KeysPerLease is how many keys each lease gets, in one transaction.
	KeysPerLease int
	// MaxLeases bounds the live leases: kept alive, or abandoned and
	// within their TTL. Leases past that are read on until their expiry
	// bound has passed, and a few seconds more.
	MaxLeases int
	// KeepShare is the share of leases kept alive; the others are never
	// renewed.
	KeepShare float64
	// KeepFor is how long a kept lease is kept alive, at least, before a
	// client may stop renewing it.
	KeepFor time.Duration
	// AlternateOnce renews every other kept lease with KeepAliveOnce calls
	// (one op each on the client's shared stream) instead of a KeepAlive
	// stream, so that faults hit both ways of renewing.
	AlternateOnce bool
	// Bounds are the timings the checker holds kvd to.
	Bounds checker.LeaseBounds
}

// DefaultLeaseConfig returns 3 s leases of 3 keys, at most 12 in play, half
// of them kept alive for 6 s or more, every other one of those by
// KeepAliveOnce calls. The bounds are those docs/api.md
// states for kvd's default timers (1 s election timeout, 5 s request
// timeout), with slack: keys go within TTL + 4 s of the last renewal.
func DefaultLeaseConfig() LeaseConfig {
	return LeaseConfig{
		Prefix: "jepsen/l/", TTL: 3, KeysPerLease: 3, MaxLeases: 12, KeepShare: 0.5, KeepFor: 6 * time.Second, AlternateOnce: true,
		Bounds: checker.LeaseBounds{TTL: 3 * time.Second, Expiry: 4 * time.Second, InFlight: 5 * time.Second, Recovery: 5 * time.Second},
	}
}

// Lease is the lease workload: clients grant leases, attach keys, keep
// some alive with the SDK's KeepAlive and never renew the others, stop
// keeping some alive, and read leases' keys linearizably all along. The
// final reads, on every member, wait until every lease's expiry bound has
// passed.
type Lease struct {
	cfg   LeaseConfig
	clock func() int64

	mu     sync.Mutex
	leases map[int64]*leaseState
	claims int // grants invoked and not yet completed
	kept   int // leases kept alive so far (for AlternateOnce)
}

type leaseState struct {
	id   int64
	keep bool
	// claimed: an attach or stop is in flight or done.
	attachClaimed, stopClaimed bool
	attached                   bool      // an attach was sent: reads may look
	granted                    time.Time // when the grant completed
	retire                     time.Time // zero while kept alive; then when to stop reading it

	// Keep-alive: cancel stops it; done is closed when its channel is.
	cancel   context.CancelFunc
	done     chan struct{}
	deadline time.Time // the latest acknowledged deadline
	lost     bool      // the keep-alive ended before it was stopped
}

// NewLease returns a lease workload.
func NewLease(cfg LeaseConfig) *Lease {
	return &Lease{cfg: cfg, leases: map[int64]*leaseState{}}
}

// Name implements Workload.
func (w *Lease) Name() string { return "lease" }

// SetClock implements Clocked.
func (w *Lease) SetClock(now func() int64) { w.clock = now }

// IsWrite implements Workload.
func (w *Lease) IsWrite(f string) bool { return f == checker.FGrant || f == checker.FAttach }

// leasePrefix is the prefix of lease id's keys.
func (w *Lease) leasePrefix(id int64) string { return fmt.Sprintf("%s%016x/", w.cfg.Prefix, id) }

// KeyLease returns the lease a key of the workload belongs to.
func (w *Lease) KeyLease(key string) (int64, bool) {
	rest, ok := strings.CutPrefix(key, w.cfg.Prefix)
	if !ok {
		return 0, false
	}
	hex, _, ok := strings.Cut(rest, "/")
	if !ok {
		return 0, false
	}
	id, err := strconv.ParseInt(hex, 16, 64)
	return id, err == nil
}

// expiryHorizon is how long after its last renewal a lease's keys may
// remain, by the bounds (faults aside).
func (w *Lease) expiryHorizon() time.Duration {
	return w.cfg.Bounds.InFlight + w.cfg.Bounds.TTL + w.cfg.Bounds.Expiry
}

// Next implements Workload.
func (w *Lease) Next(rng *rand.Rand) history.Event {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := time.Now()
	var attach, stop, read []*leaseState
	live := 0 // kept alive, or abandoned but within its TTL
	for id, l := range w.leases {
		if l.retire.IsZero() || now.Sub(l.granted) < w.cfg.Bounds.TTL {
			live++
		}
		switch {
		case !l.retire.IsZero() && now.After(l.retire):
			delete(w.leases, id)
			continue
		case !l.attachClaimed:
			attach = append(attach, l)
		case l.keep && !l.stopClaimed && now.Sub(l.granted) > w.cfg.KeepFor:
			stop = append(stop, l)
		}
		if l.attached {
			read = append(read, l)
		}
	}
	sortLeases := func(ls []*leaseState) {
		sort.Slice(ls, func(i, j int) bool { return ls[i].id < ls[j].id })
	}
	sortLeases(attach)
	sortLeases(stop)
	sortLeases(read)
	switch {
	case len(attach) > 0:
		l := attach[rng.Intn(len(attach))]
		l.attachClaimed = true
		keys := make([]string, w.cfg.KeysPerLease)
		for i := range keys {
			keys[i] = fmt.Sprintf("%s%d", w.leasePrefix(l.id), i)
		}
		return history.Event{F: checker.FAttach, Lease: l.id, Values: keys}
	case live+w.claims < w.cfg.MaxLeases && (len(read) == 0 || rng.Float64() < 0.2):
		w.claims++
		mode := checker.LeaseAbandon
		if rng.Float64() < w.cfg.KeepShare {
			mode = checker.LeaseKeep
		}
		return history.Event{F: checker.FGrant, Value: history.Str(mode)}
	case len(stop) > 0 && rng.Float64() < 0.1:
		l := stop[rng.Intn(len(stop))]
		l.stopClaimed = true
		return history.Event{F: checker.FStop, Lease: l.id}
	case len(read) > 0:
		return history.Event{F: checker.FLeaseRead, Lease: read[rng.Intn(len(read))].id}
	}
	// Everything is in flight: look at nothing in particular.
	return history.Event{F: checker.FLeaseRead, Lease: 0}
}

// Apply implements Workload.
func (w *Lease) Apply(ctx context.Context, kv client.KV, op history.Event) history.Event {
	fail := func(err error) history.Event {
		return history.Event{Type: history.Fail, F: op.F, Lease: op.Lease, Error: err.Error()}
	}
	if w.clock == nil {
		return fail(errors.New("harness: the lease workload needs the run's clock"))
	}
	switch op.F {
	case checker.FGrant:
		cli, ok := kv.(*client.Client)
		if !ok {
			return fail(errors.New("harness: the lease workload needs a *client.Client"))
		}
		return w.grant(ctx, cli, op)
	case checker.FAttach:
		ops := make([]client.Op, len(op.Values))
		for i, k := range op.Values {
			ops[i] = client.OpPut(k, "v", client.WithLease(op.Lease))
		}
		w.mu.Lock()
		if l := w.leases[op.Lease]; l != nil {
			l.attached = true
		}
		w.mu.Unlock()
		_, err := kv.Txn(ctx).Then(ops...).Commit()
		c := completion(op, err, false)
		c.Lease, c.Values = op.Lease, op.Values
		return c
	case checker.FLeaseRead:
		if op.Lease == 0 {
			return fail(errors.New("no lease to read yet"))
		}
		p := w.leasePrefix(op.Lease)
		resp, err := kv.Get(ctx, p, client.WithRange(client.PrefixEnd(p)), client.WithKeysOnly())
		c := completion(op, err, true)
		c.Lease = op.Lease
		if err == nil {
			c.Values = []string{}
			for _, kv := range resp.Kvs {
				c.Values = append(c.Values, string(kv.Key))
			}
			c.Rev = resp.Header.GetRevision()
		}
		return c
	case checker.FStop:
		return w.stop(op, false)
	}
	return fail(errors.New("unknown operation " + op.F))
}

// grant grants a lease and, for a kept one, starts renewing it before it
// answers: the first renewal is due after a third of the TTL.
func (w *Lease) grant(ctx context.Context, cli *client.Client, op history.Event) history.Event {
	defer func() {
		w.mu.Lock()
		w.claims--
		w.mu.Unlock()
	}()
	sent := time.Now()
	resp, err := cli.Grant(ctx, w.cfg.TTL)
	c := completion(op, err, false)
	if err != nil {
		return c
	}
	l := &leaseState{id: resp.GetId(), keep: *op.Value == checker.LeaseKeep, granted: time.Now(),
		deadline: sent.Add(time.Duration(resp.GetTtl()) * time.Second)}
	c.Lease = l.id
	c.Deadline = w.onClock(l.deadline)
	if l.keep {
		kctx, cancel := context.WithCancel(context.Background())
		w.mu.Lock()
		w.kept++
		once := w.cfg.AlternateOnce && w.kept%2 == 0
		w.mu.Unlock()
		var ch <-chan *client.LeaseKeepAliveResponse
		if once {
			ch = keepAliveOnces(kctx, cli, l.id, resp.GetTtl(), l.deadline)
		} else {
			ch, err = cli.KeepAlive(kctx, l.id)
		}
		if err != nil {
			cancel()
			// Granted, but it will not be kept alive: an abandoned lease
			// in all but name. Say so in the history.
			c.Error = "keep-alive: " + err.Error()
			l.keep = false
		} else {
			l.cancel, l.done = cancel, make(chan struct{})
			go w.follow(l, ch)
		}
	}
	c.Value = history.Str(checker.LeaseKeep)
	if !l.keep {
		l.retire = l.granted.Add(w.expiryHorizon() + 5*time.Second)
		c.Value = history.Str(checker.LeaseAbandon)
	}
	w.mu.Lock()
	w.leases[l.id] = l
	w.mu.Unlock()
	return c
}

// keepAliveOnces renews lease id with a KeepAliveOnce call every third of
// its ttl, sending each answer on the channel it returns, as KeepAlive's
// channel does. It closes the channel when ctx ends, the client is closed,
// a renewal finds the lease gone, or deadline (the last acknowledged one)
// passes without an answer: the lease may have expired then.
func keepAliveOnces(ctx context.Context, cli *client.Client, id, ttl int64, deadline time.Time) <-chan *client.LeaseKeepAliveResponse {
	ch := make(chan *client.LeaseKeepAliveResponse)
	go func() {
		defer close(ch)
		wait := time.Duration(ttl) * time.Second / 3
		for {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
			rctx, cancel := context.WithDeadline(ctx, deadline)
			resp, err := cli.KeepAliveOnce(rctx, id)
			cancel()
			switch {
			case err == nil:
				deadline = resp.Deadline
				wait = time.Duration(ttl) * time.Second / 3
				select {
				case ch <- resp:
				case <-ctx.Done():
					return
				}
			case ctx.Err() != nil, errors.Is(err, client.ErrClosed), errors.Is(err, client.ErrLeaseNotFound), !time.Now().Before(deadline):
				return
			default:
				wait = 100 * time.Millisecond // try again before the deadline
			}
		}
	}()
	return ch
}

// follow records each renewal's deadline until the keep-alive ends.
func (w *Lease) follow(l *leaseState, ch <-chan *client.LeaseKeepAliveResponse) {
	defer close(l.done)
	for resp := range ch {
		w.mu.Lock()
		if resp.Deadline.After(l.deadline) {
			l.deadline = resp.Deadline
		}
		w.mu.Unlock()
	}
}

// stop stops keeping a lease alive and reports its last deadline and,
// unless final (the clients are closed by then, which ends every
// keep-alive), whether the keep-alive had ended already.
func (w *Lease) stop(op history.Event, final bool) history.Event {
	w.mu.Lock()
	l := w.leases[op.Lease]
	w.mu.Unlock()
	c := history.Event{Type: history.OK, F: op.F, Lease: op.Lease}
	if l == nil || l.cancel == nil {
		c.Type, c.Error = history.Fail, "not kept alive"
		return c
	}
	select {
	case <-l.done:
		w.mu.Lock()
		l.lost = !final
		w.mu.Unlock()
	default:
	}
	l.cancel()
	<-l.done // the channel closes when its context ends
	w.mu.Lock()
	c.Value = history.Str(checker.LeaseKeep)
	if l.lost {
		// The SDK gave the lease up (its deadline passed without a
		// renewal, or the cluster answered that it was gone).
		c.Value = history.Str(checker.LeaseLost)
	}
	c.Deadline = w.onClock(l.deadline)
	l.retire = time.Now().Add(w.expiryHorizon() + 5*time.Second)
	w.mu.Unlock()
	return c
}

// onClock converts t to the run's clock. The clock is read first, so the
// result errs early: a deadline is never claimed later than it is.
func (w *Lease) onClock(t time.Time) int64 {
	now := w.clock()
	return now + time.Until(t).Nanoseconds()
}

// Final implements Workload: it stops every keep-alive still running
// (recorded as stops), waits until every lease's expiry bound has passed
// (or ctx runs short), then reads every lease's keys on each member.
func (w *Lease) Final(ctx context.Context, env FinalEnv) error {
	w.mu.Lock()
	var kept []*leaseState
	for _, l := range w.leases {
		if l.keep && !l.stopClaimed && l.cancel != nil {
			l.stopClaimed = true
			kept = append(kept, l)
		}
	}
	w.mu.Unlock()
	sort.Slice(kept, func(i, j int) bool { return kept[i].id < kept[j].id })
	proc := env.NewProcess()
	for _, l := range kept {
		env.Record(history.Event{Type: history.Invoke, Process: proc, F: checker.FStop, Lease: l.id})
		c := w.stop(history.Event{F: checker.FStop, Lease: l.id}, true)
		c.Process = proc
		env.Record(c)
	}
	// The keys of leases stopped just now may stay for the whole horizon.
	// Keep a share of ctx for the reads themselves.
	wait := w.expiryHorizon()
	if len(kept) == 0 {
		wait = w.cfg.Bounds.TTL + w.cfg.Bounds.Expiry
	}
	if dl, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(dl)/2)
	}
	t := time.NewTimer(wait)
	select {
	case <-ctx.Done():
	case <-t.C:
	}
	t.Stop()

	return readEveryMember(env, func(name string) error { return w.finalRead(ctx, env, name) })
}

// finalRead reads every key of the workload on one member, linearizably,
// retrying until it succeeds or ctx ends.
func (w *Lease) finalRead(ctx context.Context, env FinalEnv, name string) error {
	cli, err := env.client(env.Members[name])
	if err != nil {
		return err
	}
	defer cli.Close()
	proc := env.NewProcess()
	for {
		env.Record(history.Event{Type: history.Invoke, Process: proc, F: checker.FReadAll, Node: name})
		rctx, cancel := context.WithTimeout(ctx, env.OpTimeout)
		resp, err := cli.Get(rctx, w.cfg.Prefix, client.WithRange(client.PrefixEnd(w.cfg.Prefix)), client.WithKeysOnly())
		cancel()
		c := history.Event{Type: Classify(err, true), Process: proc, F: checker.FReadAll, Node: name}
		if err != nil {
			c.Error = err.Error()
		} else {
			c.Values = []string{}
			for _, kv := range resp.Kvs {
				c.Values = append(c.Values, string(kv.Key))
			}
			c.Rev = resp.Header.GetRevision()
		}
		env.Record(c)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// Check implements Workload.
func (w *Lease) Check(events []history.Event, opts CheckOptions) (Report, error) {
	res, err := checker.CheckLease(events, opts.Members, w.cfg.Bounds, w.KeyLease)
	if err != nil {
		return Report{}, err
	}
	return Report{Verdict: res.Verdict, Problems: res.Problems, Details: res}, nil
}
