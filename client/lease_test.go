package client_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/server"
	"github.com/kvd-io/kvd/server/servertest"
)

// clusterClient starts an n-member cluster and a client of all its members.
func clusterClient(t *testing.T, n int, opts ...servertest.Option) (*servertest.Cluster, *client.Client) {
	t.Helper()
	c := servertest.New(t, n, opts...)
	var eps []string
	for _, name := range c.Names() {
		eps = append(eps, c.Member(name).Server.ClientAddr())
	}
	cli, err := client.New(client.Config{Endpoints: eps})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return c, cli
}

func testCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestLeaseCalls(t *testing.T) {
	t.Parallel()
	// The daemon's election timeout, so that the minimum TTL (1.5 times it,
	// rounded up: 2 s) leaves a positive TTL below it, refused by the
	// members rather than by the SDK.
	_, cli := clusterClient(t, 3, servertest.WithConfig(func(cfg *server.Config) {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout = time.Second, time.Second
	}))
	ctx := testCtx(t, 30*time.Second)

	g, err := cli.Grant(ctx, 30)
	if err != nil || g.GetId() <= 0 || g.GetTtl() != 30 {
		t.Fatalf("Grant: %v, %v", g, err)
	}
	if _, err := cli.Grant(ctx, 30, client.WithLeaseID(g.GetId())); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("Grant of an id in use: %v, want FailedPrecondition", err)
	}
	if _, err := cli.Grant(ctx, 1); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Grant below the minimum TTL: %v, want InvalidArgument", err)
	}
	if _, err := cli.Grant(ctx, 0); err == nil {
		t.Error("Grant of TTL 0 succeeded")
	}
	if _, err := cli.Put(ctx, "k", "v", client.WithLease(g.GetId())); err != nil {
		t.Fatal(err)
	}
	ttl, err := cli.TimeToLive(ctx, g.GetId(), client.WithAttachedKeys())
	if err != nil || ttl.GetGrantedTtl() != 30 || ttl.GetTtl() <= 0 || len(ttl.GetKeys()) != 1 || string(ttl.GetKeys()[0]) != "k" {
		t.Fatalf("TimeToLive: %v, %v", ttl, err)
	}
	ls, err := cli.Leases(ctx)
	if err != nil || len(ls.GetLeases()) != 1 || ls.GetLeases()[0].GetId() != g.GetId() {
		t.Fatalf("Leases: %v, %v", ls, err)
	}
	ka, err := cli.KeepAliveOnce(ctx, g.GetId())
	if err != nil || ka.GetTtl() != 30 || time.Until(ka.Deadline) < 25*time.Second {
		t.Fatalf("KeepAliveOnce: %v, %v", ka, err)
	}
	rev, err := cli.Revoke(ctx, g.GetId())
	if err != nil {
		t.Fatal(err)
	}
	get, err := cli.Get(ctx, "k")
	if err != nil || len(get.GetKvs()) != 0 || get.GetHeader().GetRevision() < rev.GetHeader().GetRevision() {
		t.Fatalf("after Revoke, k: %v, %v", get, err)
	}
	if _, err := cli.Revoke(ctx, g.GetId()); !errors.Is(err, client.ErrLeaseNotFound) {
		t.Errorf("second Revoke: %v, want ErrLeaseNotFound", err)
	}
	if _, err := cli.KeepAliveOnce(ctx, g.GetId()); !errors.Is(err, client.ErrLeaseNotFound) {
		t.Errorf("KeepAliveOnce of a revoked lease: %v, want ErrLeaseNotFound", err)
	}
	if ttl, err := cli.TimeToLive(ctx, g.GetId()); err != nil || ttl.GetTtl() != -1 {
		t.Errorf("TimeToLive of a revoked lease: %v, %v; want TTL -1", ttl, err)
	}
	if _, err := cli.Put(ctx, "k", "v", client.WithLease(g.GetId())); status.Code(err) != codes.NotFound {
		t.Errorf("Put with a revoked lease: %v, want NotFound", err)
	}
}

// KeepAlive keeps a lease alive past its TTL, through the loss of the
// member its stream was on, and closes its channel when the lease goes.
func TestKeepAlive(t *testing.T) {
	t.Parallel()
	c, cli := clusterClient(t, 3)
	ctx := testCtx(t, 60*time.Second)
	g, err := cli.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "alive", "v", client.WithLease(g.GetId())); err != nil {
		t.Fatal(err)
	}
	kctx, stop := context.WithCancel(ctx)
	defer stop()
	ch, err := cli.KeepAlive(kctx, g.GetId())
	if err != nil {
		t.Fatal(err)
	}
	// A second channel for the same lease gets the same renewals.
	ch2, err := cli.KeepAlive(ctx, g.GetId())
	if err != nil {
		t.Fatal(err)
	}
	renewals := func(n int, within time.Duration) {
		t.Helper()
		timeout := time.After(within)
		for i := 0; i < n; i++ {
			select {
			case r, ok := <-ch:
				if !ok {
					t.Fatalf("keep-alive channel closed after %d renewals", i)
				}
				if r.GetTtl() != 2 || time.Until(r.Deadline) > 2*time.Second {
					t.Fatalf("renewal %v, deadline in %s", r, time.Until(r.Deadline))
				}
			case <-timeout:
				t.Fatalf("%d renewals of %d within %s", i, n, within)
			}
		}
	}
	renewals(6, 20*time.Second) // about 4 s: twice the TTL
	// Stop the members one by one but the last: the stream moves.
	for _, name := range c.Names()[:1] {
		c.Stop(name)
		renewals(6, 30*time.Second)
	}
	if get, err := cli.Get(ctx, "alive"); err != nil || len(get.GetKvs()) != 1 {
		t.Fatalf("the kept-alive lease's key: %v, %v", get, err)
	}
	stop() // the first channel closes; the second keeps the lease alive
	for range ch {
	}
	if _, err := cli.Revoke(ctx, g.GetId()); err != nil {
		t.Fatal(err)
	}
	select {
	case _, ok := <-ch2:
		for ok {
			_, ok = <-ch2
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the revoked lease's channel did not close")
	}
}

// A lease revoked by someone else: its keep-alive channel closes once the
// cluster answers a renewal with ttl 0.
func TestKeepAliveOfALeaseRevokedElsewhere(t *testing.T) {
	t.Parallel()
	_, cli := clusterClient(t, 1)
	ctx := testCtx(t, 30*time.Second)
	g, err := cli.Grant(ctx, 3)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := cli.KeepAlive(ctx, g.GetId())
	if err != nil {
		t.Fatal(err)
	}
	<-ch
	other, err := client.New(client.Config{Endpoints: cli.Endpoints()})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if _, err := other.Revoke(ctx, g.GetId()); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-ch:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the channel of a lease revoked elsewhere did not close")
		}
	}
}
