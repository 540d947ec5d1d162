package etcdapi_test

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/kvd-io/kvd/server/servertest"
)

// newClient is an etcd clientv3 client of the members named (every member
// when none is), closed when the test ends.
func newClient(t *testing.T, c *servertest.Cluster, names ...string) *clientv3.Client {
	t.Helper()
	return newClientWith(t, c, clientv3.Config{}, names...)
}

func newClientWith(t *testing.T, c *servertest.Cluster, cfg clientv3.Config, names ...string) *clientv3.Client {
	t.Helper()
	if len(names) == 0 {
		names = c.Names()
	}
	for _, n := range names {
		cfg.Endpoints = append(cfg.Endpoints, c.Member(n).Server.ClientAddr())
	}
	cfg.DialTimeout = 5 * time.Second
	cfg.Logger = zap.NewNop()
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// ctxT is a context that ends with the test, or after a minute.
func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// follower is the name of a member of c that does not lead.
func follower(t *testing.T, c *servertest.Cluster) string {
	t.Helper()
	leader := c.Leader(servertest.StartTimeout)
	for _, n := range c.Names() {
		if n != leader {
			return n
		}
	}
	t.Fatal("no follower")
	return ""
}
