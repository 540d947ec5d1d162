package member

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/kvd-io/kvd/internal/lease"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
)

// Lease renewals are batched: renewBatcher takes the renewals that arrive
// while the previous batch is in flight and renews them together, with one
// confirmation of leadership on the leader and, on a follower, one peer
// call (Peers.LeaseRenewBatch) instead of one per lease. A lone renewal
// waits for nothing; under load the batches grow, as a write batch does.

// maxRenewBatch bounds the leases renewed in one batch (about 8 KiB on
// the wire).
const maxRenewBatch = 1024

// renewal is one lease renewal waiting for its batch.
type renewal struct {
	id  int64
	ttl int64
	err error
	// done is closed when the renewal is answered, unless fn is set: fn
	// is then called instead, on the batcher's goroutine.
	done chan struct{}
	fn   func(ttl int64, err error)
}

// answer hands the renewal's outcome to whoever waits for it.
func (r *renewal) answer() {
	if r.fn != nil {
		r.fn(r.ttl, r.err)
		return
	}
	close(r.done)
}

// LeaseRenew renews a lease for its full TTL and returns the TTL. It fails
// with ErrLeaseNotFound for a lease that does not exist or whose time is
// up. A follower asks the leader.
func (m *Member) LeaseRenew(ctx context.Context, id int64) (int64, error) {
	return m.renewals.renew(ctx, m.ctx.Done(), id)
}

// LeaseRenewAsync is LeaseRenew for a caller that must not hold a
// goroutine while the renewal waits for its batch, nor wait to queue it
// (the ops of a KVService.Stream, read by one goroutine for all of a
// client's requests): fn is called once with the outcome, on one of the
// member's workers, as a proposal's callback is (it may send on a slow
// stream; the batcher must not wait for that). When maxRenewBatch renewals
// are already queued it fails at once with errRenewalsQueued, not applied,
// which the client retries.
func (m *Member) LeaseRenewAsync(id int64, fn func(ttl int64, err error)) {
	m.renewals.renewAsync(id, func(ttl int64, err error) {
		m.workers.Submit(func() { fn(ttl, err) })
	})
}

// errRenewalsQueued refuses a renewal that would have to wait to be queued.
var errRenewalsQueued = fmt.Errorf("%w: %d lease renewals are already queued on this member; try again", ErrNotApplied, maxRenewBatch)

// renewBatcher gathers renewals into batches for flush, one batch at a
// time.
type renewBatcher struct {
	queue chan *renewal
	// mu and closed let renewAsync queue without a goroutine to wait
	// for the answer.
	mu     sync.Mutex
	closed bool
	// flush renews ids and returns their TTLs in order, 0 for a lease
	// that does not exist.
	flush func(ids []int64) ([]int64, error)
}

func newRenewBatcher(flush func([]int64) ([]int64, error)) *renewBatcher {
	return &renewBatcher{queue: make(chan *renewal, maxRenewBatch), flush: flush}
}

// renew queues a renewal of id and waits for its batch; stopped closes
// when run's context ends.
func (b *renewBatcher) renew(ctx context.Context, stopped <-chan struct{}, id int64) (int64, error) {
	r := &renewal{id: id, done: make(chan struct{})}
	select {
	case b.queue <- r:
	case <-ctx.Done():
		return 0, fmt.Errorf("renew lease %d: %w", id, ctx.Err())
	case <-stopped:
		return 0, ErrStopped
	}
	select {
	case <-r.done:
		return r.ttl, r.err
	case <-ctx.Done():
		// The batch still renews it: a renewal the client gave up on
		// only keeps the lease a little longer, as a renewal lost on its
		// way back would.
		return 0, fmt.Errorf("renew lease %d: %w", id, ctx.Err())
	case <-stopped:
		// Queued after run stopped: nobody will answer it.
		return 0, ErrStopped
	}
}

// renewAsync queues a renewal of id whose outcome goes to fn, or fails it
// at once when the queue is full or the batcher has stopped. It never
// waits: mu is held only to queue without blocking, so that run, which
// sets closed under mu before it fails what is queued, answers every
// renewal renewAsync queued.
func (b *renewBatcher) renewAsync(id int64, fn func(int64, error)) {
	r := &renewal{id: id, fn: fn}
	b.mu.Lock()
	var err error
	switch {
	case b.closed:
		err = ErrStopped
	default:
		select {
		case b.queue <- r:
		default:
			err = errRenewalsQueued
		}
	}
	b.mu.Unlock()
	if err != nil {
		fn(0, err)
	}
}

