package etcdapi_test

import (
	"context"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
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

// checkHeader fails unless h is a header of member name of c, as etcd
// fills one: the cluster's id, the member's id, a revision and a term.
func checkHeader(t *testing.T, what string, c *servertest.Cluster, name string, h *pb.ResponseHeader) {
	t.Helper()
	if h == nil || h.ClusterId == 0 || h.MemberId != c.Member(name).Server.ID() || h.Revision == 0 || h.RaftTerm == 0 {
		t.Errorf("%s: header %+v, want the cluster id, %s's id %x, a revision and a raft term", what, h, name, c.Member(name).Server.ID())
	}
}
