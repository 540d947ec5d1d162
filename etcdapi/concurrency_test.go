package etcdapi_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/kvd-io/kvd/server/servertest"
)

// TestMutex: several sessions, on different members, take one
// concurrency.Mutex in turn; no two hold it at once, and each holder's
// critical section sees the previous one's write.
func TestMutex(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	ctx := ctxT(t)
	const workers, rounds = 4, 3
	var (
		mu      sync.Mutex
		holders int
		errs    = make(chan error, workers)
		wg      sync.WaitGroup
	)
	for i := range workers {
		cli := newClient(t, c, c.Names()[i%len(c.Names())])
		wg.Go(func() {
			errs <- func() error {
				s, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
				if err != nil {
					return err
				}
				defer s.Close()
				m := concurrency.NewMutex(s, "/mutex/")
				for range rounds {
					if err := m.Lock(ctx); err != nil {
						return err
					}
					mu.Lock()
					holders++
					n := holders
					mu.Unlock()
					if n != 1 {
						return fmt.Errorf("%d holders at once", n)
					}
					// A read-modify-write under the lock.
					resp, err := cli.Get(ctx, "/mutex-count")
					if err != nil {
						return err
					}
					v := 0
					if resp.Count == 1 {
						v, _ = strconv.Atoi(string(resp.Kvs[0].Value))
					}
					if _, err := cli.Put(ctx, "/mutex-count", strconv.Itoa(v+1)); err != nil {
						return err
					}
					mu.Lock()
					holders--
					mu.Unlock()
					if err := m.Unlock(ctx); err != nil {
						return err
					}
				}
				return nil
			}()
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	cli := newClient(t, c)
	resp, err := cli.Get(ctx, "/mutex-count")
	if err != nil || resp.Count != 1 || string(resp.Kvs[0].Value) != strconv.Itoa(workers*rounds) {
		t.Fatalf("count %+v, %v; want %d", resp, err, workers*rounds)
	}
	// TryLock fails fast while another session holds the lock.
	s1, err := concurrency.NewSession(cli)
	if err != nil {
		t.Fatal(err)
	}
	defer s1.Close()
	s2, err := concurrency.NewSession(cli)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	m1, m2 := concurrency.NewMutex(s1, "/try/"), concurrency.NewMutex(s2, "/try/")
	if err := m1.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if err := m2.TryLock(ctx); err != concurrency.ErrLocked {
		t.Fatalf("TryLock of a held mutex: %v, want %v", err, concurrency.ErrLocked)
	}
}

// TestElection: the first candidate leads; when its session closes the
// next one wins, and Observe sees each leader in turn.
func TestElection(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	ctx := ctxT(t)
	cli := newClient(t, c)
	s1, err := concurrency.NewSession(cli, concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	s2, err := concurrency.NewSession(newClient(t, c, follower(t, c)), concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	e1, e2 := concurrency.NewElection(s1, "/election/"), concurrency.NewElection(s2, "/election/")
	observer := concurrency.NewElection(s2, "/election/")
	octx, ocancel := context.WithCancel(ctx)
	defer ocancel()
	seen := observer.Observe(octx)

	if err := e1.Campaign(ctx, "one"); err != nil {
		t.Fatal(err)
	}
	won := make(chan error, 1)
	go func() { won <- e2.Campaign(ctx, "two") }()
	waitLeader := func(want string) {
		t.Helper()
		timeout := time.After(30 * time.Second)
		for {
			select {
			case resp, ok := <-seen:
				if !ok {
					t.Fatalf("observe ended before %q led", want)
				}
				if string(resp.Kvs[0].Value) == want {
					return
				}
			case <-timeout:
				t.Fatalf("observe did not see %q lead", want)
			}
		}
	}
	waitLeader("one")
	if leader, err := e2.Leader(ctx); err != nil || string(leader.Kvs[0].Value) != "one" {
		t.Fatalf("leader: %+v, %v; want one", leader, err)
	}
	select {
	case err := <-won:
		t.Fatalf("the second candidate won while the first leads: %v", err)
	default:
	}
	if err := e1.Proclaim(ctx, "one again"); err != nil {
		t.Fatal(err)
	}
	waitLeader("one again")
	// The first leader's session ends: the second candidate wins.
	if err := s1.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-won:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the second candidate did not win after the first session closed")
	}
	waitLeader("two")
	if err := e2.Resign(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestSTM: concurrent transfers between accounts with concurrency.NewSTM,
// serializable and repeatable read, keep the total.
func TestSTM(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	ctx := ctxT(t)
	for _, iso := range []concurrency.Isolation{concurrency.SerializableSnapshot, concurrency.Serializable, concurrency.RepeatableReads} {
		t.Run(fmt.Sprint(iso), func(t *testing.T) {
			prefix := fmt.Sprintf("/stm/%d/", iso)
			const accounts, workers, incs = 4, 4, 5
			setup := newClient(t, c)
			for i := range accounts {
				if _, err := setup.Put(ctx, fmt.Sprintf("%s%d", prefix, i), "100"); err != nil {
					t.Fatal(err)
				}
			}
			var wg sync.WaitGroup
			errs := make(chan error, workers)
			for w := range workers {
				cli := newClient(t, c, c.Names()[w%len(c.Names())])
				wg.Go(func() {
					for i := range incs {
						from, to := fmt.Sprintf("%s%d", prefix, (w+i)%accounts), fmt.Sprintf("%s%d", prefix, (w+i+1)%accounts)
						_, err := concurrency.NewSTM(cli, func(s concurrency.STM) error {
							a, _ := strconv.Atoi(s.Get(from))
							b, _ := strconv.Atoi(s.Get(to))
							s.Put(from, strconv.Itoa(a-1))
							s.Put(to, strconv.Itoa(b+1))
							// A counter every transfer increments.
							n, _ := strconv.Atoi(s.Get(prefix + "count"))
							s.Put(prefix+"count", strconv.Itoa(n+1))
							return nil
						}, concurrency.WithIsolation(iso), concurrency.WithAbortContext(ctx))
						if err != nil {
							errs <- err
							return
						}
					}
				})
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			resp, err := setup.Get(ctx, prefix, clientv3.WithPrefix())
			if err != nil {
				t.Fatal(err)
			}
			total, count := 0, 0
			for _, kv := range resp.Kvs {
				v, _ := strconv.Atoi(string(kv.Value))
				if string(kv.Key) == prefix+"count" {
					count = v
					continue
				}
				total += v
			}
			if total != accounts*100 || count != workers*incs {
				t.Fatalf("total %d, count %d; want %d and %d", total, count, accounts*100, workers*incs)
			}
		})
	}
}
