package watch

import (
	"bytes"
	"context"
	"fmt"
	"math/rand"
	"slices"
	"sync"
	"testing"
	"time"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// store is a History over changes kept in memory, as the state machine's
// history would be, with a compaction point.
type store struct {
	mu      sync.Mutex
	changes []Change // every revision from 1, in order
	compact int64
	reads   int // calls to Changes
}

func (s *store) Changes(key, end []byte, from, to int64) ([]Change, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reads++
	if from < s.compact {
		return nil, fmt.Errorf("%w: %d < %d", ErrCompacted, from, s.compact)
	}
	w := &watcher{key: key, end: end}
	var out []Change
	for _, c := range s.changes {
		if c.Revision < from || c.Revision > to {
			continue
		}
		var evs []*kvv1.Event
		for _, e := range c.Events {
			if w.matches(e.GetKv().GetKey()) {
				evs = append(evs, e)
			}
		}
		if len(evs) > 0 {
			sortByKey(evs)
			out = append(out, Change{Revision: c.Revision, Events: evs})
		}
	}
	return out, nil
}

func (s *store) CompactRevision() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.compact
}

// writer makes random changes of a few keys and tells both the store and
// the hub, as the state machine does.
type writer struct {
	rng   *rand.Rand
	s     *store
	h     *Hub
	rev   int64
	state map[string]*kvv1.KeyValue
	keys  []string
}

func newWriter(s *store, h *Hub, seed int64) *writer {
	return &writer{rng: rand.New(rand.NewSource(seed)), s: s, h: h, state: map[string]*kvv1.KeyValue{},
		keys: []string{"a", "a/1", "a/2", "b", "b/1", "c"}}
}

// step applies n revisions, each a put or delete of one to three keys.
func (w *writer) step(n int) {
	var batch []Change
	for range n {
		w.rev++
		c := Change{Revision: w.rev}
		seen := map[string]bool{}
		for range 1 + w.rng.Intn(3) {
			k := w.keys[w.rng.Intn(len(w.keys))]
			if seen[k] {
				continue
			}
			seen[k] = true
			prev := w.state[k]
			if prev != nil && w.rng.Intn(4) == 0 {
				delete(w.state, k)
				c.Events = append(c.Events, &kvv1.Event{Type: kvv1.EventType_EVENT_TYPE_DELETE, Kv: &kvv1.KeyValue{Key: []byte(k), ModRevision: w.rev}, PrevKv: prev})
				continue
			}
			kv := &kvv1.KeyValue{Key: []byte(k), Value: []byte(fmt.Sprint(w.rev)), ModRevision: w.rev, CreateRevision: w.rev, Version: 1}
			if prev != nil {
				kv.CreateRevision, kv.Version = prev.GetCreateRevision(), prev.GetVersion()+1
			}
			w.state[k] = kv
			c.Events = append(c.Events, &kvv1.Event{Type: kvv1.EventType_EVENT_TYPE_PUT, Kv: kv, PrevKv: prev})
		}
		w.s.mu.Lock()
		w.s.changes = append(w.s.changes, c)
		w.s.mu.Unlock()
		batch = append(batch, c)
	}
	// The hub gets its own copy of the slices, as the feed hands them over.
	w.h.Applied(slices.Clone(batch))
}

