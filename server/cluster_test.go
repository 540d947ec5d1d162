package server_test

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/server"
	"github.com/kvd-io/kvd/server/servertest"
)

// skipIfShort skips a slow test (a long fault schedule, heavy load, many
// seconds of waiting) under -short: make check's inner loop leaves it to
// make test.
func skipIfShort(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("slow: not with -short")
	}
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func put(t *testing.T, c *servertest.Cluster, member, key, val string) *kvv1.PutResponse {
	t.Helper()
	// Retry what certainly was not applied, as the client SDK does: an
	// election can happen at any time on a loaded test machine.
	var resp *kvv1.PutResponse
	c.Eventually(20*time.Second, func() error {
		var err error
		resp, err = c.KV(member).Put(ctxT(t, 10*time.Second), &kvv1.PutRequest{Key: []byte(key), Value: []byte(val)})
		if err != nil && !apierr.IsNotApplied(err) {
			t.Fatalf("put %s=%s via %s: %v", key, val, member, err)
		}
		return err
	})
	return resp
}

func get(ctx context.Context, c *servertest.Cluster, member, key string, serializable bool) (*kvv1.RangeResponse, error) {
	return c.KV(member).Range(ctx, &kvv1.RangeRequest{Key: []byte(key), Serializable: serializable})
}

func others(c *servertest.Cluster, not string) []string {
	var out []string
	for _, n := range c.Names() {
		if n != not {
			out = append(out, n)
		}
	}
	return out
}

func TestElectionReplicationAndForwarding(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)

	// Write through every member: followers forward to the leader.
	var lastRev int64
	for i, name := range c.Names() {
		resp := put(t, c, name, fmt.Sprintf("k%d", i), fmt.Sprintf("v%d-%s", i, name))
		if resp.GetHeader().GetRevision() <= lastRev {
			t.Fatalf("revision did not move forward: %d after %d", resp.GetHeader().GetRevision(), lastRev)
		}
		lastRev = resp.GetHeader().GetRevision()
		if resp.GetHeader().GetMemberId() == 0 || resp.GetHeader().GetClusterId() == 0 || resp.GetHeader().GetRaftTerm() == 0 {
			t.Fatalf("incomplete header: %v", resp.GetHeader())
		}
	}
	// A linearizable read on any member sees every acknowledged write, at
	// once, with no waiting for replication.
	for _, name := range c.Names() {
		for i, writer := range c.Names() {
			resp, err := get(ctxT(t, 10*time.Second), c, name, fmt.Sprintf("k%d", i), false)
			if err != nil {
				t.Fatalf("get via %s: %v", name, err)
			}
			want := fmt.Sprintf("v%d-%s", i, writer)
			if len(resp.GetKvs()) != 1 || string(resp.GetKvs()[0].GetValue()) != want {
				t.Fatalf("get k%d via %s = %v, want %q", i, name, resp.GetKvs(), want)
			}
			if resp.GetHeader().GetRevision() < lastRev {
				t.Fatalf("read via %s at revision %d, before the last write %d", name, resp.GetHeader().GetRevision(), lastRev)
			}
		}
	}
	// Every member reports the same cluster id and the same leader.
	var clusterID uint64
	for _, name := range c.Names() {
		st, err := c.Maintenance(name).Status(ctxT(t, 5*time.Second), &kvv1.StatusRequest{})
		if err != nil {
			t.Fatal(err)
		}
		if clusterID == 0 {
			clusterID = st.GetHeader().GetClusterId()
		}
		if st.GetHeader().GetClusterId() != clusterID {
			t.Fatalf("%s reports cluster %x, want %x", name, st.GetHeader().GetClusterId(), clusterID)
		}
		if st.GetLeaderName() != leader {
			t.Fatalf("%s reports leader %q, want %q", name, st.GetLeaderName(), leader)
		}
		if st.GetIsLearner() || st.GetName() != name {
			t.Fatalf("bad status %v", st)
		}
	}
	// Member list carries every member's published client address.
	c.Eventually(10*time.Second, func() error {
		ml, err := c.ClusterClient(leader).MemberList(ctxT(t, 5*time.Second), &kvv1.MemberListRequest{})
		if err != nil {
			return err
		}
		if len(ml.GetMembers()) != 3 {
			return fmt.Errorf("%d members", len(ml.GetMembers()))
		}
		for _, m := range ml.GetMembers() {
			if m.GetClientAddr() != c.Member(m.GetName()).Server.ClientAddr() {
				return fmt.Errorf("member %s client addr %q", m.GetName(), m.GetClientAddr())
			}
			if m.GetIsLeader() != (m.GetName() == leader) {
				return fmt.Errorf("member %s is_leader=%v", m.GetName(), m.GetIsLeader())
			}
		}
		return nil
	})
	c.WaitConverged(10 * time.Second)
}

