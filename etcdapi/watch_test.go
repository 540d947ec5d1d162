package etcdapi_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvd-io/kvd/server"
	"github.com/kvd-io/kvd/server/servertest"
)

// next is the next response on wch, or a failure after a while.
func next(t *testing.T, wch clientv3.WatchChan) clientv3.WatchResponse {
	t.Helper()
	select {
	case resp, ok := <-wch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return resp
	case <-time.After(30 * time.Second):
		t.Fatal("no watch response in 30s")
	}
	return clientv3.WatchResponse{}
}

// events reads n events from wch.
func events(t *testing.T, wch clientv3.WatchChan, n int) []*clientv3.Event {
	t.Helper()
	var evs []*clientv3.Event
	for len(evs) < n {
		resp := next(t, wch)
		if err := resp.Err(); err != nil {
			t.Fatalf("watch: %v", err)
		}
		evs = append(evs, resp.Events...)
	}
	return evs
}

func describe(evs []*clientv3.Event) string {
	s := ""
	for _, ev := range evs {
		s += fmt.Sprintf("%s %s=%s", ev.Type, ev.Kv.Key, ev.Kv.Value)
		if ev.PrevKv != nil {
			s += fmt.Sprintf(" (was %s)", ev.PrevKv.Value)
		}
		s += "; "
	}
	return s
}

// TestWatch: history from a revision, prefixes, previous pairs, filters,
// on a follower.
func TestWatch(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	cli := newClient(t, c, follower(t, c))
	ctx := ctxT(t)
	first, err := cli.Put(ctx, "w/a", "1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "w/a", "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Delete(ctx, "w/a"); err != nil {
		t.Fatal(err)
	}

	// From the first put's revision: the history, then what follows.
	all := cli.Watch(ctx, "w/", clientv3.WithPrefix(), clientv3.WithRev(first.Header.Revision), clientv3.WithPrevKV())
	noPut := cli.Watch(ctx, "w/", clientv3.WithPrefix(), clientv3.WithRev(first.Header.Revision), clientv3.WithFilterPut())
	noDel := cli.Watch(ctx, "w/a", clientv3.WithRev(first.Header.Revision), clientv3.WithFilterDelete())
	if got, want := describe(events(t, all, 3)), "PUT w/a=1; PUT w/a=2 (was 1); DELETE w/a= (was 2); "; got != want {
		t.Errorf("history: %q, want %q", got, want)
	}
	if _, err := cli.Put(ctx, "w/b", "3"); err != nil {
		t.Fatal(err)
	}
	if got, want := describe(events(t, all, 1)), "PUT w/b=3; "; got != want {
		t.Errorf("new event: %q, want %q", got, want)
	}
	if got, want := describe(events(t, noPut, 1)), "DELETE w/a=; "; got != want {
		t.Errorf("no puts: %q, want %q", got, want)
	}
	if got, want := describe(events(t, noDel, 2)), "PUT w/a=1; PUT w/a=2; "; got != want {
		t.Errorf("no deletes: %q, want %q", got, want)
	}
	evs := events(t, cli.Watch(ctx, "w/b", clientv3.WithRev(first.Header.Revision)), 1)
	if evs[0].Type != mvccpb.PUT || !evs[0].IsCreate() || evs[0].Kv.Version != 1 {
		t.Errorf("w/b's creation: %+v", evs[0])
	}
}

// TestWatchProgress: RequestProgress is answered on every watcher with
// a revision through which it has had every event; a watcher that asked
// for progress notifications gets them while idle.
func TestWatchProgress(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 1, servertest.WithConfig(func(cfg *server.Config) { cfg.WatchProgressInterval = 200 * time.Millisecond }))
	cli := newClient(t, c)
	ctx := ctxT(t)
	put, err := cli.Put(ctx, "p/a", "1")
	if err != nil {
		t.Fatal(err)
	}
	wch := cli.Watch(ctx, "p/", clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if resp := next(t, wch); !resp.Created {
		t.Fatalf("first response %+v, want created", resp)
	}
	if err := cli.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	resp := next(t, wch)
	if !resp.IsProgressNotify() || resp.Header.Revision < put.Header.Revision {
		t.Fatalf("after RequestProgress: %+v, want a progress notification at %d or later", resp, put.Header.Revision)
	}

	idle := cli.Watch(ctx, "p/", clientv3.WithPrefix(), clientv3.WithProgressNotify())
	if resp := next(t, idle); !resp.IsProgressNotify() || resp.Header.Revision < put.Header.Revision {
		t.Fatalf("idle watcher: %+v, want a progress notification", resp)
	}
}

// TestWatchCompacted: a watch from a compacted revision ends with etcd's
// ErrCompacted and the compact revision, as clientv3 expects.
func TestWatchCompacted(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 1)
	cli := newClient(t, c)
	ctx := ctxT(t)
	var last int64
	for i := range 3 {
		resp, err := cli.Put(ctx, "wc/a", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Header.Revision
	}
	if _, err := cli.Compact(ctx, last, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	resp := next(t, cli.Watch(ctx, "wc/a", clientv3.WithRev(last-2)))
	if !errors.Is(resp.Err(), rpctypes.ErrCompacted) || resp.CompactRevision != last || !resp.Canceled || resp.CancelReason != "" {
		t.Fatalf("watch from a compacted revision: %+v (%v), want canceled with compact revision %d and no reason, as etcd", resp, resp.Err(), last)
	}
	// At the compaction revision itself it works.
	if evs := events(t, cli.Watch(ctx, "wc/a", clientv3.WithRev(last)), 1); string(evs[0].Kv.Value) != "2" {
		t.Fatalf("watch at the compact revision: %s", describe(evs))
	}
}

// TestWatchCancel: a cancelled watcher's channel closes; the stream's
// other watchers go on.
func TestWatchCancel(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 1)
	cli := newClient(t, c)
	ctx := ctxT(t)
	wctx, cancel := context.WithCancel(ctx)
	gone := cli.Watch(wctx, "x/a")
	stays := cli.Watch(ctx, "x/b")
	if _, err := cli.Put(ctx, "x/a", "1"); err != nil {
		t.Fatal(err)
	}
	events(t, gone, 1)
	cancel()
	for range gone {
	}
	if _, err := cli.Put(ctx, "x/b", "1"); err != nil {
		t.Fatal(err)
	}
	events(t, stays, 1)
}
