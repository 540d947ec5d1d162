// Package poll waits for a condition with a deadline: the one wait loop of
// kvd's test harnesses (servertest, e2e, jepsen). A condition reports why it
// does not hold yet as an error, so that a wait that gives up says what it
// was waiting for, not only that it gave up.
package poll

import (
	"context"
	"fmt"
	"time"
)

// Interval is how often Within and Eventually check their condition: often
// enough that a test does not sit idle long after the condition holds,
// seldom enough that the checks do not load the cluster being watched.
const Interval = 20 * time.Millisecond

// Until calls cond, then again every interval, until it returns nil or ctx
// ends. It returns nil once cond does; otherwise an error that says how
// long it waited and wraps both ctx's error and cond's last one.
func Until(ctx context.Context, every time.Duration, cond func() error) error {
	if every <= 0 {
		return fmt.Errorf("poll: interval must be positive, got %s", every)
	}
	start := time.Now()
	t := time.NewTimer(every)
	defer t.Stop()
	for {
		last := cond()
		if last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not met after %s (%w): %w", time.Since(start).Round(time.Millisecond), ctx.Err(), last)
		case <-t.C:
			t.Reset(every)
		}
	}
}

// Within is Until for timeout, checking every Interval.
func Within(timeout time.Duration, cond func() error) error {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return Until(ctx, Interval, cond)
}

// TB is the part of testing.TB that Eventually needs; a *testing.T, B or F
// is one.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
}

// Eventually waits as Within does and fails the test (Fatalf) with cond's
// last error if cond does not hold within timeout.
func Eventually(t TB, timeout time.Duration, cond func() error) {
	t.Helper()
	if err := Within(timeout, cond); err != nil {
		t.Fatalf("%v", err)
	}
}
