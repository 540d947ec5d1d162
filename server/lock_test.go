package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/client/concurrency"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/server/servertest"
)

func locks(t *testing.T, c *servertest.Cluster, member string) kvv1.LockServiceClient {
	return kvv1.NewLockServiceClient(retryingConn(t, c, member))
}

// retryingConn is a connection to member whose unary calls are repeated
// while they fail Unavailable (a leader change under load), until their
// deadline, as the Go client repeats them: every lock and election call is
// safe to repeat; lease calls are repeated only when certainly not applied.
func retryingConn(t *testing.T, c *servertest.Cluster, member string) *grpc.ClientConn {
	t.Helper()
	retry := func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoke grpc.UnaryInvoker, opts ...grpc.CallOption) error {
		for {
			err := invoke(ctx, method, req, reply, cc, opts...)
			if status.Code(err) != codes.Unavailable || ctx.Err() != nil ||
				(strings.HasPrefix(method, "/kv.v1.LeaseService/") && !apierr.IsNotApplied(err)) {
				return err
			}
			select {
			case <-ctx.Done():
				return err
			case <-time.After(50 * time.Millisecond): // backoff, not synchronisation
			}
		}
	}
	conn, err := grpc.NewClient(c.Member(member).Server.ClientAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(retry))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// lockResult is what a Lock call in the background returned.
type lockResult struct {
	resp *kvv1.LockResponse
	err  error
}

// lockAsync calls Lock in the background; the call ends with ctx.
func lockAsync(ctx context.Context, t *testing.T, c *servertest.Cluster, member, name string, lease int64) <-chan lockResult {
	ch := make(chan lockResult, 1)
	lc := locks(t, c, member)
	go func() {
		resp, err := lc.Lock(ctx, &kvv1.LockRequest{Name: []byte(name), Lease: lease})
		ch <- lockResult{resp, err}
	}()
	return ch
}

// queueKeyOf is the key of lease in the queue of name.
func queueKeyOf(name string, lease int64) string { return fmt.Sprintf("%s/%x", name, lease) }

// waitQueued waits until lease's key is in the queue of name.
func waitQueued(t *testing.T, c *servertest.Cluster, member, name string, lease int64) {
	t.Helper()
	c.Eventually(20*time.Second, func() error {
		if !keyExists(t, c, member, queueKeyOf(name, lease)) {
			return fmt.Errorf("lease %x not queued for %s yet", lease, name)
		}
		return nil
	})
}

// receive waits for a background call's result.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(30 * time.Second):
		t.Fatalf("%s: no answer within 30 s", what)
		panic("unreachable")
	}
}

// notYet fails if a background call has already answered.
func notYet[T any](t *testing.T, ch <-chan T, what string) {
	t.Helper()
	select {
	case r := <-ch:
		t.Fatalf("%s answered while it should wait: %+v", what, r)
	default:
	}
}

// Waiters get the lock one at a time, in the order they queued, each with a
// larger fencing token, whichever member serves them.
func TestLockExclusionAndOrder(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	c.Leader(20 * time.Second)
	names := c.Names()
	ctx := ctxT(t, 90*time.Second)
	a, b, d := grant(t, c, names[0], 0, 60), grant(t, c, names[1], 0, 60), grant(t, c, names[2], 0, 60)

	first, err := locks(t, c, names[0]).Lock(ctx, &kvv1.LockRequest{Name: []byte("job"), Lease: a})
	if err != nil {
		t.Fatal(err)
	}
	if string(first.GetKey()) != queueKeyOf("job", a) || first.GetCreateRevision() <= 0 || first.GetHeader().GetRevision() < first.GetCreateRevision() {
		t.Fatalf("first lock: %v", first)
	}
	// The same lease locking again keeps its place: same key, same token.
	again, err := locks(t, c, names[1]).Lock(ctx, &kvv1.LockRequest{Name: []byte("job"), Lease: a})
	if err != nil || string(again.GetKey()) != string(first.GetKey()) || again.GetCreateRevision() != first.GetCreateRevision() {
		t.Fatalf("lock again with the holder's lease: %v, %v", again, err)
	}

	second := lockAsync(ctx, t, c, names[1], "job", b)
	waitQueued(t, c, names[1], "job", b)
	third := lockAsync(ctx, t, c, names[2], "job", d)
	waitQueued(t, c, names[2], "job", d)
	notYet(t, second, "second lock")
	notYet(t, third, "third lock")

	if _, err := locks(t, c, names[2]).Unlock(ctx, &kvv1.UnlockRequest{Key: first.GetKey()}); err != nil {
		t.Fatal(err)
	}
	r2 := receive(t, second, "second lock")
	if r2.err != nil || string(r2.resp.GetKey()) != queueKeyOf("job", b) || r2.resp.GetCreateRevision() <= first.GetCreateRevision() {
		t.Fatalf("second lock: %v, %v (first token %d)", r2.resp, r2.err, first.GetCreateRevision())
	}
	notYet(t, third, "third lock")
	if keyExists(t, c, c.Leader(20*time.Second), string(first.GetKey())) {
		t.Fatal("the first key is still there after Unlock")
	}

	if _, err := locks(t, c, names[0]).Unlock(ctx, &kvv1.UnlockRequest{Key: r2.resp.GetKey()}); err != nil {
		t.Fatal(err)
	}
	r3 := receive(t, third, "third lock")
	if r3.err != nil || r3.resp.GetCreateRevision() <= r2.resp.GetCreateRevision() {
		t.Fatalf("third lock: %v, %v (second token %d)", r3.resp, r3.err, r2.resp.GetCreateRevision())
	}
	// Unlocking a key that is gone succeeds.
	for range 2 {
		if _, err := locks(t, c, names[1]).Unlock(ctx, &kvv1.UnlockRequest{Key: r3.resp.GetKey()}); err != nil {
			t.Fatal(err)
		}
	}
}

