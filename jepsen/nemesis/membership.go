package nemesis

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/internal/poll"
)

// exitRemoved is kvd's exit status after it was removed from its cluster.
const exitRemoved = 3

// timeouts bound every step of the membership nemeses. Tests shorten them.
type timeouts struct {
	members  time.Duration // reading the membership before a fault
	change   time.Duration // one MemberRemove or LeaderTransfer
	promote  time.Duration // one MemberPromote
	exit     time.Duration // a removed member's own exit, before it is killed
	join     time.Duration // a rejoining member not yet in the membership, before it is killed and started again
	retry    time.Duration // between two attempts to start a rejoining member
	heal     time.Duration // a whole Heal, within its ctx
	settle   time.Duration // waiting for the new leader after a transfer
	poll     time.Duration // between two looks at the cluster
	rpcProbe time.Duration // one look at the leader after a transfer
}

func defaultTimeouts() timeouts {
	return timeouts{
		members:  5 * time.Second,
		change:   15 * time.Second,
		promote:  5 * time.Second,
		exit:     10 * time.Second,
		join:     20 * time.Second,
		retry:    time.Second,
		heal:     50 * time.Second,
		settle:   5 * time.Second,
		poll:     250 * time.Millisecond,
		rpcProbe: time.Second,
	}
}

// churnState is shared by the variants of the member-churn family, so that
// either one's Heal (the final heal calls them all) brings back a member
// the other removed.
type churnState struct {
	// pending maps each member a churn removed (or tried to) and has not
	// seen back as a healthy, running voter since, to how it rejoins: as a
	// learner (then promoted) or as a voter.
	pending   map[string]bool
	report    []string
	incidents []string
}

func churnFamily() Family {
	st := &churnState{pending: map[string]bool{}}
	return Family{Name: "member-churn", Variants: []Nemesis{
		&churn{name: "member-churn-one", target: targetOne, st: st, t: defaultTimeouts()},
		&churn{name: "member-churn-leader", target: targetLeader, st: st, t: defaultTimeouts()},
	}}
}

// churn removes a member through the SDK (MemberRemove), waits for its
// process to exit (status 3) or kills it after a bound, and wipes its data
// directory: during the fault the cluster runs one voter short. Heal starts
// it again under its old name and addresses with --join naming the other
// members, as a voter or as a learner that is then promoted (chosen at
// random by Start), and waits until it is a running voter that the leader
// sees healthy, and until every other member is a running voter too. A
// removal kvd refuses as unsafe is a skipped fault.
type churn struct {
	name   string
	target target // targetOne or targetLeader
	st     *churnState
	t      timeouts
}

func (m *churn) Name() string { return m.name }

// voters checks that every member of nodes is a voter in ms, and returns
// the leader ms names. Whether they are healthy is kvd's to judge: its
// strict reconfiguration check refuses a removal that would cost quorum.
func voters(nodes []string, ms []*client.Member) (leader string, err error) {
	byName := map[string]*client.Member{}
	for _, mem := range ms {
		byName[mem.GetName()] = mem
		if mem.GetIsLeader() {
			leader = mem.GetName()
		}
	}
	var missing []string
	for _, n := range nodes {
		switch mem, ok := byName[n]; {
		case !ok:
			missing = append(missing, n+" (not a member)")
		case mem.GetIsLearner():
			missing = append(missing, n+" (a learner)")
		}
	}
	if len(missing) > 0 {
		return leader, fmt.Errorf("not every member votes: %s", strings.Join(missing, ", "))
	}
	return leader, nil
}

