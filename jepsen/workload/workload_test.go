package workload

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/jepsen/checker"
	"github.com/kvd-io/kvd/jepsen/history"
)

func TestClassify(t *testing.T) {
	notApplied := apierr.NotApplied(codes.Unavailable, "no leader")
	tests := []struct {
		name string
		err  error
		read bool
		want history.Type
	}{
		{"success", nil, false, history.OK},
		{"read that failed", status.Error(codes.Unknown, "x"), true, history.Fail},
		{"read that timed out", context.DeadlineExceeded, true, history.Fail},
		{"not applied", notApplied, false, history.Fail},
		{"not applied, wrapped by the client's give-up", fmt.Errorf("client: %w; last error: %w", context.DeadlineExceeded, notApplied), false, history.Fail},
		{"invalid argument", status.Error(codes.InvalidArgument, "empty key"), false, history.Fail},
		{"not found", status.Error(codes.NotFound, "lease"), false, history.Fail},
		{"out of range", status.Error(codes.OutOfRange, "rev"), false, history.Fail},
		{"failed precondition", status.Error(codes.FailedPrecondition, "x"), false, history.Fail},
		{"unknown: leadership lost", status.Error(codes.Unknown, "leadership lost"), false, history.Info},
		{"deadline exceeded", status.Error(codes.DeadlineExceeded, "deadline"), false, history.Info},
		{"unavailable without the mark", status.Error(codes.Unavailable, "connection reset"), false, history.Info},
		{"canceled", status.Error(codes.Canceled, "canceled"), false, history.Info},
		{"client context ended in flight", fmt.Errorf("client: %w while the write was in flight: %w", context.DeadlineExceeded, status.Error(codes.DeadlineExceeded, "x")), false, history.Info},
		{"plain error", errors.New("connection refused"), false, history.Info},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.err, tt.read); got != tt.want {
				t.Fatalf("Classify = %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRegisterKeysRotateAndValuesAreUnique(t *testing.T) {
	cfg := DefaultRegisterConfig()
	cfg.Keys, cfg.OpsPerKey = 3, 10
	r := NewRegister(cfg)
	rng := rand.New(rand.NewSource(1))
	perKey := map[string]int{}
	values := map[string]bool{}
	kinds := map[string]int{}
	for i := 0; i < 3000; i++ {
		op := r.Next(rng)
		perKey[op.Key]++
		kinds[op.F]++
		if op.F == checker.FWrite || op.F == checker.FCAS {
			if op.Value == nil || values[*op.Value] {
				t.Fatalf("op %d: value %v missing or reused", i, op.Value)
			}
			values[*op.Value] = true
		}
		if op.F == checker.FCAS && (op.From == nil || *op.From == "") {
			t.Fatalf("cas without an expected value: %+v", op)
		}
	}
	for k, n := range perKey {
		if n > cfg.OpsPerKey {
			t.Errorf("key %s took %d operations, more than %d", k, n, cfg.OpsPerKey)
		}
	}
	if len(perKey) < 3000/cfg.OpsPerKey {
		t.Errorf("only %d keys used", len(perKey))
	}
	if kinds[checker.FRead] < 1200 || kinds[checker.FWrite] < 500 || kinds[checker.FCAS] < 500 {
		t.Errorf("mix %v", kinds)
	}
}

func TestNewRefusesUnsupported(t *testing.T) {
	for _, name := range []string{"bank", "queue"} {
		if _, err := New(name); err == nil {
			t.Errorf("workload %q accepted", name)
		}
	}
	for _, name := range Names() {
		if _, err := New(name); err != nil {
			t.Errorf("workload %q: %v", name, err)
		}
	}
}

func TestSetKeys(t *testing.T) {
	s := NewSet(DefaultSetPrefix)
	for _, e := range []string{"1", "42", "123456789"} {
		k := s.key(e)
		if !strings.HasPrefix(k, DefaultSetPrefix) {
			t.Fatalf("key %q", k)
		}
		got, err := s.element(k)
		if err != nil || got != e {
			t.Fatalf("element(%q) = %q, %v; want %q", k, got, err, e)
		}
	}
	// Keys sort like the numbers, so pages come in element order.
	if !(s.key("9") < s.key("10")) {
		t.Fatal("keys do not sort numerically")
	}
	if _, err := s.element("other/1"); err == nil {
		t.Fatal("foreign key accepted")
	}
}

func TestWatchWrites(t *testing.T) {
	w := NewWatch(DefaultWatchConfig())
	rng := rand.New(rand.NewSource(1))
	values := map[string]bool{}
	keys := map[string]bool{}
	txns := 0
	for range 2000 {
		op := w.Next(rng)
		if op.F != checker.FWrite || op.Value == nil || values[*op.Value] {
			t.Fatalf("not a write of a fresh value: %+v", op)
		}
		values[*op.Value] = true
		switch len(op.Values) {
		case 1:
		case 2:
			txns++
			if op.Values[0] >= op.Values[1] {
				t.Fatalf("transaction keys not distinct and sorted: %v", op.Values)
			}
		default:
			t.Fatalf("keys %v", op.Values)
		}
		for _, k := range op.Values {
			if !strings.HasPrefix(k, DefaultWatchConfig().Prefix) || strings.Contains(k, " ") {
				t.Fatalf("key %q", k)
			}
			keys[k] = true
		}
	}
	if len(keys) != DefaultWatchConfig().Keys || txns < 300 || txns > 500 {
		t.Fatalf("%d keys, %d transactions of 2000 writes", len(keys), txns)
	}
}

func TestLockNextRotatesKeys(t *testing.T) {
	cfg := DefaultLockConfig()
	cfg.WritesPerKey = 5
	l := NewLock(cfg)
	rng := rand.New(rand.NewSource(1))
	writes := map[string]int{}
	values := map[string]bool{}
	reads := 0
	for i := 0; i < 400; i++ {
		op := l.Next(rng)
		switch op.F {
		case checker.FRead:
			reads++
		case checker.FFencedWrite:
			writes[op.Key]++
			if op.Value == nil || values[*op.Value] {
				t.Fatalf("op %d: value %v missing or reused", i, op.Value)
			}
			values[*op.Value] = true
		default:
			t.Fatalf("unexpected operation %q", op.F)
		}
		if !strings.HasPrefix(op.Key, cfg.Prefix+"reg/") {
			t.Fatalf("key %q outside the register prefix", op.Key)
		}
	}
	for k, n := range writes {
		if n > cfg.WritesPerKey {
			t.Errorf("key %s took %d writes, more than %d", k, n, cfg.WritesPerKey)
		}
	}
	if reads < 120 || len(writes) < 20 {
		t.Errorf("%d reads, %d keys written", reads, len(writes))
	}
}

func TestLeaseNextGrantsAttachesReads(t *testing.T) {
	w := NewLease(DefaultLeaseConfig())
	rng := rand.New(rand.NewSource(1))
	op := w.Next(rng)
	if op.F != checker.FGrant || op.Value == nil {
		t.Fatalf("first operation %+v, want a grant with its mode", op)
	}
	// The grant completed: the lease must get its keys next, then be read.
	w.leases[0x2a] = &leaseState{id: 0x2a, granted: time.Now()}
	w.claims--
	op = w.Next(rng)
	if op.F != checker.FAttach || op.Lease != 0x2a || len(op.Values) != w.cfg.KeysPerLease {
		t.Fatalf("operation %+v, want the attach of lease 2a", op)
	}
	for _, k := range op.Values {
		if id, ok := w.KeyLease(k); !ok || id != 0x2a {
			t.Fatalf("KeyLease(%q) = %x, %v", k, id, ok)
		}
	}
	w.leases[0x2a].attached = true
	seen := map[string]int{}
	for i := 0; i < 200; i++ {
		seen[w.Next(rng).F]++
	}
	if seen[checker.FLeaseRead] < 100 || seen[checker.FGrant] == 0 {
		t.Fatalf("mix %v", seen)
	}
	if _, ok := w.KeyLease("other/2a/0"); ok {
		t.Fatal("a key outside the prefix was taken for a lease's")
	}
}
