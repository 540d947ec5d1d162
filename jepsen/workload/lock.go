package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	randv2 "math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/client/concurrency"
	"github.com/kvd-io/kvd/jepsen/checker"
	"github.com/kvd-io/kvd/jepsen/history"
)

// LockConfig shapes the lock workload.
type LockConfig struct {
	// Prefix starts the lock's key and the guarded registers' keys.
	Prefix string
	// TTL is each client's session TTL, in seconds: short, so that lost
	// sessions (a client cut off from the cluster) hand the lock on soon.
	TTL int64
	// WritesPerKey is how many fenced writes a register key takes before
	// a fresh key takes its place, which keeps porcupine's search small.
	WritesPerKey int
	// ReadShare is the share of plain linearizable reads of the register;
	// the rest are lock cycles.
	ReadShare float64
	// HoldMax bounds the random time a holder keeps the lock before it
	// writes, so that holders overlap with lease trouble.
	HoldMax time.Duration
	// StaleShare is the share of lock cycles whose holder plays a paused
	// process: once it holds the lock, it stops renewing its session and
	// waits past the lease's TTL (plus StalePause) before it writes, by
	// when the lease has expired and another client may hold the lock. Its
	// write must be refused by the fencing guard, or be applied in order.
	StaleShare float64
	StalePause time.Duration
}

// DefaultLockConfig returns 2 s sessions, registers of 40 writes, half the
// operations reads, holds of up to 200 ms.
func DefaultLockConfig() LockConfig {
	return LockConfig{Prefix: "jepsen/lock/", TTL: 2, WritesPerKey: 40, ReadShare: 0.5, HoldMax: 200 * time.Millisecond,
		StaleShare: 0.05, StalePause: 1500 * time.Millisecond}
}

// Lock is the lock workload: clients, each with its own session, take one
// Mutex, write a guarded register in a transaction that checks their
// fencing token, and release; others read the register.
//
// The guard is both checks docs/api.md describes: the holder's lock key
// still exists with its create revision (Mutex.IsOwner), and the token
// stored with the register's value is smaller than the holder's (the
// resource refuses a token lower than one it has seen).
type Lock struct {
	cfg   LockConfig
	clock func() int64

	values atomic.Int64

	mu       sync.Mutex
	key      int // the register key in use
	writes   int // fenced writes on it so far
	sessions map[client.KV]lockSession
}

// lockSession is a client's session and what ends its context.
type lockSession struct {
	s      *concurrency.Session
	cancel context.CancelFunc
}

// NewLock returns a lock workload.
func NewLock(cfg LockConfig) *Lock {
	return &Lock{cfg: cfg, sessions: map[client.KV]lockSession{}}
}

// Name implements Workload.
func (l *Lock) Name() string { return "lock" }

// SetClock implements Clocked.
func (l *Lock) SetClock(now func() int64) { l.clock = now }

// IsWrite implements Workload.
func (l *Lock) IsWrite(f string) bool { return f == checker.FFencedWrite }

func (l *Lock) lockName() string { return l.cfg.Prefix + "lock" }

// Next implements Workload.
func (l *Lock) Next(rng *rand.Rand) history.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	key := fmt.Sprintf("%sreg/%06d", l.cfg.Prefix, l.key)
	if rng.Float64() < l.cfg.ReadShare {
		return history.Event{F: checker.FRead, Key: key}
	}
	l.writes++
	if l.writes >= l.cfg.WritesPerKey {
		l.key, l.writes = l.key+1, 0
	}
	return history.Event{F: checker.FFencedWrite, Key: key, Value: history.Str(strconv.FormatInt(l.values.Add(1), 10))}
}

// Apply implements Workload.
func (l *Lock) Apply(ctx context.Context, kv client.KV, op history.Event) history.Event {
	switch op.F {
	case checker.FRead:
		resp, err := kv.Get(ctx, op.Key)
		c := completion(op, err, true)
		if err == nil && len(resp.Kvs) > 0 {
			c.Value = history.Str(string(resp.Kvs[0].Value))
			c.Rev = resp.Kvs[0].ModRevision
		}
		return c
	case checker.FFencedWrite:
		return l.cycle(ctx, kv, op)
	}
	return history.Event{Type: history.Fail, F: op.F, Error: "unknown operation " + op.F}
}