func (m *churn) Start(ctx context.Context, c Cluster, rng *rand.Rand) (Fault, error) {
	nodes := c.Nodes()
	if len(nodes) < 2 {
		return Fault{Description: "one member cannot be removed"}, skipped("a cluster of one member cannot lose it")
	}
	ms, err := waitMembers(ctx, c, m.t)
	if err != nil {
		return Fault{Description: "membership unknown"}, skipped("reading the membership: %v", err)
	}
	leader, err := voters(nodes, ms)
	if err != nil {
		return Fault{Description: "membership incomplete"}, skipped("%v", err)
	}
	victim, what := nodes[rng.Intn(len(nodes))], "a random member"
	if m.target == targetLeader {
		victim, what = leader, "the leader"
	}
	if victim == leader && m.target != targetLeader {
		what = "a random member, the leader"
	}
	learner := rng.Intn(2) == 0
	how := "a voter"
	if learner {
		how = "a learner, then promotes it"
	}
	f := Fault{Nodes: []string{victim}}
	wasRunning := c.Running(victim)

	m.st.pending[victim] = learner // from here on, Heal must bring it back
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, m.t.change)
	err = c.RemoveMember(rctx, victim)
	cancel()
	removed := time.Since(start)
	var notes []string
	if err != nil {
		if status.Code(err) == codes.FailedPrecondition {
			delete(m.st.pending, victim)
			f.Description = fmt.Sprintf("removing %s (%s) refused", victim, what)
			return f, skipped("kvd refused to remove %s: %v", victim, err)
		}
		// The outcome is unknown: look.
		mctx, cancel := context.WithTimeout(ctx, m.t.members)
		ms, lerr := c.Members(mctx)
		cancel()
		if lerr != nil || isMember(ms, victim) {
			f.Description = fmt.Sprintf("removing %s (%s) failed", victim, what)
			return f, fmt.Errorf("remove %s: %w", victim, err)
		}
		notes = append(notes, fmt.Sprintf("MemberRemove answered %q, but %s is gone from the membership", err, victim))
	}
	code, exited := c.WaitExit(victim, m.t.exit)
	stopped := time.Since(start)
	switch {
	case !wasRunning:
		notes = append(notes, "it was down already")
	case !exited:
		if err := c.Kill(victim); err != nil {
			return f, err
		}
		notes = append(notes, fmt.Sprintf("it was still running %s after its removal: killed", m.t.exit))
	case code != exitRemoved:
		notes = append(notes, fmt.Sprintf("it exited with status %d after %s, not %d", code, stopped.Round(time.Millisecond), exitRemoved))
	default:
		notes = append(notes, fmt.Sprintf("it exited with status %d after %s", code, stopped.Round(time.Millisecond)))
	}
	if err := c.Wipe(victim); err != nil {
		return f, err
	}
	f.Description = fmt.Sprintf("removed %s (%s) in %s; %s; data wiped; heal rejoins it as %s",
		victim, what, removed.Round(time.Millisecond), strings.Join(notes, "; "), how)
	return f, nil
}

// waitMembers reads the membership, waiting up to t.members for a leader
// (a fault that follows a heal may find the cluster still electing one).
func waitMembers(ctx context.Context, c Cluster, t timeouts) ([]*client.Member, error) {
	ctx, cancel := context.WithTimeout(ctx, t.members)
	defer cancel()
	var ms []*client.Member
	err := poll.Until(ctx, t.poll, func() (err error) {
		ms, err = c.Members(ctx)
		return err
	})
	return ms, err
}

func isMember(ms []*client.Member, name string) bool {
	for _, m := range ms {
		if m.GetName() == name {
			return true
		}
	}
	return false
}

// Heal brings every member back: a member removed by a churn is started
// again with --join (and promoted if it rejoined as a learner), a member
// that is down is restarted on its data, a learner is promoted; it waits
// until every member is a running voter and the rejoined ones are healthy
// in the leader's eyes and have applied what the leader had applied when
// they first looked healthy (so that a rejoined member is past its
// catch-up before the next fault).
//
// A member the leader lists that stopped with status 3 (it believes it was
// removed, and refuses to start on its data again) is a kvd bug: Heal
// recovers from it as an operator would (MemberRemove, then rejoin with an
// empty data directory) and reports it as an incident (see Observer).
func (m *churn) Heal(ctx context.Context, c Cluster) error {
	ctx, cancel := context.WithTimeout(ctx, m.t.heal)
	defer cancel()
	r := &reconciler{m: m, c: c, start: time.Now(), last: map[string]time.Time{},
		joining: map[string]time.Time{}, target: map[string]uint64{}}
	for {
		done, err := r.pass(ctx)
		if done {
			m.st.report = append(m.st.report, r.log...)
			return nil
		}
		select {
		case <-ctx.Done():
			m.st.report = append(m.st.report, r.log...)
			return fmt.Errorf("membership not restored after %s: %w", time.Since(r.start).Round(time.Millisecond), err)
		case <-time.After(m.t.poll):
		}
	}
}

// Incidents returns the kvd misbehaviour the Heals saw, and forgets it.
func (m *churn) Incidents() []string {
	out := m.st.incidents
	m.st.incidents = nil
	return out
}