func newHub(t *testing.T, s *store, cfg Config) *Hub {
	t.Helper()
	cfg.History = s
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { h.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

// reader drains a stream as a sender would, slowly when slow is set.
type reader struct {
	mu   sync.Mutex
	got  []*kvv1.WatchResponse
	slow bool
}

func (r *reader) run(ctx context.Context, s *Stream) {
	for {
		rs, err := s.Next(ctx)
		if err != nil {
			return
		}
		r.mu.Lock()
		r.got = append(r.got, rs...)
		r.mu.Unlock()
		if r.slow {
			time.Sleep(time.Millisecond) // a slow reader, not synchronisation
		}
	}
}

func (r *reader) responses() []*kvv1.WatchResponse {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.got)
}

// expected is what a watcher of [key, end) from start must be sent, after
// its filters, through revision to.
func expected(s *store, req *kvv1.WatchCreateRequest, to int64) []string {
	w := &watcher{key: req.GetKey(), end: req.GetRangeEnd()}
	for _, f := range req.GetFilters() {
		w.noPut = w.noPut || f == kvv1.WatchFilter_WATCH_FILTER_NO_PUT
		w.noDelete = w.noDelete || f == kvv1.WatchFilter_WATCH_FILTER_NO_DELETE
	}
	var out []string
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.changes {
		if c.Revision < req.GetStartRevision() || c.Revision > to {
			continue
		}
		evs := slices.Clone(c.Events)
		sortByKey(evs)
		for _, e := range evs {
			if w.matches(e.GetKv().GetKey()) && w.wants(e) {
				if !req.GetPrevKv() {
					e = &kvv1.Event{Type: e.GetType(), Kv: e.GetKv()}
				}
				out = append(out, describe(c.Revision, e, req.GetPrevKv()))
			}
		}
	}
	return out
}

func describe(rev int64, e *kvv1.Event, prevKV bool) string {
	s := fmt.Sprintf("%d %s %s=%s", rev, e.GetType(), e.GetKv().GetKey(), e.GetKv().GetValue())
	if prevKV && e.GetPrevKv() != nil {
		s += fmt.Sprintf(" prev=%s", e.GetPrevKv().GetValue())
	}
	if !prevKV && e.GetPrevKv() != nil {
		s += " UNASKED-PREV"
	}
	return s
}

// eventsOf returns what watcher id was sent, and checks that every response
// of an event carries the revision of its events and that no event comes
// after the watcher was cancelled.
func eventsOf(t *testing.T, rs []*kvv1.WatchResponse, id int64, prevKV bool) []string {
	t.Helper()
	var out []string
	ended := false
	for _, r := range rs {
		if !responseFor(r, id) {
			continue
		}
		if ended {
			t.Fatalf("watcher %d: a response after it was cancelled: %v", id, r)
		}
		if r.GetCanceled() {
			ended = true
		}
		for _, e := range r.GetEvents() {
			if e.GetKv().GetModRevision() != r.GetHeader().GetRevision() {
				t.Fatalf("watcher %d: event of revision %d in a response of revision %d", id, e.GetKv().GetModRevision(), r.GetHeader().GetRevision())
			}
			out = append(out, describe(r.GetHeader().GetRevision(), e, prevKV))
		}
	}
	return out
}

// responseFor reports whether r is for watcher id: its watch id, or one of
// the watchers it is shared with.
func responseFor(r *kvv1.WatchResponse, id int64) bool {
	return r.GetWatchId() == id || slices.Contains(r.GetSharedWatchIds(), id)
}

// Watchers of every shape, started at past, current and future revisions,
// some on streams that read slowly with tiny queues and a ring too small to
// hold what they miss, each get exactly the events of their range, once,
// in revision order, and every progress answer comes after every event at
// or below its revision.
func TestEveryWatcherGetsItsEventsOnceInOrder(t *testing.T) {
	for seed := int64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			s := &store{}
			h := newHub(t, s, Config{RingRevisions: 16, StreamQueue: 8, StreamQueueBytes: 4 << 10, CatchUpRevisions: 7})
			w := newWriter(s, h, seed)
			w.step(50) // history before any watcher
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()

			rng := rand.New(rand.NewSource(seed))
			type watch struct {
				stream *Stream
				reader *reader
				req    *kvv1.WatchCreateRequest
				id     int64
			}
			var watches []watch
			var streams []*Stream
			var readers []*reader
			for i := range 4 {
				st := h.NewStream()
				r := &reader{slow: i%2 == 1}
				go r.run(ctx, st)
				streams, readers = append(streams, st), append(readers, r)
			}
			shapes := []*kvv1.WatchCreateRequest{
				{Key: []byte("a")},
				{Key: []byte("a/"), RangeEnd: []byte("a0"), PrevKv: true},
				{Key: []byte("b"), RangeEnd: []byte{0}},
				{Key: []byte("a"), RangeEnd: []byte("c"), Filters: []kvv1.WatchFilter{kvv1.WatchFilter_WATCH_FILTER_NO_DELETE}},
				{Key: []byte("c"), Filters: []kvv1.WatchFilter{kvv1.WatchFilter_WATCH_FILTER_NO_PUT}, PrevKv: true},
			}
			for i := range 20 {
				req := shapes[rng.Intn(len(shapes))]
				req = &kvv1.WatchCreateRequest{Key: req.Key, RangeEnd: req.RangeEnd, Filters: req.Filters, PrevKv: req.PrevKv,
					StartRevision: []int64{1, 10, 49, 51, 60}[rng.Intn(5)], WatchId: int64(i + 1), ShareResponses: rng.Intn(3) > 0}
				st := streams[i%len(streams)]
				st.Watch(req)
				watches = append(watches, watch{stream: st, reader: readers[i%len(streams)], req: req, id: req.WatchId})
				w.step(rng.Intn(5))
				if rng.Intn(3) == 0 {
					st.RequestProgress()
				}
			}
			w.step(100)
			for _, st := range streams {
				st.RequestProgress()
			}
			final := w.rev
			deadline := time.Now().Add(20 * time.Second)
			for _, wt := range watches {
				want := expected(s, wt.req, final)
				for {
					got := eventsOf(t, wt.reader.responses(), wt.id, wt.req.GetPrevKv())
					if slices.Equal(got, want) {
						break
					}
					if len(got) > len(want) || !slices.Equal(got, want[:len(got)]) || time.Now().After(deadline) {
						t.Fatalf("watcher %d (%q..%q from %d, prev %v): %s", wt.id, wt.req.Key, wt.req.RangeEnd, wt.req.StartRevision, wt.req.PrevKv, diff(got, want))
					}
					time.Sleep(5 * time.Millisecond) // polling the readers
				}
			}
			// Progress answers: every event at or below a progress revision
			// was sent before it on its stream.
			for i, r := range readers {
				checkProgress(t, i, r.responses())
			}
		})
	}
}

