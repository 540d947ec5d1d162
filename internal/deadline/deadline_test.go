package deadline

import (
	"slices"
	"sync"
	"testing"
	"time"
)

type recorder struct {
	mu  sync.Mutex
	got []int
	ch  chan int
}

func newRecorder() *recorder { return &recorder{ch: make(chan int, 100)} }

func (r *recorder) expire(i int) {
	r.mu.Lock()
	r.got = append(r.got, i)
	r.mu.Unlock()
	r.ch <- i
}

func (r *recorder) next(t *testing.T) int {
	t.Helper()
	select {
	case i := <-r.ch:
		return i
	case <-time.After(10 * time.Second):
		t.Fatal("nothing expired")
		return 0
	}
}

func TestItemsExpireInDeadlineOrder(t *testing.T) {
	r := newRecorder()
	tm := New(r.expire)
	defer tm.Stop()
	now := time.Now()
	tm.Add(3, now.Add(60*time.Millisecond))
	tm.Add(1, now.Add(20*time.Millisecond))
	tm.Add(2, now.Add(40*time.Millisecond))
	for want := 1; want <= 3; want++ {
		if got := r.next(t); got != want {
			t.Fatalf("expired %d, want %d", got, want)
		}
	}
	if time.Since(now) < 60*time.Millisecond {
		t.Error("the last item expired before its deadline")
	}
	if tm.Len() != 0 {
		t.Errorf("%d items still tracked", tm.Len())
	}
}

func TestRemovedItemsDoNotExpire(t *testing.T) {
	r := newRecorder()
	tm := New(r.expire)
	defer tm.Stop()
	now := time.Now()
	tm.Add(1, now.Add(20*time.Millisecond))
	tm.Add(2, now.Add(40*time.Millisecond))
	if !tm.Remove(1) {
		t.Fatal("Remove of a tracked item reported false")
	}
	if got := r.next(t); got != 2 {
		t.Fatalf("expired %d, want 2 (1 was removed)", got)
	}
	if tm.Remove(2) {
		t.Error("Remove of an expired item reported true")
	}
}

func TestPastAndLaterDeadlines(t *testing.T) {
	r := newRecorder()
	tm := New(r.expire)
	defer tm.Stop()
	tm.Add(1, time.Now().Add(time.Hour))
	tm.Add(2, time.Now().Add(-time.Second)) // already past: expires at once
	if got := r.next(t); got != 2 {
		t.Fatalf("expired %d, want 2", got)
	}
	tm.Add(3, time.Time{}) // no deadline: never tracked
	if tm.Len() != 1 {
		t.Fatalf("tracked %d, want 1", tm.Len())
	}
	// Moving a deadline earlier re-arms the timer.
	tm.Add(1, time.Now().Add(10*time.Millisecond))
	if got := r.next(t); got != 1 {
		t.Fatalf("expired %d, want 1", got)
	}
}

func TestStopForgetsEverything(t *testing.T) {
	r := newRecorder()
	tm := New(r.expire)
	tm.Add(1, time.Now().Add(10*time.Millisecond))
	tm.Stop()
	tm.Add(2, time.Now().Add(-time.Second))
	select {
	case i := <-r.ch:
		t.Fatalf("%d expired after Stop", i)
	case <-time.After(100 * time.Millisecond):
	}
}

func TestManyItems(t *testing.T) {
	r := newRecorder()
	r.ch = make(chan int, 1000)
	tm := New(r.expire)
	defer tm.Stop()
	now := time.Now()
	for i := range 1000 {
		tm.Add(i, now.Add(300*time.Millisecond+time.Duration(1000-i)*time.Microsecond))
	}
	for i := 0; i < 1000; i += 2 {
		tm.Remove(i)
	}
	deadline := time.After(10 * time.Second)
	for {
		r.mu.Lock()
		n := len(r.got)
		r.mu.Unlock()
		if n == 500 {
			break
		}
		select {
		case <-deadline:
			t.Fatalf("%d of 500 expired", n)
		case <-time.After(time.Millisecond):
		}
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !slices.IsSortedFunc(r.got, func(a, b int) int { return b - a }) {
		t.Error("items did not expire in deadline order")
	}
	for _, i := range r.got {
		if i%2 == 0 {
			t.Fatalf("removed item %d expired", i)
		}
	}
}