// Report tells what the last Heals did, and forgets it.
func (m *churn) Report() string {
	s := strings.Join(m.st.report, "; ")
	m.st.report = nil
	return s
}

// reconciler is one Heal: it looks at the membership and the processes and
// takes the next step for each member, until there is nothing left to do.
type reconciler struct {
	m       *churn
	c       Cluster
	start   time.Time
	last    map[string]time.Time // when a member was last started, rejoined or removed
	joining map[string]time.Time // when a running non-member was first seen
	target  map[string]uint64    // applied index a rejoined member must reach
	log     []string
}

func (r *reconciler) logf(format string, args ...any) {
	r.log = append(r.log, fmt.Sprintf("%.1fs: ", time.Since(r.start).Seconds())+fmt.Sprintf(format, args...))
}

// recently reports whether the last action on n is less than a retry
// interval old.
func (r *reconciler) recently(n string) bool {
	last, ok := r.last[n]
	return ok && time.Since(last) < r.m.t.retry
}

// pass takes one step; done when every member is a running voter and the
// pending ones are healthy and caught up. err says what is still wrong.
func (r *reconciler) pass(ctx context.Context) (done bool, err error) {
	m, c := r.m, r.c
	mctx, cancel := context.WithTimeout(ctx, m.t.members)
	ms, err := c.Members(mctx)
	cancel()
	if err != nil {
		return false, err
	}
	byName := map[string]*client.Member{}
	leader := ""
	for _, mem := range ms {
		byName[mem.GetName()] = mem
		if mem.GetIsLeader() {
			leader = mem.GetName()
		}
	}
	var wrong []string
	for _, n := range c.Nodes() {
		mem, member := byName[n]
		learner, pending := m.st.pending[n]
		running := c.Running(n)
		switch {
		case member && !running:
			wrong = append(wrong, n+" is a member but down")
			if r.recently(n) {
				continue
			}
			r.last[n] = time.Now()
			if code, _ := c.WaitExit(n, 0); code == exitRemoved {
				// It stopped as removed, yet the leader lists it: it will
				// not start on its data again. Remove it and let it rejoin.
				m.st.incidents = append(m.st.incidents, fmt.Sprintf("%s exited with status %d (removed) although the leader %s lists it as a member (%.1fs into the heal)",
					n, code, leader, time.Since(r.start).Seconds()))
				rctx, cancel := context.WithTimeout(ctx, m.t.change)
				err := c.RemoveMember(rctx, n)
				cancel()
				if err != nil {
					r.logf("%s stopped as removed but is a member; MemberRemove: %v", n, err)
					continue
				}
				m.st.pending[n] = learner
				r.logf("%s stopped as removed but was a member: removed it, to rejoin", n)
				continue
			}
			if err := c.Start(n); err != nil {
				return false, err
			}
			r.logf("restarted %s (a member, down)", n)
		case member && mem.GetIsLearner():
			pctx, cancel := context.WithTimeout(ctx, m.t.promote)
			err := c.PromoteMember(pctx, n)
			cancel()
			if err != nil {
				wrong = append(wrong, fmt.Sprintf("%s is a learner (promote: %v)", n, err))
				continue
			}
			r.logf("promoted %s", n)
			wrong = append(wrong, n+" was just promoted")
		case member && pending:
			if !mem.GetHealthy() {
				wrong = append(wrong, n+" votes but the leader does not see it healthy yet")
				continue
			}
			target, ok := r.target[n]
			if !ok {
				actx, cancel := context.WithTimeout(ctx, m.t.rpcProbe)
				target, err = c.AppliedIndex(actx, leader)
				cancel()
				if err != nil {
					wrong = append(wrong, fmt.Sprintf("%s votes; the leader's applied index: %v", n, err))
					continue
				}
				r.target[n] = target
			}
			actx, cancel := context.WithTimeout(ctx, m.t.rpcProbe)
			applied, err := c.AppliedIndex(actx, n)
			cancel()
			if err != nil || applied < target {
				wrong = append(wrong, fmt.Sprintf("%s votes and catches up: applied %d of %d (%v)", n, applied, target, err))
				continue
			}
			delete(m.st.pending, n)
			r.logf("%s is a healthy voter again, applied index %d", n, applied)
		case member:
		case !pending:
			wrong = append(wrong, n+" is not a member, and no churn removed it")
		case running:
			// Joining, or removed and not stopped yet.
			first, ok := r.joining[n]
			if !ok {
				r.joining[n] = time.Now()
			} else if time.Since(first) > m.t.join {
				if err := c.Kill(n); err != nil {
					return false, err
				}
				delete(r.joining, n)
				r.logf("%s not a member %s after it started: killed", n, m.t.join)
			}
			wrong = append(wrong, n+" is joining")
		default:
			// Removed and stopped: bring it back, not too often.
			delete(r.joining, n)
			wrong = append(wrong, n+" is not a member and down")
			if r.recently(n) {
				continue
			}
			if err := c.Rejoin(n, learner); err != nil {
				return false, err
			}
			r.last[n] = time.Now()
			delete(r.target, n)
			how := "a voter"
			if learner {
				how = "a learner"
			}
			r.logf("started %s with --join, as %s", n, how)
		}
	}
	if len(wrong) > 0 {
		sort.Strings(wrong)
		return false, fmt.Errorf("%s", strings.Join(wrong, "; "))
	}
	return true, nil
}