// run flushes the queued renewals in batches until ctx ends, then fails
// those still queued with ErrStopped.
func (b *renewBatcher) run(ctx context.Context) {
	batch := make([]*renewal, 0, maxRenewBatch)
	ids := make([]int64, 0, maxRenewBatch)
	for {
		// Stop first when both a renewal and the end are ready.
		if ctx.Err() != nil {
			b.failQueued()
			return
		}
		select {
		case r := <-b.queue:
			batch = append(batch, r)
		case <-ctx.Done():
			b.failQueued()
			return
		}
	gather:
		for len(batch) < maxRenewBatch {
			select {
			case r := <-b.queue:
				batch = append(batch, r)
			default:
				break gather
			}
		}
		for _, r := range batch {
			ids = append(ids, r.id)
		}
		ttls, err := b.flush(ids)
		if err == nil && len(ttls) != len(ids) {
			err = fmt.Errorf("%w: renewed %d leases of %d", ErrNotApplied, len(ttls), len(ids))
		}
		for i, r := range batch {
			switch {
			case err != nil:
				r.err = err
			case ttls[i] == 0:
				r.err = fmt.Errorf("%w: %d", ErrLeaseNotFound, r.id)
			default:
				r.ttl = ttls[i]
			}
			r.answer()
		}
		clear(batch)
		batch, ids = batch[:0], ids[:0]
	}
}

// failQueued answers the renewals still queued when run stops.
func (b *renewBatcher) failQueued() {
	b.mu.Lock()
	b.closed = true
	b.mu.Unlock()
	for {
		select {
		case r := <-b.queue:
			r.err = ErrStopped
			r.answer()
		default:
			return
		}
	}
}

// renewBatch renews ids here on the leader or asks the leader.
func (m *Member) renewBatch(ids []int64) (ttls []int64, err error) {
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.RequestTimeout)
	defer cancel()
	err = m.onLeader(ctx, func(ctx context.Context) (err error) {
		ttls, err = m.LeaseRenewBatchLocal(ctx, ids)
		return err
	}, func(ctx context.Context, addr string) (err error) {
		ttls, err = m.peers.LeaseRenewBatch(ctx, addr, ids)
		return err
	})
	return ttls, err
}

// LeaseRenewLocal is LeaseRenew on the leader, for one lease
// (PeerService.LeaseRenew, which followers of an older version call): a
// member that does not lead refuses.
func (m *Member) LeaseRenewLocal(ctx context.Context, id int64) (int64, error) {
	ttls, err := m.LeaseRenewBatchLocal(ctx, []int64{id})
	if err != nil {
		return 0, err
	}
	if ttls[0] == 0 {
		return 0, fmt.Errorf("%w: %d", ErrLeaseNotFound, id)
	}
	return ttls[0], nil
}

// LeaseRenewBatchLocal renews leases on the leader
// (PeerService.LeaseRenewBatch): ttls[i] is the TTL ids[i] was renewed
// for, or 0 when that lease does not exist. A member that does not lead
// refuses the whole batch.
func (m *Member) LeaseRenewBatchLocal(ctx context.Context, ids []int64) ([]int64, error) {
	if err := m.awaitTimingLeases(ctx); err != nil {
		return nil, err
	}
	if err := m.confirmLeadership(ctx); err != nil {
		return nil, err
	}
	ttls := make([]int64, len(ids))
	var clearing []*fsmv1.LeaseRemaining
	for i, id := range ids {
		ttl, clearCheckpoint, err := m.lessor.Renew(id)
		switch {
		case errors.Is(err, lease.ErrNotFound):
			continue // ttl 0
		case err != nil:
			return nil, m.lessorError(id, err)
		}
		ttls[i] = ttl
		if clearCheckpoint {
			clearing = append(clearing, &fsmv1.LeaseRemaining{Id: id})
		}
	}
	if len(clearing) > 0 {
		// The state holds remaining TTLs from before these renewals; a new
		// leader would restart the leases at them. Clear them first.
		cp := &fsmv1.LeaseCheckpoint{Leases: clearing}
		if _, err := m.proposeCommand(ctx, fsmv1.CommandType_COMMAND_TYPE_LEASE_CHECKPOINT, cp); err != nil {
			return nil, err
		}
	}
	return ttls, nil
}
