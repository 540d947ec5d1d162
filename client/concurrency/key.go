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
func waitDeletes(ctx context.Context, c *client.Client, prefix string, maxCreateRev int64) error {
	opts := append([]client.OpOption{client.WithPrefix(), client.WithMaxCreateRev(maxCreateRev)}, client.WithLastCreate()...)
	for {
		resp, err := c.Get(ctx, prefix, opts...)
		if err != nil {
			return err
		}
		if len(resp.GetKvs()) == 0 {
			return nil
		}
		if err := waitDelete(ctx, c, string(resp.GetKvs()[0].GetKey()), resp.GetHeader().GetRevision()); err != nil {
			return err
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

// stillThere reads key linearizably and reports whether it exists with the
// create revision rev. Jepsen found etcd's lock service reporting a lock
// acquired after the holder's lease had expired while it waited (etcd
// 3.4.3; fixed in etcd #11408): the queue is checked again after the wait.
func stillThere(ctx context.Context, c *client.Client, key string, rev int64) (*client.GetResponse, bool, error) {
	resp, err := c.Get(ctx, key)
	if err != nil {
		return nil, false, err
	}
	kvs := resp.GetKvs()
	return resp, len(kvs) == 1 && kvs[0].GetCreateRevision() == rev, nil
}
