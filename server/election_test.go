package server_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/server/servertest"
)

func elections(t *testing.T, c *servertest.Cluster, member string) kvv1.ElectionServiceClient {
	return kvv1.NewElectionServiceClient(retryingConn(t, c, member))
}

type campaignResult struct {
	resp *kvv1.CampaignResponse
	err  error
}

func campaignAsync(ctx context.Context, t *testing.T, c *servertest.Cluster, member, name string, lease int64, val string) <-chan campaignResult {
	ch := make(chan campaignResult, 1)
	ec := elections(t, c, member)
	go func() {
		resp, err := ec.Campaign(ctx, &kvv1.CampaignRequest{Name: []byte(name), Lease: lease, Value: []byte(val)})
		ch <- campaignResult{resp, err}
	}()
	return ch
}

// observe follows an election through member, sending what it sees as
// "key=value@revision" until ctx ends. When the stream fails Unavailable (a
// leader change under load), it observes again, skipping what it has sent,
// as the Go client does.
func observe(t *testing.T, ctx context.Context, c *servertest.Cluster, member, name string) <-chan string {
	t.Helper()
	ec := elections(t, c, member)
	ch := make(chan string, 100)
	go func() {
		defer close(ch)
		var lastKey string
		var lastMod int64
		for ctx.Err() == nil {
			st, err := ec.Observe(ctx, &kvv1.ObserveRequest{Name: []byte(name)})
			for err == nil {
				var r *kvv1.ObserveResponse
				if r, err = st.Recv(); err != nil {
					break
				}
				kv := r.GetKv()
				if string(kv.GetKey()) == lastKey && kv.GetModRevision() <= lastMod {
					continue
				}
				lastKey, lastMod = string(kv.GetKey()), kv.GetModRevision()
				ch <- fmt.Sprintf("%s=%s@%d", kv.GetKey(), kv.GetValue(), r.GetHeader().GetRevision())
			}
			if status.Code(err) != codes.Unavailable {
				return
			}
		}
	}()
	return ch
}

// leaderValue reads the election's leader through member.
func leaderValue(t *testing.T, ctx context.Context, c *servertest.Cluster, member, name string) (key, value string) {
	t.Helper()
	resp, err := elections(t, c, member).Leader(ctx, &kvv1.LeaderRequest{Name: []byte(name)})
	if err != nil {
		t.Fatalf("leader of %s: %v", name, err)
	}
	return string(resp.GetKv().GetKey()), string(resp.GetKv().GetValue())
}

