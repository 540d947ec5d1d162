package lease

import (
	"errors"
	"slices"
	"testing"
	"time"
)

// clock is a manual clock for the lessor.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }

func newTestLessor(t *testing.T, cfg Config) (*Lessor, *clock) {
	t.Helper()
	c := &clock{t: time.Unix(1_000_000, 0)}
	cfg.Now = c.now
	return New(cfg), c
}

func TestFollowerTimesNothing(t *testing.T) {
	l, c := newTestLessor(t, Config{})
	l.Granted(1, 5)
	c.advance(time.Hour)
	if got := l.Expired(10); got != nil {
		t.Fatalf("a lessor that is not primary expired %v", got)
	}
	if _, _, err := l.Renew(1); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("Renew on a follower: %v, want ErrNotPrimary", err)
	}
	if _, _, err := l.Remaining(1); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("Remaining on a follower: %v, want ErrNotPrimary", err)
	}
}

func TestExpiresAfterTTLNotBefore(t *testing.T) {
	l, c := newTestLessor(t, Config{})
	l.Promote(0)
	l.Granted(1, 5)
	l.Granted(2, 10)
	c.advance(5*time.Second - time.Millisecond)
	if got := l.Expired(10); got != nil {
		t.Fatalf("expired %v before its TTL", got)
	}
	if g, r, err := l.Remaining(1); err != nil || g != 5 || r != 1 {
		t.Fatalf("Remaining(1) = %d, %d, %v; want 5, 1", g, r, err)
	}
	c.advance(time.Millisecond)
	if got := l.Expired(10); !slices.Equal(got, []int64{1}) {
		t.Fatalf("Expired = %v, want [1]", got)
	}
	// Expired once: never renewed again, and not offered again until the
	// retry interval passed.
	if _, _, err := l.Renew(1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Renew of an expired lease: %v, want ErrNotFound", err)
	}
	if _, _, err := l.Remaining(1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Remaining of an expired lease: %v, want ErrNotFound", err)
	}
	if got := l.Expired(10); got != nil {
		t.Fatalf("offered again at once: %v", got)
	}
	c.advance(3 * time.Second)
	if got := l.Expired(10); !slices.Equal(got, []int64{1}) {
		t.Fatalf("after the retry interval Expired = %v, want [1] again", got)
	}
	l.Revoked(1)
	c.advance(time.Hour)
	if got := l.Expired(10); !slices.Equal(got, []int64{2}) {
		t.Fatalf("Expired = %v, want [2] (1 was revoked)", got)
	}
}

func TestRenewRestartsTheClock(t *testing.T) {
	l, c := newTestLessor(t, Config{})
	l.Promote(0)
	l.Granted(7, 5)
	for range 10 {
		c.advance(4 * time.Second)
		ttl, clear, err := l.Renew(7)
		if err != nil || ttl != 5 || clear {
			t.Fatalf("Renew = %d, %v, %v", ttl, clear, err)
		}
		if got := l.Expired(10); got != nil {
			t.Fatalf("a renewed lease expired: %v", got)
		}
	}
	if _, _, err := l.Renew(8); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Renew of an unknown lease: %v", err)
	}
}

func TestPromoteExtendsEveryLease(t *testing.T) {
	l, c := newTestLessor(t, Config{})
	l.Granted(1, 5)
	l.Granted(2, 600)
	l.Checkpointed(2, 20) // a long lease with 20 s left at its checkpoint
	c.advance(time.Hour)  // followers never expire anything
	l.Promote(2 * time.Second)
	c.advance(7*time.Second - time.Millisecond)
	if got := l.Expired(10); got != nil {
		t.Fatalf("expired %v before TTL plus extension", got)
	}
	c.advance(time.Millisecond)
	if got := l.Expired(10); !slices.Equal(got, []int64{1}) {
		t.Fatalf("Expired = %v, want [1]", got)
	}
	l.Revoked(1)
	c.advance(15 * time.Second) // 22 s after promotion: 20 s left + 2 s
	if got := l.Expired(10); !slices.Equal(got, []int64{2}) {
		t.Fatalf("Expired = %v, want [2] at its checkpointed remaining TTL", got)
	}
	// Demoted and promoted again: expired leases get a fresh clock too.
	l.Demote()
	if got := l.Expired(10); got != nil {
		t.Fatalf("a demoted lessor expired %v", got)
	}
	l.Promote(time.Second)
	if _, _, err := l.Renew(2); err != nil {
		t.Fatalf("after a new promotion the lease renews: %v", err)
	}
}

