// Package proposal is the leader's proposal buffer (CockroachDB's name for
// it): it feeds writes to raft one log entry at a time, and the writes that
// queue up while an entry is being committed share the next one.
//
// # Group commit
//
// Every raft log append costs a disk write with an fdatasync on the leader
// and on a follower, plus an AppendEntries round trip; under load those
// per-append costs, not the writes themselves, were most of the members'
// CPU. So the buffer keeps one entry in flight at a time: writes that arrive
// while it is being committed wait, and the next entry carries all of them
// (up to MaxBatchBytes and MaxBatchCommands) as one COMMAND_TYPE_BATCH. A
// lone write still gets an entry of its own at once, so a single client
// waits no longer than it would without the buffer.
//
// Each write in a batch is applied as if it had an entry of its own: its own
// revision and its own result. The batch commits or fails as one, which
// changes nothing for a client: every write in it is acknowledged only after
// the whole entry is committed.
//
// # One primitive
//
// Submit is the only way in: a proposal and a callback, called once with
// the state machine's result or the reason there is none. Nobody waits on a
// goroutine meanwhile, which is what lets a stream carry thousands of writes
// in flight. A proposal whose deadline passes is answered then, by the
// buffer's one timer (package deadline). Propose, for a caller that blocks,
// is a few lines on top.
//
// A proposal is in exactly one of three states: queued (it can still be
// withdrawn, and is then answered ErrNotApplied), in an entry being
// committed (giving up on it leaves its outcome unknown), or answered.
package proposal

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
	"github.com/kvd-io/kvd/internal/deadline"
)

// Errors of a proposal's outcome.
var (
	// ErrNotApplied: the proposal was refused or withdrawn before it
	// reached the log (leadership lost or moving, queue full, deadline
	// passed while queued, stopping). Safe to retry.
	ErrNotApplied = errors.New("proposal was not accepted")
	// ErrOutcomeUnknown: the proposal may or may not have been committed.
	ErrOutcomeUnknown = errors.New("the outcome of the request is unknown")
)

const (
	// MaxBatchBytes caps the encoded commands in one entry; a single larger
	// command goes alone. It bounds a log entry, and so the log that trails
	// a snapshot and the entries raft's log cache holds.
	MaxBatchBytes = 64 << 10
	// MaxBatchCommands caps the commands in one entry.
	MaxBatchCommands = 512
)

// Config is what a Buffer needs from its member.
type Config struct {
	// Apply appends one encoded command to the log: raft.Apply with the
	// member's enqueue timeout. Required.
	Apply func(data []byte) raft.ApplyFuture
	// Batchable reports whether every member can apply a
	// COMMAND_TYPE_BATCH (during a rolling upgrade some may not); when it
	// is false, queued proposals get an entry each. Required.
	Batchable func() bool
	// Observe is told the number of proposals of each entry appended; nil:
	// nobody is.
	Observe func(proposals int)
	// Spawn runs callbacks off the appending goroutine, and must not wait.
	// Required.
	Spawn func(func())
	// Stopped is the reason given, with ErrNotApplied, to proposals once the
	// buffer has stopped. Required.
	Stopped error
}

// Validate reports what is missing from the config.
func (c Config) Validate() error {
	if c.Apply == nil || c.Batchable == nil || c.Spawn == nil || c.Stopped == nil {
		return errors.New("proposal: Apply, Batchable, Spawn and Stopped are required")
	}
	return nil
}

// Buffer feeds proposals to raft, one entry at a time. Its Run loop is the
// only goroutine that appends; its owner starts it and stops it with a
// context.
type Buffer struct {
	cfg    Config
	timers *deadline.Timers[*proposal]
	kick   chan struct{} // capacity 1: the queue has something for Run

	mu      sync.Mutex
	queue   []*proposal
	stopped bool
}

// proposal is one encoded command waiting for its result.
type proposal struct {
	data []byte
	fn   func(res any, err error)
	// inline: fn only hands the answer to a waiting goroutine, so it is
	// called where the answer is known rather than spawned.
	inline bool
	called atomic.Bool // fn has been called, or is about to be
}

// answer is what a proposal is called back with.
type answer struct {
	p   *proposal
	res any
	err error
}

