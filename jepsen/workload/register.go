package workload

import (
	"context"
	"fmt"
	"math/rand"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/jepsen/checker"
	"github.com/kvd-io/kvd/jepsen/history"
)

// RegisterConfig shapes the register workload.
type RegisterConfig struct {
	// Prefix starts every key.
	Prefix string
	// Keys is how many keys are in use at once.
	Keys int
	// OpsPerKey is how many operations a key takes before its slot moves
	// to a fresh key. Porcupine's search grows quickly with the operations
	// (and unknown outcomes) on one key; Jepsen uses a few dozen.
	OpsPerKey int
	// ReadShare, WriteShare: the mix; the rest are compare-and-sets.
	ReadShare, WriteShare float64
}

// DefaultRegisterConfig returns 5 keys of 40 operations each, half of them
// reads, a quarter writes, a quarter compare-and-sets.
func DefaultRegisterConfig() RegisterConfig {
	return RegisterConfig{Prefix: "jepsen/r/", Keys: 5, OpsPerKey: 40, ReadShare: 0.5, WriteShare: 0.25}
}

// Register is the register workload.
type Register struct {
	cfg RegisterConfig

	values atomic.Int64 // last unique value handed out

	mu      sync.Mutex
	slots   []regSlot
	nextKey int
	hints   map[string]string // the last value seen on each key, for cas
}

type regSlot struct {
	key string
	ops int
}

// NewRegister returns a register workload.
func NewRegister(cfg RegisterConfig) *Register {
	r := &Register{cfg: cfg, hints: map[string]string{}}
	for i := 0; i < max(cfg.Keys, 1); i++ {
		r.slots = append(r.slots, regSlot{key: r.freshKeyLocked()})
	}
	return r
}

func (r *Register) freshKeyLocked() string {
	k := fmt.Sprintf("%s%06d", r.cfg.Prefix, r.nextKey)
	r.nextKey++
	return k
}

// Name implements Workload.
func (r *Register) Name() string { return "register" }

// IsWrite implements Workload.
func (r *Register) IsWrite(f string) bool { return f == checker.FWrite || f == checker.FCAS }

// Next implements Workload.
func (r *Register) Next(rng *rand.Rand) history.Event {
	r.mu.Lock()
	s := &r.slots[rng.Intn(len(r.slots))]
	if s.ops >= r.cfg.OpsPerKey {
		delete(r.hints, s.key)
		*s = regSlot{key: r.freshKeyLocked()}
	}
	s.ops++
	key := s.key
	hint, hasHint := r.hints[key]
	r.mu.Unlock()

	x := rng.Float64()
	switch {
	case x < r.cfg.ReadShare:
		return history.Event{F: checker.FRead, Key: key}
	case x < r.cfg.ReadShare+r.cfg.WriteShare:
		return history.Event{F: checker.FWrite, Key: key, Value: history.Str(r.value())}
	default:
		from := hint
		if !hasHint {
			// Nothing seen yet: expect a value that was never written
			// (values start at 1), so the compare fails.
			from = "0"
		}
		return history.Event{F: checker.FCAS, Key: key, From: history.Str(from), Value: history.Str(r.value())}
	}
}

func (r *Register) value() string { return strconv.FormatInt(r.values.Add(1), 10) }

func (r *Register) hint(key, value string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, s := range r.slots {
		if s.key == key {
			r.hints[key] = value
			return
		}
	}
}

// Apply implements Workload.
func (r *Register) Apply(ctx context.Context, kv client.KV, op history.Event) history.Event {
	switch op.F {
	case checker.FRead:
		resp, err := kv.Get(ctx, op.Key)
		c := completion(op, err, true)
		if err == nil && len(resp.Kvs) > 0 {
			c.Value = history.Str(string(resp.Kvs[0].Value))
			r.hint(op.Key, *c.Value)
		}
		return c
	case checker.FWrite:
		_, err := kv.Put(ctx, op.Key, *op.Value)
		c := completion(op, err, false)
		c.Value = op.Value
		if err == nil {
			r.hint(op.Key, *op.Value)
		}
		return c
	case checker.FCAS:
		resp, err := kv.Txn(ctx).
			If(client.Compare(client.Value(op.Key), "=", *op.From)).
			Then(client.OpPut(op.Key, *op.Value)).
			Commit()
		c := completion(op, err, false)
		c.From, c.Value = op.From, op.Value
		if err == nil {
			c.Matched = history.Bool(resp.Succeeded)
			if resp.Succeeded {
				r.hint(op.Key, *op.Value)
			}
		}
		return c
	}
	return history.Event{Type: history.Fail, F: op.F, Error: "unknown operation " + op.F}
}

// Final implements Workload: the register needs no final reads.
func (r *Register) Final(context.Context, FinalEnv) error { return nil }

// Check implements Workload: linearizability per key with porcupine.
func (r *Register) Check(events []history.Event, opts CheckOptions) (Report, error) {
	res, err := checker.CheckRegister(events, opts.Timeout, opts.HTMLPath)
	if err != nil {
		return Report{}, err
	}
	rep := Report{Verdict: res.Verdict, Details: res}
	switch res.Verdict {
	case checker.Invalid:
		keys := make([]string, 0, len(res.Anomalies))
		for _, a := range res.Anomalies {
			keys = append(keys, a.Key)
		}
		switch {
		case len(keys) == 0:
			rep.Problems = append(rep.Problems, "the history is not linearizable")
		case len(keys) <= 10:
			rep.Problems = append(rep.Problems, fmt.Sprintf("not linearizable: %d keys %v", len(keys), keys))
		default:
			rep.Problems = append(rep.Problems, fmt.Sprintf("not linearizable: %d keys %v and %d more", len(keys), keys[:10], len(keys)-10))
		}
	case checker.Unknown:
		rep.Problems = append(rep.Problems, fmt.Sprintf("the linearizability check did not finish within %s: inconclusive", opts.Timeout))
	}
	return rep, nil
}
