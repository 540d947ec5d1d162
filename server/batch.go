package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kvd-io/kvd/fsm"
)

// The leader commits writes in groups. Every raft log append is a bbolt
// commit with two fdatasyncs, on the leader and then on a follower, plus an
// AppendEntries round trip; under load those per-append costs, not the
// writes themselves, were most of the members' CPU. So the leader keeps one
// entry in flight at a time: writes that arrive while it is being committed
// wait in a queue, and the next entry carries all of them (up to a size cap)
// as one COMMAND_TYPE_BATCH. A lone write still gets an entry of its own at
// once, so a single client waits no longer than before; a hundred clients
// share a few appends instead of paying for dozens.
//
// Each write in a batch is applied as if it had an entry of its own: its own
// revision and its own result. The batch commits or fails as one, which
// changes nothing for a client: every write in it was acknowledged only
// after the whole entry was committed.
const (
	// maxBatchBytes caps the encoded commands in one batch; a single larger
	// command goes alone. It bounds a log entry, and so the log that trails
	// a snapshot and the entries the log cache holds.
	maxBatchBytes = 64 << 10
	// maxBatchCommands caps the commands in one batch.
	maxBatchCommands = 512
)

// commitQueue feeds proposals to raft one log entry at a time, grouping the
// ones that queue up meanwhile (see above). Its run loop is the only
// goroutine that appends: the Server owns it and stops it with s.stop.
type commitQueue struct {
	// apply appends one encoded command to the log. It is raft.Apply with
	// the member's enqueue timeout.
	apply func(data []byte) raft.ApplyFuture
	// batchable reports whether every member can apply a COMMAND_TYPE_BATCH
	// (during a rolling upgrade some may not); when false, queued proposals
	// get an entry each.
	batchable func() bool
	// observe is told the proposals of each entry appended; nil: nobody.
	observe func(proposals int)

	// spawn runs the callbacks of submitted proposals, off the goroutine
	// that appends.
	spawn func(func())

	kick      chan struct{} // capacity 1: the queue has something for run
	sweepKick chan struct{} // capacity 1: a submitted proposal's deadline comes before sweepAt

	mu      sync.Mutex
	queue   []*proposal
	stopped bool
	// submitted holds the submitted proposals not answered yet, queued or
	// being committed; sweepAt is when the sweeper next looks at them.
	submitted map[*proposal]struct{}
	sweepAt   time.Time
}

// proposal is one encoded command waiting for its result. Either a caller
// waits for done (propose), or nobody waits and fn is called (submit).
type proposal struct {
	data []byte
	done chan struct{} // closed once res and err are set; nil for a submitted proposal
	res  any
	err  error

	fn       func(res any, err error)
	deadline time.Time
	called   atomic.Bool // fn has been called, or is about to be
}

func newCommitQueue(apply func([]byte) raft.ApplyFuture, batchable func() bool, observe func(int), spawn func(func())) *commitQueue {
	return &commitQueue{apply: apply, batchable: batchable, observe: observe, spawn: spawn,
		kick: make(chan struct{}, 1), sweepKick: make(chan struct{}, 1), submitted: map[*proposal]struct{}{}}
}

func (q *commitQueue) observed(proposals int) {
	if q.observe != nil {
		q.observe(proposals)
	}
}

// propose queues data and waits until it is applied, or until ctx ends: then
// a proposal that had not reached the log yet is withdrawn (ErrNotApplied),
// and one that had may still be applied (ErrOutcomeUnknown).
func (q *commitQueue) propose(ctx context.Context, data []byte) (any, error) {
	p := &proposal{data: data, done: make(chan struct{})}
	q.mu.Lock()
	if q.stopped {
		q.mu.Unlock()
		return nil, fmt.Errorf("%w: %w", ErrNotApplied, ErrStopped)
	}
	q.queue = append(q.queue, p)
	q.mu.Unlock()
	select {
	case q.kick <- struct{}{}:
	default: // run has been kicked already
	}
	select {
	case <-p.done:
		return p.res, p.err
	case <-ctx.Done():
	}
	if q.withdraw(p) {
		return nil, errors.Join(ErrNotApplied, fmt.Errorf("%w before the write reached the log", ctx.Err()))
	}
	return nil, fmt.Errorf("%w: waiting for commit: %w", ErrOutcomeUnknown, ctx.Err())
}