// A waiter whose lease is revoked while it waits gets an error, never the
// lock, even once the holder lets go (Jepsen's etcd 3.4.3 finding).
func TestLockLeaseRevokedWhileWaiting(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	follower := c.Names()[0]
	if follower == leader {
		follower = c.Names()[1]
	}
	ctx := ctxT(t, 90*time.Second)
	holder, waiter := grant(t, c, leader, 0, 60), grant(t, c, follower, 0, 60)

	held, err := locks(t, c, leader).Lock(ctx, &kvv1.LockRequest{Name: []byte("res"), Lease: holder})
	if err != nil {
		t.Fatal(err)
	}
	waiting := lockAsync(ctx, t, c, follower, "res", waiter)
	waitQueued(t, c, follower, "res", waiter)
	if _, err := kvv1.NewLeaseServiceClient(retryingConn(t, c, leader)).LeaseRevoke(ctx, &kvv1.LeaseRevokeRequest{Id: waiter}); err != nil {
		t.Fatal(err)
	}
	r := receive(t, waiting, "lock of the revoked lease")
	if status.Code(r.err) != codes.NotFound {
		t.Fatalf("lock whose lease was revoked while waiting: %v, %v; want NotFound", r.resp, r.err)
	}
	// The holder still holds; once it lets go, a new waiter gets the lock.
	if _, err := locks(t, c, follower).Unlock(ctx, &kvv1.UnlockRequest{Key: held.GetKey()}); err != nil {
		t.Fatal(err)
	}
	next := grant(t, c, follower, 0, 60)
	got, err := locks(t, c, follower).Lock(ctx, &kvv1.LockRequest{Name: []byte("res"), Lease: next})
	if err != nil || got.GetCreateRevision() <= held.GetCreateRevision() {
		t.Fatalf("lock after the holder let go: %v, %v", got, err)
	}
	// A revoked lease cannot queue at all.
	if _, err := locks(t, c, follower).Lock(ctx, &kvv1.LockRequest{Name: []byte("res"), Lease: waiter}); status.Code(err) != codes.NotFound {
		t.Fatalf("lock with a revoked lease: %v, want NotFound", err)
	}
}

// A holder whose lease expires loses the lock to the next waiter, whose
// token is larger; a waiter whose call is cancelled leaves the queue.
func TestLockFreedWhenHolderLeaseExpires(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	ctx := ctxT(t, 90*time.Second)
	short := grant(t, c, leader, 0, c.Member(leader).Server.Member().MinLeaseTTL())
	long, quitter := grant(t, c, leader, 0, 60), grant(t, c, leader, 0, 60)

	held, err := locks(t, c, leader).Lock(ctx, &kvv1.LockRequest{Name: []byte("cron"), Lease: short})
	if err != nil {
		t.Fatal(err)
	}
	qctx, quit := context.WithCancel(ctx)
	quitting := lockAsync(qctx, t, c, leader, "cron", quitter)
	waitQueued(t, c, leader, "cron", quitter)
	waiting := lockAsync(ctx, t, c, leader, "cron", long)
	waitQueued(t, c, leader, "cron", long)
	quit()
	if r := receive(t, quitting, "cancelled lock"); status.Code(r.err) != codes.Canceled {
		t.Fatalf("cancelled lock: %v, %v", r.resp, r.err)
	}
	c.Eventually(20*time.Second, func() error {
		if keyExists(t, c, leader, queueKeyOf("cron", quitter)) {
			return fmt.Errorf("the cancelled waiter's key is still queued")
		}
		return nil
	})
	// Nobody renews the holder's lease.
	r := receive(t, waiting, "lock after the holder's lease expired")
	if r.err != nil || r.resp.GetCreateRevision() <= held.GetCreateRevision() {
		t.Fatalf("lock after expiry: %v, %v (old token %d)", r.resp, r.err, held.GetCreateRevision())
	}
	if keyExists(t, c, leader, string(held.GetKey())) {
		t.Fatal("the expired holder's key is still there")
	}
}

