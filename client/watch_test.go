package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/apierr"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// watchFake returns a fake member serving hist, and its address.
func watchFake(t *testing.T, name string, id uint64, hist *watchHistory) (*fakeServer, string) {
	t.Helper()
	f := newFake(name, id)
	f.watch = hist
	addr, _ := serve(t, f)
	return f, addr
}

// recv reads n responses from ch, failing the test if they do not come in
// time or the channel closes first.
func recv(t *testing.T, ch WatchChan, n int) []WatchResponse {
	t.Helper()
	var out []WatchResponse
	timeout := time.After(10 * time.Second)
	for len(out) < n {
		select {
		case r, ok := <-ch:
			if !ok {
				t.Fatalf("channel closed after %d responses, want %d: %s", len(out), n, describe(out))
			}
			out = append(out, r)
		case <-timeout:
			t.Fatalf("got %d responses, want %d: %s", len(out), n, describe(out))
		}
	}
	return out
}

// recvUntilClosed reads ch until it closes.
func recvUntilClosed(t *testing.T, ch WatchChan) []WatchResponse {
	t.Helper()
	var out []WatchResponse
	timeout := time.After(10 * time.Second)
	for {
		select {
		case r, ok := <-ch:
			if !ok {
				return out
			}
			out = append(out, r)
		case <-timeout:
			t.Fatalf("channel still open after %s", describe(out))
		}
	}
}

// quiet checks that ch delivers nothing for a while.
func quiet(t *testing.T, ch WatchChan) {
	t.Helper()
	select {
	case r, ok := <-ch:
		if ok {
			t.Fatalf("unexpected response %s", describe([]WatchResponse{r}))
		}
		t.Fatal("channel closed unexpectedly")
	case <-time.After(100 * time.Millisecond):
	}
}

// describe writes responses as "rev:TYPE key[=value][<prev]" for events,
// "progress@rev", "created@rev" and "canceled(compact=N, err)", one
// response per line-less group separated by " | ".
func describe(rs []WatchResponse) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, describeOne(r))
	}
	return strings.Join(parts, " | ")
}

func describeOne(r WatchResponse) string {
	switch {
	case r.Canceled:
		return fmt.Sprintf("canceled(compact=%d, %v)", r.CompactRevision, r.Err())
	case r.Created:
		return fmt.Sprintf("created@%d", r.Header.GetRevision())
	case r.IsProgressNotify():
		return fmt.Sprintf("progress@%d", r.Header.GetRevision())
	}
	var evs []string
	for _, e := range r.Events {
		s := fmt.Sprintf("%d:%s %s", e.GetKv().GetModRevision(), strings.TrimPrefix(e.GetType().String(), "EVENT_TYPE_"), e.GetKv().GetKey())
		if e.GetType() == EventTypePut {
			s += "=" + string(e.GetKv().GetValue())
		}
		if e.GetPrevKv() != nil {
			s += "<" + string(e.GetPrevKv().GetValue())
		}
		evs = append(evs, s)
	}
	return strings.Join(evs, ", ")
}

func watchContext(t *testing.T) (context.Context, context.CancelFunc) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx, cancel
}