// submit queues data, to be answered without anyone waiting: fn is called
// once, on a goroutine of spawn's, with what propose would have returned
// for a context ending at deadline. It is for a caller that has many
// proposals in flight (a stream), so that none holds a goroutine.
func (q *commitQueue) submit(data []byte, deadline time.Time, fn func(res any, err error)) {
	p := &proposal{data: data, fn: fn, deadline: deadline}
	q.mu.Lock()
	if q.stopped {
		q.mu.Unlock()
		fn(nil, fmt.Errorf("%w: %w", ErrNotApplied, ErrStopped))
		return
	}
	q.queue = append(q.queue, p)
	q.submitted[p] = struct{}{}
	earlier := q.sweepAt.IsZero() || deadline.Before(q.sweepAt)
	if earlier {
		q.sweepAt = deadline
	}
	q.mu.Unlock()
	if earlier {
		select {
		case q.sweepKick <- struct{}{}:
		default:
		}
	}
	select {
	case q.kick <- struct{}{}:
	default:
	}
}

// callBack calls the callbacks of the submitted proposals among ps that
// were answered, on one goroutine of spawn's, in order.
func (q *commitQueue) callBack(ps []*proposal) {
	var answered []*proposal
	q.mu.Lock()
	for _, p := range ps {
		if p.fn != nil {
			delete(q.submitted, p)
			if p.called.CompareAndSwap(false, true) {
				answered = append(answered, p)
			}
		}
	}
	q.mu.Unlock()
	if len(answered) > 0 {
		q.spawn(func() {
			for _, p := range answered {
				p.fn(p.res, p.err)
			}
		})
	}
}

// sweep answers submitted proposals whose deadline passed, as propose does
// when its context ends: one still queued is withdrawn (ErrNotApplied), one
// being committed has an unknown outcome. It runs until stop is closed.
func (q *commitQueue) sweep(stop <-chan struct{}) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		q.mu.Lock()
		var next time.Time
		for p := range q.submitted {
			if next.IsZero() || p.deadline.Before(next) {
				next = p.deadline
			}
		}
		q.sweepAt = next
		q.mu.Unlock()
		if next.IsZero() {
			timer.Stop()
		} else {
			timer.Reset(time.Until(next))
		}
		select {
		case <-stop:
			return
		case <-q.sweepKick:
			continue
		case <-timer.C:
		}
		q.expire(time.Now())
	}
}

// expire answers the submitted proposals whose deadline is at or before now.
// It leaves their res and err alone: run may be setting them.
func (q *commitQueue) expire(now time.Time) {
	type lateAnswer struct {
		p   *proposal
		err error
	}
	var late []lateAnswer
	q.mu.Lock()
	for p := range q.submitted {
		if p.deadline.After(now) {
			continue
		}
		delete(q.submitted, p)
		if !p.called.CompareAndSwap(false, true) {
			continue
		}
		err := fmt.Errorf("%w: waiting for commit: %w", ErrOutcomeUnknown, context.DeadlineExceeded)
		if i := slices.Index(q.queue, p); i >= 0 {
			q.queue = slices.Delete(q.queue, i, i+1)
			err = errors.Join(ErrNotApplied, fmt.Errorf("%w before the write reached the log", context.DeadlineExceeded))
		}
		late = append(late, lateAnswer{p, err})
	}
	q.mu.Unlock()
	if len(late) > 0 {
		q.spawn(func() {
			for _, a := range late {
				a.p.fn(nil, a.err)
			}
		})
	}
}

