package server_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/internal/poll"
	"github.com/kvd-io/kvd/member"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/server"
	"github.com/kvd-io/kvd/server/servertest"
)

func memberList(t *testing.T, c *servertest.Cluster, via string) map[string]*kvv1.Member {
	t.Helper()
	resp, err := c.ClusterClient(via).MemberList(ctxT(t, 5*time.Second), &kvv1.MemberListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*kvv1.Member{}
	for _, m := range resp.GetMembers() {
		out[m.GetName()] = m
	}
	return out
}

// waitHealthy waits until the leader sees every listed member healthy.
func waitHealthy(t *testing.T, c *servertest.Cluster, names ...string) {
	t.Helper()
	c.Eventually(20*time.Second, func() error {
		leader := c.Leader(20 * time.Second)
		ml := memberList(t, c, leader)
		for _, n := range names {
			if !ml[n].GetHealthy() {
				return fmt.Errorf("%s not healthy: %v", n, ml[n])
			}
		}
		return nil
	})
}

func countKeys(t *testing.T, c *servertest.Cluster, member string, serializable bool) int64 {
	t.Helper()
	resp, err := c.KV(member).Range(ctxT(t, 10*time.Second), &kvv1.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, CountOnly: true, Serializable: serializable})
	if err != nil {
		t.Fatalf("count via %s: %v", member, err)
	}
	return resp.GetCount()
}

func TestJoinAsLearnerCatchUpAndPromote(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3, servertest.WithConfig(func(cfg *server.Config) {
		cfg.SnapshotThreshold = 64 // so the learner must be sent a snapshot
		cfg.TrailingLogs = 16
	}))
	leader := c.Leader(20 * time.Second)
	for i := 0; i < 200; i++ {
		put(t, c, leader, fmt.Sprintf("k%03d", i), "v")
	}
	// Force a snapshot so that the log no longer starts at 1.
	if err := c.Member(leader).Server.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	c.Join("m4", true)
	c.Eventually(30*time.Second, func() error {
		if n := countKeys(t, c, "m4", true); n != 200 {
			return fmt.Errorf("learner has %d keys", n)
		}
		return nil
	})
	ml := memberList(t, c, leader)
	if m := ml["m4"]; m == nil || !m.GetIsLearner() || m.GetClientAddr() == "" {
		t.Fatalf("learner in member list: %v", m)
	}
	// A learner does not vote: the cluster is still 3 voters, and the
	// learner serves linearizable reads through the leader.
	if n := countKeys(t, c, "m4", false); n != 200 {
		t.Fatalf("learner linearizable count %d", n)
	}
	waitHealthy(t, c, "m4")
	if _, err := c.ClusterClient("m2").MemberPromote(ctxT(t, 10*time.Second), &kvv1.MemberPromoteRequest{Name: "m4"}); err != nil {
		t.Fatalf("promote via a follower: %v", err)
	}
	ml = memberList(t, c, leader)
	if ml["m4"].GetIsLearner() {
		t.Fatal("m4 still a learner after promotion")
	}
	// Promoting again is refused clearly.
	_, err := c.ClusterClient(leader).MemberPromote(ctxT(t, 10*time.Second), &kvv1.MemberPromoteRequest{Name: "m4"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("second promotion: %v", err)
	}
	c.WaitConverged(20 * time.Second)
}

func TestPromoteRefusedWhileLearnerLags(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	c.Join("m4", true)
	waitHealthy(t, c, "m4")
	c.Isolate("m4") // raft traffic only: its API still answers how far it got
	// The writers report to the test goroutine: t.Fatal must not be called
	// from theirs.
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for w := 0; w < 20; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 60; i++ {
				key := fmt.Sprintf("lag-%d-%d", w, i)
				var failed error // not retryable
				err := poll.Within(20*time.Second, func() error {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					defer cancel()
					_, err := c.KV(leader).Put(ctx, &kvv1.PutRequest{Key: []byte(key), Value: []byte("v")})
					if err != nil && !apierr.IsNotApplied(err) {
						failed = fmt.Errorf("put %s: %w", key, err)
						return nil
					}
					return err
				})
				if err == nil {
					err = failed
				}
				if err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	_, err := c.ClusterClient(leader).MemberPromote(ctxT(t, 10*time.Second), &kvv1.MemberPromoteRequest{Name: "m4"})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "behind") {
		t.Fatalf("promotion of a lagging learner: %v", err)
	}
	c.Heal()
	c.Eventually(30*time.Second, func() error {
		_, err := c.ClusterClient(leader).MemberPromote(ctxT(t, 10*time.Second), &kvv1.MemberPromoteRequest{Name: "m4"})
		return err
	})
}

