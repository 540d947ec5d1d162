package rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"

	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/watch"
	"github.com/kvd-io/kvd/member"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// The lock and election services run etcd's concurrency recipes inside the
// member, over the member's own KV API (kvService: validation, features,
// quota) and its watch hub, as the SDK's client/concurrency runs them over
// a client. They write the same keys: a queue of keys under "name/", one
// per lease ("name/" and the lease id in hex), each written with its lease;
// the oldest (by create revision) is first. A waiter waits for the deletion
// of the key just ahead of it, then reads the queue again, as etcd's do.
//
// The queue is a recipe, not a server-side object: the member keeps nothing
// for a waiter but its call, so any member serves any call, and a waiter
// whose call ends leaves nothing behind but its key (deleted on the way out,
// or with its lease).

// RecipeNode is what LockService and ElectionService need: the KV API, the
// watch hub, and the leader's view of leases.
type RecipeNode interface {
	KVNode
	// NewWatchStream opens a stream of watchers on the member's hub.
	NewWatchStream() *watch.Stream
	// LeaseTimeToLive asks the leader for a lease's remaining TTL (-1 when
	// it does not exist).
	LeaseTimeToLive(ctx context.Context, id int64, keys bool) (*kvv1.LeaseTimeToLiveResponse, error)
}

// Errors of the lock and election services.
var (
	// ErrEmptyName: a lock or an election without a name.
	ErrEmptyName = errors.New("name is empty")
	// ErrLeaseRequired: a lock or a campaign without a lease.
	ErrLeaseRequired = errors.New("a lease is required (grant one with LeaseGrant and keep it alive)")
	// ErrElectionNotLeader: Proclaim by a leader key that no longer leads.
	ErrElectionNotLeader = errors.New("election: not leader")
	// ErrElectionNoLeader: Leader found nobody leading.
	ErrElectionNoLeader = errors.New("election: no leader")
	// ErrQueueKeyTaken: a lease's key in a queue exists with another lease
	// (something other than the recipes wrote it).
	ErrQueueKeyTaken = errors.New("the lease's key in the queue exists with another lease")
)

// errDraining ends a wait when the member shuts down: the caller retries on
// another member, where its key (if it was written) keeps its place.
var errDraining = fmt.Errorf("%w: this member is shutting down; retry through another", member.ErrNotApplied)

// errRequeue: the history a wait followed was compacted; read the queue
// again.
var errRequeue = errors.New("history compacted during the wait")

// queue runs the recipes over the member.
type queue struct {
	kv   *kvService
	node RecipeNode
}

// queueKey is the lease's key in the queue of name.
func queueKey(name []byte, lease int64) []byte {
	return strconv.AppendInt(queuePrefix(name), lease, 16)
}

// queuePrefix is the prefix of the keys of name's queue.
func queuePrefix(name []byte) []byte {
	return append(bytes.Clone(name), '/')
}

// checkQueue validates a lock's or a campaign's name and lease.
func checkQueue(name []byte, lease int64) error {
	if len(name) == 0 {
		return ErrEmptyName
	}
	if lease == 0 {
		return ErrLeaseRequired
	}
	if lease < 0 {
		return fmt.Errorf("%w: lease id %d is negative", fsm.ErrInvalidLease, lease)
	}
	return nil
}

// leaseLost is the error of a waiter whose key went while it waited: its
// lease expired or was revoked (or someone deleted the key).
func leaseLost(lease int64) error {
	return fmt.Errorf("%w: lease %x expired or was revoked (or its key deleted) while waiting", fsm.ErrLeaseNotFound, lease)
}

// place is a lease's place in a queue, as join found it.
type place struct {
	prefix, key []byte
	lease       int64
	rev         int64          // the key's create revision
	held        *kvv1.KeyValue // the key as it was, when it already existed
	first       bool           // nobody was ahead of it
	header      *kvv1.ResponseHeader
}

