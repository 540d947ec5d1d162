package member

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/lease"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Leases: their records (id, TTL, attached keys) are replicated state (package
// fsm); their clocks run on the leader only (package lease), which proposes
// the revocation of each lease whose time is up. Every member mirrors the
// records into its lessor as the log applies them (leaseFeed), so that the
// one that becomes leader knows them all; it starts timing them once it has
// applied every entry of earlier terms (startTerm), extending each by the
// election timeout.
//
// Renewals and TimeToLive need the leader's clock: a follower forwards them
// (Peers.LeaseRenewBatch, Peers.LeaseTimeToLive; renew.go batches renewals). The leader confirms that it
// still leads, as for a linearizable read, before it renews: a leader that
// was paused and deposed must not acknowledge a renewal that the new leader,
// which may already have expired the lease, never saw.

// Lease errors.
var (
	// ErrLeaseTTLTooShort: a grant below the cluster's minimum TTL.
	ErrLeaseTTLTooShort = errors.New("lease TTL is below the minimum")
	// ErrLeaseTTLTooLong: a grant above MaxLeaseTTL.
	ErrLeaseTTLTooLong = errors.New("lease TTL is too large")
	// ErrLeasesUnsupported: a member of the cluster cannot apply lease
	// commands, nor puts that use leases, ignore_value or ignore_lease (a
	// rolling upgrade is under way).
	ErrLeasesUnsupported = errors.New("a member of the cluster cannot apply lease commands yet")
	// ErrLeaseNotFound: no such lease (never granted, revoked or expired).
	ErrLeaseNotFound = fsm.ErrLeaseNotFound
)

// MaxLeaseTTL is the longest TTL a lease may be granted, in seconds: etcd's.
const MaxLeaseTTL = 9_000_000_000

const (
	// leaseRevokeBatch bounds the revocations the leader proposes per tick,
	// so that mass expiry does not flood the log (etcd: 1,000 a second).
	leaseRevokeBatch = 500
	// leaseCheckpointBatch bounds the leases in one checkpoint command.
	leaseCheckpointBatch = 1000
)

// MinLeaseTTL returns the shortest TTL a lease may be granted, in seconds:
// one and a half election timeouts, rounded up, as etcd's. A shorter lease
// could expire during the election that follows a leader's failure.
func (m *Member) MinLeaseTTL() int64 {
	d := m.electionTimeout() * 3 / 2
	return int64((d + time.Second - 1) / time.Second)
}

// electionTimeout is how long the cluster may go without a leader after the
// old one fails: hashicorp/raft's followers wait the heartbeat timeout
// before they stand, candidates the election timeout.
func (m *Member) electionTimeout() time.Duration {
	return max(m.cfg.HeartbeatTimeout, m.cfg.ElectionTimeout)
}

// LeaseGrant grants a lease of ttl seconds with the given id, or one the
// member picks when id is zero.
func (m *Member) LeaseGrant(ctx context.Context, id, ttl int64) (*kvv1.LeaseGrantResponse, error) {
	if min := m.MinLeaseTTL(); ttl < min {
		return nil, fmt.Errorf("%w: %d s asked, the minimum is %d s (1.5 x the election timeout)", ErrLeaseTTLTooShort, ttl, min)
	}
	if ttl > MaxLeaseTTL {
		return nil, fmt.Errorf("%w: %d s asked, the maximum is %d s", ErrLeaseTTLTooLong, ttl, MaxLeaseTTL)
	}
	if id < 0 {
		return nil, fmt.Errorf("%w: lease id %d is negative", fsm.ErrInvalidLease, id)
	}
	if err := m.RequireFeature(fsm.FeatureLeases); err != nil {
		return nil, err
	}
	if err := m.CheckQuota(64); err != nil {
		return nil, err
	}
	pick := id == 0
	for attempt := 0; ; attempt++ {
		if pick {
			id = rand.Int64N(1<<62) + 1 // positive, and unlikely to be in use
		}
		res, err := m.proposeMsg(ctx, fsmv1.CommandType_COMMAND_TYPE_LEASE_GRANT, &fsmv1.LeaseGrant{Id: id, Ttl: ttl})
		if pick && errors.Is(err, fsm.ErrLeaseExists) && attempt < 3 {
			continue
		}
		if err != nil {
			return nil, err
		}
		return resultAs[*kvv1.LeaseGrantResponse](res, "a lease grant")
	}
}

// LeaseRevoke revokes a lease and deletes its keys.
func (m *Member) LeaseRevoke(ctx context.Context, id int64) (*kvv1.LeaseRevokeResponse, error) {
	res, err := m.proposeMsg(ctx, fsmv1.CommandType_COMMAND_TYPE_LEASE_REVOKE, &fsmv1.LeaseRevoke{Id: id})
	if err != nil {
		return nil, err
	}
	return resultAs[*kvv1.LeaseRevokeResponse](res, "a lease revocation")
}