func TestRemoveFollowerThenLeader(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	waitHealthy(t, c, c.Names()...)
	follower := others(c, leader)[0]

	if _, err := c.ClusterClient(leader).MemberRemove(ctxT(t, 10*time.Second), &kvv1.MemberRemoveRequest{Name: follower}); err != nil {
		t.Fatalf("remove follower: %v", err)
	}
	select {
	case <-c.Member(follower).Server.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("removed follower still serving")
	}
	_, err := c.KV(follower).Put(ctxT(t, 5*time.Second), &kvv1.PutRequest{Key: []byte("k"), Value: []byte("v")})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "removed") {
		t.Fatalf("request to removed member: %v", err)
	}
	c.Stop(follower)

	// Removing the leader of the remaining two moves leadership first; the
	// request is sent to the follower, which forwards it.
	put(t, c, leader, "before", "leader removal")
	var last string
	for _, n := range others(c, leader) {
		if n != follower {
			last = n
		}
	}
	if _, err := c.ClusterClient(last).MemberRemove(ctxT(t, 15*time.Second), &kvv1.MemberRemoveRequest{Name: leader}); err != nil {
		t.Fatalf("remove leader via the follower: %v", err)
	}
	select {
	case <-c.Member(leader).Server.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("removed leader still serving")
	}
	c.Stop(leader)
	c.Leader(20*time.Second, last)
	put(t, c, last, "after", "leader removal")
	if n := countKeys(t, c, last, false); n != 2 {
		t.Fatalf("single remaining member has %d keys", n)
	}
	// A removed member refuses to start on its old data.
	c.Eventually(5*time.Second, func() error { return nil })
}

func TestUnsafeReconfigurationRefused(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	waitHealthy(t, c, c.Names()...)
	rest := others(c, leader)
	dead, healthy := rest[0], rest[1]
	c.Stop(dead)
	// Wait until the leader notices.
	c.Eventually(20*time.Second, func() error {
		if memberList(t, c, leader)[dead].GetHealthy() {
			return fmt.Errorf("%s still looks healthy", dead)
		}
		return nil
	})
	cl := c.ClusterClient(leader)
	_, err := cl.MemberRemove(ctxT(t, 10*time.Second), &kvv1.MemberRemoveRequest{Name: healthy})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "quorum") {
		t.Fatalf("removing a healthy member while another is down: %v", err)
	}
	_, err = cl.MemberAdd(ctxT(t, 10*time.Second), &kvv1.MemberAddRequest{Name: "m9", RaftAddr: "m9:1"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("adding a voter while one is down: %v", err)
	}
	// Bad input is refused clearly.
	for _, req := range []*kvv1.MemberAddRequest{{Name: "", RaftAddr: "x:1"}, {Name: "m8", RaftAddr: "no-port"}} {
		if _, err := cl.MemberAdd(ctxT(t, 10*time.Second), req); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("add %v: %v", req, err)
		}
	}
	if _, err := cl.MemberAdd(ctxT(t, 10*time.Second), &kvv1.MemberAddRequest{Name: healthy, RaftAddr: "elsewhere:1"}); status.Code(err) != codes.AlreadyExists {
		t.Fatalf("add existing name: %v", err)
	}
	if _, err := cl.MemberRemove(ctxT(t, 10*time.Second), &kvv1.MemberRemoveRequest{Name: "nobody"}); status.Code(err) != codes.NotFound {
		t.Fatalf("remove unknown: %v", err)
	}
	// Removing the dead member is safe, and allowed.
	if _, err := cl.MemberRemove(ctxT(t, 10*time.Second), &kvv1.MemberRemoveRequest{Name: dead}); err != nil {
		t.Fatalf("remove dead member: %v", err)
	}
	if len(memberList(t, c, leader)) != 2 {
		t.Fatal("dead member still listed")
	}
}

func TestLeaderTransfer(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	target := others(c, leader)[1]
	resp, err := c.ClusterClient(others(c, leader)[0]).LeaderTransfer(ctxT(t, 15*time.Second), &kvv1.LeaderTransferRequest{To: target})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetLeader() != target {
		t.Fatalf("leader after transfer %q, want %q", resp.GetLeader(), target)
	}
	if got := c.Leader(20 * time.Second); got != target {
		t.Fatalf("cluster leader %q, want %q", got, target)
	}
	put(t, c, leader, "after-transfer", "ok")
}

func TestForceNewClusterAfterQuorumLoss(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	for i := 0; i < 50; i++ {
		put(t, c, leader, fmt.Sprintf("k%02d", i), "v")
	}
	c.WaitConverged(20 * time.Second)
	survivor := others(c, leader)[0]
	for _, n := range c.Names() {
		c.Stop(n)
	}
	c.StartWith(survivor, func(cfg *server.Config) {
		cfg.InitialCluster = nil
		cfg.ForceNewCluster = true
	})
	c.Leader(20*time.Second, survivor)
	if n := countKeys(t, c, survivor, false); n != 50 {
		t.Fatalf("recovered member has %d keys, want 50", n)
	}
	if ml := memberList(t, c, survivor); len(ml) != 1 {
		t.Fatalf("members after recovery: %v", ml)
	}
	put(t, c, survivor, "after-recovery", "ok")
	// The lost machines come back with empty disks and join.
	c.Join("m5", false)
	c.Eventually(30*time.Second, func() error {
		if n := countKeys(t, c, "m5", true); n != 51 {
			return fmt.Errorf("new member has %d keys", n)
		}
		return nil
	})
}

