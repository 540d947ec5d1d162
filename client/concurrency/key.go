package concurrency

import (
	"context"
	"errors"
	"fmt"

	"github.com/kvd-io/kvd/client"
)

// errWatchEnded: a watch ended before the deletion it waited for, without
// the caller's context ending (the client closed).
var errWatchEnded = errors.New("concurrency: watch ended")

// waitDeletes waits until no key under prefix has a create revision at or
// below maxCreateRev: one by one, from the newest, it waits for the
// deletion of each. That newest is the key just ahead of the caller's in
// the queue; when it goes, the one before it (if any) is waited for next.
// It returns the read of own (the caller's key in the queue) at the
// revision at which none was left: both are read in one linearizable
// read-only txn, one round.
func waitDeletes(ctx context.Context, c *client.Client, prefix string, maxCreateRev int64, own string) (*client.GetResponse, error) {
	opts := append([]client.OpOption{client.WithPrefix(), client.WithMaxCreateRev(maxCreateRev)}, client.WithLastCreate()...)
	for {
		resp, err := c.Txn(ctx).Then(client.OpGet(prefix, opts...), client.OpGet(own)).Commit()
		if err != nil {
			return nil, err
		}
		rs := resp.GetResponses()
		if len(rs) != 2 {
			return nil, fmt.Errorf("concurrency: queue read answered %d results, want 2", len(rs))
		}
		ahead := rs[0].GetResponseRange().GetKvs()
		if len(ahead) == 0 {
			mine := rs[1].GetResponseRange()
			mine.Header = resp.GetHeader()
			return &client.GetResponse{RangeResponse: mine}, nil
		}
		if err := waitDelete(ctx, c, string(ahead[0].GetKey()), resp.GetHeader().GetRevision()); err != nil {
			return nil, err
		}
	}
}

// waitDelete waits until key is deleted after revision rev. If the history
// after rev was compacted meanwhile, it returns so that the caller reads
// again.
func waitDelete(ctx context.Context, c *client.Client, key string, rev int64) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range c.Watch(wctx, key, client.WithRev(rev+1)) {
		if err := wr.Err(); err != nil {
			if errors.Is(err, client.ErrCompacted) {
				return nil // the caller reads the queue again
			}
			return err
		}
		for _, ev := range wr.Events {
			if ev.GetType() == client.EventTypeDelete {
				return nil
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return errWatchEnded
}

// keyFor is a session's key under prefix: one per lease, so that one session
// holds at most one place in a queue.
func keyFor(prefix string, lease client.LeaseID) string {
	return fmt.Sprintf("%s%x", prefix, lease)
}

// firstCreated is a get of the oldest key under prefix: the holder.
func firstCreated(prefix string) client.Op {
	return client.OpGet(prefix, append([]client.OpOption{client.WithPrefix()}, client.WithFirstCreate()...)...)
}

// stillThere reports whether own's read (from waitDeletes, after the
// wait) shows the key with the create revision rev. Jepsen found etcd's
// lock service reporting a lock acquired after the holder's lease had
// expired while it waited (etcd 3.4.3; fixed in etcd #11408): the queue is
// checked again after the wait.
func stillThere(own *client.GetResponse, rev int64) bool {
	kvs := own.GetKvs()
	return len(kvs) == 1 && kvs[0].GetCreateRevision() == rev
}

// lastCreated reads the key of prefix created last.
func lastCreated(prefix string) client.Op {
	return client.OpGet(prefix, append([]client.OpOption{client.WithPrefix()}, client.WithLastCreate()...)...)
}