// onLeader runs here on the leader, or remote with the leader's address on
// a follower (or when the leader changes while it looks for it).
func (m *Member) onLeader(ctx context.Context, here func(context.Context) error, remote func(context.Context, string) error) error {
	ctx, cancel := m.withDefaultTimeout(ctx)
	defer cancel()
	if m.IsLeader() {
		return here(ctx)
	}
	addr, _, err := m.leaderAddr(ctx)
	switch {
	case errors.Is(err, ErrSelfIsLeader):
		return here(ctx)
	case err != nil:
		return err
	}
	return remote(ctx, addr)
}

// LeaseTimeToLive reports a lease's remaining and granted TTL and, with
// keys, its keys. A lease that does not exist is answered with TTL -1, as
// etcd does. A follower asks the leader.
func (m *Member) LeaseTimeToLive(ctx context.Context, id int64, keys bool) (resp *kvv1.LeaseTimeToLiveResponse, err error) {
	err = m.onLeader(ctx, func(ctx context.Context) (err error) {
		resp, err = m.LeaseTimeToLiveLocal(ctx, id, keys)
		return err
	}, func(ctx context.Context, addr string) (err error) {
		resp, err = m.peers.LeaseTimeToLive(ctx, addr, &kvv1.LeaseTimeToLiveRequest{Id: id, Keys: keys})
		return err
	})
	return resp, err
}

// LeaseTimeToLiveLocal is LeaseTimeToLive on the leader
// (PeerService.LeaseTimeToLive): a member that does not lead refuses.
func (m *Member) LeaseTimeToLiveLocal(ctx context.Context, id int64, keys bool) (*kvv1.LeaseTimeToLiveResponse, error) {
	if err := m.awaitTimingLeases(ctx); err != nil {
		return nil, err
	}
	if err := m.confirmLeadership(ctx); err != nil {
		return nil, err
	}
	// The confirmation's read index is applied here: the state reflects
	// every grant and revocation acknowledged before the call.
	resp := &kvv1.LeaseTimeToLiveResponse{Header: m.Header(m.Revision()), Id: id, Ttl: -1}
	granted, remaining, err := m.lessor.Remaining(id)
	if errors.Is(err, lease.ErrNotFound) {
		return resp, nil
	}
	if err != nil {
		return nil, m.lessorError(id, err)
	}
	resp.Ttl, resp.GrantedTtl = remaining, granted
	if keys {
		ks, err := m.fsm.LeaseKeys(id)
		if err != nil {
			return nil, err
		}
		resp.Keys = ks
	}
	return resp, nil
}

// Leases lists every lease, as of a linearizable read.
func (m *Member) Leases(ctx context.Context) (*kvv1.LeaseLeasesResponse, error) {
	if err := m.Linearize(ctx); err != nil {
		return nil, err
	}
	ls, err := m.fsm.Leases()
	if err != nil {
		return nil, err
	}
	resp := &kvv1.LeaseLeasesResponse{Header: m.Header(m.Revision())}
	for _, l := range ls {
		resp.Leases = append(resp.Leases, &kvv1.LeaseStatus{Id: l.ID})
	}
	return resp, nil
}

// awaitTimingLeases waits until this member, leading, has applied the
// first command of its term and times leases. A new leader gets there
// within moments of its election, while the renewals that the election held
// up arrive: refusing them would make every client of a failed leader start
// its keep-alive stream over, and send all its renewals again, at the time
// its leases have the least time left. It fails at once on a member that
// does not lead, and with ErrNotReady when ctx ends first.
func (m *Member) awaitTimingLeases(ctx context.Context) error {
	ctx, cancel := m.withDefaultTimeout(ctx)
	defer cancel()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for {
		if !m.IsLeader() {
			return fmt.Errorf("%w: %s is not the leader", ErrNoLeader, m.cfg.Name)
		}
		if m.readyTerm.Load() == m.raft.CurrentTerm() && m.lessor.Primary() {
			return nil
		}
		select {
		case <-poll.C:
		case <-ctx.Done():
			return fmt.Errorf("%w: %s is not timing leases yet", ErrNotReady, m.cfg.Name)
		case <-m.ctx.Done():
			return ErrStopped
		}
	}
}

// confirmLeadership makes sure this member leads and has applied
// everything committed before the call, as a linearizable read on the
// leader does.
func (m *Member) confirmLeadership(ctx context.Context) error {
	if !m.IsLeader() {
		return fmt.Errorf("%w: %s is not the leader", ErrNoLeader, m.cfg.Name)
	}
	ctx, cancel := m.withDefaultTimeout(ctx)
	defer cancel()
	index, err := m.reads.ReadIndex(ctx)
	if err != nil {
		return err
	}
	return m.waitApplied(ctx, index)
}