// A leader cut off from its followers must not answer a linearizable read
// once the others have elected a new leader and accepted a newer write. A
// member that served linearizable reads from local state would return the
// old value here.
func TestIsolatedLeaderServesNoStaleLinearizableRead(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	old := c.Leader(20 * time.Second)
	put(t, c, old, "x", "old")

	c.Isolate(old)
	rest := others(c, old)
	newLeader := c.Leader(20*time.Second, rest...)
	put(t, c, newLeader, "x", "new")

	// The old leader may still believe it leads for a moment; whatever it
	// believes, it must not answer "old". It answers before the call's
	// deadline, with Unavailable ("no leader"), so that clients move on.
	for i := 0; i < 5; i++ {
		start := time.Now()
		resp, err := get(ctxT(t, 2*time.Second), c, old, "x", false)
		if err == nil {
			t.Fatalf("isolated former leader served a linearizable read: %v", resp.GetKvs())
		}
		if status.Code(err) != codes.Unavailable {
			t.Errorf("read %d on the isolated former leader failed with %v, want Unavailable", i, err)
		}
		if took := time.Since(start); took >= 2*time.Second {
			t.Errorf("read %d answered after %v, not before its 2s deadline", i, took)
		}
	}
	// A serializable read is allowed to be stale, and is.
	resp, err := get(ctxT(t, 2*time.Second), c, old, "x", true)
	if err != nil {
		t.Fatalf("serializable read on isolated member: %v", err)
	}
	if got := string(resp.GetKvs()[0].GetValue()); got != "old" {
		t.Fatalf("serializable read on isolated member = %q; the partition did not hold", got)
	}

	c.Heal()
	c.Eventually(20*time.Second, func() error {
		resp, err := get(ctxT(t, 2*time.Second), c, old, "x", false)
		if err != nil {
			return err
		}
		if got := string(resp.GetKvs()[0].GetValue()); got != "new" {
			return fmt.Errorf("healed member reads %q", got)
		}
		return nil
	})
	c.WaitConverged(10 * time.Second)
}

func TestLeaderStopWritesContinueAndRestartCatchesUp(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	old := c.Leader(20 * time.Second)
	for i := 0; i < 20; i++ {
		put(t, c, old, fmt.Sprintf("a%02d", i), "1")
	}
	c.Stop(old)
	rest := others(c, old)
	newLeader := c.Leader(20*time.Second, rest...)
	for i := 0; i < 20; i++ {
		put(t, c, rest[i%2], fmt.Sprintf("b%02d", i), "2")
	}
	_ = newLeader
	c.Start(old)
	c.WaitConverged(20 * time.Second)
	resp, err := c.KV(old).Range(ctxT(t, 10*time.Second), &kvv1.RangeRequest{Key: []byte("a"), RangeEnd: []byte("c")})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetCount() != 40 {
		t.Fatalf("restarted member sees %d keys, want 40", resp.GetCount())
	}
}

