package concurrency_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/client/concurrency"
	"github.com/kvd-io/kvd/internal/poll"
	"github.com/kvd-io/kvd/server/servertest"
)

func newClient(t *testing.T, c *servertest.Cluster) *client.Client {
	t.Helper()
	var eps []string
	for _, name := range c.Names() {
		eps = append(eps, c.Member(name).Server.ClientAddr())
	}
	cli, err := client.New(client.Config{Endpoints: eps})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func newSession(t *testing.T, cli *client.Client, ttl int64) *concurrency.Session {
	t.Helper()
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(ttl))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// Contenders on several clients take the lock in turn: never two at once,
// each acquisition's token larger than the one before, and a write guarded
// by IsOwner applies only while held.
func TestMutexExcludes(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	ctx := testCtx(t, 60*time.Second)
	const contenders, rounds = 4, 5
	var (
		mu      sync.Mutex
		holders int
		tokens  []int64
		wg      sync.WaitGroup
		errs    = make(chan error, contenders)
	)
	for i := range contenders {
		cli := newClient(t, c)
		s := newSession(t, cli, 10)
		wg.Go(func() {
			for r := range rounds {
				m := concurrency.NewMutex(s, "lock")
				if err := m.Lock(ctx); err != nil {
					errs <- fmt.Errorf("contender %d round %d: %w", i, r, err)
					return
				}
				mu.Lock()
				holders++
				if holders != 1 {
					errs <- fmt.Errorf("%d holders at once", holders)
				}
				tokens = append(tokens, m.Token())
				mu.Unlock()
				resp, err := cli.Txn(ctx).If(m.IsOwner()).Then(client.OpPut("guarded", fmt.Sprint(m.Token()))).Commit()
				if err != nil || !resp.GetSucceeded() {
					errs <- fmt.Errorf("guarded write while holding: %v, %v", resp, err)
				}
				mu.Lock()
				holders--
				mu.Unlock()
				if err := m.Unlock(ctx); err != nil {
					errs <- err
					return
				}
				resp, err = cli.Txn(ctx).If(m.IsOwner()).Then(client.OpPut("guarded", "late")).Commit()
				if err == nil && resp.GetSucceeded() {
					errs <- errors.New("a write guarded by a released lock applied")
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(tokens) != contenders*rounds {
		t.Fatalf("%d acquisitions, want %d", len(tokens), contenders*rounds)
	}
	for i := 1; i < len(tokens); i++ {
		if tokens[i] <= tokens[i-1] {
			t.Fatalf("tokens do not grow: %v", tokens)
		}
	}
}

// A waiter waits for the one just ahead of it; when that one leaves the
// queue while another further ahead still holds the lock, the waiter reads
// the queue again and goes on waiting, and takes the lock only once the
// holder releases it.
func TestLockWaiterOutlivesItsPredecessor(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 1)
	cli := newClient(t, c)
	ctx := testCtx(t, 30*time.Second)
	a := concurrency.NewMutex(newSession(t, cli, 10), "q")
	b := concurrency.NewMutex(newSession(t, cli, 10), "q")
	w := concurrency.NewMutex(newSession(t, cli, 10), "q")
	if err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	queued := func(n int64) {
		t.Helper()
		poll.Eventually(t, 10*time.Second, func() error {
			got, err := cli.Get(ctx, "q/", client.WithPrefix(), client.WithCountOnly())
			if err != nil || got.GetCount() != n {
				return fmt.Errorf("%d keys queued (%v), want %d", got.GetCount(), err, n)
			}
			return nil
		})
	}
	bctx, bcancel := context.WithCancel(ctx)
	bdone := make(chan error, 1)
	go func() { bdone <- b.Lock(bctx) }()
	queued(2)
	wdone := make(chan error, 1)
	go func() { wdone <- w.Lock(ctx) }()
	queued(3)
	bcancel() // the waiter ahead gives up and leaves the queue
	if err := <-bdone; !errors.Is(err, context.Canceled) {
		t.Fatalf("the abandoned Lock: %v, want context.Canceled", err)
	}
	queued(2)
	select {
	case err := <-wdone:
		t.Fatalf("the last waiter returned (%v) while the lock is held", err)
	case <-time.After(500 * time.Millisecond):
	}
	held := a.Token()
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-wdone; err != nil || w.Token() <= held {
		t.Fatalf("the last waiter: %v (token %d after %d)", err, w.Token(), held)
	}
}

func TestTryLock(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 1)
	cli := newClient(t, c)
	ctx := testCtx(t, 30*time.Second)
	a, b := concurrency.NewMutex(newSession(t, cli, 10), "l"), concurrency.NewMutex(newSession(t, cli, 10), "l")
	if err := a.TryLock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.TryLock(ctx); !errors.Is(err, concurrency.ErrLocked) {
		t.Fatalf("TryLock of a held lock: %v, want ErrLocked", err)
	}
	if got, err := cli.Get(ctx, "l/", client.WithPrefix(), client.WithCountOnly()); err != nil || got.GetCount() != 1 {
		t.Fatalf("the failed TryLock left its key: %v, %v", got, err)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := b.TryLock(ctx); err != nil || b.Token() == 0 {
		t.Fatalf("TryLock of a free lock: %v (token %d)", err, b.Token())
	}
}

// A holder whose session stops renewing loses the lock after its TTL: the
// next holder's token is larger, and the old holder's guarded write fails.
func TestLockPassesOnWhenTheHolderDies(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	ctx := testCtx(t, 60*time.Second)
	cliA, cliB := newClient(t, c), newClient(t, c)
	sa, err := concurrency.NewSession(cliA, concurrency.WithTTL(2))
	if err != nil {
		t.Fatal(err)
	}
	a := concurrency.NewMutex(sa, "job")
	if err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	b := concurrency.NewMutex(newSession(t, cliB, 10), "job")
	locked := make(chan error, 1)
	go func() { locked <- b.Lock(ctx) }()
	sa.Orphan() // A stops renewing, as a paused or dead process does
	start := time.Now()
	if err := <-locked; err != nil {
		t.Fatal(err)
	}
	t.Logf("B took the lock %s after A stopped renewing its 2 s lease", time.Since(start))
	if b.Token() <= a.Token() {
		t.Fatalf("B's token %d is not larger than A's %d", b.Token(), a.Token())
	}
	resp, err := cliA.Txn(ctx).If(a.IsOwner()).Then(client.OpPut("out", "A")).Commit()
	if err != nil || resp.GetSucceeded() {
		t.Fatalf("A's guarded write after losing the lock: %v, %v; want refused", resp, err)
	}
}

// A waiter whose lease is revoked while it waits is not told it holds the
// lock when those ahead of it leave (etcd #11408).
func TestLockRechecksTheWaitersLease(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 1)
	cli := newClient(t, c)
	ctx := testCtx(t, 30*time.Second)
	a := concurrency.NewMutex(newSession(t, cli, 10), "l")
	if err := a.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	// A long TTL: the waiter's keep-alive will not notice the revocation
	// before the lock is released.
	sb := newSession(t, cli, 60)
	b := concurrency.NewMutex(sb, "l")
	locked := make(chan error, 1)
	go func() { locked <- b.Lock(ctx) }()
	waitForKeys(t, cli, "l/", 2)
	if _, err := cli.Revoke(ctx, sb.Lease()); err != nil {
		t.Fatal(err)
	}
	if err := a.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-locked; !errors.Is(err, concurrency.ErrSessionExpired) {
		t.Fatalf("Lock by a waiter whose lease was revoked: %v, want ErrSessionExpired", err)
	}
}

func waitForKeys(t *testing.T, cli *client.Client, prefix string, n int64) {
	t.Helper()
	poll.Eventually(t, 10*time.Second, func() error {
		resp, err := cli.Get(testCtx(t, 5*time.Second), prefix, client.WithPrefix(), client.WithCountOnly())
		if err != nil {
			return err
		}
		if resp.GetCount() != n {
			return fmt.Errorf("%s has %d keys, want %d", prefix, resp.GetCount(), n)
		}
		return nil
	})
}

// Candidates lead in the order they campaigned; Observe sees each leader
// and each proclamation, in order.
func TestElection(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	ctx := testCtx(t, 60*time.Second)
	cli := newClient(t, c)
	obs := concurrency.NewElection(newSession(t, cli, 10), "elect")
	if _, err := obs.Leader(ctx); !errors.Is(err, concurrency.ErrElectionNoLeader) {
		t.Fatalf("Leader before any campaign: %v", err)
	}
	octx, stop := context.WithCancel(ctx)
	defer stop()
	seen := obs.Observe(octx)

	e1 := concurrency.NewElection(newSession(t, newClient(t, c), 10), "elect")
	if err := e1.Campaign(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	e2 := concurrency.NewElection(newSession(t, newClient(t, c), 10), "elect")
	campaigned := make(chan error, 1)
	go func() { campaigned <- e2.Campaign(ctx, "two") }()
	if err := e2.Proclaim(ctx, "x"); !errors.Is(err, concurrency.ErrElectionNotLeader) {
		t.Fatalf("Proclaim by a candidate that does not lead: %v", err)
	}
	if err := e1.Proclaim(ctx, "one again"); err != nil {
		t.Fatal(err)
	}
	l, err := obs.Leader(ctx)
	if err != nil || string(l.GetKvs()[0].GetValue()) != "one again" {
		t.Fatalf("Leader: %v, %v", l, err)
	}
	firstRev := e1.Rev()
	if err := e1.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-campaigned; err != nil {
		t.Fatal(err)
	}
	if e2.Rev() <= firstRev {
		t.Fatalf("second leader's rev %d not above the first's %d", e2.Rev(), firstRev)
	}
	want := []string{"one", "one again", "two"}
	for i, w := range want {
		select {
		case r := <-seen:
			if got := string(r.GetKvs()[0].GetValue()); got != w {
				t.Fatalf("observation %d: %q, want %q", i, got, w)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("observation %d (%q) did not come", i, w)
		}
	}
}