// Bad lock and election requests are refused with the code that says why.
func TestLockAndElectionErrors(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 1)
	m := c.Leader(20 * time.Second)
	ctx := ctxT(t, 30*time.Second)
	lease := grant(t, c, m, 0, 60)
	el := elections(t, c, m)
	tests := []struct {
		name string
		call func() error
		want codes.Code
	}{
		{"lock without a name", func() error {
			_, err := locks(t, c, m).Lock(ctx, &kvv1.LockRequest{Lease: lease})
			return err
		}, codes.InvalidArgument},
		{"lock without a lease", func() error {
			_, err := locks(t, c, m).Lock(ctx, &kvv1.LockRequest{Name: []byte("x")})
			return err
		}, codes.InvalidArgument},
		{"lock with a negative lease", func() error {
			_, err := locks(t, c, m).Lock(ctx, &kvv1.LockRequest{Name: []byte("x"), Lease: -5})
			return err
		}, codes.InvalidArgument},
		{"lock with an unknown lease", func() error {
			_, err := locks(t, c, m).Lock(ctx, &kvv1.LockRequest{Name: []byte("x"), Lease: 0x1234})
			return err
		}, codes.NotFound},
		{"unlock without a key", func() error {
			_, err := locks(t, c, m).Unlock(ctx, &kvv1.UnlockRequest{})
			return err
		}, codes.InvalidArgument},
		{"campaign without a name", func() error {
			_, err := el.Campaign(ctx, &kvv1.CampaignRequest{Lease: lease})
			return err
		}, codes.InvalidArgument},
		{"campaign with an unknown lease", func() error {
			_, err := el.Campaign(ctx, &kvv1.CampaignRequest{Name: []byte("e"), Lease: 0x1234})
			return err
		}, codes.NotFound},
		{"leader of an election nobody runs in", func() error {
			_, err := el.Leader(ctx, &kvv1.LeaderRequest{Name: []byte("nobody")})
			return err
		}, codes.NotFound},
		{"proclaim without a leader key", func() error {
			_, err := el.Proclaim(ctx, &kvv1.ProclaimRequest{Value: []byte("v")})
			return err
		}, codes.InvalidArgument},
		{"proclaim with a key outside the election", func() error {
			_, err := el.Proclaim(ctx, &kvv1.ProclaimRequest{Leader: &kvv1.LeaderKey{Name: []byte("e"), Key: []byte("other/1"), Rev: 3, Lease: lease}})
			return err
		}, codes.InvalidArgument},
		{"proclaim by a key that does not lead", func() error {
			_, err := el.Proclaim(ctx, &kvv1.ProclaimRequest{Leader: &kvv1.LeaderKey{Name: []byte("e"), Key: []byte("e/1"), Rev: 3, Lease: lease}})
			return err
		}, codes.FailedPrecondition},
		{"resign without a name", func() error {
			_, err := el.Resign(ctx, &kvv1.ResignRequest{Leader: &kvv1.LeaderKey{Key: []byte("e/1"), Rev: 3}})
			return err
		}, codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); status.Code(err) != tt.want {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
	// An observer of an election without a name is refused too.
	st, err := el.Observe(ctx, &kvv1.ObserveRequest{})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("observe without a name: %v", err)
	}
}

// The service and the SDK's Mutex queue under the same keys: each excludes
// the other, and tokens grow across them.
func TestLockServiceAndSDKMutexExcludeEachOther(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 1)
	m := c.Leader(20 * time.Second)
	ctx := ctxT(t, 60*time.Second)
	cli, err := client.New(client.Config{Endpoints: []string{c.Member(m).Server.ClientAddr()}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(60))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	mu := concurrency.NewMutex(s, "mixed")
	if err := mu.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	lease := grant(t, c, m, 0, 60)
	waiting := lockAsync(ctx, t, c, m, "mixed", lease)
	waitQueued(t, c, m, "mixed", lease)
	notYet(t, waiting, "service lock while the SDK's Mutex holds")
	first := mu.Token()
	if err := mu.Unlock(ctx); err != nil {
		t.Fatal(err)
	}
	r := receive(t, waiting, "service lock")
	if r.err != nil || r.resp.GetCreateRevision() <= first {
		t.Fatalf("service lock after the Mutex (token %d) let go: %v, %v", first, r.resp, r.err)
	}
	if err := mu.TryLock(ctx); !errors.Is(err, concurrency.ErrLocked) {
		t.Fatalf("Mutex.TryLock while the service's lock is held: %v, want ErrLocked", err)
	}
	if _, err := locks(t, c, m).Unlock(ctx, &kvv1.UnlockRequest{Key: r.resp.GetKey()}); err != nil {
		t.Fatal(err)
	}
	if err := mu.TryLock(ctx); err != nil {
		t.Fatalf("Mutex.TryLock once the service's lock is released: %v", err)
	}
	if mu.Token() <= r.resp.GetCreateRevision() {
		t.Fatalf("Mutex token %d after the service's %d", mu.Token(), r.resp.GetCreateRevision())
	}
}