func TestWatchSendsOptions(t *testing.T) {
	hist := newWatchHistory()
	f, addr := watchFake(t, "a", 1, hist)
	c := newTestClient(t, addr)
	ctx, _ := watchContext(t)
	noPut, noDel := kvv1.WatchFilter_WATCH_FILTER_NO_PUT, kvv1.WatchFilter_WATCH_FILTER_NO_DELETE

	tests := []struct {
		key  string
		opts []OpOption
		want *kvv1.WatchCreateRequest
	}{
		{"k", nil, &kvv1.WatchCreateRequest{Key: []byte("k")}},
		{"k/", []OpOption{WithPrefix()}, &kvv1.WatchCreateRequest{Key: []byte("k/"), RangeEnd: []byte("k0")}},
		{"a", []OpOption{WithRange("c")}, &kvv1.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("c")}},
		{"a", []OpOption{WithFromKey()}, &kvv1.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte{0}}},
		{"", []OpOption{WithPrefix()}, &kvv1.WatchCreateRequest{Key: []byte{0}, RangeEnd: []byte{0}}},
		{"k", []OpOption{WithRev(1), WithPrevKV(), WithProgressNotify(), WithFragment()},
			&kvv1.WatchCreateRequest{Key: []byte("k"), StartRevision: 1, PrevKv: true, ProgressNotify: true, Fragment: true}},
		{"k", []OpOption{WithFilterPut()}, &kvv1.WatchCreateRequest{Key: []byte("k"), Filters: []kvv1.WatchFilter{noPut}}},
		{"k", []OpOption{WithFilterDelete(), WithFilterPut()}, &kvv1.WatchCreateRequest{Key: []byte("k"), Filters: []kvv1.WatchFilter{noPut, noDel}}},
	}
	for i, tt := range tests {
		c.Watch(ctx, tt.key, tt.opts...)
		got := f.creates()
		if len(got) != i+1 {
			t.Fatalf("watch %d: the member got %d create requests", i, len(got))
		}
		req := proto.CloneOf(got[i])
		if req.GetWatchId() <= 0 {
			t.Errorf("watch %d: watch id %d, want one chosen by the client", i, req.GetWatchId())
		}
		req.WatchId = 0
		tt.want.ShareResponses = true // always: the client hands shared responses out
		if !proto.Equal(req, tt.want) {
			t.Errorf("watch %d: the member got %v, want %v", i, req, tt.want)
		}
	}
	f.mu.Lock()
	md := f.watchMD
	f.mu.Unlock()
	if len(md) != 1 || strings.Join(md[0].Get("kvd-require-leader"), ",") != "true" {
		t.Errorf("watch streams %d, metadata %v: want one stream with kvd-require-leader: true", len(md), md)
	}

	// WithCreatedNotify: the creation is the first response.
	hist.put("x", "1")
	ch := c.Watch(ctx, "k", WithCreatedNotify())
	if got := describe(recv(t, ch, 1)); got != "created@2" {
		t.Errorf("first response %s, want created@2", got)
	}
}

func TestWatchRejectsBadOptions(t *testing.T) {
	c := newTestClient(t, deadAddr(t))
	ctx, _ := watchContext(t)
	for _, tt := range []struct {
		key  string
		opts []OpOption
		want string
	}{
		{"", nil, "watch: key is empty"},
		{"k", []OpOption{WithLimit(3)}, "WithLimit is not valid for watch"},
		{"k", []OpOption{WithPrefix(), WithRange("z")}, "cannot be combined"},
		{"k", []OpOption{WithRev(-1)}, "revision is negative"},
	} {
		rs := recvUntilClosed(t, c.Watch(ctx, tt.key, tt.opts...))
		if len(rs) != 1 || !rs[0].Canceled || rs[0].Err() == nil || !strings.Contains(rs[0].Err().Error(), tt.want) {
			t.Errorf("Watch(%q, ...) = %s, want one canceled response with %q", tt.key, describe(rs), tt.want)
		}
	}
	if _, err := c.Put(ctx, "k", "v", WithProgressNotify()); err == nil || !strings.Contains(err.Error(), "WithProgressNotify is not valid for put") {
		t.Errorf("put with a watch option: %v", err)
	}
}

