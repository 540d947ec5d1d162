package nemesis

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"time"
)

// target picks the members a kill or pause hits.
type target int

const (
	targetOne      target = iota + 1 // a random member
	targetLeader                     // the leader (a random member if there is none)
	targetMajority                   // a random majority
)

func pick(ctx context.Context, c Cluster, t target, rng *rand.Rand) ([]string, string) {
	nodes := c.Nodes()
	switch t {
	case targetLeader:
		if l, err := c.Leader(ctx); err == nil {
			return []string{l}, "the leader"
		}
		return []string{nodes[rng.Intn(len(nodes))]}, "a random member (no leader found)"
	case targetMajority:
		s := shuffled(nodes, rng)[:len(nodes)/2+1]
		sort.Strings(s)
		return s, "a majority"
	default:
		return []string{nodes[rng.Intn(len(nodes))]}, "a random member"
	}
}

// kill SIGKILLs its targets; Heal restarts them on their data.
type kill struct {
	name   string
	target target
	killed []string
}

func (k *kill) Name() string { return k.name }

func (k *kill) Start(ctx context.Context, c Cluster, rng *rand.Rand) (Fault, error) {
	nodes, what := pick(ctx, c, k.target, rng)
	var errs []error
	for _, n := range nodes {
		k.killed = append(k.killed, n)
		errs = append(errs, c.Kill(n))
	}
	return Fault{Nodes: nodes, Description: fmt.Sprintf("SIGKILL %s: %s", what, strings.Join(nodes, ","))}, errors.Join(errs...)
}

func (k *kill) Heal(ctx context.Context, c Cluster) error {
	var errs []error
	for _, n := range k.killed {
		errs = append(errs, c.Start(n))
	}
	k.killed = nil
	return errors.Join(errs...)
}

// pause SIGSTOPs its targets; Heal SIGCONTs them.
type pause struct {
	name   string
	target target
	paused []string
}

func (p *pause) Name() string { return p.name }

func (p *pause) Start(ctx context.Context, c Cluster, rng *rand.Rand) (Fault, error) {
	nodes, what := pick(ctx, c, p.target, rng)
	var errs []error
	for _, n := range nodes {
		p.paused = append(p.paused, n)
		errs = append(errs, c.Pause(n))
	}
	return Fault{Nodes: nodes, Description: fmt.Sprintf("SIGSTOP %s: %s", what, strings.Join(nodes, ","))}, errors.Join(errs...)
}

func (p *pause) Heal(ctx context.Context, c Cluster) error {
	var errs []error
	for _, n := range p.paused {
		errs = append(errs, c.Resume(n))
	}
	p.paused = nil
	return errors.Join(errs...)
}

// shape computes a partition.
type shape func(ctx context.Context, c Cluster, rng *rand.Rand) (g Grudge, hit []string, what string, err error)

func shapeHalves(_ context.Context, c Cluster, rng *rand.Rand) (Grudge, []string, string, error) {
	g, groups := Halves(c.Nodes(), rng)
	return g, sortedCopy(groups[0]), "random halves", nil
}

func shapeLeader(ctx context.Context, c Cluster, rng *rand.Rand) (Grudge, []string, string, error) {
	nodes := c.Nodes()
	lone, what := "", "leader isolated"
	if l, err := c.Leader(ctx); err == nil {
		lone = l
	} else {
		lone, what = nodes[rng.Intn(len(nodes))], "random member isolated (no leader found)"
	}
	g, _ := Isolate(nodes, lone)
	return g, []string{lone}, what, nil
}

func shapeRing(_ context.Context, c Cluster, rng *rand.Rand) (Grudge, []string, string, error) {
	g, err := MajoritiesRing(c.Nodes(), rng)
	return g, c.Nodes(), "majorities ring", err
}

func shapeBridge(_ context.Context, c Cluster, rng *rand.Rand) (Grudge, []string, string, error) {
	g, bridge, err := Bridge(c.Nodes(), rng)
	return g, []string{bridge}, "bridge through " + bridge, err
}

// partition installs a grudge; Heal removes every rule.
type partition struct {
	name  string
	shape shape
}

func (p *partition) Name() string { return p.name }

func (p *partition) Start(ctx context.Context, c Cluster, rng *rand.Rand) (Fault, error) {
	g, hit, what, err := p.shape(ctx, c, rng)
	if err != nil {
		return Fault{}, err
	}
	f := Fault{Nodes: hit, Description: what + ": " + Describe(c.Nodes(), g)}
	return f, c.Partition(ctx, g)
}

func (p *partition) Heal(ctx context.Context, c Cluster) error { return c.HealNetwork(ctx) }

func sortedCopy(s []string) []string {
	out := append([]string(nil), s...)
	sort.Strings(out)
	return out
}

// stallLeader SIGSTOPs the leader and keeps it stopped until the other
// members have elected a new leader; Heal SIGCONTs it. A resumed leader
// finds its followers' answers to the heartbeats it sent just before it
// stopped, and its clients' requests that arrived meanwhile: no read may be
// answered from its old state (issue 21). Run it with an op timeout longer
// than the stall, so that reads sent to the stopped leader are still waiting
// when it resumes, and a short fault duration: the stall is the election
// plus the fault duration, while the new leader takes writes.
type stallLeader struct {
	name    string
	stalled string
	// replaceWithin bounds the wait for a new leader.
	replaceWithin time.Duration
}

func (s *stallLeader) Name() string { return s.name }

func (s *stallLeader) Start(ctx context.Context, c Cluster, _ *rand.Rand) (Fault, error) {
	old, err := c.Leader(ctx)
	if err != nil {
		return Fault{}, skipped("no leader to stall: %v", err)
	}
	s.stalled = old
	if err := c.Pause(old); err != nil {
		return Fault{Nodes: []string{old}}, err
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.replaceWithin)
	defer cancel()
	for {
		l, err := c.Leader(ctx)
		if err == nil && l != old {
			return Fault{Nodes: []string{old}, Description: fmt.Sprintf("SIGSTOP the leader %s; %s led after %s", old, l, time.Since(start).Round(time.Millisecond))}, nil
		}
		select {
		case <-ctx.Done():
			// Still a stall, only without a new leader yet.
			return Fault{Nodes: []string{old}, Description: fmt.Sprintf("SIGSTOP the leader %s; no new leader within %s", old, s.replaceWithin)}, nil
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (s *stallLeader) Heal(ctx context.Context, c Cluster) error {
	if s.stalled == "" {
		return nil
	}
	err := c.Resume(s.stalled)
	s.stalled = ""
	return err
}