// cycle takes the lock, writes, releases. It is a fail unless the guarded
// write was sent; then its outcome is the write's.
func (l *Lock) cycle(ctx context.Context, kv client.KV, op history.Event) history.Event {
	failed := func(err error) history.Event {
		return history.Event{Type: history.Fail, F: op.F, Key: op.Key, Error: err.Error()}
	}
	cli, ok := kv.(*client.Client)
	if !ok || l.clock == nil {
		return failed(errors.New("harness: the lock workload needs a *client.Client and the run's clock"))
	}
	s, err := l.session(ctx, cli)
	if err != nil {
		return failed(err)
	}
	// The wait for the lock takes the operation's timeout; the write gets
	// as long again of its own, so that a long wait does not turn it into
	// an unknown outcome.
	budget := time.Second
	if dl, ok := ctx.Deadline(); ok {
		budget = time.Until(dl)
	}
	m := concurrency.NewMutex(s, l.lockName())
	if err := m.Lock(ctx); err != nil {
		if errors.Is(err, concurrency.ErrSessionExpired) {
			l.drop(cli, s)
		}
		return failed(fmt.Errorf("lock: %w", err))
	}
	c := history.Event{F: op.F, Key: op.Key, Acquired: l.clock(), Token: m.Token()}
	hold := time.Duration(randv2.Int64N(int64(l.cfg.HoldMax) + 1))
	stale := randv2.Float64() < l.cfg.StaleShare
	if stale {
		// A paused holder: its session stops renewing, and the
		// cluster expires the lease while it sleeps.
		s.Orphan()
		hold = time.Duration(l.cfg.TTL)*time.Second + l.cfg.StalePause
	}
	if hold > 0 {
		t := time.NewTimer(hold)
		<-t.C
	}
	value := checker.FencedValue(c.Token, *op.Value)
	c.Value = history.Str(value)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), budget)
	matched, rev, err := l.fencedPut(wctx, cli, m, op.Key, c.Token, value)
	cancel()
	c.Type = Classify(err, false)
	if err != nil {
		c.Error = err.Error()
	} else {
		c.Matched = history.Bool(matched)
		if matched {
			c.Rev = rev
		}
	}
	// The tenure ends here, before the release is sent, or at the lease's
	// deadline if that came first. The deadline is read after the clock,
	// so it errs early.
	c.Released = l.clock()
	c.Deadline = c.Released + time.Until(s.Deadline()).Nanoseconds()
	uctx, cancel := context.WithTimeout(context.Background(), time.Duration(l.cfg.TTL)*time.Second)
	defer cancel()
	if err := m.Unlock(uctx); err != nil || stale {
		// Its key goes when the lease does; a fresh session next time.
		l.drop(cli, s)
	}
	return c
}

// fencedPut writes value to key if m still holds the lock and the stored
// token is smaller than token. The first write of a key finds it absent,
// which no value compare matches: it puts only if the key was never
// created.
func (l *Lock) fencedPut(ctx context.Context, cli *client.Client, m *concurrency.Mutex, key string, token int64, value string) (bool, int64, error) {
	resp, err := cli.Txn(ctx).
		If(m.IsOwner(), client.Compare(client.Value(key), "<", checker.FencedToken(token))).
		Then(client.OpPut(key, value)).
		Else(client.OpGet(key)).
		Commit()
	if err != nil {
		return false, 0, err
	}
	if resp.Succeeded {
		return true, resp.Header.GetRevision(), nil
	}
	if len(resp.Responses[0].GetResponseRange().GetKvs()) > 0 {
		return false, 0, nil
	}
	resp, err = cli.Txn(ctx).
		If(m.IsOwner(), client.Compare(client.CreateRevision(key), "=", 0)).
		Then(client.OpPut(key, value)).
		Commit()
	if err != nil {
		return false, 0, err
	}
	return resp.Succeeded, resp.Header.GetRevision(), nil
}

// session returns cli's session, starting one if it has none or its lease
// was lost. Starting one is bounded by ctx, although the session outlives
// it.
func (l *Lock) session(ctx context.Context, cli *client.Client) (*concurrency.Session, error) {
	l.mu.Lock()
	s := l.sessions[cli].s
	l.mu.Unlock()
	if s != nil {
		select {
		case <-s.Done():
			l.drop(cli, s)
		default:
			return s, nil
		}
	}
	sctx, cancel := context.WithCancel(context.Background())
	type result struct {
		s   *concurrency.Session
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := concurrency.NewSession(cli, concurrency.WithTTL(l.cfg.TTL), concurrency.WithContext(sctx))
		ch <- result{s, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-ctx.Done():
		cancel()
		r = <-ch
		if r.err == nil {
			r.s.Orphan()
			r.err = ctx.Err()
		}
	}
	if r.err != nil {
		cancel()
		return nil, fmt.Errorf("session: %w", r.err)
	}
	l.mu.Lock()
	l.sessions[cli] = lockSession{r.s, cancel}
	l.mu.Unlock()
	return r.s, nil
}

// drop forgets s and stops renewing it: its lease expires on its own.
func (l *Lock) drop(cli *client.Client, s *concurrency.Session) {
	l.mu.Lock()
	if ls, ok := l.sessions[cli]; ok && ls.s == s {
		delete(l.sessions, cli)
		defer ls.cancel()
	}
	l.mu.Unlock()
	s.Orphan()
}

// Final implements Workload: it stops renewing the sessions; the lock
// needs no final reads.
func (l *Lock) Final(context.Context, FinalEnv) error {
	l.mu.Lock()
	ss := l.sessions
	l.sessions = map[client.KV]lockSession{}
	l.mu.Unlock()
	for _, ls := range ss {
		ls.s.Orphan()
		ls.cancel()
	}
	return nil
}

// Check implements Workload.
func (l *Lock) Check(events []history.Event, opts CheckOptions) (Report, error) {
	res, err := checker.CheckLock(events, opts.Timeout, opts.HTMLPath)
	if err != nil {
		return Report{}, err
	}
	return Report{Verdict: res.Verdict, Problems: res.Problems, Details: res}, nil
}