func TestWatchDeliversEventsInOrder(t *testing.T) {
	hist := newWatchHistory()
	_, addr := watchFake(t, "a", 1, hist)
	c := newTestClient(t, addr)
	ctx, _ := watchContext(t)

	ch := c.Watch(ctx, "k", WithPrefix(), WithPrevKV())
	hist.put("k1", "a")
	hist.put("other", "x")
	hist.put("k1", "b")
	hist.del("k1")
	hist.txn("k3", "c", "k2", "d", "z", "e")
	want := "2:PUT k1=a | 4:PUT k1=b<a | 5:DELETE k1<b | 6:PUT k2=d, 6:PUT k3=c"
	if got := describe(recv(t, ch, 4)); got != want {
		t.Errorf("events\n got %s\nwant %s", got, want)
	}
	quiet(t, ch)

	// Filters and a replay from a past revision.
	got := describe(recv(t, c.Watch(ctx, "k1", WithRev(1), WithFilterPut()), 1))
	if got != "5:DELETE k1" {
		t.Errorf("replay of deletes: %s", got)
	}
}

func TestWatchReassemblesFragments(t *testing.T) {
	hist := newWatchHistory()
	f, addr := watchFake(t, "a", 1, hist)
	f.fragmentSize = 2
	c := newTestClient(t, addr)
	ctx, _ := watchContext(t)

	ch := c.Watch(ctx, "k", WithPrefix(), WithFragment())
	hist.txn("k1", "1", "k2", "2", "k3", "3", "k4", "4", "k5", "5")
	hist.put("k6", "6")
	want := "2:PUT k1=1, 2:PUT k2=2, 2:PUT k3=3, 2:PUT k4=4, 2:PUT k5=5 | 3:PUT k6=6"
	if got := describe(recv(t, ch, 2)); got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
	quiet(t, ch)
}

// TestWatchResumesOnAnotherEndpoint breaks the stream of the first member
// in several ways, at several points (between revisions, in the middle of a
// fragmented revision), and checks that the watcher goes on on the second
// member from the right revision: the channel carries every revision once,
// in order.
func TestWatchResumesOnAnotherEndpoint(t *testing.T) {
	failures := []struct {
		name string
		err  error
	}{
		{"member died", status.Error(codes.Unavailable, "transport is closing")},
		{"member drained", status.Error(codes.Unavailable, "member is shutting down")},
		{"leader lost", apierr.NotApplied(codes.Unavailable, "no leader: this member has lost its leader; watch from another member")},
		{"stream ended", errEndStream},
	}
	for _, fl := range failures {
		for _, tt := range []struct {
			name      string
			failAfter int // event responses sent by the first member
			fragments bool
			wantStart int64 // start revision on the second member
		}{
			{"after 3 revisions", 3, false, 5},
			{"in a fragmented revision", 4, true, 5},
		} {
			t.Run(fl.name+"/"+tt.name, func(t *testing.T) {
				hist := newWatchHistory()
				for i := 1; i <= 3; i++ {
					hist.put(fmt.Sprintf("a/%d", i), "v") // revisions 2 to 4
				}
				hist.txn("a/x", "1", "a/y", "2", "a/z", "3") // revision 5, in 3 fragments
				hist.put("b", "not watched")                 // revision 6
				hist.put("a/4", "v")                         // revision 7

				fa, addrA := watchFake(t, "a", 1, hist)
				fb, addrB := watchFake(t, "b", 2, hist)
				fa.watchFailAfter, fa.watchFailErr = tt.failAfter, fl.err
				var opts []OpOption
				if tt.fragments {
					opts = append(opts, WithFragment())
				}
				c := newTestClient(t, addrA, addrB)
				ctx, _ := watchContext(t)

				ch := c.Watch(ctx, "a/", append(opts, WithPrefix(), WithRev(2))...)
				got := recv(t, ch, 5)
				hist.put("a/5", "v") // revision 8, after the resume
				got = append(got, recv(t, ch, 1)...)
				want := "2:PUT a/1=v | 3:PUT a/2=v | 4:PUT a/3=v | 5:PUT a/x=1, 5:PUT a/y=2, 5:PUT a/z=3 | 7:PUT a/4=v | 8:PUT a/5=v"
				if describe(got) != want {
					t.Errorf("events\n got %s\nwant %s", describe(got), want)
				}
				quiet(t, ch)
				creates := fb.creates()
				if len(creates) != 1 || creates[0].GetStartRevision() != tt.wantStart {
					t.Errorf("the second member got %v, want one create from revision %d", creates, tt.wantStart)
				}
			})
		}
	}
}