func checkProgress(t *testing.T, stream int, rs []*kvv1.WatchResponse) {
	t.Helper()
	sawProgress := false
	existing := map[int64]bool{} // watchers created before the progress request
	for i, r := range rs {
		if r.GetCreated() && !r.GetCanceled() {
			existing[r.GetWatchId()] = true
		}
		if r.GetWatchId() != ProgressWatchID {
			continue
		}
		sawProgress = true
		for _, later := range rs[i+1:] {
			for _, id := range append([]int64{later.GetWatchId()}, later.GetSharedWatchIds()...) {
				if existing[id] && len(later.GetEvents()) > 0 && later.GetHeader().GetRevision() <= r.GetHeader().GetRevision() {
					t.Fatalf("stream %d: progress at revision %d sent before watcher %d's event of revision %d", stream, r.GetHeader().GetRevision(), id, later.GetHeader().GetRevision())
				}
			}
		}
	}
	if !sawProgress {
		t.Fatalf("stream %d: no progress answer", stream)
	}
}

// A reader that stops reading never blocks the writer, its queue stays
// bounded, and once it reads again it gets everything it missed.
func TestAStalledReaderNeverBlocksWritersAndCatchesUp(t *testing.T) {
	s := &store{}
	h := newHub(t, s, Config{RingRevisions: 32, StreamQueue: 16, StreamQueueBytes: 1 << 20})
	w := newWriter(s, h, 3)
	st := h.NewStream()
	req := &kvv1.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte{0}, WatchId: 1}
	st.Watch(req)
	start := time.Now()
	w.step(5000) // nobody reads meanwhile
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("5000 revisions took %s with a stalled reader", d)
	}
	st.mu.Lock()
	queued := st.events
	st.mu.Unlock()
	if queued > 16 {
		t.Fatalf("%d events queued for a stalled reader, bound 16", queued)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &reader{}
	go r.run(ctx, st)
	want := expected(s, req, w.rev)
	deadline := time.Now().Add(20 * time.Second)
	for {
		got := eventsOf(t, r.responses(), 1, false)
		if slices.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("caught up: %s", diff(got, want))
		}
		time.Sleep(5 * time.Millisecond) // polling the reader
	}
	s.mu.Lock()
	reads := s.reads
	s.mu.Unlock()
	if reads == 0 {
		t.Error("the watcher was never read from the store; the ring must have held more than its bound")
	}
}

