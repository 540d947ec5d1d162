package etcdapi_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/etcdapi/proto/v3lockpb"
	"github.com/kvd-io/kvd/internal/poll"
	"github.com/kvd-io/kvd/server/servertest"
)

// newSession is a concurrency session (a lease kept alive) of cli,
// closed when the test ends.
func newSession(t *testing.T, cli *clientv3.Client) *concurrency.Session {
	t.Helper()
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestLockContention: holders through etcd's v3lock service and through
// clientv3's concurrency.Mutex, on different members, exclude each other:
// each increments a counter by reading it and writing it back while it
// holds the lock, and no increment is lost.
func TestLockContention(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	ctx := ctxT(t)
	const workers, rounds = 4, 5
	if _, err := newClient(t, c).Put(ctx, "counter", "0"); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		cli := newClient(t, c, c.Names()[w%3])
		s := newSession(t, cli)
		lc := v3lockpb.NewLockClient(cli.ActiveConnection())
		viaService := w%2 == 0
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- func() error {
				for range rounds {
					var unlock func() error
					if viaService {
						resp, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("contended"), Lease: int64(s.Lease())})
						if err != nil {
							return fmt.Errorf("v3lock: %w", err)
						}
						if want := fmt.Sprintf("contended/%x", s.Lease()); string(resp.Key) != want {
							return fmt.Errorf("lock key %q, want %q", resp.Key, want)
						}
						unlock = func() error { _, err := lc.Unlock(ctx, &v3lockpb.UnlockRequest{Key: resp.Key}); return err }
					} else {
						m := concurrency.NewMutex(s, "contended")
						if err := m.Lock(ctx); err != nil {
							return fmt.Errorf("mutex: %w", err)
						}
						unlock = func() error { return m.Unlock(ctx) }
					}
					get, err := cli.Get(ctx, "counter")
					if err != nil {
						return err
					}
					n, _ := strconv.Atoi(string(get.Kvs[0].Value))
					if _, err := cli.Put(ctx, "counter", strconv.Itoa(n+1)); err != nil {
						return err
					}
					if err := unlock(); err != nil {
						return fmt.Errorf("unlock: %w", err)
					}
				}
				return nil
			}()
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	get, err := newClient(t, c).Get(ctx, "counter")
	if err != nil {
		t.Fatal(err)
	}
	if got := string(get.Kvs[0].Value); got != strconv.Itoa(workers*rounds) {
		t.Fatalf("counter %s after %d locked increments: an increment was lost", got, workers*rounds)
	}
}

// TestLockErrors: a lease that does not exist is etcd's "requested lease
// not found"; a Lock that gives up waiting leaves no key in the queue.
func TestLockErrors(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 1)
	cli := newClient(t, c)
	ctx := ctxT(t)
	lc := v3lockpb.NewLockClient(cli.ActiveConnection())

	_, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("l"), Lease: 0x1234})
	if !errors.Is(rpctypes.Error(err), rpctypes.ErrLeaseNotFound) {
		t.Fatalf("lock with a lease that does not exist: %v, want %v", err, rpctypes.ErrLeaseNotFound)
	}
	if _, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("l")}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("lock without a lease: %v, want InvalidArgument", err)
	}

	holder, waiter := newSession(t, cli), newSession(t, cli)
	held, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("l"), Lease: int64(holder.Lease())})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	_, err = lc.Lock(wctx, &v3lockpb.LockRequest{Name: []byte("l"), Lease: int64(waiter.Lease())})
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("lock held by another: %v, want DeadlineExceeded", err)
	}
	// The waiter's key goes once the server sees the call end.
	waiterKey := fmt.Sprintf("l/%x", waiter.Lease())
	poll.Eventually(t, 30*time.Second, func() error {
		resp, err := cli.Get(ctx, waiterKey)
		if err != nil || resp.Count != 0 {
			return fmt.Errorf("%s still queued after its Lock gave up (%v)", waiterKey, err)
		}
		return nil
	})
	if _, err := lc.Unlock(ctx, &v3lockpb.UnlockRequest{Key: held.Key}); err != nil {
		t.Fatal(err)
	}
	if _, err := lc.Unlock(ctx, &v3lockpb.UnlockRequest{Key: held.Key}); err != nil {
		t.Fatalf("unlock of a released lock: %v, want success", err)
	}
}
