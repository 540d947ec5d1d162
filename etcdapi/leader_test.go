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

// TestRequireLeader: with etcd's "hasleader" metadata
// (clientv3.WithRequireLeader), a member cut off from the others refuses
// calls with etcd's ErrNoLeader and ends its watches with it, so that
// clients move to a member with a leader; without it, a serializable read
// is still served.
func TestRequireLeader(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	f := follower(t, c)
	cli := newClient(t, c, f)
	ctx := ctxT(t)
	if _, err := cli.Put(ctx, "rl/a", "1"); err != nil {
		t.Fatal(err)
	}
	wch := cli.Watch(clientv3.WithRequireLeader(ctx), "rl/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if resp := next(t, wch); !resp.Created {
		t.Fatalf("first watch response %+v, want created", resp)
	}

	c.Isolate(f)
	defer c.Heal()
	poll.Eventually(t, 30*time.Second, func() error {
		_, err := cli.Get(clientv3.WithRequireLeader(ctx), "rl/a", clientv3.WithSerializable())
		if !errors.Is(err, rpctypes.ErrNoLeader) {
			return fmt.Errorf("serializable get requiring a leader: %v, want %v", err, rpctypes.ErrNoLeader)
		}
		return nil
	})
	if resp, err := cli.Get(ctx, "rl/a", clientv3.WithSerializable()); err != nil || resp.Count != 1 {
		t.Fatalf("serializable get without requiring a leader: %+v, %v", resp, err)
	}
	deadline := time.After(30 * time.Second)
	for {
		select {
		case resp, ok := <-wch:
			if !ok {
				t.Fatal("watch channel closed without an error")
			}
			if err := resp.Err(); err != nil {
				if !errors.Is(err, rpctypes.ErrNoLeader) {
					t.Fatalf("watch ended with %v, want %v", err, rpctypes.ErrNoLeader)
				}
				return
			}
		case <-deadline:
			t.Fatal("the watch requiring a leader did not end on an isolated member")
		}
	}
}