// A start revision below the compacted one is created, then cancelled
// with the compact revision; a watcher that falls behind past a compaction
// is cancelled the same way.
func TestCompactedStartIsCancelled(t *testing.T) {
	s := &store{}
	h := newHub(t, s, Config{RingRevisions: 4, StreamQueue: 4})
	w := newWriter(s, h, 5)
	w.step(20)
	s.mu.Lock()
	s.compact = 10
	s.mu.Unlock()
	st := h.NewStream()
	st.Watch(&kvv1.WatchCreateRequest{Key: []byte("a"), WatchId: 7, StartRevision: 5})
	rs, err := st.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || !rs[0].GetCreated() || !rs[1].GetCanceled() || rs[1].GetCompactRevision() != 10 || rs[1].GetWatchId() != 7 {
		t.Fatalf("answers to a compacted start: %v", rs)
	}

	// Behind, and compacted past before it catches up.
	st.Watch(&kvv1.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte{0}, WatchId: 8, StartRevision: 11})
	w.step(50) // the stream is full long before this ends; nobody reads
	s.mu.Lock()
	s.compact = 60
	s.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &reader{}
	go r.run(ctx, st)
	deadline := time.Now().Add(10 * time.Second)
	for {
		rs := r.responses()
		if n := len(rs); n > 0 && rs[n-1].GetCanceled() && rs[n-1].GetCompactRevision() == 60 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a watcher compacted past was not cancelled: %v", rs)
		}
		time.Sleep(5 * time.Millisecond) // polling the reader
	}
}

// A watcher that starts in the future gets nothing before its revision.
func TestFutureStartWaits(t *testing.T) {
	s := &store{}
	h := newHub(t, s, Config{})
	w := newWriter(s, h, 7)
	w.step(3)
	st := h.NewStream()
	req := &kvv1.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte{0}, WatchId: 1, StartRevision: 20}
	st.Watch(req)
	w.step(30)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rs, err := st.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := eventsOf(t, rs, 1, false)
	if want := expected(s, req, w.rev); !slices.Equal(got, want) {
		t.Fatal(diff(got, want))
	}
	for _, r := range rs[1:] {
		if r.GetHeader().GetRevision() < 20 {
			t.Fatalf("event of revision %d for a watcher that starts at 20", r.GetHeader().GetRevision())
		}
	}
}

// After a snapshot restore, watchers catch up from the store: what the
// feed never reported is still sent, once.
func TestRestoredStoreIsReadAgain(t *testing.T) {
	s := &store{}
	h := newHub(t, s, Config{})
	w := newWriter(s, h, 9)
	w.step(5)
	st := h.NewStream()
	req := &kvv1.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte{0}, WatchId: 1}
	st.Watch(req)
	req.StartRevision = 6
	// Revisions 6..30 reach the store but not the feed: a snapshot install.
	hidden := &writer{rng: w.rng, s: s, h: &Hub{cfg: h.cfg, single: map[string]map[*watcher]struct{}{}, ranges: map[*watcher]struct{}{}, unsynced: map[*watcher]struct{}{}}, rev: w.rev, state: w.state, keys: w.keys}
	hidden.step(25)
	w.rev = hidden.rev
	h.Restored(w.rev)
	w.step(10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := &reader{}
	go r.run(ctx, st)
	want := expected(s, req, w.rev)
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := eventsOf(t, r.responses(), 1, false)
		if slices.Equal(got, want) {
			return
		}
		if len(got) > len(want) || !slices.Equal(got, want[:len(got)]) || time.Now().After(deadline) {
			t.Fatal(diff(got, want))
		}
		time.Sleep(5 * time.Millisecond) // polling the reader
	}
}