// lessorError turns the lessor's answer into the member's.
func (m *Member) lessorError(id int64, err error) error {
	switch {
	case errors.Is(err, lease.ErrNotFound):
		return fmt.Errorf("%w: %d", ErrLeaseNotFound, id)
	case errors.Is(err, lease.ErrNotPrimary):
		// Leading, but not yet timing leases: the first command of the
		// term is not applied yet, or leadership was just lost.
		return fmt.Errorf("%w: %s is not timing leases yet", ErrNotReady, m.cfg.Name)
	}
	return err
}

// proposeMsg encodes a command and puts it through the log from any member.
func (m *Member) proposeMsg(ctx context.Context, t fsmv1.CommandType, msg proto.Message) (any, error) {
	cmd, err := fsm.EncodeClientCommand(t, msg, AuthInfoFrom(ctx))
	if err != nil {
		return nil, err
	}
	return m.Propose(ctx, cmd)
}

// resultAs checks that a proposal's result is a T.
func resultAs[T any](res any, what string) (T, error) {
	out, ok := res.(T)
	if !ok {
		var zero T
		return zero, fmt.Errorf("%w: %T answered %s", ErrOutcomeUnknown, res, what)
	}
	return out, nil
}

// leaseTick is how often the leader looks for expired leases and due
// checkpoints: a quarter of the election timeout, at most half a second,
// so that a lease's keys go within its TTL plus the election timeout.
func (m *Member) leaseTick() time.Duration {
	return min(max(m.cfg.ElectionTimeout/4, 10*time.Millisecond), 500*time.Millisecond)
}

// expireLeases runs on every member until it stops; it acts while this
// member's lessor is primary: it proposes the revocation of every lease
// whose time is up, and the checkpoints that are due.
func (m *Member) expireLeases() {
	tick := time.NewTicker(m.leaseTick())
	defer tick.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-tick.C:
		}
		if !m.IsLeader() {
			continue
		}
		for _, id := range m.lessor.Expired(leaseRevokeBatch) {
			m.proposeRevocation(id)
		}
		if cps := m.lessor.Checkpoints(leaseCheckpointBatch); len(cps) > 0 {
			m.proposeCheckpoints(cps)
		}
	}
}

// proposeRevocation proposes the revocation of an expired lease without
// waiting for it; if it fails, the lessor offers the lease again later.
func (m *Member) proposeRevocation(id int64) {
	cmd, err := fsm.EncodeCommand(fsmv1.CommandType_COMMAND_TYPE_LEASE_REVOKE, &fsmv1.LeaseRevoke{Id: id})
	if err != nil {
		m.log.Error("encode lease revocation", "lease", id, "error", err)
		return
	}
	m.proposeHereAsync(cmd, time.Now().Add(m.cfg.RequestTimeout), func(_ any, err error) {
		switch {
		case err == nil:
			m.log.Debug("lease expired", "lease", id)
		case errors.Is(err, fsm.ErrLeaseNotFound):
			// revoked meanwhile
		default:
			m.log.Info("propose the revocation of an expired lease; will retry", "lease", id, "error", err)
		}
	})
}

func (m *Member) proposeCheckpoints(cps []lease.Checkpoint) {
	cmd := &fsmv1.LeaseCheckpoint{}
	for _, cp := range cps {
		cmd.Leases = append(cmd.Leases, &fsmv1.LeaseRemaining{Id: cp.ID, RemainingTtl: cp.RemainingTTL})
	}
	enc, err := fsm.EncodeCommand(fsmv1.CommandType_COMMAND_TYPE_LEASE_CHECKPOINT, cmd)
	if err != nil {
		m.log.Error("encode lease checkpoint", "error", err)
		return
	}
	m.proposeHereAsync(enc, time.Now().Add(m.cfg.RequestTimeout), func(_ any, err error) {
		if err != nil {
			m.log.Info("propose lease checkpoints; the next ones are due in an interval", "leases", len(cps), "error", err)
		}
	})
}

// leaseFeed mirrors the applied log's lease records into the lessor.
type leaseFeed struct{ m *Member }

func (f leaseFeed) LeasesChanged(events []fsm.LeaseEvent) {
	l := f.m.lessor
	for _, e := range events {
		switch {
		case e.Revoked:
			l.Revoked(e.ID)
		case e.Checkpoint:
			l.Checkpointed(e.ID, e.RemainingTTL)
		default:
			l.Granted(e.ID, e.TTL)
		}
	}
}

func (f leaseFeed) LeasesRestored() { f.m.loadLeases() }

// loadLeases replaces the lessor's leases with the state's.
func (m *Member) loadLeases() {
	ls, err := m.fsm.Leases()
	if err != nil {
		// Reading the state failed: it is broken, and so is everything
		// else; the lessor keeps what it had.
		m.log.Error("read leases", "error", err)
		return
	}
	out := make([]lease.Lease, len(ls))
	for i, l := range ls {
		out[i] = lease.Lease{ID: l.ID, TTL: l.TTL, RemainingTTL: l.RemainingTTL}
	}
	m.lessor.Reset(out)
}