// TestWatchResumesWithoutGap checks that a watcher from "now" resumes after
// its creation's revision, and later after the highest progress it got:
// writes made while it moves are delivered, the ones before are not.
func TestWatchResumesWithoutGap(t *testing.T) {
	hist := newWatchHistory()
	hist.put("k", "before") // revision 2
	fa, addrA := watchFake(t, "a", 1, hist)
	fb, addrB := watchFake(t, "b", 2, hist)
	c := newTestClient(t, addrA, addrB)
	ctx, _ := watchContext(t)

	ch := c.Watch(ctx, "k")
	fa.killWatches(status.Error(codes.Unavailable, "member is shutting down"))
	hist.put("k", "while moving") // revision 3
	if got := describe(recv(t, ch, 1)); got != "3:PUT k=while moving" {
		t.Errorf("after the move: %s", got)
	}
	if cr := fb.creates(); len(cr) != 1 || cr[0].GetStartRevision() != 3 {
		t.Errorf("the second member got %v, want a create from revision 3", cr)
	}

	// Progress moves the resume point past revisions that had no event for
	// the watcher.
	hist.put("other", "1") // 4
	hist.put("other", "2") // 5
	if err := c.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	if got := describe(recv(t, ch, 1)); got != "progress@5" {
		t.Errorf("progress: %s", got)
	}
	fb.killWatches(status.Error(codes.Unavailable, "leader lost"))
	hist.put("k", "after") // 6
	if got := describe(recv(t, ch, 1)); got != "6:PUT k=after" {
		t.Errorf("after the second move: %s", got)
	}
	if cr := fa.creates(); len(cr) != 2 || cr[1].GetStartRevision() != 6 {
		t.Errorf("the first member got %v, want its second create from revision 6", cr)
	}
	quiet(t, ch)
}

// TestWatchFromFutureRevisionResumesThere checks that a progress below a
// watcher's start revision does not move its resume point back.
func TestWatchFromFutureRevisionResumesThere(t *testing.T) {
	hist := newWatchHistory()
	fa, addrA := watchFake(t, "a", 1, hist)
	fb, addrB := watchFake(t, "b", 2, hist)
	c := newTestClient(t, addrA, addrB)
	ctx, _ := watchContext(t)
	ch := c.Watch(ctx, "k", WithRev(4))
	if err := c.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	if got := describe(recv(t, ch, 1)); got != "progress@1" {
		t.Errorf("progress: %s", got)
	}
	fa.killWatches(status.Error(codes.Unavailable, "member is shutting down"))
	for _, v := range []string{"2", "3", "4", "5"} {
		hist.put("k", v) // revisions 2 to 5
	}
	if got := describe(recv(t, ch, 2)); got != "4:PUT k=4 | 5:PUT k=5" {
		t.Errorf("events: %s", got)
	}
	if cr := fb.creates(); len(cr) != 1 || cr[0].GetStartRevision() != 4 {
		t.Errorf("the second member got %v, want a create from revision 4", cr)
	}
}

