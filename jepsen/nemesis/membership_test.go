package nemesis

import (
	"context"
	"errors"
	"math/rand"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/client"
)

// The fake's membership: removing a member stops it with status 3 (unless
// noExit), a rejoined member is added at once (unless its join is refused,
// then it exits 1), a learner is promoted unless lagging.

func (f *fakeCluster) Members(context.Context) ([]*client.Member, error) {
	if f.leader == "" {
		return nil, errors.New("no leader")
	}
	var out []*client.Member
	for _, n := range f.nodes {
		if v, ok := f.voter[n]; ok {
			out = append(out, &client.Member{Name: n, IsLearner: !v, IsLeader: n == f.leader, Healthy: !f.down[n]})
		}
	}
	return out, nil
}

func (f *fakeCluster) RemoveMember(_ context.Context, n string) error {
	f.actions = append(f.actions, "remove "+n)
	if f.removeErr != nil {
		return f.removeErr
	}
	delete(f.voter, n)
	if n == f.leader {
		f.leader = f.otherVoter(n)
	}
	if !f.noExit {
		f.down[n], f.exit[n] = true, 3
	}
	return nil
}

func (f *fakeCluster) otherVoter(not string) string {
	for _, n := range f.nodes {
		if n != not && f.voter[n] {
			return n
		}
	}
	return ""
}

func (f *fakeCluster) PromoteMember(_ context.Context, n string) error {
	if f.lagging > 0 {
		f.lagging--
		return status.Error(codes.FailedPrecondition, "learner is too far behind the leader to be promoted")
	}
	f.actions = append(f.actions, "promote "+n)
	f.voter[n] = true
	return nil
}

func (f *fakeCluster) TransferLeader(_ context.Context, to string) (string, error) {
	f.actions = append(f.actions, "transfer to "+to)
	if f.transferErr != nil {
		return "", f.transferErr
	}
	if to == "" {
		to = f.otherVoter(f.leader)
	}
	f.leader = to
	return to, nil
}

func (f *fakeCluster) Running(n string) bool { return !f.down[n] }

func (f *fakeCluster) WaitExit(n string, _ time.Duration) (int, bool) {
	if !f.down[n] {
		return 0, false
	}
	return f.exit[n], true
}

func (f *fakeCluster) Wipe(n string) error {
	if !f.down[n] {
		return errors.New("wipe of a running member")
	}
	f.actions = append(f.actions, "wipe "+n)
	return nil
}

func (f *fakeCluster) Rejoin(n string, learner bool) error {
	if !f.down[n] {
		return errors.New("rejoin of a running member")
	}
	f.actions = append(f.actions, "rejoin "+n)
	if f.refuseJoins > 0 {
		f.refuseJoins--
		f.exit[n] = 1 // refused: the joining member stops
		return nil
	}
	delete(f.down, n)
	f.voter[n] = !learner
	if f.selfRemove > 0 {
		f.selfRemove--
		f.down[n], f.exit[n] = true, 3
	}
	return nil
}

func (f *fakeCluster) AppliedIndex(_ context.Context, n string) (uint64, error) {
	if f.down[n] {
		return 0, errors.New("down")
	}
	if n != f.leader && f.lagReads > 0 {
		f.lagReads--
		return 0, nil
	}
	return f.applied[n], nil
}

func fastTimeouts() timeouts {
	return timeouts{members: time.Second, change: time.Second, promote: time.Second, exit: time.Millisecond,
		join: 20 * time.Millisecond, retry: time.Millisecond, heal: 500 * time.Millisecond, settle: 10 * time.Millisecond,
		poll: time.Millisecond, rpcProbe: time.Second}
}

// fastVariant returns a variant with short timeouts.
func fastVariant(t *testing.T, name string) Nemesis {
	t.Helper()
	n := variant(t, name)
	switch v := n.(type) {
	case *churn:
		v.t = fastTimeouts()
	case *transfer:
		v.t = fastTimeouts()
	}
	return n
}

