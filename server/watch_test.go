package server_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/server/servertest"
)

// watchEvents opens a watch of the prefix on member from start and returns
// a function that collects its events until it has n of them.
func watchEvents(t *testing.T, c *servertest.Cluster, member, prefix string, start int64) func(n int) []string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := kvv1.NewWatchServiceClient(c.Member(member).Conn()).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	err = st.Send(&kvv1.WatchRequest{Request: &kvv1.WatchRequest_CreateRequest{CreateRequest: &kvv1.WatchCreateRequest{
		Key: []byte(prefix), RangeEnd: []byte(prefix + "\xff"), StartRevision: start, PrevKv: true}}})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := st.Recv(); err != nil || !r.GetCreated() {
		t.Fatalf("watch on %s: %v, %v", member, r, err)
	}
	var got []string
	return func(n int) []string {
		t.Helper()
		for len(got) < n {
			r, err := st.Recv()
			if err != nil {
				t.Fatalf("watch on %s after %d events: %v", member, len(got), err)
			}
			if r.GetCanceled() {
				t.Fatalf("watch on %s cancelled: %v", member, r)
			}
			for _, e := range r.GetEvents() {
				got = append(got, fmt.Sprintf("%d %s %s=%s", r.GetHeader().GetRevision(), e.GetType(), e.GetKv().GetKey(), e.GetKv().GetValue()))
			}
		}
		return got
	}
}

// Watchers on every member, leader and followers, get the same events, in
// revision order, each once: the writes of their prefix and nothing else.
func TestWatchOnEveryMember(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	var collect []func(int) []string
	for _, name := range c.Names() {
		collect = append(collect, watchEvents(t, c, name, "w/", 0))
	}
	var want []string
	for i := range 60 {
		member := c.Names()[i%3]
		key := fmt.Sprintf("w/%d", i%7)
		if i%5 == 4 {
			resp, err := c.KV(member).DeleteRange(ctxT(t, 10*time.Second), &kvv1.DeleteRangeRequest{Key: []byte(key)})
			if err != nil {
				t.Fatal(err)
			}
			if resp.GetDeleted() > 0 {
				want = append(want, fmt.Sprintf("%d EVENT_TYPE_DELETE %s=", resp.GetHeader().GetRevision(), key))
			}
			continue
		}
		resp := put(t, c, member, key, fmt.Sprint(i))
		want = append(want, fmt.Sprintf("%d EVENT_TYPE_PUT %s=%d", resp.GetHeader().GetRevision(), key, i))
		put(t, c, leader, fmt.Sprintf("other/%d", i), "x") // outside the prefix
	}
	for i, got := range collect {
		if g := got(len(want)); !slices.Equal(g, want) {
			t.Fatalf("watcher on %s:\n got %q\nwant %q", c.Names()[i], g, want)
		}
	}
}

// A watch from a past revision replays history, then follows; one from a
// compacted revision is cancelled with the compact revision, so that the
// client can read the range anew.
func TestWatchReplayAndCompaction(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	var revs []int64
	for i := range 30 {
		revs = append(revs, put(t, c, leader, "r/k", fmt.Sprint(i)).GetHeader().GetRevision())
	}
	compactAt := revs[10]
	if _, err := c.KV(c.Names()[1]).Compact(ctxT(t, 10*time.Second), &kvv1.CompactRequest{Revision: compactAt, Physical: true}); err != nil {
		t.Fatalf("compact through a member: %v", err)
	}
	for _, name := range c.Names() {
		follow := watchEvents(t, c, name, "r/", compactAt)
		got := follow(20)
		if got[0] != fmt.Sprintf("%d EVENT_TYPE_PUT r/k=10", compactAt) || len(got) != 20 {
			t.Fatalf("replay on %s from the compact revision: %q", name, got)
		}
		// Below the compact revision: created, then cancelled (once the
		// member has applied the compaction: a linearizable read waits
		// for that).
		if _, err := get(ctxT(t, 10*time.Second), c, name, "r/k", false); err != nil {
			t.Fatal(err)
		}
		st, err := kvv1.NewWatchServiceClient(c.Member(name).Conn()).Watch(ctxT(t, 10*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		_ = st.Send(&kvv1.WatchRequest{Request: &kvv1.WatchRequest_CreateRequest{CreateRequest: &kvv1.WatchCreateRequest{Key: []byte("r/k"), StartRevision: compactAt - 1}}})
		if r, err := st.Recv(); err != nil || !r.GetCreated() {
			t.Fatalf("created: %v %v", r, err)
		}
		r, err := st.Recv()
		if err != nil || !r.GetCanceled() || r.GetCompactRevision() != compactAt {
			t.Fatalf("watch below the compact revision on %s: %v, %v", name, r, err)
		}
		if _, err := c.KV(name).Range(ctxT(t, 10*time.Second), &kvv1.RangeRequest{Key: []byte("r/k"), Revision: compactAt - 1, Serializable: true}); err == nil {
			t.Fatalf("a read below the compact revision on %s succeeded", name)
		}
	}
	c.WaitConverged(20 * time.Second)
}
