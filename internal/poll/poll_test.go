package poll

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestWithinReturnsOnceTheConditionHolds(t *testing.T) {
	n := 0
	err := Within(10*time.Second, func() error {
		n++
		if n < 3 {
			return fmt.Errorf("only %d calls", n)
		}
		return nil
	})
	if err != nil || n != 3 {
		t.Fatalf("Within = %v after %d calls, want nil after 3", err, n)
	}
}

func TestUntilWrapsTheLastErrorAndTheContexts(t *testing.T) {
	errNotYet := errors.New("not yet")
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	calls := 0
	err := Until(ctx, 5*time.Millisecond, func() error {
		calls++
		return fmt.Errorf("call %d: %w", calls, errNotYet)
	})
	if !errors.Is(err, errNotYet) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Until = %v, want it to wrap the condition's error and the deadline", err)
	}
	if want := fmt.Sprintf("call %d:", calls); !strings.Contains(err.Error(), want) {
		t.Fatalf("Until = %q, want the last error (%q)", err, want)
	}
	if calls < 2 {
		t.Fatalf("the condition ran %d times in 50ms at a 5ms interval", calls)
	}
}

// A condition that already holds is not a timeout, even with no time left.
func TestUntilChecksOnceFirst(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Until(ctx, time.Hour, func() error { return nil }); err != nil {
		t.Fatalf("Until with an ended context on a true condition = %v", err)
	}
	err := Until(ctx, time.Hour, func() error { return errors.New("never") })
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Until with a cancelled context = %v, want context.Canceled", err)
	}
}

func TestUntilRefusesABadInterval(t *testing.T) {
	if err := Until(context.Background(), 0, func() error { return nil }); err == nil {
		t.Fatal("a zero interval was accepted")
	}
}

type fakeTB struct{ failed string }

func (f *fakeTB) Helper() {}
func (f *fakeTB) Fatalf(format string, args ...any) {
	f.failed = fmt.Sprintf(format, args...)
}

func TestEventuallyFailsWithTheLastError(t *testing.T) {
	var tb fakeTB
	Eventually(&tb, 30*time.Millisecond, func() error { return errors.New("leader unknown") })
	if !strings.Contains(tb.failed, "leader unknown") {
		t.Fatalf("Eventually failed with %q, want the condition's error", tb.failed)
	}
	tb = fakeTB{}
	Eventually(&tb, time.Second, func() error { return nil })
	if tb.failed != "" {
		t.Fatalf("Eventually failed on a true condition: %q", tb.failed)
	}
}