func TestWatchCompactedWhileMoving(t *testing.T) {
	histA := newWatchHistory()
	histB := newWatchHistory()
	for _, h := range []*watchHistory{histA, histB} {
		for i := 1; i <= 5; i++ {
			h.put("k", fmt.Sprint(i)) // revisions 2 to 6
		}
	}
	histB.setCompact(5)
	fa, addrA := watchFake(t, "a", 1, histA)
	_, addrB := watchFake(t, "b", 2, histB)
	fa.watchFailAfter = 2
	c := newTestClient(t, addrA, addrB)
	ctx, _ := watchContext(t)

	rs := recvUntilClosed(t, c.Watch(ctx, "k", WithRev(2)))
	if got, want := describe(rs), "2:PUT k=1 | 3:PUT k=2 | canceled(compact=5, client: watch: rpc error: code = OutOfRange desc = required revision has been compacted (compact revision 5))"; got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	last := rs[len(rs)-1]
	if !errors.Is(last.Err(), ErrCompacted) || status.Code(last.Err()) != codes.OutOfRange || last.CancelReason == "" {
		t.Errorf("last response: err %v (code %v), reason %q", last.Err(), status.Code(last.Err()), last.CancelReason)
	}
}

func TestWatchCompactedAtStart(t *testing.T) {
	hist := newWatchHistory()
	hist.put("k", "1")
	hist.put("k", "2")
	hist.setCompact(3)
	_, addr := watchFake(t, "a", 1, hist)
	c := newTestClient(t, addr)
	ctx, _ := watchContext(t)
	rs := recvUntilClosed(t, c.Watch(ctx, "k", WithRev(2)))
	if len(rs) != 1 || rs[0].CompactRevision != 3 || !rs[0].Canceled || !errors.Is(rs[0].Err(), ErrCompacted) {
		t.Errorf("got %s, want the compaction alone", describe(rs))
	}
}

func TestWatchRefusedByMember(t *testing.T) {
	_, addr := watchFake(t, "a", 1, newWatchHistory())
	c := newTestClient(t, addr)
	ctx, _ := watchContext(t)
	rs := recvUntilClosed(t, c.Watch(ctx, "b", WithRange("a")))
	if len(rs) != 1 || !rs[0].Canceled || status.Code(rs[0].Err()) != codes.FailedPrecondition ||
		!strings.Contains(rs[0].Err().Error(), `range end "a" is not after key "b"`) {
		t.Errorf("got %s", describe(rs))
	}
}

func TestWatchNotServed(t *testing.T) {
	f := newFake("a", 1) // no history: Watch is Unimplemented
	addr, _ := serve(t, f)
	c := newTestClient(t, addr)
	ctx, _ := watchContext(t)
	rs := recvUntilClosed(t, c.Watch(ctx, "k"))
	if len(rs) != 1 || status.Code(rs[0].Err()) != codes.Unimplemented {
		t.Errorf("got %s, want one Unimplemented end", describe(rs))
	}
	if n := f.count("Watch"); n != 1 {
		t.Errorf("%d watch streams, want 1: Unimplemented is not retried", n)
	}
}

func TestWatchContextCancel(t *testing.T) {
	hist := newWatchHistory()
	f, addr := watchFake(t, "a", 1, hist)
	c := newTestClient(t, addr)
	ctx, _ := watchContext(t)

	ctx1, cancel1 := context.WithCancel(ctx)
	ch1 := c.Watch(ctx1, "one")
	ctx2, cancel2 := context.WithCancel(ctx)
	ch2 := c.Watch(ctx2, "two")
	ids := f.creates()
	cancel1()
	if rs := recvUntilClosed(t, ch1); len(rs) != 0 {
		t.Errorf("cancelled watch delivered %s", describe(rs))
	}
	waitFor(t, "the cancel request", func() bool { return len(f.cancels()) == 1 })
	if got := f.cancels(); got[0] != ids[0].GetWatchId() {
		t.Errorf("cancelled %v, want %d", got, ids[0].GetWatchId())
	}
	hist.put("one", "x")
	hist.put("two", "y")
	if got := describe(recv(t, ch2, 1)); got != "3:PUT two=y" {
		t.Errorf("the other watcher got %s", got)
	}

	// The last watcher gone, the stream closes; a new watcher opens another.
	cancel2()
	recvUntilClosed(t, ch2)
	waitFor(t, "the second cancel request", func() bool { return len(f.cancels()) == 2 })
	ch3 := c.Watch(ctx, "three")
	hist.put("three", "z")
	if got := describe(recv(t, ch3, 1)); got != "4:PUT three=z" {
		t.Errorf("a watcher after the stream closed got %s", got)
	}
	if n := f.count("Watch"); n != 2 {
		t.Errorf("%d watch streams, want 2", n)
	}

	// A context that ended before Watch: a closed channel at once.
	if rs := recvUntilClosed(t, c.Watch(ctx1, "k")); len(rs) != 0 {
		t.Errorf("watch with an ended context delivered %s", describe(rs))
	}
}

