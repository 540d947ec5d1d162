package etcdapi_test

import (
	"context"
	"testing"
	"time"

	"go.etcd.io/etcd/client/v3/concurrency"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/etcdapi/proto/v3electionpb"
	"github.com/kvd-io/kvd/server/servertest"
)

// observed is the value of the next leader an Observe stream sends.
func observed(t *testing.T, obs grpc.ServerStreamingClient[v3electionpb.LeaderResponse]) string {
	t.Helper()
	type result struct {
		resp *v3electionpb.LeaderResponse
		err  error
	}
	ch := make(chan result, 1)
	go func() {
		resp, err := obs.Recv()
		ch <- result{resp, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("observe: %v", r.err)
		}
		return string(r.resp.Kv.Value)
	case <-time.After(30 * time.Second):
		t.Fatal("observe: nothing in 30 s")
		return ""
	}
}

// TestElectionFailover: through etcd's v3election service on two
// members, a second candidate takes over when the leader resigns, and a
// third when the second's lease is revoked; an observer on a third
// member sees each leader and proclamation in order, and clientv3's
// concurrency.Election agrees on who leads.
func TestElectionFailover(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	names := c.Names()
	ctx := ctxT(t)
	cli1, cli2, cli3 := newClient(t, c, names[0]), newClient(t, c, names[1]), newClient(t, c, names[2])
	ec1 := v3electionpb.NewElectionClient(cli1.ActiveConnection())
	ec2 := v3electionpb.NewElectionClient(cli2.ActiveConnection())
	ec3 := v3electionpb.NewElectionClient(cli3.ActiveConnection())
	s1, s2, s3 := newSession(t, cli1), newSession(t, cli2), newSession(t, cli3)
	name := []byte("scheduler")

	first, err := ec1.Campaign(ctx, &v3electionpb.CampaignRequest{Name: name, Lease: int64(s1.Lease()), Value: []byte("a")})
	if err != nil {
		t.Fatalf("first campaign: %v", err)
	}
	obsCtx, stopObserving := context.WithCancel(ctx)
	defer stopObserving()
	obs, err := ec3.Observe(obsCtx, &v3electionpb.LeaderRequest{Name: name})
	if err != nil {
		t.Fatal(err)
	}
	if v := observed(t, obs); v != "a" {
		t.Fatalf("observed %q first, want the leader a", v)
	}

	second := make(chan *v3electionpb.CampaignResponse, 1)
	campaignErr := make(chan error, 1)
	go func() {
		resp, err := ec2.Campaign(ctx, &v3electionpb.CampaignRequest{Name: name, Lease: int64(s2.Lease()), Value: []byte("b")})
		campaignErr <- err
		second <- resp
	}()
	if _, err := ec1.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: first.Leader, Value: []byte("a2")}); err != nil {
		t.Fatalf("proclaim: %v", err)
	}
	if v := observed(t, obs); v != "a2" {
		t.Fatalf("observed %q after the proclamation, want a2", v)
	}
	e := concurrency.NewElection(s3, string(name))
	if l, err := e.Leader(ctx); err != nil || string(l.Kvs[0].Value) != "a2" {
		t.Fatalf("clientv3's election sees %v, %v: want a2", l, err)
	}

	if _, err := ec1.Resign(ctx, &v3electionpb.ResignRequest{Leader: first.Leader}); err != nil {
		t.Fatalf("resign: %v", err)
	}
	if err := <-campaignErr; err != nil {
		t.Fatalf("second campaign: %v", err)
	}
	next := <-second
	if next.Leader.Rev <= first.Leader.Rev {
		t.Fatalf("second leadership at revision %d, not after the first's %d", next.Leader.Rev, first.Leader.Rev)
	}
	if v := observed(t, obs); v != "b" {
		t.Fatalf("observed %q after the resignation, want b", v)
	}
	_, err = ec1.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: first.Leader, Value: []byte("stale")})
	if status.Code(err) != codes.Unknown || status.Convert(err).Message() != concurrency.ErrElectionNotLeader.Error() {
		t.Fatalf("proclaim by a resigned leader: %v, want etcd's %q", err, concurrency.ErrElectionNotLeader)
	}

	// The leader's lease ends (its session is revoked): the clientv3
	// candidate, waiting on another member, leads next.
	third := make(chan error, 1)
	go func() { third <- e.Campaign(ctx, "c") }()
	if err := s2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-third; err != nil {
		t.Fatalf("clientv3 campaign: %v", err)
	}
	if v := observed(t, obs); v != "c" {
		t.Fatalf("observed %q after the leader's lease ended, want c", v)
	}
	l, err := ec2.Leader(ctx, &v3electionpb.LeaderRequest{Name: name})
	if err != nil || string(l.Kv.Value) != "c" || string(l.Kv.Key) != e.Key() {
		t.Fatalf("leader %v, %v: want c at %s", l, err, e.Key())
	}
	if err := e.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	_, err = ec2.Leader(ctx, &v3electionpb.LeaderRequest{Name: name})
	if status.Code(err) != codes.Unknown || status.Convert(err).Message() != concurrency.ErrElectionNoLeader.Error() {
		t.Fatalf("leader of an empty election: %v, want etcd's %q", err, concurrency.ErrElectionNoLeader)
	}
	_, err = ec2.Resign(ctx, &v3electionpb.ResignRequest{})
	if st := status.Convert(err); st.Code() != codes.InvalidArgument || st.Message() != `"leader" field must be provided` {
		t.Fatalf("resign without a leader key: %v", err)
	}
}
