// Package deadline answers queued requests whose deadline passes before
// they are served, with one timer per queue however many requests wait: the
// timer is armed for the earliest deadline and re-armed as requests come and
// go. Both of a member's request pipelines use it, the proposal buffer and
// the read-index queue, so that a request that waits on no goroutine (a
// stream's op, a callback) still gets its answer in time.
package deadline

import (
	"container/heap"
	"sync"
	"time"
)

// Timers tracks the deadlines of items (each item at most once). When an
// item's deadline passes before Remove is called for it, it is removed and
// handed to the expire function given to New. The zero value is not usable.
type Timers[T comparable] struct {
	expire func(T)

	mu      sync.Mutex
	h       entries[T]
	at      map[T]*entry[T]
	timer   *time.Timer
	armedAt time.Time // when timer fires; zero: not armed
	stopped bool
	// due are expired items not yet handed to expire; delivering is set
	// while a goroutine hands them over, in deadline order, one at a time.
	due        []T
	delivering bool
}

// New returns Timers that call expire, on a goroutine of their own and one
// item after another, for each item whose deadline passes. expire must not
// block for long: later deadlines wait for it.
func New[T comparable](expire func(T)) *Timers[T] {
	return &Timers[T]{expire: expire, at: map[T]*entry[T]{}}
}

// Add tracks item until deadline. A zero deadline means none: nothing is
// tracked. A deadline already past expires the item at once (on the
// timers' goroutine, not the caller's).
func (t *Timers[T]) Add(item T, deadline time.Time) {
	if deadline.IsZero() {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped {
		return
	}
	if e, ok := t.at[item]; ok {
		e.deadline = deadline
		heap.Fix(&t.h, e.index)
	} else {
		e := &entry[T]{item: item, deadline: deadline}
		heap.Push(&t.h, e)
		t.at[item] = e
	}
	t.armLocked()
}

// Remove stops tracking item, reporting whether it was still tracked: false
// when it was never added, or has expired (or is expiring) already.
func (t *Timers[T]) Remove(item T) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.at[item]
	if !ok {
		return false
	}
	heap.Remove(&t.h, e.index)
	delete(t.at, item)
	// The timer may stay armed for the removed deadline; it then finds
	// nothing due and re-arms for the next one.
	return true
}

// Len returns how many items are tracked.
func (t *Timers[T]) Len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.at)
}

// Stop stops the timer and forgets every item; none expires afterwards.
func (t *Timers[T]) Stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopped = true
	if t.timer != nil {
		t.timer.Stop()
	}
	t.h, t.at = nil, map[T]*entry[T]{}
}

// armLocked makes the timer fire at the earliest deadline. The caller
// holds t.mu.
func (t *Timers[T]) armLocked() {
	if len(t.h) == 0 {
		return
	}
	next := t.h[0].deadline
	if !t.armedAt.IsZero() && !next.Before(t.armedAt) {
		return // armed already, for this deadline or an earlier one
	}
	t.armedAt = next
	d := time.Until(next)
	if t.timer == nil {
		t.timer = time.AfterFunc(d, t.fire)
		return
	}
	t.timer.Reset(d)
}

// fire expires every item that is due and re-arms the timer for the rest.
// A fire that finds another still handing items over leaves its own to it,
// so that items reach expire in deadline order.
func (t *Timers[T]) fire() {
	t.mu.Lock()
	if t.stopped {
		t.mu.Unlock()
		return
	}
	now := time.Now()
	for len(t.h) > 0 && !t.h[0].deadline.After(now) {
		e := heap.Pop(&t.h).(*entry[T])
		delete(t.at, e.item)
		t.due = append(t.due, e.item)
	}
	t.armedAt = time.Time{}
	t.armLocked()
	if t.delivering {
		t.mu.Unlock()
		return
	}
	t.delivering = true
	for len(t.due) > 0 && !t.stopped {
		due := t.due
		t.due = nil
		t.mu.Unlock()
		for _, item := range due {
			t.expire(item)
		}
		t.mu.Lock()
	}
	t.due = nil
	t.delivering = false
	t.mu.Unlock()
}

type entry[T any] struct {
	item     T
	deadline time.Time
	index    int
}

// entries is a min-heap of deadlines.
type entries[T any] []*entry[T]

func (h entries[T]) Len() int           { return len(h) }
func (h entries[T]) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h entries[T]) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *entries[T]) Push(x any) {
	e := x.(*entry[T])
	e.index = len(*h)
	*h = append(*h, e)
}
func (h *entries[T]) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return e
}