func (f *fakeCluster) voters() []string {
	var out []string
	for n, v := range f.voter {
		if v {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

func TestChurnRemovesWipesAndRejoins(t *testing.T) {
	ctx := context.Background()
	for seed := int64(1); seed <= 8; seed++ { // both rejoin modes
		c := newFake(5, "n3")
		m := fastVariant(t, "member-churn-leader")
		f, err := m.Start(ctx, c, rand.New(rand.NewSource(seed)))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(f.Nodes, []string{"n3"}) || !strings.Contains(f.Description, "exited with status 3") {
			t.Fatalf("fault %+v", f)
		}
		if got := c.actions; !reflect.DeepEqual(got, []string{"remove n3", "wipe n3"}) {
			t.Fatalf("actions %v", got)
		}
		if len(c.voters()) != 4 || c.Running("n3") {
			t.Fatalf("during the fault: voters %v, n3 running %v", c.voters(), c.Running("n3"))
		}
		learner := strings.Contains(f.Description, "as a learner")
		if err := m.Heal(ctx, c); err != nil {
			t.Fatal(err)
		}
		want := []string{"remove n3", "wipe n3", "rejoin n3"}
		if learner {
			want = append(want, "promote n3")
		}
		if !reflect.DeepEqual(c.actions, want) {
			t.Fatalf("learner %v: actions %v", learner, c.actions)
		}
		if !reflect.DeepEqual(c.voters(), c.nodes) || !c.Running("n3") {
			t.Fatalf("after heal: voters %v", c.voters())
		}
		if r := m.(Reporter).Report(); !strings.Contains(r, "n3 is a healthy voter again") {
			t.Fatalf("report %q", r)
		}
		// A second heal (the final one) changes nothing.
		if err := m.Heal(ctx, c); err != nil || len(c.actions) != len(want) {
			t.Fatalf("second heal: %v %v", err, c.actions)
		}
	}
}

func TestChurnTargets(t *testing.T) {
	ctx := context.Background()
	hit := map[string]int{}
	rng := rand.New(rand.NewSource(3))
	for i := 0; i < 100; i++ {
		c := newFake(5, "n2")
		m := fastVariant(t, "member-churn-one")
		f, err := m.Start(ctx, c, rng)
		if err != nil {
			t.Fatal(err)
		}
		hit[f.Nodes[0]]++
		if f.Nodes[0] == "n2" && !strings.Contains(f.Description, "the leader") {
			t.Fatalf("leader hit but not said: %s", f.Description)
		}
	}
	if len(hit) != 5 {
		t.Fatalf("member-churn-one hit %v, want every member (the leader sometimes)", hit)
	}
}

func TestChurnRefusedIsSkipped(t *testing.T) {
	ctx := context.Background()
	c := newFake(5, "n1")
	c.removeErr = status.Error(codes.FailedPrecondition, "unsafe reconfiguration: after removing n4 ...")
	m := fastVariant(t, "member-churn-one")
	f, err := m.Start(ctx, c, rand.New(rand.NewSource(1)))
	if !errors.Is(err, ErrSkipped) || !strings.Contains(f.Description, "refused") {
		t.Fatalf("refusal: %+v %v", f, err)
	}
	if len(c.voters()) != 5 || len(c.actions) != 1 {
		t.Fatalf("refused removal changed something: %v %v", c.voters(), c.actions)
	}
	if err := m.Heal(ctx, c); err != nil || len(c.actions) != 1 {
		t.Fatalf("heal after a skip: %v %v", err, c.actions)
	}

	// Any other error is the harness's, and heal still checks the member.
	c = newFake(5, "n1")
	c.removeErr = status.Error(codes.DeadlineExceeded, "deadline")
	f, err = m.Start(ctx, c, rand.New(rand.NewSource(1)))
	if err == nil || errors.Is(err, ErrSkipped) {
		t.Fatalf("timeout: %+v %v", f, err)
	}
	if err := m.Heal(ctx, c); err != nil {
		t.Fatalf("heal after a failed removal: %v", err)
	}

	// Without a leader, or with a member missing, there is nothing to do.
	c = newFake(5, "")
	if _, err := m.Start(ctx, c, rand.New(rand.NewSource(1))); !errors.Is(err, ErrSkipped) {
		t.Fatalf("no leader: %v", err)
	}
	c = newFake(5, "n1")
	c.voter["n5"] = false
	if _, err := m.Start(ctx, c, rand.New(rand.NewSource(1))); !errors.Is(err, ErrSkipped) || len(c.actions) != 0 {
		t.Fatalf("learner present: %v %v", err, c.actions)
	}
}

func TestChurnKillsAMemberThatDoesNotExit(t *testing.T) {
	ctx := context.Background()
	c := newFake(5, "n1")
	c.noExit = true
	m := fastVariant(t, "member-churn-leader")
	f, err := m.Start(ctx, c, rand.New(rand.NewSource(1)))
	if err != nil || !strings.Contains(f.Description, "killed") || !c.down["n1"] {
		t.Fatalf("%+v %v", f, err)
	}
	if err := m.Heal(ctx, c); err != nil || len(c.voters()) != 5 {
		t.Fatalf("heal: %v %v", err, c.voters())
	}
}

func TestChurnHealRetries(t *testing.T) {
	ctx := context.Background()
	c := newFake(5, "n1")
	c.refuseJoins, c.lagging = 2, 3
	m := fastVariant(t, "member-churn-one")
	var learner bool
	for seed := int64(1); ; seed++ { // a seed that rejoins as a learner
		f, err := m.Start(ctx, c, rand.New(rand.NewSource(seed)))
		if err != nil {
			t.Fatal(err)
		}
		if learner = strings.Contains(f.Description, "as a learner"); learner {
			break
		}
		if err := m.Heal(ctx, c); err != nil {
			t.Fatal(err)
		}
		c = newFake(5, "n1")
		c.refuseJoins, c.lagging = 2, 3
	}
	if err := m.Heal(ctx, c); err != nil {
		t.Fatal(err)
	}
	rejoins := 0
	for _, a := range c.actions {
		if strings.HasPrefix(a, "rejoin") {
			rejoins++
		}
	}
	if rejoins != 3 || c.lagging != 0 || len(c.voters()) != 5 {
		t.Fatalf("rejoins %d, lagging %d, voters %v: %v", rejoins, c.lagging, c.voters(), c.actions)
	}

	// A member that never gets back fails the heal, within its bound.
	c = newFake(5, "n1")
	c.refuseJoins = 1 << 30
	if _, err := m.Start(ctx, c, rand.New(rand.NewSource(1))); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	err := m.Heal(ctx, c)
	if err == nil || !strings.Contains(err.Error(), "membership not restored") || time.Since(start) > 5*time.Second {
		t.Fatalf("heal of a member that cannot rejoin: %v after %s", err, time.Since(start))
	}
}

func TestChurnVariantsShareTheirState(t *testing.T) {
	ctx := context.Background()
	fams, err := Parse("member-churn")
	if err != nil {
		t.Fatal(err)
	}
	one, leader := fams[0].Variants[0].(*churn), fams[0].Variants[1].(*churn)
	one.t, leader.t = fastTimeouts(), fastTimeouts()
	c := newFake(5, "n1")
	if _, err := one.Start(ctx, c, rand.New(rand.NewSource(1))); err != nil {
		t.Fatal(err)
	}
	// The final heal calls every variant; the other one brings it back.
	if err := leader.Heal(ctx, c); err != nil || len(c.voters()) != 5 {
		t.Fatalf("heal by the other variant: %v %v", err, c.voters())
	}
}

func TestChurnHealRestartsDownMembersAndPromotesLearners(t *testing.T) {
	c := newFake(5, "n1")
	c.down["n2"] = true
	c.voter["n4"] = false
	m := fastVariant(t, "member-churn-one")
	if err := m.Heal(context.Background(), c); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(c.actions, "start n2") || !slices.Contains(c.actions, "promote n4") || len(c.voters()) != 5 {
		t.Fatalf("actions %v, voters %v", c.actions, c.voters())
	}
	// A member missing that no churn removed is not wiped: heal reports it.
	c = newFake(5, "n1")
	delete(c.voter, "n5")
	c.down["n5"] = true
	err := m.Heal(context.Background(), c)
	if err == nil || !strings.Contains(err.Error(), "no churn removed it") || slices.Contains(c.actions, "rejoin n5") {
		t.Fatalf("%v %v", err, c.actions)
	}
}

func TestTransferTarget(t *testing.T) {
	ms := []*client.Member{{Name: "n1", IsLeader: true}, {Name: "n2"}, {Name: "n3", IsLearner: true}, {Name: "n4"}}
	rng := rand.New(rand.NewSource(1))
	seen := map[string]bool{}
	for i := 0; i < 50; i++ {
		seen[transferTarget(ms, "n1", rng)] = true
	}
	if !reflect.DeepEqual(seen, map[string]bool{"n2": true, "n4": true}) {
		t.Fatalf("targets %v: want the other voters only", seen)
	}
	if got := transferTarget(ms[:1], "n1", rng); got != "" {
		t.Fatalf("no other voter: %q", got)
	}
}

func TestTransfer(t *testing.T) {
	ctx := context.Background()
	c := newFake(5, "n3")
	tr := fastVariant(t, "leader-transfer-to")
	f, err := tr.Start(ctx, c, rand.New(rand.NewSource(1)))
	if err != nil {
		t.Fatal(err)
	}
	if c.leader == "n3" || len(c.actions) != 1 || c.actions[0] != "transfer to "+c.leader {
		t.Fatalf("transfer: leader %s, actions %v", c.leader, c.actions)
	}
	if !reflect.DeepEqual(f.Nodes, []string{"n3", c.leader}) || !strings.Contains(f.Description, "old leader n3, new leader "+c.leader) {
		t.Fatalf("fault %+v", f)
	}
	if err := tr.Heal(ctx, c); err != nil {
		t.Fatal(err)
	}

	c = newFake(5, "n3")
	f, err = fastVariant(t, "leader-transfer-any").Start(ctx, c, rand.New(rand.NewSource(1)))
	if err != nil || c.actions[0] != "transfer to " || !strings.Contains(f.Description, "no target") {
		t.Fatalf("any: %+v %v %v", f, err, c.actions)
	}

	for _, tt := range []struct {
		err  error
		skip bool
	}{
		{status.Error(codes.FailedPrecondition, "refused"), true},
		{apierr.NotApplied(codes.Unavailable, "leadership transfer: timed out"), true},
		{status.Error(codes.DeadlineExceeded, "deadline"), false},
	} {
		c = newFake(5, "n3")
		c.transferErr = tt.err
		_, err := tr.Start(ctx, c, rand.New(rand.NewSource(1)))
		if err == nil || errors.Is(err, ErrSkipped) != tt.skip {
			t.Fatalf("%v: got %v, skip %v", tt.err, err, tt.skip)
		}
	}
}

func TestChurnHealWaitsForCatchUp(t *testing.T) {
	ctx := context.Background()
	c := newFake(5, "n1")
	c.applied = map[string]uint64{"n1": 500, "n2": 500, "n3": 500, "n4": 500, "n5": 500}
	m := fastVariant(t, "member-churn-one")
	f, err := m.Start(ctx, c, rand.New(rand.NewSource(2)))
	if err != nil {
		t.Fatal(err)
	}
	c.lagReads = 3
	if err := m.Heal(ctx, c); err != nil {
		t.Fatal(err)
	}
	if c.lagReads != 0 || !strings.Contains(m.(Reporter).Report(), f.Nodes[0]+" is a healthy voter again, applied index 500") {
		t.Fatalf("heal did not wait for the catch-up: %d", c.lagReads)
	}
}

func TestChurnHealRecoversAMemberThatStoppedAsRemoved(t *testing.T) {
	ctx := context.Background()
	c := newFake(5, "n1")
	c.selfRemove = 1
	m := fastVariant(t, "member-churn-one")
	f, err := m.Start(ctx, c, rand.New(rand.NewSource(2)))
	if err != nil {
		t.Fatal(err)
	}
	victim := f.Nodes[0]
	if err := m.Heal(ctx, c); err != nil {
		t.Fatalf("heal: %v", err)
	}
	inc := m.(Observer).Incidents()
	if len(inc) != 1 || !strings.HasPrefix(inc[0], victim+" exited with status 3 (removed) although the leader n1 lists it as a member (") {
		t.Fatalf("incidents %q", inc)
	}
	if len(m.(Observer).Incidents()) != 0 {
		t.Fatal("incidents not forgotten")
	}
	// Recovered all the same: removed, rejoined.
	if n := strings.Count(strings.Join(c.actions, ","), "rejoin "+victim); n != 2 || len(c.voters()) != 5 || !c.Running(victim) {
		t.Fatalf("rejoins %d, voters %v: %v", n, c.voters(), c.actions)
	}
	// A member down after a kill is restarted on its data, not removed.
	c = newFake(5, "n1")
	_ = c.Kill("n2")
	if err := m.Heal(ctx, c); err != nil || slices.Contains(c.actions, "remove n2") {
		t.Fatalf("%v %v", err, c.actions)
	}
	// With a member down, kvd decides (its strict check); a member that
	// was down already is said to be.
	c = newFake(5, "n1")
	_ = c.Kill("n3")
	for seed := int64(1); ; seed++ {
		f, err := m.Start(ctx, c, rand.New(rand.NewSource(seed)))
		if err != nil {
			t.Fatal(err)
		}
		if f.Nodes[0] == "n3" {
			if !strings.Contains(f.Description, "it was down already") {
				t.Fatalf("fault %+v", f)
			}
			break
		}
		if err := m.Heal(ctx, c); err != nil {
			t.Fatal(err)
		}
		_ = c.Kill("n3")
	}
}
