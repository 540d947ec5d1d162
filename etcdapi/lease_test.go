package etcdapi_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvd-io/kvd/internal/poll"
	"github.com/kvd-io/kvd/server/servertest"
)

// TestLease: grant (a TTL below the minimum is raised to it, as etcd
// does), keys deleted when the lease expires, kept while it is kept
// alive, time to live with keys, the list, revocation; through a
// follower.
func TestLease(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	cli := newClient(t, c, follower(t, c))
	ctx := ctxT(t)

	short, err := cli.Grant(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if short.TTL < 1 {
		t.Fatalf("granted TTL %d", short.TTL)
	}
	if _, err := cli.Put(ctx, "l/expiring", "x", clientv3.WithLease(short.ID)); err != nil {
		t.Fatal(err)
	}
	kept, err := cli.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "l/kept", "x", clientv3.WithLease(kept.ID)); err != nil {
		t.Fatal(err)
	}
	ka, err := cli.KeepAlive(ctx, kept.ID)
	if err != nil {
		t.Fatal(err)
	}
	if resp := <-ka; resp == nil || resp.ID != kept.ID || resp.TTL != kept.TTL {
		t.Fatalf("first keep-alive: %+v, want lease %x renewed for %d s", resp, kept.ID, kept.TTL)
	}
	go func() {
		for range ka { // drain the renewals until the test ends
		}
	}()

	// The unrenewed lease expires and takes its key; the renewed one
	// outlives several of its TTLs.
	expireBy := time.Duration(short.TTL)*time.Second + 10*servertest.ElectionTimeout + 5*time.Second
	poll.Eventually(t, expireBy, func() error {
		resp, err := cli.Get(ctx, "l/expiring")
		if err != nil {
			return err
		}
		if resp.Count != 0 {
			return fmt.Errorf("l/expiring still there")
		}
		return nil
	})
	ttl, err := cli.TimeToLive(ctx, short.ID)
	if err != nil || ttl.TTL != -1 {
		t.Fatalf("time to live of the expired lease: %+v, %v; want TTL -1", ttl, err)
	}
	start := time.Now()
	poll.Eventually(t, time.Minute, func() error {
		if since := time.Since(start); since < 3*time.Duration(kept.TTL)*time.Second {
			return fmt.Errorf("only %v since the other lease expired", since)
		}
		return nil
	})
	resp, err := cli.Get(ctx, "l/kept")
	if err != nil || resp.Count != 1 {
		t.Fatalf("key of the kept-alive lease: %+v, %v", resp, err)
	}
	ttl, err = cli.TimeToLive(ctx, kept.ID, clientv3.WithAttachedKeys())
	if err != nil || ttl.GrantedTTL != kept.TTL || ttl.TTL <= 0 || len(ttl.Keys) != 1 || string(ttl.Keys[0]) != "l/kept" {
		t.Fatalf("time to live with keys: %+v, %v", ttl, err)
	}
	leases, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range leases.Leases {
		found = found || l.ID == kept.ID
	}
	if !found {
		t.Fatalf("leases %+v lack %x", leases.Leases, kept.ID)
	}

	if _, err := cli.Revoke(ctx, kept.ID); err != nil {
		t.Fatal(err)
	}
	if resp, err := cli.Get(ctx, "l/kept"); err != nil || resp.Count != 0 {
		t.Fatalf("after revoke: %+v, %v; want the key gone", resp, err)
	}
	if _, err := cli.KeepAliveOnce(ctx, kept.ID); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("keep alive a revoked lease: %v, want %v", err, rpctypes.ErrLeaseNotFound)
	}
	if _, err := cli.Grant(ctx, 9_000_000_001); !errors.Is(err, rpctypes.ErrLeaseTTLTooLarge) {
		t.Fatalf("grant too long: %v, want %v", err, rpctypes.ErrLeaseTTLTooLarge)
	}
}