func TestRequestsRefusedAndCancelled(t *testing.T) {
	s := &store{}
	h := newHub(t, s, Config{})
	w := newWriter(s, h, 11)
	st := h.NewStream()
	st.Watch(&kvv1.WatchCreateRequest{Key: []byte("a"), WatchId: 3})
	st.Watch(&kvv1.WatchCreateRequest{Key: []byte("b"), WatchId: 3})
	st.Watch(&kvv1.WatchCreateRequest{})
	st.Watch(&kvv1.WatchCreateRequest{Key: []byte("b"), RangeEnd: []byte("a")})
	st.Cancel(3)
	w.step(20)
	rs, err := st.Next(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range rs {
		got = append(got, fmt.Sprintf("%d created=%v canceled=%v events=%d", r.GetWatchId(), r.GetCreated(), r.GetCanceled(), len(r.GetEvents())))
	}
	want := []string{
		"3 created=true canceled=false events=0",
		"3 created=true canceled=true events=0", // the id is in use
		"1 created=true canceled=true events=0", // empty key
		"2 created=true canceled=true events=0", // end before key
		"3 created=false canceled=true events=0",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("answers:\n%s\nwant:\n%s", bytes.Join(toBytes(got), []byte("\n")), bytes.Join(toBytes(want), []byte("\n")))
	}
	if st.Watchers() != 0 {
		t.Errorf("%d watchers left", st.Watchers())
	}
	st.Close()
	if _, err := st.Next(context.Background()); err != ErrStreamClosed {
		t.Errorf("Next after Close: %v", err)
	}
}

func toBytes(ss []string) [][]byte {
	var out [][]byte
	for _, s := range ss {
		out = append(out, []byte(s))
	}
	return out
}

// A watcher that asked for fragments gets a large revision in several
// responses, all but the last marked.
func TestFragments(t *testing.T) {
	s := &store{}
	h := newHub(t, s, Config{MaxResponseBytes: 100})
	st := h.NewStream()
	st.Watch(&kvv1.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte{0}, Fragment: true, WatchId: 1})
	st.Watch(&kvv1.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte{0}, WatchId: 2})
	c := Change{Revision: 1}
	for i := range 10 {
		c.Events = append(c.Events, &kvv1.Event{Type: kvv1.EventType_EVENT_TYPE_PUT,
			Kv: &kvv1.KeyValue{Key: []byte(fmt.Sprintf("k%d", i)), Value: bytes.Repeat([]byte("v"), 40), ModRevision: 1}})
	}
	h.Applied([]Change{c})
	rs, _ := st.Next(context.Background())
	var frags, whole, n int
	for _, r := range rs {
		switch {
		case r.GetWatchId() == 1 && len(r.GetEvents()) > 0:
			frags++
			n += len(r.GetEvents())
			if r.GetFragment() == (n == 10) {
				t.Errorf("fragment flag %v on a response ending at event %d of 10", r.GetFragment(), n)
			}
		case r.GetWatchId() == 2 && len(r.GetEvents()) > 0:
			whole++
		}
	}
	if frags < 3 || n != 10 || whole != 1 {
		t.Fatalf("fragments %d (events %d), whole responses %d", frags, n, whole)
	}
}

// Idle watchers that asked for progress notifications get them; busy ones
// and those that did not ask do not.
func TestIdleProgressNotifications(t *testing.T) {
	s := &store{}
	h := newHub(t, s, Config{})
	w := newWriter(s, h, 13)
	st := h.NewStream()
	st.Watch(&kvv1.WatchCreateRequest{Key: []byte("zzz"), ProgressNotify: true, WatchId: 1}) // never changes
	st.Watch(&kvv1.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte{0}, ProgressNotify: true, WatchId: 2})
	st.Watch(&kvv1.WatchCreateRequest{Key: []byte("yyy"), WatchId: 3})
	_, _ = st.Next(context.Background()) // the created answers
	w.step(5)
	st.NotifyIdle()
	rs, _ := st.Next(context.Background())
	var notified []int64
	for _, r := range rs {
		if len(r.GetEvents()) == 0 {
			notified = append(notified, r.GetWatchId())
			if r.GetHeader().GetRevision() != w.rev {
				t.Errorf("progress of watcher %d at %d, want %d", r.GetWatchId(), r.GetHeader().GetRevision(), w.rev)
			}
		}
	}
	if !slices.Equal(notified, []int64{1}) {
		t.Fatalf("notified %v, want only the idle watcher 1", notified)
	}
}

// diff says where got and want part.
func diff(got, want []string) string {
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			return fmt.Sprintf("event %d: got %q, want %q (%d events got, %d wanted)", i, got[i], want[i], len(got), len(want))
		}
	}
	if len(got) > len(want) {
		return fmt.Sprintf("%d events more than the %d wanted, from %q", len(got)-len(want), len(want), got[len(want)])
	}
	if len(got) < len(want) {
		return fmt.Sprintf("%d of %d events, missing from %q", len(got), len(want), want[len(got)])
	}
	return "equal"
}

// The deliberately broken hub of the jepsen negative control drops exactly
// every Nth event it hands out, and nothing else.
func TestUnsafeDropEvery(t *testing.T) {
	s := &store{}
	h := newHub(t, s, Config{UnsafeDropEvery: 7})
	w := newWriter(s, h, 11)
	st := h.NewStream()
	req := &kvv1.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte{0}, WatchId: 1}
	st.Watch(req)
	w.step(60)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rs, err := st.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := eventsOf(t, rs, 1, false)
	var want []string
	for i, e := range expected(s, req, w.rev) {
		if (i+1)%7 != 0 {
			want = append(want, e)
		}
	}
	if len(want) < 50 || !slices.Equal(got, want) {
		t.Fatal(diff(got, want))
	}
}