// join writes the lease's key with value unless it is there already (a
// lease holds one place in a queue), and reads the oldest key of the queue
// in the same transaction: when that is the lease's own, it is first
// without another read.
func (q *queue) join(ctx context.Context, name []byte, lease int64, value []byte) (*place, error) {
	p := &place{prefix: queuePrefix(name), key: queueKey(name, lease), lease: lease}
	oldest := &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestRange{RequestRange: &kvv1.RangeRequest{
		Key: p.prefix, RangeEnd: fsm.PrefixEnd(p.prefix), KeysOnly: true, Limit: 1,
		SortTarget: kvv1.RangeRequest_SORT_TARGET_CREATE, SortOrder: kvv1.RangeRequest_SORT_ORDER_ASCEND,
	}}}
	resp, err := q.kv.Txn(ctx, &kvv1.TxnRequest{
		Compare: []*kvv1.Compare{createRevIs(p.key, 0)},
		Success: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestPut{RequestPut: &kvv1.PutRequest{Key: p.key, Value: value, Lease: lease}}}, oldest},
		Failure: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestRange{RequestRange: &kvv1.RangeRequest{Key: p.key}}}, oldest},
	})
	if err != nil {
		return nil, err
	}
	if len(resp.GetResponses()) != 2 {
		return nil, fmt.Errorf("%w: %d results for the queue's 2 operations", errUnexpectedResult, len(resp.GetResponses()))
	}
	p.header, p.rev = resp.GetHeader(), resp.GetHeader().GetRevision()
	if !resp.GetSucceeded() {
		kvs := resp.GetResponses()[0].GetResponseRange().GetKvs()
		if len(kvs) != 1 {
			return nil, fmt.Errorf("%w: queue key %q: the compare found it but the read did not", errUnexpectedResult, p.key)
		}
		if kvs[0].GetLease() != lease {
			return nil, fmt.Errorf("%w: %q has lease %x, not %x", ErrQueueKeyTaken, p.key, kvs[0].GetLease(), lease)
		}
		p.rev, p.held = kvs[0].GetCreateRevision(), kvs[0]
	}
	first := resp.GetResponses()[1].GetResponseRange().GetKvs()
	p.first = len(first) == 1 && first[0].GetCreateRevision() == p.rev
	return p, nil
}

// createRevIs compares key's create revision with rev (0: absent).
func createRevIs(key []byte, rev int64) *kvv1.Compare {
	return &kvv1.Compare{Key: key, Target: kvv1.Compare_COMPARE_TARGET_CREATE, Result: kvv1.Compare_COMPARE_RESULT_EQUAL,
		TargetUnion: &kvv1.Compare_CreateRevision{CreateRevision: rev}}
}