// New returns a Buffer; call Run to start it.
func New(cfg Config) (*Buffer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	b := &Buffer{cfg: cfg, kick: make(chan struct{}, 1)}
	b.timers = deadline.New(func(p *proposal) { b.giveUp(p, context.DeadlineExceeded) })
	return b, nil
}

// Submit queues data, an encoded command, to be answered without anyone
// waiting: fn is called once, off the caller's goroutine, with the state
// machine's result (a domain error it returned comes back as err), or with
// ErrNotApplied (the proposal never reached the log: it may be retried) or
// ErrOutcomeUnknown (it did, and may or may not commit). When deadline (if
// not zero) passes first, fn is called then: ErrNotApplied if still queued,
// ErrOutcomeUnknown if already in an entry.
func (b *Buffer) Submit(data []byte, deadline time.Time, fn func(res any, err error)) {
	b.submit(&proposal{data: data, fn: fn}, deadline)
}

func (b *Buffer) submit(p *proposal, deadline time.Time) {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		b.answerAll([]*proposal{p}, fmt.Errorf("%w: %w", ErrNotApplied, b.cfg.Stopped))
		return
	}
	b.queue = append(b.queue, p)
	b.mu.Unlock()
	b.timers.Add(p, deadline)
	select {
	case b.kick <- struct{}{}:
	default: // Run has been kicked already
	}
}

// Propose is Submit for a caller that waits: it returns what fn would be
// called with. When ctx ends first, a proposal still queued is withdrawn
// (ErrNotApplied) and one already in an entry is left to its fate
// (ErrOutcomeUnknown).
func (b *Buffer) Propose(ctx context.Context, data []byte) (any, error) {
	type outcome struct {
		res any
		err error
	}
	done := make(chan outcome, 1)
	p := &proposal{data: data, inline: true, fn: func(res any, err error) { done <- outcome{res, err} }}
	b.submit(p, time.Time{})
	select {
	case o := <-done:
		return o.res, o.err
	case <-ctx.Done():
		b.giveUp(p, ctx.Err())
		o := <-done // answered by giveUp, or by Run just before it
		return o.res, o.err
	}
}

// giveUp answers p, unless it has been answered: withdrawn when still
// queued, of unknown outcome once in an entry.
func (b *Buffer) giveUp(p *proposal, why error) {
	b.mu.Lock()
	if !p.called.CompareAndSwap(false, true) {
		b.mu.Unlock()
		return
	}
	err := fmt.Errorf("%w: waiting for commit: %w", ErrOutcomeUnknown, why)
	if i := slices.Index(b.queue, p); i >= 0 {
		b.queue = slices.Delete(b.queue, i, i+1)
		err = errors.Join(ErrNotApplied, fmt.Errorf("%w before the write reached the log", why))
	}
	b.mu.Unlock()
	b.timers.Remove(p)
	b.call([]answer{{p: p, err: err}})
}

// Run appends what is queued, one entry at a time, until ctx ends. Then it
// answers every queued proposal, and every later one, with ErrNotApplied.
func (b *Buffer) Run(ctx context.Context) {
	defer b.refuseQueued()
	for {
		if ctx.Err() != nil {
			return
		}
		batches := b.cfg.Batchable()
		batch := b.take(batches)
		if len(batch) == 0 {
			select {
			case <-b.kick:
			case <-ctx.Done():
				return
			}
			continue
		}
		b.commit(batch, batches)
	}
}

// take removes the next proposals to commit from the queue: as many as fit
// in one batch when batches are allowed, else all of them. The first is
// always taken, whatever its size.
func (b *Buffer) take(batches bool) []*proposal {
	b.mu.Lock()
	defer b.mu.Unlock()
	n, size := 0, 0
	for n < len(b.queue) {
		size += len(b.queue[n].data)
		if batches && n > 0 && (size > MaxBatchBytes || n == MaxBatchCommands) {
			break
		}
		n++
	}
	batch := slices.Clone(b.queue[:n])
	b.queue = slices.Delete(b.queue, 0, n)
	return batch
}