func TestWholeClusterRestartKeepsEveryWrite(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	c.Leader(20 * time.Second)
	for i := 0; i < 30; i++ {
		putSettled(t, c, c.Names()[i%3], fmt.Sprintf("k%02d", i), fmt.Sprintf("v%d", i))
	}
	// What the cluster holds before the restart, read linearizably: every
	// acknowledged write is in it, at the revision it was acknowledged at.
	before := rangeAll(t, c, c.Names()[0], "k", "l")
	if len(before) != 30 {
		t.Fatalf("%d keys before restart, want 30", len(before))
	}
	for i, kv := range before {
		if string(kv.GetValue()) != fmt.Sprintf("v%d", i) {
			t.Fatalf("before restart: %s=%s, want v%d", kv.GetKey(), kv.GetValue(), i)
		}
	}
	for _, n := range c.Names() {
		c.Stop(n)
	}
	for _, n := range c.Names() {
		c.Start(n)
	}
	c.WaitReady(30 * time.Second)
	for _, n := range c.Names() {
		after := rangeAll(t, c, n, "k", "l")
		if len(after) != len(before) {
			t.Fatalf("%s has %d keys after restart, want %d", n, len(after), len(before))
		}
		for i, kv := range after {
			want := before[i]
			if string(kv.GetKey()) != string(want.GetKey()) || string(kv.GetValue()) != string(want.GetValue()) ||
				kv.GetModRevision() != want.GetModRevision() {
				t.Fatalf("%s: %s=%s@%d after restart, want %s=%s@%d", n, kv.GetKey(), kv.GetValue(), kv.GetModRevision(),
					want.GetKey(), want.GetValue(), want.GetModRevision())
			}
		}
	}
	c.WaitConverged(20 * time.Second)
}

// putSettled writes key=val through member until a put is acknowledged,
// retrying also when the outcome of an attempt is unknown (a leader lost
// while committing, on a loaded machine): the value is the same each time,
// so a retried put changes only the revision, which callers read back.
func putSettled(t *testing.T, c *servertest.Cluster, member, key, val string) {
	t.Helper()
	c.Eventually(30*time.Second, func() error {
		_, err := c.KV(member).Put(ctxT(t, 10*time.Second), &kvv1.PutRequest{Key: []byte(key), Value: []byte(val)})
		if err != nil && status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded {
			t.Fatalf("put %s=%s via %s: %v", key, val, member, err)
		}
		return err
	})
}

// rangeAll reads [key, end) linearizably through member, retrying while no
// leader can confirm the read.
func rangeAll(t *testing.T, c *servertest.Cluster, member, key, end string) []*kvv1.KeyValue {
	t.Helper()
	var kvs []*kvv1.KeyValue
	c.Eventually(30*time.Second, func() error {
		resp, err := c.KV(member).Range(ctxT(t, 10*time.Second), &kvv1.RangeRequest{Key: []byte(key), RangeEnd: []byte(end)})
		if err != nil {
			if status.Code(err) != codes.Unavailable && status.Code(err) != codes.DeadlineExceeded {
				t.Fatalf("range %s..%s via %s: %v", key, end, member, err)
			}
			return err
		}
		kvs = resp.GetKvs()
		return nil
	})
	return kvs
}

