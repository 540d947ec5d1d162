package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"time"

	"github.com/kvd-io/kvd/client"
)

// Cluster is what a nemesis needs from the cluster under test.
// *cluster.Cluster implements it.
type Cluster interface {
	// Nodes returns the members' names.
	Nodes() []string
	// Leader returns the current leader, or an error when there is none.
	Leader(ctx context.Context) (string, error)
	// Kill sends SIGKILL to a member and waits until it is gone.
	Kill(name string) error
	// Start restarts a member that is down, on its data directory.
	Start(name string) error
	// Pause sends SIGSTOP; Resume sends SIGCONT.
	Pause(name string) error
	Resume(name string) error
	// Partition replaces the network rules with grudge; HealNetwork
	// removes them.
	Partition(ctx context.Context, grudge Grudge) error
	HealNetwork(ctx context.Context) error

	// Members returns the membership as the leader lists it.
	Members(ctx context.Context) ([]*client.Member, error)
	// RemoveMember, PromoteMember and TransferLeader are the SDK's
	// MemberRemove, MemberPromote and LeaderTransfer; their errors are the
	// SDK's (status.Code works on them). TransferLeader returns the leader
	// the old leader named afterwards.
	RemoveMember(ctx context.Context, name string) error
	PromoteMember(ctx context.Context, name string) error
	TransferLeader(ctx context.Context, to string) (string, error)
	// AppliedIndex returns the raft index a member has applied.
	AppliedIndex(ctx context.Context, name string) (uint64, error)
	// Running reports whether a member's process is alive.
	Running(name string) bool
	// WaitExit waits up to timeout for a member's process to exit on its
	// own and returns its exit status; exited is false when it still runs.
	// With a timeout of 0 it tells how the last incarnation ended.
	WaitExit(name string, timeout time.Duration) (code int, exited bool)
	// Wipe empties the data directory of a member that is not running.
	Wipe(name string) error
	// Rejoin starts a member that is not running on an empty data
	// directory with --join (and --learner when learner): it asks the
	// cluster to add it back under its old name and addresses.
	Rejoin(name string, learner bool) error
}

// ErrSkipped marks a Start that deliberately injected nothing: kvd refused
// the change as unsafe (FailedPrecondition: it would cost quorum), or the
// cluster was not in a state the fault needs (no leader, a member
// missing). The runner logs it and goes on; it is not a harness error.
var ErrSkipped = errors.New("fault skipped")

func skipped(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrSkipped, fmt.Sprintf(format, args...))
}

// Reporter is implemented by nemeses whose Heal does enough to be worth
// telling (rejoining a member): Report returns what the last Heal did.
type Reporter interface {
	Report() string
}

// Observer is implemented by nemeses that can see kvd misbehave outside
// the clients' operations, e.g. a member that stops as removed although the
// leader still lists it. Incidents returns what was seen since the last
// call. The runner records each in the history, and a run with an incident
// does not pass.
type Observer interface {
	Incidents() []string
}

// Fault describes an injected fault.
type Fault struct {
	// Nodes are the members it hit (killed, paused, or isolated on the
	// minority side).
	Nodes []string
	// Description says what was done, e.g. "grudge n1<-{n2,n3} ...".
	Description string
}

// Nemesis is one kind of fault. The scheduler calls Start and Heal from one
// goroutine, alternately: Start, then Heal, then Start again. They may take
// seconds (finding the leader, restarting a process) and must honour ctx.
type Nemesis interface {
	// Name is the registry name, e.g. "kill-leader".
	Name() string
	// Start injects the fault. On error, the fault may be partly injected;
	// Heal must still undo it.
	Start(ctx context.Context, c Cluster, rng *rand.Rand) (Fault, error)
	// Heal undoes what the last Start did. It is idempotent.
	Heal(ctx context.Context, c Cluster) error
}

// Family groups the variants of one kind of fault.
type Family struct {
	Name     string
	Variants []Nemesis
	// Unsupported, when not empty, says why the family cannot run yet.
	Unsupported string
	// OwnRun, when not empty, keeps the family out of mixed and says why:
	// it needs run settings of its own.
	OwnRun string
}

