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

// join writes the lease's key with value unless it is there already (a
// lease holds one place in a queue), and returns its create revision and the
// value it holds.
func (q *queue) join(ctx context.Context, key []byte, lease int64, value []byte) (rev int64, held *kvv1.KeyValue, err error) {
	resp, err := q.kv.Txn(ctx, &kvv1.TxnRequest{
		Compare: []*kvv1.Compare{createRevIs(key, 0)},
		Success: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestPut{RequestPut: &kvv1.PutRequest{Key: key, Value: value, Lease: lease}}}},
		Failure: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestRange{RequestRange: &kvv1.RangeRequest{Key: key}}}},
	})
	if err != nil {
		return 0, nil, err
	}
	if resp.GetSucceeded() {
		return resp.GetHeader().GetRevision(), nil, nil
	}
	kvs := resp.GetResponses()[0].GetResponseRange().GetKvs()
	if len(kvs) != 1 {
		return 0, nil, fmt.Errorf("queue key %q: compare found it but the read did not", key)
	}
	if kvs[0].GetLease() != lease {
		return 0, nil, fmt.Errorf("%w: %q has lease %x, not %x", ErrQueueKeyTaken, key, kvs[0].GetLease(), lease)
	}
	return kvs[0].GetCreateRevision(), kvs[0], nil
}

// createRevIs compares key's create revision with rev (0: absent).
func createRevIs(key []byte, rev int64) *kvv1.Compare {
	return &kvv1.Compare{Key: key, Target: kvv1.Compare_COMPARE_TARGET_CREATE, Result: kvv1.Compare_COMPARE_RESULT_EQUAL,
		TargetUnion: &kvv1.Compare_CreateRevision{CreateRevision: rev}}
}

// waitFirst waits until the key (created at rev, with lease) is the oldest
// of its queue, ctx ends, or the key goes (leaseLost). Then, before it
// reports the key first, it checks again that the lease is alive and the
// key still there: Jepsen found etcd's lock service reporting a lock
// acquired after the waiter's lease had expired (etcd 3.4.3, fixed in etcd
// #11408). It returns the key as the final, linearizable read found it.
func (q *queue) waitFirst(ctx context.Context, prefix, key []byte, rev, lease int64) (*kvv1.RangeResponse, error) {
	ctx, stop := q.untilDrain(ctx)
	defer stop()
	for {
		// The key just ahead, then the caller's own: the watch from the
		// first read's revision sees either go.
		ahead, err := q.kv.Range(ctx, &kvv1.RangeRequest{Key: prefix, RangeEnd: fsm.PrefixEnd(prefix), MaxCreateRevision: rev - 1,
			SortTarget: kvv1.RangeRequest_SORT_TARGET_CREATE, SortOrder: kvv1.RangeRequest_SORT_ORDER_DESCEND, Limit: 1, KeysOnly: true})
		if err != nil {
			return nil, q.waitError(ctx, err)
		}
		if _, err := q.own(ctx, key, rev, lease); err != nil {
			return nil, q.waitError(ctx, err)
		}
		if len(ahead.GetKvs()) == 0 {
			break
		}
		err = q.waitDelete(ctx, ahead.GetHeader().GetRevision()+1, ahead.GetKvs()[0].GetKey(), key)
		if err != nil && !errors.Is(err, errRequeue) {
			return nil, q.waitError(ctx, err)
		}
	}
	ttl, err := q.node.LeaseTimeToLive(ctx, lease, false)
	if err != nil {
		return nil, q.waitError(ctx, err)
	}
	if ttl.GetTtl() <= 0 {
		return nil, leaseLost(lease)
	}
	own, err := q.own(ctx, key, rev, lease)
	if err != nil {
		return nil, q.waitError(ctx, err)
	}
	return own, nil
}

// own reads the caller's key linearizably: leaseLost unless it exists with
// its create revision and lease.
func (q *queue) own(ctx context.Context, key []byte, rev, lease int64) (*kvv1.RangeResponse, error) {
	resp, err := q.kv.Range(ctx, &kvv1.RangeRequest{Key: key})
	if err != nil {
		return nil, err
	}
	kvs := resp.GetKvs()
	if len(kvs) != 1 || kvs[0].GetCreateRevision() != rev || kvs[0].GetLease() != lease {
		return nil, leaseLost(lease)
	}
	return resp, nil
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
func (q *queue) leaveUnlessDraining(key []byte, rev int64, err error) {
	if !errors.Is(err, errDraining) {
		q.leave(key, rev)
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