func TestErrorsAreClearStatusCodes(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3, servertest.WithConfig(func(cfg *server.Config) { cfg.MaxRequestBytes = 64 * 1024 }))
	leader := c.Leader(20 * time.Second)
	follower := others(c, leader)[0]
	kv := c.KV(follower)
	ctx := ctxT(t, 10*time.Second)

	cases := []struct {
		name string
		call func() error
		code codes.Code
	}{
		{"put empty key", func() error { _, err := kv.Put(ctx, &kvv1.PutRequest{Value: []byte("v")}); return err }, codes.InvalidArgument},
		{"range empty key", func() error { _, err := kv.Range(ctx, &kvv1.RangeRequest{}); return err }, codes.InvalidArgument},
		{"range end before key", func() error {
			_, err := kv.Range(ctx, &kvv1.RangeRequest{Key: []byte("b"), RangeEnd: []byte("a")})
			return err
		}, codes.InvalidArgument},
		{"delete end before key", func() error {
			_, err := kv.DeleteRange(ctx, &kvv1.DeleteRangeRequest{Key: []byte("b"), RangeEnd: []byte("a")})
			return err
		}, codes.InvalidArgument},
		{"request too large", func() error {
			_, err := kv.Put(ctx, &kvv1.PutRequest{Key: []byte("big"), Value: bytes.Repeat([]byte("x"), 100*1024)})
			return err
		}, codes.InvalidArgument},
		{"future revision", func() error {
			_, err := kv.Range(ctx, &kvv1.RangeRequest{Key: []byte("a"), Revision: 1 << 40})
			return err
		}, codes.OutOfRange},
		{"unknown lease", func() error {
			_, err := kv.Put(ctx, &kvv1.PutRequest{Key: []byte("a"), Lease: 42})
			return err
		}, codes.NotFound},
		{"txn duplicate key", func() error {
			p := &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestPut{RequestPut: &kvv1.PutRequest{Key: []byte("d")}}}
			_, err := kv.Txn(ctx, &kvv1.TxnRequest{Success: []*kvv1.RequestOp{p, p}})
			return err
		}, codes.InvalidArgument},
		{"txn empty op", func() error {
			_, err := kv.Txn(ctx, &kvv1.TxnRequest{Success: []*kvv1.RequestOp{{}}})
			return err
		}, codes.InvalidArgument},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if status.Code(err) != tc.code {
				t.Fatalf("got %v, want code %s", err, tc.code)
			}
			if st, _ := status.FromError(err); st.Message() == "" {
				t.Fatal("error has no message")
			}
		})
	}
	// None of the rejected requests changed anything.
	resp, err := kv.Range(ctx, &kvv1.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetCount() != 0 {
		t.Fatalf("rejected requests wrote %d keys", resp.GetCount())
	}
}

func TestNoQuorumIsUnavailableAndNotApplied(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	survivor := others(c, leader)[0]
	// Stop everyone but one follower: it can find no leader.
	for _, n := range c.Names() {
		if n != survivor {
			c.Stop(n)
		}
	}
	c.Eventually(20*time.Second, func() error {
		_, err := c.KV(survivor).Put(ctxT(t, 3*time.Second), &kvv1.PutRequest{Key: []byte("k"), Value: []byte("v")})
		if status.Code(err) != codes.Unavailable || !apierr.IsNotApplied(err) {
			return fmt.Errorf("put without quorum: %v", err)
		}
		_, err = c.KV(survivor).Range(ctxT(t, 3*time.Second), &kvv1.RangeRequest{Key: []byte("k")})
		if status.Code(err) != codes.Unavailable {
			return fmt.Errorf("linearizable read without quorum: %v", err)
		}
		return nil
	})
	// Serializable reads still work from local state.
	if _, err := get(ctxT(t, 3*time.Second), c, survivor, "k", true); err != nil {
		t.Fatalf("serializable read without quorum: %v", err)
	}
}

func TestWriteWithShortDeadlineOnIsolatedLeaderIsNotReportedApplied(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	c.Isolate(leader)
	_, err := c.KV(leader).Put(ctxT(t, 200*time.Millisecond), &kvv1.PutRequest{Key: []byte("k"), Value: []byte("v")})
	switch status.Code(err) {
	case codes.DeadlineExceeded, codes.Unknown:
		// The write may sit in the isolated leader's log: outcome unknown.
	case codes.Unavailable:
		if !apierr.IsNotApplied(err) {
			t.Fatalf("unavailable without the not-applied mark: %v", err)
		}
	default:
		t.Fatalf("write on isolated leader: %v", err)
	}
	c.Heal()
	c.WaitReady(20 * time.Second)
}

