package nemesis

import (
	"context"
	"errors"
	"math/rand"
	"reflect"
	"sort"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		spec    string
		want    map[string][]string // family -> variants
		wantErr string
	}{
		{spec: "none", want: map[string][]string{}},
		{spec: "", want: map[string][]string{}},
		{spec: "kill", want: map[string][]string{"kill": {"kill-one", "kill-leader", "kill-majority"}}},
		{spec: "partition-ring,kill-leader,partition-leader", want: map[string][]string{
			"partition": {"partition-ring", "partition-leader"}, "kill": {"kill-leader"}}},
		{spec: "mixed", want: map[string][]string{
			"kill":            {"kill-one", "kill-leader", "kill-majority"},
			"pause":           {"pause-one", "pause-leader"},
			"partition":       {"partition-halves", "partition-leader", "partition-ring", "partition-bridge"},
			"member-churn":    {"member-churn-one", "member-churn-leader"},
			"leader-transfer": {"leader-transfer-to", "leader-transfer-any"}}},
		{spec: "member-churn", want: map[string][]string{"member-churn": {"member-churn-one", "member-churn-leader"}}},
		{spec: "member,transfer", want: map[string][]string{
			"member-churn":    {"member-churn-one", "member-churn-leader"},
			"leader-transfer": {"leader-transfer-to", "leader-transfer-any"}}},
		{spec: "kill,leader-transfer-any", want: map[string][]string{
			"kill": {"kill-one", "kill-leader", "kill-majority"}, "leader-transfer": {"leader-transfer-any"}}},
		{spec: "leader-stall", want: map[string][]string{"leader-stall": {"stall-leader-until-replaced"}}},
		{spec: "clock", wantErr: "unknown nemesis"},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			fams, err := Parse(tt.spec)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string][]string{}
			for _, f := range fams {
				for _, v := range f.Variants {
					got[f.Name] = append(got[f.Name], v.Name())
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestScheduleTakesTurns(t *testing.T) {
	fams, err := Parse("kill,pause,partition")
	if err != nil {
		t.Fatal(err)
	}
	s := NewSchedule(fams, rand.New(rand.NewSource(7)))
	count := map[string]int{}
	var families []string
	for i := 0; i < 12; i++ {
		n := s.Next()
		count[n.Name()]++
		families = append(families, strings.SplitN(n.Name(), "-", 2)[0])
	}
	// Families alternate: any three consecutive cycles cover all three.
	for i := 0; i+3 <= len(families); i++ {
		w := append([]string(nil), families[i:i+3]...)
		sort.Strings(w)
		if strings.Join(w, ",") != "kill,partition,pause" {
			t.Fatalf("cycles %d..%d: %v", i, i+2, families[i:i+3])
		}
	}
	// 4 turns each: every kill and partition variant, each pause variant twice.
	if len(count) != 9 {
		t.Fatalf("variants used: %v", count)
	}
	if NewSchedule(nil, rand.New(rand.NewSource(1))) != nil {
		t.Fatal("empty schedule is not nil")
	}
}

// fakeCluster records what the nemeses do. Its membership starts with
// every node a voter; see membership_test.go for the knobs.
type fakeCluster struct {
	nodes   []string
	leader  string
	down    map[string]bool
	paused  map[string]bool
	grudge  Grudge
	actions []string

	voter map[string]bool // the membership: member -> votes
	exit  map[string]int  // exit status of a member that stopped on its own
	// Knobs.
	removeErr   error // what MemberRemove answers (nothing is removed)
	noExit      bool  // a removed member keeps running
	refuseJoins int   // so many joins are refused (the process exits 1)
	// so many rejoined members stop as removed (status 3) right after
	// they were added, while the leader still lists them
	selfRemove  int
	applied     map[string]uint64 // applied index by member (default 0)
	lagReads    int               // so many applied-index reads of a non-leader answer 0
	lagging     int               // so many promotions are refused as lagging
	transferErr error
}

func newFake(n int, leader string) *fakeCluster {
	f := &fakeCluster{nodes: members(n), leader: leader, down: map[string]bool{}, paused: map[string]bool{},
		voter: map[string]bool{}, exit: map[string]int{}}
	for _, m := range f.nodes {
		f.voter[m] = true
	}
	return f
}

func (f *fakeCluster) Nodes() []string { return f.nodes }
func (f *fakeCluster) Leader(context.Context) (string, error) {
	if f.leader == "" {
		return "", errors.New("no leader")
	}
	return f.leader, nil
}
func (f *fakeCluster) Kill(n string) error {
	f.down[n], f.exit[n] = true, -1
	f.actions = append(f.actions, "kill "+n)
	return nil
}
func (f *fakeCluster) Start(n string) error {
	delete(f.down, n)
	f.actions = append(f.actions, "start "+n)
	return nil
}
func (f *fakeCluster) Pause(n string) error { f.paused[n] = true; return nil }
func (f *fakeCluster) Resume(n string) error {
	delete(f.paused, n)
	return nil
}
func (f *fakeCluster) Partition(_ context.Context, g Grudge) error { f.grudge = g; return nil }
func (f *fakeCluster) HealNetwork(context.Context) error           { f.grudge = nil; return nil }

func variant(t *testing.T, name string) Nemesis {
	t.Helper()
	fams, err := Parse(name)
	if err != nil {
		t.Fatal(err)
	}
	return fams[0].Variants[0]
}

func TestFaults(t *testing.T) {
	ctx := context.Background()
	rng := rand.New(rand.NewSource(1))

	c := newFake(5, "n3")
	k := variant(t, "kill-leader")
	f, err := k.Start(ctx, c, rng)
	if err != nil || !reflect.DeepEqual(f.Nodes, []string{"n3"}) || !c.down["n3"] {
		t.Fatalf("kill-leader: %+v %v %v", f, err, c.down)
	}
	if err := k.Heal(ctx, c); err != nil || len(c.down) != 0 {
		t.Fatalf("kill-leader heal: %v %v", err, c.down)
	}
	if err := k.Heal(ctx, c); err != nil || len(c.actions) != 2 {
		t.Fatalf("second heal is not a no-op: %v", c.actions)
	}

	c = newFake(5, "")
	k = variant(t, "kill-majority")
	f, _ = k.Start(ctx, c, rng)
	if len(f.Nodes) != 3 || len(c.down) != 3 {
		t.Fatalf("kill-majority hit %v", f.Nodes)
	}
	_ = k.Heal(ctx, c)

	c = newFake(5, "")
	p := variant(t, "pause-leader")
	f, _ = p.Start(ctx, c, rng) // no leader: a random member
	if len(f.Nodes) != 1 || !c.paused[f.Nodes[0]] || !strings.Contains(f.Description, "no leader") {
		t.Fatalf("pause-leader without a leader: %+v", f)
	}
	_ = p.Heal(ctx, c)
	if len(c.paused) != 0 {
		t.Fatalf("still paused: %v", c.paused)
	}

	c = newFake(5, "n2")
	pl := variant(t, "partition-leader")
	f, _ = pl.Start(ctx, c, rng)
	if vis := Visible(c.nodes, c.grudge); len(vis["n2"]) != 1 || !reflect.DeepEqual(f.Nodes, []string{"n2"}) {
		t.Fatalf("partition-leader: %+v %v", f, vis)
	}
	_ = pl.Heal(ctx, c)
	if c.grudge != nil {
		t.Fatal("partition not healed")
	}

	c = newFake(3, "n1")
	if _, err := variant(t, "partition-ring").Start(ctx, c, rng); err == nil {
		t.Fatal("ring on 3 members did not fail")
	}
}

func TestMixedScheduleCoversEveryFamily(t *testing.T) {
	fams, err := Parse("mixed")
	if err != nil {
		t.Fatal(err)
	}
	familyOf := map[string]string{}
	for _, f := range fams {
		for _, v := range f.Variants {
			familyOf[v.Name()] = f.Name
		}
	}
	if len(fams) != 5 {
		t.Fatalf("mixed has %d families", len(fams))
	}
	for seed := int64(1); seed <= 20; seed++ {
		s := NewSchedule(fams, rand.New(rand.NewSource(seed)))
		var got []string
		for i := 0; i < 10; i++ {
			got = append(got, familyOf[s.Next().Name()])
		}
		// A 75 s run of the matrix has five cycles: one of each family.
		for i := 0; i+5 <= len(got); i++ {
			w := append([]string(nil), got[i:i+5]...)
			sort.Strings(w)
			if strings.Join(w, ",") != "kill,leader-transfer,member-churn,partition,pause" {
				t.Fatalf("seed %d, cycles %d..%d: %v", seed, i, i+4, got[i:i+5])
			}
		}
	}
}

// electing is a fake cluster whose other members elect a new leader once
// the leader is paused, after a few status rounds.
type electing struct {
	*fakeCluster
	rounds int
}

func (e *electing) Leader(ctx context.Context) (string, error) {
	if e.paused[e.leader] {
		e.rounds++
		if e.rounds < 3 {
			return "", errors.New("election in progress")
		}
		e.leader = "n3"
	}
	return e.fakeCluster.Leader(ctx)
}

func TestStallLeaderWaitsForANewLeaderThenResumes(t *testing.T) {
	ctx := context.Background()
	c := &electing{fakeCluster: newFake(3, "n1")}
	s := variant(t, "stall-leader-until-replaced")
	f, err := s.Start(ctx, c, rand.New(rand.NewSource(1)))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(f.Nodes, []string{"n1"}) || !c.paused["n1"] || !strings.Contains(f.Description, "n3 led after") {
		t.Fatalf("stall: %+v, paused %v", f, c.paused)
	}
	if c.rounds < 3 {
		t.Fatalf("Start returned before the new leader was elected (%d status rounds)", c.rounds)
	}
	if err := s.Heal(ctx, c); err != nil || c.paused["n1"] {
		t.Fatalf("heal: %v, paused %v", err, c.paused)
	}

	// Without a leader to stall, the fault is skipped, not an error.
	if _, err := s.Start(ctx, newFake(3, ""), rand.New(rand.NewSource(1))); !errors.Is(err, ErrSkipped) {
		t.Fatalf("stall without a leader: %v, want ErrSkipped", err)
	}
}