// commit appends batch to the log, as one entry when it holds several and
// batches are allowed, and answers each proposal once applied.
func (b *Buffer) commit(batch []*proposal, batches bool) {
	answers := make([]answer, len(batch))
	for i, p := range batch {
		answers[i].p = p
	}
	if len(batch) == 1 || !batches {
		// An entry each, appended together so that raft still stores and
		// replicates them as one group.
		futures := make([]raft.ApplyFuture, len(batch))
		for i, p := range batch {
			futures[i] = b.cfg.Apply(p.data)
			b.observe(1)
		}
		for i := range batch {
			if err := futures[i].Error(); err != nil {
				answers[i].err = Outcome(err)
			} else {
				answers[i].settle(futures[i].Response())
			}
		}
		b.answer(answers)
		return
	}
	cmds := make([][]byte, len(batch))
	for i, p := range batch {
		cmds[i] = p.data
	}
	data, err := fsm.EncodeBatch(cmds)
	if err != nil {
		b.answerAll(batch, fmt.Errorf("%w: %w", ErrNotApplied, err))
		return
	}
	f := b.cfg.Apply(data)
	b.observe(len(batch))
	if err := f.Error(); err != nil {
		b.answerAll(batch, Outcome(err))
		return
	}
	results, ok := f.Response().(fsm.BatchResult)
	if !ok || len(results) != len(batch) {
		// Cannot happen with this member's state machine; the writes are
		// applied, but what they returned is lost.
		b.answerAll(batch, fmt.Errorf("%w: the batch of %d writes answered %T", ErrOutcomeUnknown, len(batch), f.Response()))
		return
	}
	for i := range batch {
		answers[i].settle(results[i])
	}
	b.answer(answers)
}

func (b *Buffer) observe(proposals int) {
	if b.cfg.Observe != nil {
		b.cfg.Observe(proposals)
	}
}

// settle sets the answer from what the state machine returned; a domain
// error it returned as its result becomes the error.
func (a *answer) settle(res any) {
	if e, ok := res.(error); ok {
		a.err = e
		return
	}
	a.res = res
}

// answerAll answers every proposal of ps nobody answered yet with err.
func (b *Buffer) answerAll(ps []*proposal, err error) {
	answers := make([]answer, len(ps))
	for i, p := range ps {
		answers[i] = answer{p: p, err: err}
	}
	b.answer(answers)
}

// answer calls back the proposals nobody answered yet (giveUp may have).
func (b *Buffer) answer(answers []answer) {
	n := 0
	for _, a := range answers {
		if !a.p.called.CompareAndSwap(false, true) {
			continue
		}
		b.timers.Remove(a.p)
		answers[n] = a
		n++
	}
	b.call(answers[:n])
}

// call calls the callbacks: inline ones here, the others on one spawned
// goroutine, in order.
func (b *Buffer) call(answers []answer) {
	var spawned []answer
	for _, a := range answers {
		if a.p.inline {
			a.p.fn(a.res, a.err)
		} else {
			spawned = append(spawned, a)
		}
	}
	if len(spawned) > 0 {
		b.cfg.Spawn(func() {
			for _, a := range spawned {
				a.p.fn(a.res, a.err)
			}
		})
	}
}

// refuseQueued answers every queued proposal with ErrNotApplied and refuses
// later ones.
func (b *Buffer) refuseQueued() {
	b.mu.Lock()
	queued := b.queue
	b.queue, b.stopped = nil, true
	b.mu.Unlock()
	b.answerAll(queued, fmt.Errorf("%w: %w", ErrNotApplied, b.cfg.Stopped))
	b.timers.Stop()
}

// Outcome turns an error raft returned for a proposal into ErrNotApplied
// or ErrOutcomeUnknown. Only errors raised before the entry was stored are
// certain.
func Outcome(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, raft.ErrNotLeader), errors.Is(err, raft.ErrLeadershipTransferInProgress),
		errors.Is(err, raft.ErrEnqueueTimeout), errors.Is(err, raft.ErrNotVoter):
		return errors.Join(ErrNotApplied, err)
	default:
		// ErrLeadershipLost, ErrRaftShutdown, ErrAbortedByRestore, and
		// anything unexpected: the entry may be in the log.
		return errors.Join(ErrOutcomeUnknown, err)
	}
}