func TestWatchUnreadResponsesDoNotBlockOthers(t *testing.T) {
	hist := newWatchHistory()
	_, addr := watchFake(t, "a", 1, hist)
	c := newTestClient(t, addr)
	ctx, _ := watchContext(t)
	slow := c.Watch(ctx, "k")
	fast := c.Watch(ctx, "k")
	for i := range 50 {
		hist.put("k", fmt.Sprint(i))
	}
	if rs := recv(t, fast, 50); rs[49].Events[0].Kv.ModRevision != 51 {
		t.Errorf("last event %s", describe(rs[49:]))
	}
	if rs := recv(t, slow, 50); rs[0].Events[0].Kv.ModRevision != 2 || rs[49].Events[0].Kv.ModRevision != 51 {
		t.Errorf("slow reader got %s ... %s", describe(rs[:1]), describe(rs[49:]))
	}
}

func TestRequestProgress(t *testing.T) {
	hist := newWatchHistory()
	f, addr := watchFake(t, "a", 1, hist)
	c := newTestClient(t, addr)
	ctx, _ := watchContext(t)
	if err := c.RequestProgress(ctx); err != nil {
		t.Fatalf("RequestProgress without watchers: %v", err)
	}
	var chans []WatchChan
	for _, k := range []string{"a", "b", "c"} {
		chans = append(chans, c.Watch(ctx, k))
	}
	hist.put("a", "1")
	hist.put("z", "2")
	if got := describe(recv(t, chans[0], 1)); got != "2:PUT a=1" {
		t.Fatalf("a got %s", got)
	}
	if err := c.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	for i, ch := range chans {
		rs := recv(t, ch, 1)
		if !rs[0].IsProgressNotify() || rs[0].Header.Revision != 3 {
			t.Errorf("watcher %d got %s, want progress@3", i, describe(rs))
		}
	}
	if n := f.progressRequests(); n != 1 {
		t.Errorf("%d progress requests, want 1 on the shared stream", n)
	}
	_ = c.Close()
	if err := c.RequestProgress(ctx); !errors.Is(err, ErrClosed) {
		t.Errorf("after Close: %v", err)
	}
}

// TestRequestProgressWhileMoving asks for progress while the watcher's
// member refuses streams: the watcher asks again on the stream it gets.
func TestRequestProgressWhileMoving(t *testing.T) {
	hist := newWatchHistory()
	f, addr := watchFake(t, "a", 1, hist)
	c := newTestClient(t, addr)
	ctx, _ := watchContext(t)
	ch := c.Watch(ctx, "k")
	hist.put("other", "1")

	var refuse atomic.Bool // set: every new stream fails at once
	refuse.Store(true)
	f.mu.Lock()
	f.hook = func(context.Context, string, int) error {
		if refuse.Load() {
			return status.Error(codes.Unavailable, "not now")
		}
		return nil
	}
	f.mu.Unlock()
	streams := f.count("Watch")
	f.killWatches(status.Error(codes.Unavailable, "member is shutting down"))
	waitFor(t, "a refused stream", func() bool { return f.count("Watch") > streams+1 })
	if err := c.RequestProgress(ctx); err != nil {
		t.Fatal(err)
	}
	refuse.Store(false)
	if rs := recv(t, ch, 1); !rs[0].IsProgressNotify() || rs[0].Header.Revision != 2 {
		t.Errorf("got %s, want progress@2", describe(rs))
	}
	if cr := f.creates(); cr[len(cr)-1].GetStartRevision() != 2 {
		t.Errorf("resumed from %d, want 2", cr[len(cr)-1].GetStartRevision())
	}
}