// waitFirst waits until p's key is the oldest of its queue, ctx ends, or
// the key goes (leaseLost). Then, before it reports the key first, it asks
// the leader whether the lease is still alive: the leader may have found
// it expired before the revocation that deletes the key is applied.
// Jepsen found etcd's lock service reporting a lock acquired after the
// waiter's lease had expired (etcd 3.4.3, fixed in etcd #11408). It returns
// the header of the last read that found the key first.
func (q *queue) waitFirst(ctx context.Context, p *place) (*kvv1.ResponseHeader, error) {
	ctx, stop := q.untilDrain(ctx)
	defer stop()
	hdr := p.header
	// The first reads are linearizable: this member has then applied the
	// join. Later ones, after this member's watch saw a delete, read its
	// state as it is: it has applied the join already, and the keys ahead
	// can only go (a key created later has a larger create revision), so
	// a local read misses none of them.
	linearize := true
	for !p.first {
		// The key just ahead, then the caller's own: the watch from the
		// first read's revision sees either go.
		if linearize {
			if err := q.node.Linearize(ctx); err != nil {
				return nil, q.waitError(ctx, err)
			}
		}
		ahead, err := q.kv.rangeLocal(&kvv1.RangeRequest{Key: p.prefix, RangeEnd: fsm.PrefixEnd(p.prefix), MaxCreateRevision: p.rev - 1,
			SortTarget: kvv1.RangeRequest_SORT_TARGET_CREATE, SortOrder: kvv1.RangeRequest_SORT_ORDER_DESCEND, Limit: 1, KeysOnly: true})
		if err != nil {
			return nil, err
		}
		own, err := q.kv.rangeLocal(&kvv1.RangeRequest{Key: p.key})
		if err != nil {
			return nil, err
		}
		if kvs := own.GetKvs(); len(kvs) != 1 || kvs[0].GetCreateRevision() != p.rev || kvs[0].GetLease() != p.lease {
			return nil, leaseLost(p.lease)
		}
		if len(ahead.GetKvs()) == 0 {
			hdr = own.GetHeader()
			break
		}
		err = q.waitDelete(ctx, ahead.GetHeader().GetRevision()+1, ahead.GetKvs()[0].GetKey(), p.key)
		switch {
		case errors.Is(err, errRequeue):
			linearize = true
		case err != nil:
			return nil, q.waitError(ctx, err)
		default:
			linearize = false
		}
	}
	ttl, err := q.node.LeaseTimeToLive(ctx, p.lease, false)
	if err != nil {
		return nil, q.waitError(ctx, err)
	}
	if ttl.GetTtl() <= 0 {
		return nil, leaseLost(p.lease)
	}
	return hdr, nil
}

// waitDelete waits until one of keys is deleted at or after revision from.
// errRequeue when the history from there was compacted meanwhile.
func (q *queue) waitDelete(ctx context.Context, from int64, keys ...[]byte) error {
	ws := q.node.NewWatchStream()
	defer ws.Close()
	for _, k := range keys {
		ws.Watch(&kvv1.WatchCreateRequest{Key: k, StartRevision: from, Filters: []kvv1.WatchFilter{kvv1.WatchFilter_WATCH_FILTER_NO_PUT}})
	}
	for {
		rs, err := ws.Next(ctx)
		if err != nil {
			return err
		}
		for _, r := range rs {
			switch {
			case r.GetCanceled() && r.GetCompactRevision() > 0:
				return errRequeue
			case r.GetCanceled():
				return fmt.Errorf("watch of the queue ended: %s", r.GetCancelReason())
			case len(r.GetEvents()) > 0:
				return nil // a delete: the only events asked for
			}
		}
	}
}

// leave deletes the caller's key after a failed wait, on a context of its
// own (the caller's may have ended), unless it is another generation of the
// key. On failure the lease's end deletes it.
func (q *queue) leave(key []byte, rev int64) {
	ctx, cancel := context.WithTimeout(context.Background(), q.node.RequestTimeout())
	defer cancel()
	_, _ = q.kv.Txn(ctx, &kvv1.TxnRequest{
		Compare: []*kvv1.Compare{createRevIs(key, rev)},
		Success: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestDeleteRange{RequestDeleteRange: &kvv1.DeleteRangeRequest{Key: key}}}},
	})
}

// leaveUnlessDraining leaves the queue after a wait that failed with err,
// except when the member's shutdown ended it: then the key keeps its place
// for the caller's retry through another member (or goes with the lease).
func (q *queue) leaveUnlessDraining(p *place, err error) {
	if !errors.Is(err, errDraining) {
		q.leave(p.key, p.rev)
	}
}

// untilDrain returns ctx ended also when the member begins to shut down.
func (q *queue) untilDrain(ctx context.Context) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		select {
		case <-q.node.Draining():
			cancel(errDraining)
		case <-done:
		case <-ctx.Done():
		}
	}()
	return ctx, func() { close(done); cancel(nil) }
}

// waitError is err, or errDraining when the member's shutdown ended the
// wait.
func (q *queue) waitError(ctx context.Context, err error) error {
	if cause := context.Cause(ctx); errors.Is(cause, errDraining) {
		return errDraining
	}
	return err
}
