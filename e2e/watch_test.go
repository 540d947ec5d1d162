package e2e

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/client"
)

// watchSeen is one event a watcher received.
type watchSeen struct {
	rev        int64
	key, value string
	member     uint64
}

// kill -9 of the member an SDK watch is on, while writers keep writing: the
// SDK resumes the watch on another member, and the watcher gets every
// committed write exactly once, in revision order: every acknowledged write
// at its revision, a write of unknown outcome at most once, and (as only
// these writes happen) every revision from the watch's start to the final
// read's.
func TestWatchResumesAfterKill9(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3)
	leader := c.waitLeader(30*time.Second, c.nodes)
	// Watch on the leader: its death costs the writers an election too.
	victim := leader
	var others []*node
	for _, nd := range c.nodes {
		if nd != victim {
			others = append(others, nd)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	wcli := newClient(t, endpointsOf(append([]*node{victim}, others...)...))
	start, err := wcli.Get(ctx, "watched/", client.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	victimID := start.Header.GetMemberId()
	startRev := start.Header.GetRevision()

	var (
		mu      sync.Mutex
		seen    []watchSeen
		through atomic.Int64
		ended   error
	)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	ch := wcli.Watch(wctx, "watched/", client.WithPrefix(), client.WithRev(startRev+1))
	watchDone := make(chan struct{})
	go func() {
		defer close(watchDone)
		for resp := range ch {
			mu.Lock()
			if err := resp.Err(); err != nil {
				ended = err
				mu.Unlock()
				return
			}
			for _, e := range resp.Events {
				seen = append(seen, watchSeen{e.GetKv().GetModRevision(), string(e.GetKv().GetKey()), string(e.GetKv().GetValue()), resp.Header.GetMemberId()})
			}
			mu.Unlock()
			through.Store(max(through.Load(), resp.Header.GetRevision()))
		}
	}()

	// Writers: unique values on a few keys, through every member.
	type outcome struct {
		rev int64
		ok  bool
	}
	var (
		wmu     sync.Mutex
		written = map[string]outcome{} // value -> outcome; !ok: unknown
		failed  = map[string]bool{}
		acked   atomic.Int64
	)
	wrCli := newClient(t, c.endpoints())
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for seq := 0; ; seq++ {
				select {
				case <-stop:
					return
				default:
				}
				val := fmt.Sprintf("%d-%d", w, seq)
				key := fmt.Sprintf("watched/%d", seq%5)
				octx, ocancel := context.WithTimeout(ctx, 2*time.Second)
				resp, err := wrCli.Put(octx, key, val)
				ocancel()
				wmu.Lock()
				switch {
				case err == nil:
					written[val] = outcome{rev: resp.Header.GetRevision(), ok: true}
					acked.Add(1)
				case apierr.IsNotApplied(err) || status.Code(err) == codes.InvalidArgument:
					failed[val] = true
				default:
					written[val] = outcome{}
				}
				wmu.Unlock()
			}
		})
	}
	waitAcked := func(n int64) {
		t.Helper()
		eventually(t, 60*time.Second, func() error {
			if got := acked.Load(); got < n {
				return fmt.Errorf("%d writes acknowledged, want %d", got, n)
			}
			return nil
		})
	}
	waitAcked(500)
	c.kill(victim)
	killed := time.Now()
	waitAcked(acked.Load() + 1000)
	t.Logf("1000 writes acknowledged %s after the kill -9 of %s", time.Since(killed).Round(time.Millisecond), victim.name)
	c.start(victim)
	waitAcked(acked.Load() + 300)
	close(stop)
	wg.Wait()

	final, err := wrCli.Get(ctx, "watched/", client.WithPrefix())
	if err != nil {
		t.Fatal(err)
	}
	finalRev := final.Header.GetRevision()
	eventually(t, 60*time.Second, func() error {
		mu.Lock()
		err := ended
		mu.Unlock()
		if err != nil {
			t.Fatalf("the watch ended: %v", err)
		}
		if through.Load() >= finalRev {
			return nil
		}
		_ = wcli.RequestProgress(ctx)
		return fmt.Errorf("the watcher is through revision %d, the final read is at %d", through.Load(), finalRev)
	})
	stopWatch()
	<-watchDone

	mu.Lock()
	defer mu.Unlock()
	byValue := map[string]watchSeen{}
	moved := 0
	for i, e := range seen {
		if i > 0 && e.rev <= seen[i-1].rev {
			t.Fatalf("event %d: revision %d after %d (duplicate or out of order)", i, e.rev, seen[i-1].rev)
		}
		if want := startRev + 1 + int64(i); e.rev != want {
			t.Fatalf("event %d: revision %d, want %d: a gap", i, e.rev, want)
		}
		if i > 0 && e.member != seen[i-1].member {
			moved++
		}
		if _, dup := byValue[e.value]; dup {
			t.Fatalf("value %s delivered twice", e.value)
		}
		byValue[e.value] = e
		o, known := written[e.value]
		switch {
		case failed[e.value]:
			t.Fatalf("revision %d: %s=%s, whose write certainly failed", e.rev, e.key, e.value)
		case !known:
			t.Fatalf("revision %d: %s=%s was never written", e.rev, e.key, e.value)
		case o.ok && o.rev != e.rev:
			t.Fatalf("%s=%s at revision %d, acknowledged at %d", e.key, e.value, e.rev, o.rev)
		}
	}
	if n := len(seen); int64(n) != finalRev-startRev {
		t.Fatalf("%d events, want %d (revisions %d..%d)", n, finalRev-startRev, startRev+1, finalRev)
	}
	unknownSeen := 0
	for v, o := range written {
		if _, ok := byValue[v]; !ok && o.ok {
			t.Fatalf("acknowledged write %s at revision %d was not delivered", v, o.rev)
		}
		if !o.ok {
			if _, ok := byValue[v]; ok {
				unknownSeen++
			}
		}
	}
	last := map[string]string{}
	for _, e := range seen {
		last[e.key] = e.value
	}
	for _, kv := range final.Kvs {
		if last[string(kv.Key)] != string(kv.Value) {
			t.Fatalf("final read %s=%s, last event %s", kv.Key, kv.Value, last[string(kv.Key)])
		}
	}
	var afterKill bool
	for _, e := range seen {
		afterKill = afterKill || e.member != victimID
	}
	if !afterKill || moved == 0 {
		t.Fatalf("the watch never moved off %s (member %x)", victim.name, victimID)
	}
	t.Logf("%d events (revisions %d..%d) exactly once, %d acknowledged writes, %d of unknown outcome delivered, %d certainly failed; the watch moved %d times",
		len(seen), startRev+1, finalRev, acked.Load(), unknownSeen, len(failed), moved)
}