// Registry returns every known family, keyed by name. Each call builds new
// nemeses, which keep state between Start and Heal.
func Registry() map[string]Family {
	fams := []Family{
		{Name: "kill", Variants: []Nemesis{
			&kill{name: "kill-one", target: targetOne},
			&kill{name: "kill-leader", target: targetLeader},
			&kill{name: "kill-majority", target: targetMajority},
		}},
		{Name: "pause", Variants: []Nemesis{
			&pause{name: "pause-one", target: targetOne},
			&pause{name: "pause-leader", target: targetLeader},
		}},
		{Name: "leader-stall", Variants: []Nemesis{
			&stallLeader{name: "stall-leader-until-replaced", replaceWithin: 10 * time.Second},
		}, OwnRun: "reads must wait out the stall: run it with --op-timeout above the election time plus --fault-duration"},
		{Name: "partition", Variants: []Nemesis{
			&partition{name: "partition-halves", shape: shapeHalves},
			&partition{name: "partition-leader", shape: shapeLeader},
			&partition{name: "partition-ring", shape: shapeRing},
			&partition{name: "partition-bridge", shape: shapeBridge},
		}},
		churnFamily(),
		{Name: "leader-transfer", Variants: []Nemesis{
			&transfer{name: "leader-transfer-to", random: true, t: defaultTimeouts()},
			&transfer{name: "leader-transfer-any", t: defaultTimeouts()},
		}},
	}
	out := map[string]Family{}
	for _, f := range fams {
		out[f.Name] = f
	}
	return out
}

// aliases are short names of families.
var aliases = map[string]string{"member": "member-churn", "transfer": "leader-transfer"}

// Names lists the names Parse accepts, for help texts.
func Names() []string {
	var out []string
	for a := range aliases {
		out = append(out, a)
	}
	for name, f := range Registry() {
		out = append(out, name)
		for _, v := range f.Variants {
			out = append(out, v.Name())
		}
	}
	out = append(out, "mixed", "none")
	sort.Strings(out)
	return out
}

// Parse turns a comma-separated list of families and variants into the
// families to schedule. "mixed" means every supported family, "none" (or an
// empty spec) no faults. A variant name selects that variant alone within
// its family.
func Parse(spec string) ([]Family, error) {
	reg := Registry()
	byFamily := map[string]*Family{}
	var order []string
	add := func(fam Family, variants []Nemesis) {
		f, ok := byFamily[fam.Name]
		if !ok {
			f = &Family{Name: fam.Name}
			byFamily[fam.Name] = f
			order = append(order, fam.Name)
		}
		for _, v := range variants {
			if !containsName(f.Variants, v.Name()) {
				f.Variants = append(f.Variants, v)
			}
		}
	}
	for _, name := range strings.Split(spec, ",") {
		name = strings.TrimSpace(name)
		if full, ok := aliases[name]; ok {
			name = full
		}
		switch name {
		case "", "none":
			continue
		case "mixed", "all":
			var names []string
			for n, f := range reg {
				if f.Unsupported == "" && f.OwnRun == "" {
					names = append(names, n)
				}
			}
			sort.Strings(names)
			for _, n := range names {
				add(reg[n], reg[n].Variants)
			}
			continue
		}
		if f, ok := reg[name]; ok {
			if f.Unsupported != "" {
				return nil, fmt.Errorf("nemesis %q is not supported yet: %s", name, f.Unsupported)
			}
			add(f, f.Variants)
			continue
		}
		found := false
		for _, f := range reg {
			for _, v := range f.Variants {
				if v.Name() == name {
					add(f, []Nemesis{v})
					found = true
				}
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown nemesis %q; known: %s", name, strings.Join(Names(), ", "))
		}
	}
	out := make([]Family, 0, len(order))
	for _, n := range order {
		out = append(out, *byFamily[n])
	}
	return out, nil
}

func containsName(ns []Nemesis, name string) bool {
	for _, n := range ns {
		if n.Name() == name {
			return true
		}
	}
	return false
}

// Schedule picks the nemesis of each cycle: families in turn (in an order
// shuffled once by rng), and within a family its variants in turn.
type Schedule struct {
	families []Family
	next     []int // next variant per family
	turn     int
}

// NewSchedule returns a schedule over families; nil when there are none.
func NewSchedule(families []Family, rng *rand.Rand) *Schedule {
	if len(families) == 0 {
		return nil
	}
	fams := append([]Family(nil), families...)
	rng.Shuffle(len(fams), func(i, j int) { fams[i], fams[j] = fams[j], fams[i] })
	s := &Schedule{families: fams, next: make([]int, len(fams))}
	for i, f := range fams {
		s.next[i] = rng.Intn(len(f.Variants))
	}
	return s
}

// Next returns the nemesis for the next cycle.
func (s *Schedule) Next() Nemesis {
	i := s.turn % len(s.families)
	s.turn++
	f := s.families[i]
	n := f.Variants[s.next[i]%len(f.Variants)]
	s.next[i]++
	return n
}

// All returns every nemesis the schedule may pick, for the final heal.
func (s *Schedule) All() []Nemesis {
	if s == nil {
		return nil
	}
	var out []Nemesis
	for _, f := range s.families {
		out = append(out, f.Variants...)
	}
	return out
}