// Watchers of one key on one stream that share responses get one response
// per change between them, one for each prev_kv choice where the event has
// a previous value, with only what they asked for; a watcher that does not
// share gets its own; filters still apply to each. A stream whose queue is
// full gets nothing, and every watcher of the group is caught up on its
// own later.
func TestSharedResponses(t *testing.T) {
	s := &store{}
	h := newHub(t, s, Config{StreamQueue: 8})
	w := newWriter(s, h, 1)
	put := func() {
		w.rev++
		prev := w.state["a"]
		kv := &kvv1.KeyValue{Key: []byte("a"), Value: []byte(fmt.Sprint(w.rev)), ModRevision: w.rev, CreateRevision: w.rev, Version: 1}
		w.state["a"] = kv
		c := Change{Revision: w.rev, Events: []*kvv1.Event{{Type: kvv1.EventType_EVENT_TYPE_PUT, Kv: kv, PrevKv: prev}}}
		s.mu.Lock()
		s.changes = append(s.changes, c)
		s.mu.Unlock()
		h.Applied([]Change{c})
	}
	st := h.NewStream()
	watch := func(id int64, share, prev bool, filters ...kvv1.WatchFilter) {
		st.Watch(&kvv1.WatchCreateRequest{Key: []byte("a"), WatchId: id, ShareResponses: share, PrevKv: prev, Filters: filters})
	}
	watch(1, true, false)
	watch(2, true, false)
	watch(3, true, true)
	watch(4, true, true)
	watch(5, false, false)
	watch(6, true, false, kvv1.WatchFilter_WATCH_FILTER_NO_PUT)
	other := h.NewStream()
	other.Watch(&kvv1.WatchCreateRequest{Key: []byte("a"), WatchId: 1, ShareResponses: true})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	next := func(s *Stream) []*kvv1.WatchResponse {
		t.Helper()
		rs, err := s.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return slices.Clone(rs)
	}
	next(st) // the creations
	next(other)

	put() // creates a: no previous value, so prev_kv makes no difference
	put() // changes a
	rs := next(st)
	want := map[int64][]string{1: {"[1 2 3 4]", "[5]"}, 2: {"[1 2]", "[3 4]", "[5]"}}
	got := map[int64][]string{}
	for _, r := range rs {
		ids := append([]int64{r.GetWatchId()}, r.GetSharedWatchIds()...)
		slices.Sort(ids)
		rev := r.GetHeader().GetRevision()
		got[rev] = append(got[rev], fmt.Sprint(ids))
		if len(r.GetEvents()) != 1 {
			t.Fatalf("revision %d, watchers %v: %d events, want 1", rev, ids, len(r.GetEvents()))
		}
		if withPrev := r.GetEvents()[0].GetPrevKv() != nil; withPrev != (rev == 2 && ids[0] == 3) {
			t.Errorf("revision %d, watchers %v: previous value sent: %v", rev, ids, withPrev)
		}
	}
	for rev := range want {
		slices.Sort(got[rev])
		if !slices.Equal(got[rev], want[rev]) {
			t.Errorf("revision %d: responses for watchers %v, want %v", rev, got[rev], want[rev])
		}
	}
	if rs := next(other); len(rs) != 2 || len(rs[0].GetSharedWatchIds()) != 0 {
		t.Fatalf("the other stream: %v, want one response of its own per revision", rs)
	}

	// Nobody reads st while 10 revisions go by: its queue holds 8 responses, the
	// rest is caught up per watcher, and nothing is lost or repeated.
	for range 10 {
		put()
	}
	final := w.rev
	var after []*kvv1.WatchResponse
	for {
		after = append(after, next(st)...)
		done := true
		for id := int64(1); id <= 5; id++ {
			done = done && len(eventsOf(t, after, id, id == 3 || id == 4)) >= 10
		}
		if done {
			break
		}
	}
	for id := int64(1); id <= 5; id++ {
		prev := id == 3 || id == 4
		want := expected(s, &kvv1.WatchCreateRequest{Key: []byte("a"), StartRevision: 3, PrevKv: prev}, final)
		if got := eventsOf(t, after, id, prev); !slices.Equal(got, want) {
			t.Errorf("watcher %d after the stall: %s", id, diff(got, want))
		}
	}
	if got := eventsOf(t, append(rs, after...), 6, false); len(got) != 0 {
		t.Errorf("watcher 6 (no puts) was sent puts: %v", got)
	}
}
