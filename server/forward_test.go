package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeLeader stands in for the leader behind a forwarder: single sends block
// until released, so the test can fill the forwarder's slots.
type fakeLeader struct {
	release chan struct{}

	mu      sync.Mutex
	singles int
	batches [][]string
	local   int
	answer  func(cmds [][]byte) []forwardResult // nil: apply every command
}

func (l *fakeLeader) one(ctx context.Context, data []byte) (any, error) {
	l.mu.Lock()
	l.singles++
	l.mu.Unlock()
	select {
	case <-l.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return "one:" + string(data), nil
}

func (l *fakeLeader) batch(_ context.Context, cmds [][]byte) []forwardResult {
	l.mu.Lock()
	var names []string
	for _, c := range cmds {
		names = append(names, string(c))
	}
	l.batches = append(l.batches, names)
	answer := l.answer
	l.mu.Unlock()
	if answer != nil {
		return answer(cmds)
	}
	out := make([]forwardResult, len(cmds))
	for i, c := range cmds {
		out[i] = forwardResult{res: "batch:" + string(c)}
	}
	return out
}

func (l *fakeLeader) applyLocal(_ context.Context, data []byte) (any, error) {
	l.mu.Lock()
	l.local++
	l.mu.Unlock()
	return "local:" + string(data), nil
}

// startForwarder runs a forwarder in front of l; queued counts the writes
// that joined its queue.
func startForwarder(t *testing.T, l *fakeLeader) (f *forwarder, queued *atomic.Int64) {
	t.Helper()
	stop := make(chan struct{})
	queued = new(atomic.Int64)
	f = &forwarder{
		one: l.one, batch: l.batch, local: l.applyLocal,
		reqs: make(chan *forwarded, 1024), slots: make(chan struct{}, forwardSlots),
		maxBytes: 1 << 20, timeout: 5 * time.Second, stop: stop,
		queued: func() { queued.Add(1) },
	}
	done := make(chan struct{})
	go func() { defer close(done); f.run() }()
	t.Cleanup(func() { close(stop); <-done })
	return f, queued
}

// fillSlots sends forwardSlots writes that the fake leader holds, and waits
// until all of them are in flight.
func fillSlots(t *testing.T, ctx context.Context, f *forwarder, l *fakeLeader) (wait func()) {
	t.Helper()
	var wg sync.WaitGroup
	for i := range forwardSlots {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := f.propose(ctx, []byte(fmt.Sprintf("held-%d", i))); err != nil {
				t.Errorf("held write %d: %v", i, err)
			}
		}()
	}
	eventually(t, func() bool { l.mu.Lock(); defer l.mu.Unlock(); return l.singles == forwardSlots })
	return wg.Wait
}

func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func TestForwarderSendsAloneWhileSlotsAreFree(t *testing.T) {
	l := &fakeLeader{release: make(chan struct{})}
	close(l.release)
	f, _ := startForwarder(t, l)
	res, err := f.propose(context.Background(), []byte("a"))
	if err != nil || res != "one:a" {
		t.Fatalf("propose: %v, %v; want one:a", res, err)
	}
	if len(l.batches) != 0 {
		t.Errorf("batches sent: %v, want none", l.batches)
	}
}

func TestForwarderBatchesWritesWhileSlotsAreBusy(t *testing.T) {
	l := &fakeLeader{release: make(chan struct{})}
	f, inQueue := startForwarder(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitHeld := fillSlots(t, ctx, f, l)

	const queued = 20
	results := make([]any, queued)
	var wg sync.WaitGroup
	for i := range queued {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := f.propose(ctx, []byte(fmt.Sprintf("q-%d", i)))
			if err != nil {
				t.Errorf("queued write %d: %v", i, err)
			}
			results[i] = res
		}()
	}
	eventually(t, func() bool { return inQueue.Load() == queued })
	close(l.release) // the held writes finish; their slots send the queue
	waitHeld()
	wg.Wait()

	for i, res := range results {
		if want := fmt.Sprintf("batch:q-%d", i); res != want {
			t.Errorf("write %d answered %v, want %s", i, res, want)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.batches) == 0 || len(l.batches) > forwardSlots {
		t.Fatalf("%d batches for %d queued writes with %d slots: %v", len(l.batches), queued, forwardSlots, l.batches)
	}
	if l.singles != forwardSlots {
		t.Errorf("%d writes sent alone, want the %d held ones", l.singles, forwardSlots)
	}
}

func TestForwarderFallsBack(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want string
	}{
		{"to single proposals on an older leader", errBatchUnsupported, "one:q"},
		{"to a local apply when this member leads", errSelfIsLeader, "local:q"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			l := &fakeLeader{release: make(chan struct{}), answer: func(cmds [][]byte) []forwardResult {
				out := make([]forwardResult, len(cmds))
				for i := range out {
					out[i] = forwardResult{err: tt.err}
				}
				return out
			}}
			f, inQueue := startForwarder(t, l)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			waitHeld := fillSlots(t, ctx, f, l)
			done := make(chan struct{})
			var res any
			var err error
			go func() { defer close(done); res, err = f.propose(ctx, []byte("q")) }()
			eventually(t, func() bool { return inQueue.Load() == 1 })
			close(l.release)
			waitHeld()
			<-done
			if err != nil || res != tt.want {
				t.Fatalf("propose: %v, %v; want %s", res, err, tt.want)
			}
		})
	}
}

func TestForwarderCallerThatGivesUpIsNotSent(t *testing.T) {
	l := &fakeLeader{release: make(chan struct{})}
	f, inQueue := startForwarder(t, l)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	waitHeld := fillSlots(t, ctx, f, l)

	short, cancelShort := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { _, err := f.propose(short, []byte("gave-up")); errc <- err }()
	eventually(t, func() bool { return inQueue.Load() == 1 })
	cancelShort()
	if err := <-errc; !errors.Is(err, ErrOutcomeUnknown) {
		t.Fatalf("propose after its context ended: %v, want ErrOutcomeUnknown", err)
	}
	close(l.release)
	waitHeld()
	if _, err := f.propose(ctx, []byte("after")); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, b := range l.batches {
		for _, c := range b {
			if c == "gave-up" {
				t.Fatalf("the write of a caller that gave up was sent: %v", l.batches)
			}
		}
	}
}