func TestCheckpointsOnlyForLongLeases(t *testing.T) {
	l, c := newTestLessor(t, Config{CheckpointInterval: 10 * time.Second})
	l.Promote(0)
	l.Granted(1, 5)   // shorter than the interval: never checkpointed
	l.Granted(2, 100) // longer
	c.advance(10 * time.Second)
	got := l.Checkpoints(10)
	if len(got) != 1 || got[0] != (Checkpoint{ID: 2, RemainingTTL: 90}) {
		t.Fatalf("Checkpoints = %v, want [{2 90}]", got)
	}
	if got := l.Checkpoints(10); got != nil {
		t.Fatalf("checkpointed again at once: %v", got)
	}
	l.Checkpointed(2, 90)
	// A renewal of a lease with a recorded remaining TTL must clear it.
	if _, clear, err := l.Renew(2); err != nil || !clear {
		t.Fatalf("Renew = clear %v, %v; want clear", clear, err)
	}
	l.Checkpointed(2, 0)
	if _, clear, _ := l.Renew(2); clear {
		t.Fatal("Renew asked to clear a checkpoint that is cleared")
	}
	c.advance(10 * time.Second)
	if got := l.Checkpoints(10); len(got) != 1 || got[0].RemainingTTL != 90 {
		t.Fatalf("Checkpoints after renewal = %v, want [{2 90}]", got)
	}
}

func TestResetReplacesLeases(t *testing.T) {
	l, c := newTestLessor(t, Config{})
	l.Promote(0)
	l.Granted(1, 5)
	l.Reset([]Lease{{ID: 2, TTL: 5}, {ID: 3, TTL: 8, RemainingTTL: 6}})
	if l.Len() != 2 {
		t.Fatalf("Len = %d, want 2", l.Len())
	}
	if _, _, err := l.Renew(1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a lease the reset dropped renews: %v", err)
	}
	c.advance(6 * time.Second)
	if got := l.Expired(10); !slices.Equal(got, []int64{2, 3}) {
		t.Fatalf("Expired = %v, want [2 3]", got)
	}
}

func TestExpiredHonoursLimit(t *testing.T) {
	l, c := newTestLessor(t, Config{})
	l.Promote(0)
	for id := int64(1); id <= 100; id++ {
		l.Granted(id, 5)
	}
	c.advance(5 * time.Second)
	seen := map[int64]bool{}
	for range 4 {
		for _, id := range l.Expired(30) {
			if seen[id] {
				t.Fatalf("lease %d offered twice within the retry interval", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != 100 {
		t.Fatalf("offered %d leases, want 100", len(seen))
	}
}

// BenchmarkRenew measures a keepalive's cost in the lessor with 100,000
// leases.
func BenchmarkRenew(b *testing.B) {
	l := New(Config{})
	l.Promote(0)
	const n = 100_000
	for id := int64(1); id <= n; id++ {
		l.Granted(id, 60)
	}
	b.ResetTimer()
	for i := range b.N {
		if _, _, err := l.Renew(int64(i%n) + 1); err != nil {
			b.Fatal(err)
		}
	}
}

// The switch the jepsen negative control uses: a quarter of the TTL, and no
// extension on promotion. Release members never set it (member.Config).
func TestUnsafeExpireEarly(t *testing.T) {
	l, c := newTestLessor(t, Config{UnsafeExpireEarly: true})
	l.Granted(1, 8)
	l.Promote(time.Second)
	c.advance(2*time.Second - time.Millisecond)
	if got := l.Expired(10); got != nil {
		t.Fatalf("expired %v before a quarter of its TTL", got)
	}
	c.advance(time.Millisecond)
	if got := l.Expired(10); !slices.Equal(got, []int64{1}) {
		t.Fatalf("Expired = %v, want [1] after a quarter of the TTL, without the extension", got)
	}
	l.Granted(2, 8)
	if ttl, _, err := l.Renew(2); err != nil || ttl != 8 {
		t.Fatalf("Renew = %d, %v; want the granted TTL 8 answered", ttl, err)
	}
	c.advance(2 * time.Second)
	if got := l.Expired(10); !slices.Equal(got, []int64{2}) {
		t.Fatalf("Expired = %v, want [2] a quarter TTL after its renewal", got)
	}
}
