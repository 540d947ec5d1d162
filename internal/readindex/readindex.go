// Package readindex is the queue of a member's linearizable reads (TiKV's
// ReadIndexQueue): every read that waits for a read index when a fetch
// begins shares that fetch, one quorum round on the leader or one RPC to the
// leader on a follower.
//
// A read that arrives while a fetch is in flight waits for the next one: the
// index of a fetch that began before the read arrived could miss a write
// acknowledged before the read. That is the one rule of this package.
//
// Await is the primitive: a callback, called once, on a goroutine of the
// queue's choosing, with the index or the reason there is none, and by the
// read's deadline at the latest (package deadline). ReadIndex, for a caller
// that blocks, is a few lines on top.
package readindex

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvd-io/kvd/internal/deadline"
)

// ErrNotConfirmed is the error of a read whose deadline passed before a
// fetch answered it.
var ErrNotConfirmed = errors.New("no read index in time")

// Config is what a Queue needs from its member.
type Config struct {
	// Fetch obtains a read index: on the leader, the commit index once a
	// quorum has confirmed its leadership; on a follower, the leader's
	// answer. It is called on the queue's goroutine, one call at a time.
	// Required.
	Fetch func(ctx context.Context) (uint64, error)
	// FetchTimeout bounds one fetch. Required.
	FetchTimeout time.Duration
	// Observe is told how long each fetch took; nil: nobody is.
	Observe func(time.Duration)
	// Spawn runs callbacks off the queue's goroutine, and must not wait:
	// the next fetch need not wait for a callback, nor one slow callback
	// for another. Required.
	Spawn func(func())
	// Stopped is the error given to reads once the queue has stopped.
	// Required.
	Stopped error
}

// Validate reports what is missing from the config.
func (c Config) Validate() error {
	if c.Fetch == nil || c.Spawn == nil || c.Stopped == nil || c.FetchTimeout <= 0 {
		return errors.New("readindex: Fetch, FetchTimeout, Spawn and Stopped are required")
	}
	return nil
}

// Queue batches the read-index requests of concurrent linearizable reads.
// Its Run loop does the fetching; its owner starts it and stops it with a
// context.
type Queue struct {
	cfg    Config
	timers *deadline.Timers[*read]
	wake   chan struct{} // capacity 1

	mu      sync.Mutex
	waiting []*read
	stopped bool
}

type read struct {
	fn     func(index uint64, err error)
	inline bool        // fn only hands the answer to a waiting goroutine
	called atomic.Bool // fn has been called, or is about to be
}

// New returns a Queue; call Run to start it.
func New(cfg Config) (*Queue, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	q := &Queue{cfg: cfg, wake: make(chan struct{}, 1)}
	q.timers = deadline.New(func(r *read) {
		q.answer(r, 0, fmt.Errorf("%w: %w", ErrNotConfirmed, context.DeadlineExceeded))
	})
	return q, nil
}

// Await has fn called with an index that a linearizable read arriving now
// must wait for, or the error that kept it from getting one: the fetch's,
// the queue's Stopped error, or ErrNotConfirmed when deadline (if not zero)
// passes first. fn is always called, once, never on the caller's goroutine
// unless the queue has stopped.
func (q *Queue) Await(deadline time.Time, fn func(index uint64, err error)) {
	q.add(&read{fn: fn}, deadline)
}

func (q *Queue) add(r *read, deadline time.Time) {
	q.mu.Lock()
	if q.stopped {
		q.mu.Unlock()
		q.answer(r, 0, q.cfg.Stopped)
		return
	}
	q.waiting = append(q.waiting, r)
	q.mu.Unlock()
	q.timers.Add(r, deadline)
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// ReadIndex is Await for a caller that waits: it returns an index that a
// linearizable read must wait for, or ctx's error when ctx ends first.
func (q *Queue) ReadIndex(ctx context.Context) (uint64, error) {
	return q.ReadIndexBy(ctx, time.Time{})
}

// ReadIndexBy is ReadIndex that also gives up with ErrNotConfirmed at
// deadline (if not zero). The queue's shared timers watch the deadline, so
// a read on the hot path does not pay for a context and a timer of its own.
func (q *Queue) ReadIndexBy(ctx context.Context, deadline time.Time) (uint64, error) {
	type result struct {
		index uint64
		err   error
	}
	done := make(chan result, 1)
	r := &read{inline: true, fn: func(index uint64, err error) { done <- result{index, err} }}
	q.add(r, deadline)
	select {
	case res := <-done:
		return res.index, res.err
	case <-ctx.Done():
		q.answer(r, 0, ctx.Err())
		res := <-done // ctx's error, or the fetch's answer just before it
		return res.index, res.err
	}
}

// Run fetches for the reads that wait, one fetch at a time, until ctx ends;
// then it answers every waiting read, and every later one, with the Stopped
// error.
func (q *Queue) Run(ctx context.Context) {
	defer q.stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-q.wake:
		}
		if ctx.Err() != nil {
			return
		}
		// The batch is taken before the fetch starts: it is every read
		// that arrived before it.
		batch := q.take()
		if len(batch) == 0 {
			continue
		}
		fctx, cancel := context.WithTimeout(ctx, q.cfg.FetchTimeout)
		start := time.Now()
		index, err := q.cfg.Fetch(fctx)
		cancel()
		if q.cfg.Observe != nil {
			q.cfg.Observe(time.Since(start))
		}
		q.answerAll(batch, index, err)
	}
}

func (q *Queue) take() []*read {
	q.mu.Lock()
	defer q.mu.Unlock()
	batch := q.waiting
	q.waiting = nil
	return batch
}

func (q *Queue) stop() {
	q.mu.Lock()
	q.stopped = true
	q.mu.Unlock()
	q.answerAll(q.take(), 0, q.cfg.Stopped)
	q.timers.Stop()
}

// answerAll answers the reads of batch nobody answered yet: inline ones
// here, the others each on a goroutine of Spawn's.
func (q *Queue) answerAll(batch []*read, index uint64, err error) {
	for _, r := range batch {
		q.answer(r, index, err)
	}
}

// answer answers r unless it has been answered.
func (q *Queue) answer(r *read, index uint64, err error) {
	if !r.called.CompareAndSwap(false, true) {
		return
	}
	q.timers.Remove(r)
	if r.inline {
		r.fn(index, err)
		return
	}
	q.cfg.Spawn(func() { r.fn(index, err) })
}