// Campaign waits its turn; Proclaim, Leader and Resign act on the current
// leadership only; Observe sees every leader and proposal, in order.
func TestElection(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	follower := c.Names()[0]
	if follower == leader {
		follower = c.Names()[1]
	}
	ctx := ctxT(t, 90*time.Second)
	a, b := grant(t, c, leader, 0, 60), grant(t, c, follower, 0, 60)
	octx, stopObserving := context.WithCancel(ctx)
	defer stopObserving()
	seen := observe(t, octx, c, follower, "sched")

	won, err := elections(t, c, follower).Campaign(ctx, &kvv1.CampaignRequest{Name: []byte("sched"), Lease: a, Value: []byte("a1")})
	if err != nil {
		t.Fatal(err)
	}
	la := won.GetLeader()
	if string(la.GetName()) != "sched" || string(la.GetKey()) != queueKeyOf("sched", a) || la.GetRev() <= 0 || la.GetLease() != a {
		t.Fatalf("leader key %v", la)
	}
	if k, v := leaderValue(t, ctx, c, leader, "sched"); k != string(la.GetKey()) || v != "a1" {
		t.Fatalf("leader %s=%s, want %s=a1", k, v, la.GetKey())
	}

	second := campaignAsync(ctx, t, c, leader, "sched", b, "b1")
	waitQueued(t, c, leader, "sched", b)
	notYet(t, second, "second campaign")
	if _, err := elections(t, c, leader).Proclaim(ctx, &kvv1.ProclaimRequest{Leader: la, Value: []byte("a2")}); err != nil {
		t.Fatal(err)
	}
	if _, v := leaderValue(t, ctx, c, follower, "sched"); v != "a2" {
		t.Fatalf("leader's value after Proclaim: %q", v)
	}
	notYet(t, second, "second campaign")

	if _, err := elections(t, c, follower).Resign(ctx, &kvv1.ResignRequest{Leader: la}); err != nil {
		t.Fatal(err)
	}
	r := receive(t, second, "second campaign")
	if r.err != nil || r.resp.GetLeader().GetRev() <= la.GetRev() {
		t.Fatalf("second campaign: %v, %v", r.resp, r.err)
	}
	lb := r.resp.GetLeader()
	// The old leadership can neither proclaim nor resign the new one.
	if _, err := elections(t, c, leader).Proclaim(ctx, &kvv1.ProclaimRequest{Leader: la, Value: []byte("a3")}); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("proclaim after resigning: %v, want FailedPrecondition", err)
	}
	if _, err := elections(t, c, leader).Resign(ctx, &kvv1.ResignRequest{Leader: la}); err != nil {
		t.Fatalf("resign twice: %v", err)
	}
	// Campaigning again while leading keeps the place, with the new value.
	again, err := elections(t, c, leader).Campaign(ctx, &kvv1.CampaignRequest{Name: []byte("sched"), Lease: b, Value: []byte("b2")})
	if err != nil || again.GetLeader().GetRev() != lb.GetRev() {
		t.Fatalf("campaign again while leading: %v, %v (rev %d)", again, err, lb.GetRev())
	}
	if k, v := leaderValue(t, ctx, c, leader, "sched"); k != string(lb.GetKey()) || v != "b2" {
		t.Fatalf("leader %s=%s, want %s=b2", k, v, lb.GetKey())
	}
	// The leader's lease ends: nobody leads.
	if _, err := kvv1.NewLeaseServiceClient(retryingConn(t, c, leader)).LeaseRevoke(ctx, &kvv1.LeaseRevokeRequest{Id: b}); err != nil {
		t.Fatal(err)
	}
	if _, err := elections(t, c, follower).Leader(ctx, &kvv1.LeaderRequest{Name: []byte("sched")}); status.Code(err) != codes.NotFound {
		t.Fatalf("leader after the last candidate's lease ended: %v, want NotFound", err)
	}
	// A new candidate leads at once, and the observer sees it too.
	d := grant(t, c, leader, 0, 60)
	third, err := elections(t, c, follower).Campaign(ctx, &kvv1.CampaignRequest{Name: []byte("sched"), Lease: d, Value: []byte("d1")})
	if err != nil {
		t.Fatal(err)
	}

	want := []string{"a1", "a2", "b1", "b2", "d1"}
	keys := []string{string(la.GetKey()), string(la.GetKey()), string(lb.GetKey()), string(lb.GetKey()), string(third.GetLeader().GetKey())}
	var lastRev int64
	for i, w := range want {
		var got string
		select {
		case got = <-seen:
		case <-time.After(30 * time.Second):
			t.Fatalf("observer saw only %d leaders; missing %s", i, w)
		}
		var key, val string
		var rev int64
		if _, err := fmt.Sscanf(replaceSep(got), "%s %s %d", &key, &val, &rev); err != nil {
			t.Fatalf("observed %q: %v", got, err)
		}
		if key != keys[i] || val != w || rev <= lastRev {
			t.Fatalf("observation %d: %q, want %s=%s after revision %d", i, got, keys[i], w, lastRev)
		}
		lastRev = rev
	}
	select {
	case extra := <-seen:
		t.Fatalf("observer saw more: %q", extra)
	default:
	}
}

// replaceSep turns "key=value@rev" into "key value rev" for Sscanf.
func replaceSep(s string) string {
	out := []byte(s)
	for i, ch := range out {
		if ch == '=' || ch == '@' {
			out[i] = ' '
		}
	}
	return string(out)
}

// A candidate whose lease is revoked while it waits gets an error, not the
// leadership.
func TestCampaignLeaseRevokedWhileWaiting(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 1)
	m := c.Leader(20 * time.Second)
	ctx := ctxT(t, 60*time.Second)
	a, b := grant(t, c, m, 0, 60), grant(t, c, m, 0, 60)
	if _, err := elections(t, c, m).Campaign(ctx, &kvv1.CampaignRequest{Name: []byte("e"), Lease: a, Value: []byte("a")}); err != nil {
		t.Fatal(err)
	}
	waiting := campaignAsync(ctx, t, c, m, "e", b, "b")
	waitQueued(t, c, m, "e", b)
	if _, err := kvv1.NewLeaseServiceClient(retryingConn(t, c, m)).LeaseRevoke(ctx, &kvv1.LeaseRevokeRequest{Id: b}); err != nil {
		t.Fatal(err)
	}
	if r := receive(t, waiting, "campaign of the revoked lease"); status.Code(r.err) != codes.NotFound {
		t.Fatalf("campaign whose lease was revoked while waiting: %v, %v; want NotFound", r.resp, r.err)
	}
	if _, v := leaderValue(t, ctx, c, m, "e"); v != "a" {
		t.Fatalf("leader's value %q, want a", v)
	}
}