func TestWatchProgressNotify(t *testing.T) {
	hist := newWatchHistory()
	f, addr := watchFake(t, "a", 1, hist)
	c := newTestClient(t, addr)
	ctx, _ := watchContext(t)
	ch := c.Watch(ctx, "k", WithProgressNotify())
	hist.put("x", "1")
	waitFor(t, "the member to see revision 2", func() bool { return hist.current() == 2 })
	f.watchIdle <- struct{}{}
	if rs := recv(t, ch, 1); !rs[0].IsProgressNotify() || rs[0].Header.Revision != 2 {
		t.Errorf("got %s, want progress@2", describe(rs))
	}
}

func TestWatchersShareOneStream(t *testing.T) {
	hist := newWatchHistory()
	f, addr := watchFake(t, "a", 1, hist)
	c := newTestClient(t, addr)
	ctx, _ := watchContext(t)

	const n = 20
	chans := make([]WatchChan, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { chans[i] = c.Watch(ctx, fmt.Sprintf("k%02d", i)) })
	}
	wg.Wait()
	for i := range n {
		hist.put(fmt.Sprintf("k%02d", i), "v")
	}
	for i, ch := range chans {
		want := fmt.Sprintf("%d:PUT k%02d=v", i+2, i)
		if got := describe(recv(t, ch, 1)); got != want {
			t.Errorf("watcher %d got %s, want %s", i, got, want)
		}
	}
	if got := f.count("Watch"); got != 1 {
		t.Errorf("%d watch streams, want 1", got)
	}
	ids := map[int64]bool{}
	for _, r := range f.creates() {
		ids[r.GetWatchId()] = true
	}
	if len(ids) != n {
		t.Errorf("%d distinct watch ids for %d watchers", len(ids), n)
	}
}

// The client asks to share responses, and hands a response shared by
// several watchers to each of them, once.
func TestWatchersOfAKeyShareResponses(t *testing.T) {
	hist := newWatchHistory()
	f, addr := watchFake(t, "a", 1, hist)
	f.mu.Lock()
	f.shareWatch = true
	f.mu.Unlock()
	c := newTestClient(t, addr)
	ctx, _ := watchContext(t)

	var chans []WatchChan
	for range 4 {
		chans = append(chans, c.Watch(ctx, "k"))
	}
	withPrev := c.Watch(ctx, "k", WithPrevKV())
	for i := range 3 {
		hist.put("k", fmt.Sprint("v", i))
	}
	for i, ch := range chans {
		if got, want := describe(recv(t, ch, 3)), "2:PUT k=v0 | 3:PUT k=v1 | 4:PUT k=v2"; got != want {
			t.Errorf("watcher %d got %s, want %s", i, got, want)
		}
		quiet(t, ch)
	}
	if rs := recv(t, withPrev, 3); rs[2].Events[0].PrevKv == nil || string(rs[2].Events[0].PrevKv.Value) != "v1" {
		t.Errorf("the watcher with previous values got %s", describe(rs))
	}
	for _, r := range f.creates() {
		if !r.GetShareResponses() {
			t.Errorf("create request %v does not ask to share responses", r)
		}
	}
	f.mu.Lock()
	shared := f.sharedSent
	f.mu.Unlock()
	if shared == 0 {
		t.Error("the fake sent no shared response: the test proves nothing")
	}
}

