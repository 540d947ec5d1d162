package server_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kvd-io/kvd/apierr"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/server/servertest"
)

// written is what writeMany wrote: the key and value of each revision.
type written map[int64]string

// writeMany puts n values under prefix (keys prefix0..prefix9) through
// member with the given number of concurrent writers, each write retried
// while it certainly was not applied, and returns each revision's
// "key=value" and each write's latency. It reports a failed write with
// t.Errorf (it may run on a goroutine of its own); callers check t.Failed.
func writeMany(t *testing.T, c *servertest.Cluster, member, prefix string, n, writers int, value func(i int) string) (written, []time.Duration) {
	t.Helper()
	out := written{}
	var lat []time.Duration
	var mu sync.Mutex
	var wg sync.WaitGroup
	errc := make(chan error, writers)
	next := make(chan int, n)
	for i := range n {
		next <- i
	}
	close(next)
	for range writers {
		wg.Go(func() {
			for i := range next {
				key, val := fmt.Sprintf("%s%d", prefix, i%10), value(i)
				start := time.Now()
				deadline := start.Add(30 * time.Second)
				for {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					resp, err := c.KV(member).Put(ctx, &kvv1.PutRequest{Key: []byte(key), Value: []byte(val)})
					cancel()
					if err == nil {
						mu.Lock()
						out[resp.GetHeader().GetRevision()] = key + "=" + val
						lat = append(lat, time.Since(start))
						mu.Unlock()
						break
					}
					if !apierr.IsNotApplied(err) || time.Now().After(deadline) {
						errc <- fmt.Errorf("put %s via %s: %w", key, member, err)
						return
					}
					time.Sleep(20 * time.Millisecond) // back off before a retry, as the SDK does
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	return out, lat
}

// rawWatch is one watch stream opened on a member, read by the test.
type rawWatch struct {
	st kvv1.WatchService_WatchClient
}

// openWatch opens a stream on a connection of its own whose flow-control
// windows are fixed at HTTP/2's 64 KiB: gRPC's default grows them up to
// 16 MiB when data flows fast, and a client that stops reading would then
// hold that much of the stream in its own buffers rather than leave it to
// the member.
func openWatch(t *testing.T, c *servertest.Cluster, member string) *rawWatch {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	conn, err := grpc.NewClient(c.Member(member).Conn().Target(), grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(65535), grpc.WithInitialConnWindowSize(65535))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	st, err := kvv1.NewWatchServiceClient(conn).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &rawWatch{st: st}
}

// create creates a watcher of prefix from start and waits for its created
// answer (nothing else is on the stream yet).
func (w *rawWatch) create(t *testing.T, id int64, prefix string, start int64) {
	t.Helper()
	err := w.st.Send(&kvv1.WatchRequest{Request: &kvv1.WatchRequest_CreateRequest{CreateRequest: &kvv1.WatchCreateRequest{
		WatchId: id, Key: []byte(prefix), RangeEnd: []byte(prefix + "\xff"), StartRevision: start}}})
	if err != nil {
		t.Fatal(err)
	}
	r, err := w.st.Recv()
	if err != nil || !r.GetCreated() || r.GetWatchId() != id || r.GetCanceled() {
		t.Fatalf("create watcher %d from %d: %v, %v", id, start, r, err)
	}
}

// A watch from an old revision races a compaction: the watcher gets every
// event from its start revision on, or a prefix of them followed by a clean
// cancellation that names the compact revision, which is above the first
// revision it was not sent. Never a gap, never an event twice. The writes
// (2 KiB each) outnumber what the hub keeps in memory and what a stream
// queues, so old revisions are read from the store while the compaction
// removes them. Half the watchers read at once (racing the compaction), half
// read only once it has been applied (so they meet it in the middle of
// their replay, and must be cancelled cleanly). Which of the two outcomes a
// racing watcher gets depends on timing; both are checked.
func TestWatchReplayRacesCompaction(t *testing.T) {
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	// 12,000 revisions of 2 KiB: the hub's ring holds the last ~4,000
	// (16 MiB of events and previous values); a stream holds at most
	// ~4,000 (its 4 MiB queue, and as much the sender is sending). A
	// watcher from below 500 that does not read stops short of 5,000, under
	// the compaction at 7,000 and the ring.
	const n = 12000
	big := strings.Repeat("y", 2048)
	revs, _ := writeMany(t, c, leader, "cr/", n, 16, func(i int) string { return fmt.Sprintf("%d-%s", i, big) })
	if t.Failed() {
		t.FailNow()
	}
	var all []int64
	for r := range revs {
		all = append(all, r)
	}
	slices.Sort(all)
	first, last := all[0], all[len(all)-1]
	if int64(len(all)) != last-first+1 {
		t.Fatalf("%d writes over revisions %d..%d: something else wrote", len(all), first, last)
	}
	rng := rand.New(rand.NewSource(1))
	prevCompact := first
	cancelled, complete := 0, 0
	for round, compactAt := range []int64{first + 7000} {
		type result struct {
			member       string
			start        int64
			got          []string
			compactRev   int64
			cancelReason string
			err          error
		}
		results := make([]result, 8)
		compacted := make(chan struct{})
		var wg sync.WaitGroup
		for i := range results {
			member := c.Names()[i%3]
			start := prevCompact + rng.Int63n(500)
			if i == len(results)/2-1 {
				start = compactAt - 1 - rng.Int63n(300) // just below: most likely past it before it applies
			}
			results[i] = result{member: member, start: start}
			w := openWatch(t, c, member)
			w.create(t, 1, "cr/", start)
			stalled := i >= len(results)/2
			wg.Go(func() {
				res := &results[i]
				if stalled {
					<-compacted
				}
				for {
					r, err := w.st.Recv()
					if err != nil {
						res.err = err
						return
					}
					if r.GetCanceled() {
						res.compactRev, res.cancelReason = r.GetCompactRevision(), r.GetCancelReason()
						return
					}
					for _, e := range r.GetEvents() {
						v := string(e.GetKv().GetValue())
						res.got = append(res.got, fmt.Sprintf("%d %s=%s", e.GetKv().GetModRevision(), e.GetKv().GetKey(), v))
					}
					if len(r.GetEvents()) > 0 && r.GetEvents()[len(r.GetEvents())-1].GetKv().GetModRevision() >= last {
						return
					}
				}
			})
		}
		// The compaction, while the watchers replay; then the stalled
		// ones read, once every member has applied it.
		if _, err := c.KV(c.Names()[round%3]).Compact(ctxT(t, 20*time.Second), &kvv1.CompactRequest{Revision: compactAt}); err != nil {
			t.Fatalf("compact at %d: %v", compactAt, err)
		}
		for _, name := range c.Names() {
			c.Eventually(20*time.Second, func() error {
				_, err := c.KV(name).Range(ctxT(t, 5*time.Second), &kvv1.RangeRequest{Key: []byte("cr/0"), Revision: compactAt - 1, Serializable: true})
				if err == nil {
					return fmt.Errorf("%s has not applied the compaction at %d yet", name, compactAt)
				}
				return nil
			})
		}
		close(compacted)
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			t.Fatal("watchers did not finish within 2 minutes")
		}
		for _, res := range results {
			if res.err != nil {
				t.Fatalf("watcher on %s from %d: %v", res.member, res.start, res.err)
			}
			for j, g := range res.got {
				rev := res.start + int64(j)
				if want := fmt.Sprintf("%d %s", rev, revs[rev]); g != want {
					t.Fatalf("watcher on %s from %d, event %d: %.30q, want %.30q (a gap or a duplicate)", res.member, res.start, j, g, want)
				}
			}
			next := res.start + int64(len(res.got))
			if res.compactRev == 0 {
				if next != last+1 {
					t.Fatalf("watcher on %s from %d ended at %d without a cancellation", res.member, res.start, next)
				}
				complete++
				continue
			}
			// Cancelled: only for a revision that was compacted.
			if res.compactRev != compactAt || next >= res.compactRev {
				t.Fatalf("watcher on %s from %d cancelled with compact revision %d (compacted at %d) after %d events, next %d: %s",
					res.member, res.start, res.compactRev, compactAt, len(res.got), next, res.cancelReason)
			}
			t.Logf("watcher on %s from %d: %d events, then cancelled cleanly (compact revision %d)", res.member, res.start, len(res.got), res.compactRev)
			cancelled++
		}
		prevCompact = compactAt
	}
	t.Logf("%d watchers got every event, %d were cancelled cleanly by the compaction", complete, cancelled)
	if cancelled == 0 {
		t.Fatal("no watcher met the compaction in the middle of its replay")
	}
}

// RequestProgress on a stream whose watchers are catching up (one replaying
// thousands of revisions, one live) while writes go on: every progress
// answer comes after every event, of both watchers, at or below its
// revision.
func TestRequestProgressNeverAheadOfEvents(t *testing.T) {
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	// 5,000 values of 2 KiB: more than a stream queues, so the replay
	// goes at the pace of the stream, and progress requests arrive while
	// the watcher is still catching up.
	big := strings.Repeat("z", 2048)
	old, _ := writeMany(t, c, leader, "pg/", 5000, 16, func(i int) string { return fmt.Sprintf("%d-%s", i, big) })
	if t.Failed() {
		t.FailNow()
	}
	follower := c.Names()[0]
	if follower == leader {
		follower = c.Names()[1]
	}
	w := openWatch(t, c, follower)
	w.create(t, 2, "other/", 0) // live; first, as watcher 1's events follow its creation at once
	w.create(t, 1, "pg/", 1)

	// Writers to both prefixes, and progress requests, while the stream is
	// read.
	type resp struct {
		id     int64
		rev    int64
		events []int64
	}
	var got []resp
	recvDone := make(chan error, 1)
	stopRecv := make(chan struct{})
	var gotMu sync.Mutex
	go func() {
		for {
			r, err := w.st.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			var evs []int64
			for _, e := range r.GetEvents() {
				evs = append(evs, e.GetKv().GetModRevision())
			}
			gotMu.Lock()
			got = append(got, resp{id: r.GetWatchId(), rev: r.GetHeader().GetRevision(), events: evs})
			gotMu.Unlock()
			select {
			case <-stopRecv:
				recvDone <- nil
				return
			default:
			}
		}
	}()
	progressDone := make(chan struct{})
	stopProgress := make(chan struct{})
	go func() {
		defer close(progressDone)
		for {
			select {
			case <-stopProgress:
				return
			case <-time.After(2 * time.Millisecond): // a steady trickle of requests
			}
			if err := w.st.Send(&kvv1.WatchRequest{Request: &kvv1.WatchRequest_ProgressRequest{ProgressRequest: &kvv1.WatchProgressRequest{}}}); err != nil {
				return
			}
		}
	}()
	var wg sync.WaitGroup
	var pg, other written
	wg.Go(func() {
		pg, _ = writeMany(t, c, leader, "pg/", 1500, 4, func(i int) string { return "new" + fmt.Sprint(i) })
	})
	wg.Go(func() {
		other, _ = writeMany(t, c, follower, "other/", 1500, 4, func(i int) string { return fmt.Sprint(i) })
	})
	wg.Wait()
	close(stopProgress)
	<-progressDone
	if t.Failed() {
		t.FailNow()
	}
	var lastRev int64
	for r := range pg {
		lastRev = max(lastRev, r)
	}
	for r := range other {
		lastRev = max(lastRev, r)
	}
	// Wait for a progress answer at or past the last write, then stop.
	c.Eventually(60*time.Second, func() error {
		if err := w.st.Send(&kvv1.WatchRequest{Request: &kvv1.WatchRequest_ProgressRequest{ProgressRequest: &kvv1.WatchProgressRequest{}}}); err != nil {
			return err
		}
		gotMu.Lock()
		defer gotMu.Unlock()
		for _, r := range got {
			if r.id == -1 && r.rev >= lastRev {
				return nil
			}
		}
		return errors.New("no progress answer at the last revision yet")
	})
	close(stopRecv)
	_ = w.st.Send(&kvv1.WatchRequest{Request: &kvv1.WatchRequest_ProgressRequest{ProgressRequest: &kvv1.WatchProgressRequest{}}})
	select {
	case err := <-recvDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the stream went quiet")
	}

	// Each watcher's revisions, all of them, in order.
	want := map[int64][]int64{1: keysOf(old, pg), 2: keysOf(other)}
	gotMu.Lock()
	defer gotMu.Unlock()
	seen := map[int64][]int64{}
	progress := 0
	for i, r := range got {
		if r.id != -1 {
			seen[r.id] = append(seen[r.id], r.events...)
			continue
		}
		progress++
		for id, revs := range want {
			// Every event of the watcher at or below the answer's
			// revision has been received before it.
			n := sort.Search(len(revs), func(j int) bool { return revs[j] > r.rev })
			if len(seen[id]) < n {
				t.Fatalf("response %d: progress at revision %d, but watcher %d had %d of its %d events at or below it (next missing: %d)",
					i, r.rev, id, len(seen[id]), n, revs[len(seen[id])])
			}
		}
	}
	for id, revs := range want {
		if !slices.Equal(seen[id][:min(len(seen[id]), len(revs))], revs) || len(seen[id]) < len(revs) {
			t.Fatalf("watcher %d: %d events, want %d, in order, once", id, len(seen[id]), len(revs))
		}
	}
	if progress < 50 {
		t.Fatalf("only %d progress answers: the rule was hardly exercised", progress)
	}
	t.Logf("%d progress answers, each after every event at or below it; %d and %d events", progress, len(seen[1]), len(seen[2]))
}

func keysOf(ws ...written) []int64 {
	var out []int64
	for _, w := range ws {
		for r := range w {
			out = append(out, r)
		}
	}
	slices.Sort(out)
	return out
}

// p99 returns the 99th percentile of d.
func p99(d []time.Duration) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[len(s)*99/100]
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// A watcher whose client stops reading while 20,000 writes of 2 KiB go by
// (100,000 with KVD_WATCH_SOAK=1): the writers' p99 latency stays within a
// generous factor of a baseline run without it; once the client reads again
// it gets every event, once, in order; and what the process held for the
// watcher while it stalled (the heap then, less the heap once it has caught
// up) does not grow with what it missed: the stream's queue is bounded, the
// rest is read from the store later.
func TestStalledWatcherDoesNotSlowWriters(t *testing.T) {
	n := 20000
	if os.Getenv("KVD_WATCH_SOAK") == "1" {
		n = 100000
	}
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	big := strings.Repeat("x", 2048)
	value := func(i int) string { return fmt.Sprintf("%d-%s", i, big) }

	// Baseline: the same writers, no watcher. Also fills the hub's ring,
	// so that what the stalled phase adds to memory is the watcher's.
	_, base := writeMany(t, c, leader, "base/", 5000, 16, value)
	if t.Failed() {
		t.FailNow()
	}

	startRev := put(t, c, leader, "stall/start", "x").GetHeader().GetRevision()
	w := openWatch(t, c, leader)
	w.create(t, 1, "stall/", startRev+1)
	// The client reads nothing more until the writes are done.
	revs, lat := writeMany(t, c, leader, "stall/", n, 16, value)
	if t.Failed() {
		t.FailNow()
	}
	heapStalled := heapInUse()

	pBase, pStalled := p99(base), p99(lat)
	t.Logf("writers' p99: %s without a watcher, %s with a stalled one", pBase.Round(time.Microsecond), pStalled.Round(time.Microsecond))
	if limit := 3*pBase + 100*time.Millisecond; pStalled > limit {
		t.Errorf("writers' p99 %s with a stalled watcher, over %s (3 x the baseline's %s + 100ms)", pStalled, limit, pBase)
	}

	// The watcher reads again: every event, once, in order.
	var all []int64
	for r := range revs {
		all = append(all, r)
	}
	slices.Sort(all)
	want := all[len(all)-1]
	next := startRev + 1
	deadline := time.Now().Add(3 * time.Minute)
	for next <= want {
		if time.Now().After(deadline) {
			t.Fatalf("caught up only to revision %d of %d within 3 minutes", next-1, want)
		}
		r, err := w.st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if r.GetCanceled() {
			t.Fatalf("cancelled at revision %d: %v", next, r)
		}
		for _, e := range r.GetEvents() {
			got := fmt.Sprintf("%s=%s", e.GetKv().GetKey(), e.GetKv().GetValue())
			if rev := e.GetKv().GetModRevision(); rev != next || got != revs[rev] {
				t.Fatalf("event at revision %d (%.20s...), want revision %d (%.20s...)", rev, got, next, revs[next])
			}
			next++
		}
	}
	// What the member held for the stalled watcher is what it no longer
	// holds once the watcher has caught up (no write happens in between).
	// The watcher missed n x 2 KiB (40 MiB at least); its stream's queue
	// and the batch being sent hold at most 2 x 4 MiB of it.
	heapCaughtUp := heapInUse()
	runtime.KeepAlive(revs) // the test's own record of the writes, in both measures
	held := int64(heapStalled) - int64(heapCaughtUp)
	t.Logf("the watcher caught up with all %d events (%d MiB); heap %d MiB while it stalled, %d MiB once caught up: %d MiB held for it",
		n, n*len(value(0))>>20, heapStalled>>20, heapCaughtUp>>20, held>>20)
	if held > 24<<20 {
		t.Errorf("%d MiB held for a stalled watcher: not bounded", held>>20)
	}
}