// transfer moves leadership through the SDK (LeaderTransfer): to a random
// other voter, or, without a target, to the voter kvd picks. It logs the old
// and the new leader. There is nothing to heal. A transfer kvd refuses
// (FailedPrecondition) or that certainly did not happen (NOT_APPLIED: raft's
// transfer failed) is a skipped fault.
type transfer struct {
	name   string
	random bool // to a random other voter; otherwise no target
	t      timeouts
}

func (tr *transfer) Name() string { return tr.name }

// transferTarget picks a random voter of ms other than leader; "" when
// there is none.
func transferTarget(ms []*client.Member, leader string, rng *rand.Rand) string {
	var others []string
	for _, m := range ms {
		if m.GetName() != leader && !m.GetIsLearner() {
			others = append(others, m.GetName())
		}
	}
	if len(others) == 0 {
		return ""
	}
	sort.Strings(others)
	return others[rng.Intn(len(others))]
}

func (tr *transfer) Start(ctx context.Context, c Cluster, rng *rand.Rand) (Fault, error) {
	t := tr.t
	ms, err := waitMembers(ctx, c, t)
	if err != nil {
		return Fault{Description: "membership unknown"}, skipped("reading the membership: %v", err)
	}
	old := ""
	for _, m := range ms {
		if m.GetIsLeader() {
			old = m.GetName()
		}
	}
	to, asked := "", "no target"
	if tr.random {
		if to = transferTarget(ms, old, rng); to == "" {
			return Fault{Nodes: []string{old}, Description: "no other voter"}, skipped("no voter but the leader %s", old)
		}
		asked = "to " + to
	}
	f := Fault{Nodes: []string{old}}
	start := time.Now()
	tctx, cancel := context.WithTimeout(ctx, t.change)
	named, err := c.TransferLeader(tctx, to)
	cancel()
	took := time.Since(start)
	if err != nil {
		if status.Code(err) == codes.FailedPrecondition || apierr.IsNotApplied(err) {
			f.Description = fmt.Sprintf("leader transfer from %s (%s) refused or not done", old, asked)
			return f, skipped("leader transfer from %s (%s): %v", old, asked, err)
		}
		f.Description = fmt.Sprintf("leader transfer from %s (%s) failed after %s", old, asked, took.Round(time.Millisecond))
		return f, fmt.Errorf("leader transfer from %s (%s): %w", old, asked, err)
	}
	// The leader as the members see it: the one that leads in the highest
	// term, once it is not the old one.
	now := old
	deadline := time.Now().Add(t.settle)
	for {
		pctx, cancel := context.WithTimeout(ctx, t.rpcProbe)
		l, err := c.Leader(pctx)
		cancel()
		if err == nil {
			now = l
		}
		if (err == nil && l != old) || time.Now().After(deadline) || ctx.Err() != nil {
			break
		}
		time.Sleep(t.poll)
	}
	if named == "" {
		named = "none yet"
	}
	f.Description = fmt.Sprintf("leader transfer (%s): old leader %s, new leader %s (the old one answered %s after %s)",
		asked, old, now, named, took.Round(time.Millisecond))
	switch {
	case now == old:
		f.Description += fmt.Sprintf("; leadership had not moved %s later", t.settle)
	case to != "" && now != to:
		f.Description += "; not the voter asked for"
	}
	if now != old {
		f.Nodes = []string{old, now}
	}
	return f, nil
}

// Heal does nothing: a transfer leaves nothing to undo.
func (tr *transfer) Heal(context.Context, Cluster) error { return nil }