// withdraw removes p from the queue, reporting whether it was still there.
func (q *commitQueue) withdraw(p *proposal) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	i := slices.Index(q.queue, p)
	if i < 0 {
		return false
	}
	q.queue = slices.Delete(q.queue, i, i+1)
	return true
}

// run commits what is queued, one entry at a time, until stop is closed.
// Proposals still queued then are refused.
func (q *commitQueue) run(stop <-chan struct{}) {
	defer q.refuseQueued()
	for {
		select {
		case <-stop:
			return
		default:
		}
		batches := q.batchable()
		batch := q.take(batches)
		if len(batch) == 0 {
			select {
			case <-q.kick:
			case <-stop:
				return
			}
			continue
		}
		q.commit(batch, batches)
		q.callBack(batch)
	}
}

// take removes the next proposals to commit from the queue: as many as fit
// in one batch when batches are allowed, else all of them. The first is
// always taken, whatever its size.
func (q *commitQueue) take(batches bool) []*proposal {
	q.mu.Lock()
	defer q.mu.Unlock()
	n, size := 0, 0
	for n < len(q.queue) {
		size += len(q.queue[n].data)
		if batches && n > 0 && (size > maxBatchBytes || n == maxBatchCommands) {
			break
		}
		n++
	}
	batch := slices.Clone(q.queue[:n])
	q.queue = slices.Delete(q.queue, 0, n)
	return batch
}

// commit appends batch to the log, as one entry when it holds several and
// batches are allowed, and answers each proposal once applied.
func (q *commitQueue) commit(batch []*proposal, batches bool) {
	if len(batch) == 1 || !batches {
		// An entry each, appended together so that raft still stores and
		// replicates them as one group.
		futures := make([]raft.ApplyFuture, len(batch))
		for i, p := range batch {
			futures[i] = q.apply(p.data)
			q.observed(1)
		}
		for i, p := range batch {
			p.settle(futures[i].Error(), futures[i])
		}
		return
	}
	cmds := make([][]byte, len(batch))
	for i, p := range batch {
		cmds[i] = p.data
	}
	data, err := fsm.EncodeBatch(cmds)
	if err != nil {
		for _, p := range batch {
			p.answer(nil, fmt.Errorf("%w: %w", ErrNotApplied, err))
		}
		return
	}
	f := q.apply(data)
	q.observed(len(batch))
	if err := f.Error(); err != nil {
		for _, p := range batch {
			p.settle(err, nil)
		}
		return
	}
	results, ok := f.Response().(fsm.BatchResult)
	if !ok || len(results) != len(batch) {
		// Cannot happen with this member's state machine; the writes are
		// applied, but what they returned is lost.
		err := fmt.Errorf("%w: the batch of %d writes answered %T", ErrOutcomeUnknown, len(batch), f.Response())
		for _, p := range batch {
			p.answer(nil, err)
		}
		return
	}
	for i, p := range batch {
		p.answer(results[i], nil)
	}
}

// settle answers p from raft's error for its entry or, when there was none,
// from the state machine's response.
func (p *proposal) settle(raftErr error, f raft.ApplyFuture) {
	if raftErr != nil {
		p.answer(nil, translateRaftError(raftErr))
		return
	}
	p.answer(f.Response(), nil)
}

// answer sets p's outcome; a domain error the state machine returned as its
// result becomes the error. A submitted proposal is then called back by
// callBack, unless the sweeper gave it up first.
func (p *proposal) answer(res any, err error) {
	if e, ok := res.(error); ok {
		res, err = nil, e
	}
	p.res, p.err = res, err
	if p.done != nil {
		close(p.done)
	}
}

// refuseQueued answers every queued proposal with ErrNotApplied and refuses
// later ones.
func (q *commitQueue) refuseQueued() {
	q.mu.Lock()
	queued := q.queue
	q.queue, q.stopped = nil, true
	q.mu.Unlock()
	for _, p := range queued {
		p.answer(nil, fmt.Errorf("%w: %w", ErrNotApplied, ErrStopped))
	}
	q.callBack(queued)
}