func TestWatchEndsWhenClientCloses(t *testing.T) {
	_, addr := watchFake(t, "a", 1, newWatchHistory())
	c := newTestClient(t, addr)
	ctx, _ := watchContext(t)
	ch := c.Watch(ctx, "k")
	_ = c.Close()
	if rs := recvUntilClosed(t, ch); len(rs) != 0 {
		t.Errorf("got %s after Close", describe(rs))
	}
	rs := recvUntilClosed(t, c.Watch(ctx, "k"))
	if len(rs) != 1 || !errors.Is(rs[0].Err(), ErrClosed) {
		t.Errorf("Watch after Close: %s", describe(rs))
	}
}

func TestWatchWaitsForAnEndpoint(t *testing.T) {
	hist := newWatchHistory()
	_, addr := watchFake(t, "a", 1, hist)
	c := newTestClient(t, deadAddr(t), addr)
	ctx, _ := watchContext(t)
	ch := c.Watch(ctx, "k")
	hist.put("k", "v")
	if got := describe(recv(t, ch, 1)); got != "2:PUT k=v" {
		t.Errorf("got %s", got)
	}

	// No endpoint at all: Watch returns when ctx ends, with a closed
	// channel.
	c2 := newTestClient(t, deadAddr(t))
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if rs := recvUntilClosed(t, c2.Watch(short, "k")); len(rs) != 0 {
		t.Errorf("got %s", describe(rs))
	}
}

func TestWatchResponseErr(t *testing.T) {
	progress := WatchResponse{Header: &ResponseHeader{Revision: 4}}
	if !progress.IsProgressNotify() || progress.Err() != nil {
		t.Errorf("progress: %v %v", progress.IsProgressNotify(), progress.Err())
	}
	for _, r := range []WatchResponse{
		{Header: &ResponseHeader{Revision: 4}, Created: true},
		{Header: &ResponseHeader{Revision: 4}, Events: []*Event{{}}},
		{Header: &ResponseHeader{}},
		{},
	} {
		if r.IsProgressNotify() {
			t.Errorf("%+v is a progress notification", r)
		}
	}
	canceled := WatchResponse{Canceled: true}
	if status.Code(canceled.Err()) != codes.FailedPrecondition {
		t.Errorf("canceled without a reason: %v", canceled.Err())
	}
}

// waitFor polls cond until it holds, failing the test after a while.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Watchers handed a shared response queue the same response value, unless
// a watcher drops some of its events (a revision it has already seen): it
// then queues a response of its own, and the shared one keeps all events.
func TestSharedResponseIsQueuedOnceForAll(t *testing.T) {
	hdr := &ResponseHeader{Revision: 6}
	evs := []*Event{{Kv: &kvv1.KeyValue{Key: []byte("k"), ModRevision: 5}}, {Kv: &kvv1.KeyValue{Key: []byte("k"), ModRevision: 6}}}
	shared := &WatchResponse{Header: hdr, Events: evs}
	a := &watcher{wake: make(chan struct{}, 1), nextRev: 5}
	b := &watcher{wake: make(chan struct{}, 1), nextRev: 5}
	seen := &watcher{wake: make(chan struct{}, 1), nextRev: 6}
	for _, w := range []*watcher{a, b, seen} {
		w.eventsLocked(hdr, evs, shared)
		if len(w.q) != 1 {
			t.Fatalf("a watcher queued %d responses, want 1", len(w.q))
		}
	}
	if a.q[0] != shared || b.q[0] != shared {
		t.Error("watchers that take every event do not share the response")
	}
	if got := seen.q[0]; got == shared || len(got.Events) != 1 || got.Events[0].GetKv().GetModRevision() != 6 {
		t.Errorf("the watcher that had seen revision 5 queued %+v", got)
	}
	if len(shared.Events) != 2 {
		t.Errorf("the shared response lost events: %d left", len(shared.Events))
	}
	for _, w := range []*watcher{a, b, seen} {
		if w.nextRev != 7 {
			t.Errorf("nextRev %d after revision 6, want 7", w.nextRev)
		}
	}
}