// A founding member that lost its disk, started again with the same founding
// flags plus join, must join the running cluster, not found a second one.
func TestFounderWithEmptyDiskJoinsRunningCluster(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	for i := 0; i < 30; i++ {
		put(t, c, leader, fmt.Sprintf("k%02d", i), "v")
	}
	victim := others(c, leader)[0]
	c.Stop(victim)
	c.Wipe(victim)
	var join []string
	for _, n := range others(c, victim) {
		join = append(join, c.Member(n).Server.ClientAddr())
	}
	c.StartWith(victim, func(cfg *server.Config) { cfg.Join = join }) // InitialCluster still names it
	c.Eventually(30*time.Second, func() error {
		if n := countKeys(t, c, victim, true); n != 30 {
			return fmt.Errorf("%s has %d keys", victim, n)
		}
		return nil
	})
	st, err := c.Maintenance(victim).Status(ctxT(t, 5*time.Second), &kvv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.GetLeaderName() != c.Leader(20*time.Second) {
		t.Fatalf("%s follows %q: it founded a cluster of its own", victim, st.GetLeaderName())
	}
	c.WaitConverged(20 * time.Second)
}

func TestRefusedJoinStopsTheMember(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	waitHealthy(t, c, c.Names()...)
	down := others(c, leader)[0]
	c.Stop(down)
	c.Eventually(20*time.Second, func() error {
		if memberList(t, c, leader)[down].GetHealthy() {
			return fmt.Errorf("%s still looks healthy", down)
		}
		return nil
	})
	// A fourth voter while one of three is down would need 3 healthy of 4:
	// the join is refused, and the new member must not linger.
	joiner := c.Join("m4", false).Server
	select {
	case <-joiner.Done():
	case <-time.After(20 * time.Second):
		t.Fatal("member whose join was refused keeps running")
	}
	if !errors.Is(joiner.Err(), member.ErrJoinRefused) {
		t.Fatalf("stopped with %v, want ErrJoinRefused", joiner.Err())
	}
}

// A member removed, wiped and added back under its old name replays, while it
// catches up, the configuration that removed it. It must not take that for
// a new removal.
func TestRemovedMemberRejoinsUnderItsOldName(t *testing.T) {
	t.Parallel()
	testRejoinUnderOldName(t, 20, nil)
}

// The same while the rejoining member is still replaying the log between
// its removal and its return: one entry per append, so that the replay
// spans several checks of the removal watcher.
func TestRejoiningMemberReplaysItsRemoval(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("slow replay")
	}
	testRejoinUnderOldName(t, 600, servertest.WithConfig(func(cfg *server.Config) { cfg.MaxAppendEntries = 1 }))
}

func testRejoinUnderOldName(t *testing.T, after int, opt servertest.Option) {
	var opts []servertest.Option
	if opt != nil {
		opts = append(opts, opt)
	}
	c := servertest.New(t, 3, opts...)
	leader := c.Leader(20 * time.Second)
	waitHealthy(t, c, c.Names()...)
	victim := others(c, leader)[0]
	for i := 0; i < 20; i++ {
		put(t, c, leader, fmt.Sprintf("k%02d", i), "v")
	}
	if _, err := c.ClusterClient(leader).MemberRemove(ctxT(t, 10*time.Second), &kvv1.MemberRemoveRequest{Name: victim}); err != nil {
		t.Fatal(err)
	}
	c.Stop(victim)
	c.Wipe(victim)
	for i := 20; i < 20+after; i++ {
		put(t, c, leader, fmt.Sprintf("k%04d", i), "v")
	}
	var join []string
	for _, n := range others(c, victim) {
		join = append(join, c.Member(n).Server.ClientAddr())
	}
	c.StartWith(victim, func(cfg *server.Config) { cfg.InitialCluster = nil; cfg.Join = join })
	c.Eventually(60*time.Second, func() error {
		if err := c.Member(victim).Server.Err(); err != nil {
			t.Fatalf("rejoining member stopped itself while catching up: %v", err)
		}
		if n := countKeys(t, c, victim, true); n != int64(20+after) {
			return fmt.Errorf("%s has %d keys", victim, n)
		}
		return nil
	})
	// Give the removal watcher (once a second) time to misjudge.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if err := c.Member(victim).Server.Err(); err != nil {
			t.Fatalf("rejoined member stopped itself: %v", err)
		}
		time.Sleep(100 * time.Millisecond) // watching for a stop that must not come
	}
	c.WaitConverged(20 * time.Second)
}