// Followers learn that a write committed as soon as the leader applies it,
// not with raft's next append, which comes only after CommitTimeout of
// quiet (here a minute): their serializable reads and watchers see the
// write well before.
func TestFollowersApplyWithoutWaitingForCommitTimeout(t *testing.T) {
	c := servertest.New(t, 3, servertest.WithConfig(func(cfg *server.Config) { cfg.CommitTimeout = time.Minute }))
	leader := c.Leader(20 * time.Second)
	for i := range 3 {
		key := fmt.Sprintf("quiet%d", i)
		put(t, c, leader, key, "v")
		start := time.Now()
		for _, name := range others(c, leader) {
			for {
				resp, err := get(ctxT(t, 10*time.Second), c, name, key, true)
				if err != nil {
					t.Fatalf("serializable get via %s: %v", name, err)
				}
				if len(resp.GetKvs()) == 1 {
					break
				}
				// A minute is CommitTimeout; a loaded machine needs far less.
				if time.Since(start) > 20*time.Second {
					t.Fatalf("follower %s has not applied %s %v after the leader acknowledged it", name, key, time.Since(start))
				}
				time.Sleep(5 * time.Millisecond)
			}
		}
	}
}

// A write answered by a follower (which forwarded it to the leader) is
// seen by a serializable read of that follower made right after: the
// follower answers only once it has applied the write itself, as an etcd
// member does. Puts, deletes, transactions and lease revocations alike.
func TestFollowerReadsItsOwnWrites(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	leader := c.Leader(30 * time.Second)
	f := others(c, leader)[0]
	ctx := ctxT(t, 60*time.Second)
	kv := c.KV(f)
	for i := range 100 {
		key := fmt.Sprintf("ryw/%d", i%10)
		var rev int64
		switch i % 3 {
		case 0, 1:
			resp := put(t, c, f, key, fmt.Sprint(i))
			rev = resp.GetHeader().GetRevision()
		case 2:
			resp, err := kv.Txn(ctx, &kvv1.TxnRequest{Success: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestPut{
				RequestPut: &kvv1.PutRequest{Key: []byte(key), Value: []byte(fmt.Sprint(i))}}}}})
			if err != nil {
				t.Fatalf("txn via %s: %v", f, err)
			}
			rev = resp.GetHeader().GetRevision()
		}
		got, err := get(ctx, c, f, key, true)
		if err != nil {
			t.Fatalf("serializable get via %s: %v", f, err)
		}
		if got.GetHeader().GetRevision() < rev || len(got.GetKvs()) != 1 || string(got.GetKvs()[0].GetValue()) != fmt.Sprint(i) {
			t.Fatalf("write %d acknowledged at revision %d by %s; its serializable read then: revision %d, %v", i, rev, f, got.GetHeader().GetRevision(), got.GetKvs())
		}
	}
	if _, err := kv.DeleteRange(ctx, &kvv1.DeleteRangeRequest{Key: []byte("ryw/0")}); err != nil {
		t.Fatal(err)
	}
	if got, err := get(ctx, c, f, "ryw/0", true); err != nil || len(got.GetKvs()) != 0 {
		t.Fatalf("serializable get via %s after its delete: %v, %v", f, got.GetKvs(), err)
	}
	for i := range 20 {
		grant, err := leases(c, f).LeaseGrant(ctx, &kvv1.LeaseGrantRequest{Ttl: 600})
		if err != nil {
			t.Fatal(err)
		}
		key := fmt.Sprintf("ryw/lease/%d", i)
		if _, err := kv.Put(ctx, &kvv1.PutRequest{Key: []byte(key), Value: []byte("v"), Lease: grant.GetId()}); err != nil {
			t.Fatal(err)
		}
		if _, err := leases(c, f).LeaseRevoke(ctx, &kvv1.LeaseRevokeRequest{Id: grant.GetId()}); err != nil {
			t.Fatal(err)
		}
		if got, err := get(ctx, c, f, key, true); err != nil || len(got.GetKvs()) != 0 {
			t.Fatalf("serializable get via %s after its lease revocation: %v, %v", f, got.GetKvs(), err)
		}
	}
}
