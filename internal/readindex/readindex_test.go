package readindex

import (
	"context"
	"errors"
	"testing"
	"time"
)

var errStopped = errors.New("member is stopping")

// fetcher is a Fetch the test answers: each fetch waits for an index (or
// error) on answer.
type fetcher struct {
	began  chan struct{}
	answer chan fetchResult
}

type fetchResult struct {
	index uint64
	err   error
}

func newFetcher() *fetcher {
	return &fetcher{began: make(chan struct{}, 10), answer: make(chan fetchResult)}
}

func (f *fetcher) fetch(ctx context.Context) (uint64, error) {
	f.began <- struct{}{}
	select {
	case r := <-f.answer:
		return r.index, r.err
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}

func start(t *testing.T, f *fetcher) *Queue {
	t.Helper()
	q, err := New(Config{Fetch: f.fetch, FetchTimeout: 10 * time.Second, Spawn: func(fn func()) { go fn() }, Stopped: errStopped})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	t.Cleanup(func() { stop(); <-done })
	return q
}

func await(q *Queue, deadline time.Time) chan fetchResult {
	got := make(chan fetchResult, 2)
	q.Await(deadline, func(index uint64, err error) { got <- fetchResult{index, err} })
	return got
}

func recv(t *testing.T, ch chan fetchResult) fetchResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no answer")
		return fetchResult{}
	}
}

// A read that arrives while a fetch is in flight must wait for the next
// fetch: the index of one that began before the read arrived could miss a
// write acknowledged before the read.
func TestAReadNeverGetsTheIndexOfAFetchThatBeganBeforeIt(t *testing.T) {
	f := newFetcher()
	q := start(t, f)
	first := await(q, time.Time{})
	<-f.began // the first fetch has begun, for the first read only
	second := await(q, time.Time{})
	f.answer <- fetchResult{index: 10}
	if got := recv(t, first); got.index != 10 || got.err != nil {
		t.Fatalf("first read got %+v, want index 10", got)
	}
	select {
	case got := <-second:
		t.Fatalf("a read that arrived during a fetch was answered by it: %+v", got)
	case <-f.began:
		f.answer <- fetchResult{index: 20}
	}
	if got := recv(t, second); got.index != 20 {
		t.Fatalf("second read got %+v, want index 20 from the fetch that began after it", got)
	}
}

// Reads that wait together share one fetch, and its error.
func TestReadsShareAFetch(t *testing.T) {
	f := newFetcher()
	q := start(t, f)
	block := await(q, time.Time{})
	<-f.began
	var waiting []chan fetchResult
	for range 5 {
		waiting = append(waiting, await(q, time.Time{}))
	}
	f.answer <- fetchResult{index: 1}
	recv(t, block)
	<-f.began // one fetch for the five
	boom := errors.New("no leader")
	f.answer <- fetchResult{err: boom}
	for _, ch := range waiting {
		if got := recv(t, ch); !errors.Is(got.err, boom) {
			t.Fatalf("got %+v, want the fetch's error", got)
		}
	}
	select {
	case <-f.began:
		t.Fatal("a second fetch for reads that waited together")
	case <-time.After(50 * time.Millisecond):
	}
}

// A read whose deadline passes while the fetch is slow is answered then,
// and not again when the fetch completes.
func TestDeadlineAnswersAReadInTime(t *testing.T) {
	f := newFetcher()
	q := start(t, f)
	start := time.Now()
	late := await(q, start.Add(50*time.Millisecond))
	<-f.began
	got := recv(t, late)
	if !errors.Is(got.err, ErrNotConfirmed) || !errors.Is(got.err, context.DeadlineExceeded) {
		t.Fatalf("read past its deadline: %+v, want ErrNotConfirmed", got)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("answered after %s for a 50ms deadline", d)
	}
	f.answer <- fetchResult{index: 7}
	select {
	case again := <-late:
		t.Fatalf("answered twice: %+v", again)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestReadIndexBlocksUntilAnswerOrContext(t *testing.T) {
	f := newFetcher()
	q := start(t, f)
	go func() {
		<-f.began
		f.answer <- fetchResult{index: 3}
	}()
	if i, err := q.ReadIndex(context.Background()); err != nil || i != 3 {
		t.Fatalf("ReadIndex = %d, %v; want 3", i, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := q.ReadIndex(ctx)
		done <- err
	}()
	<-f.began
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("ReadIndex with a cancelled context: %v", err)
	}
	f.answer <- fetchResult{index: 4} // the fetch still completes
}

// ReadIndexBy gives up at its deadline with ErrNotConfirmed, while the
// fetch it waited for goes on; without a deadline it waits for the fetch.
func TestReadIndexByGivesUpAtItsDeadline(t *testing.T) {
	f := newFetcher()
	q := start(t, f)
	start := time.Now()
	_, err := q.ReadIndexBy(context.Background(), start.Add(50*time.Millisecond))
	if !errors.Is(err, ErrNotConfirmed) {
		t.Fatalf("ReadIndexBy past its deadline: %v, want ErrNotConfirmed", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("answered after %s for a 50ms deadline", d)
	}
	<-f.began
	f.answer <- fetchResult{index: 5} // the fetch still completes
	go func() {
		<-f.began
		f.answer <- fetchResult{index: 6}
	}()
	if i, err := q.ReadIndexBy(context.Background(), time.Now().Add(time.Minute)); err != nil || i != 6 {
		t.Fatalf("ReadIndexBy before its deadline = %d, %v; want 6", i, err)
	}
}

func TestStoppedQueueRefuses(t *testing.T) {
	f := newFetcher()
	q, err := New(Config{Fetch: f.fetch, FetchTimeout: time.Second, Spawn: func(fn func()) { go fn() }, Stopped: errStopped})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { q.Run(ctx); close(done) }()
	first := await(q, time.Time{})
	<-f.began
	waiting := await(q, time.Time{})
	stop()
	if got := recv(t, first); !errors.Is(got.err, context.Canceled) {
		t.Fatalf("read whose fetch was cut short by the stop: %+v", got)
	}
	<-done
	if got := recv(t, waiting); !errors.Is(got.err, errStopped) {
		t.Fatalf("read waiting at stop: %+v, want the Stopped error", got)
	}
	if _, err := q.ReadIndex(context.Background()); !errors.Is(err, errStopped) {
		t.Fatalf("read after stop: %v, want the Stopped error", err)
	}
}
