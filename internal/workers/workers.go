// Package workers runs a member's short tasks (the callbacks of proposals
// and reads, the ops of streams) on long-lived goroutines. A fresh goroutine
// per task would grow its stack anew each time (copying it as the call
// deepens), which profiles showed is costly on the request path; a worker
// keeps its grown stack between tasks.
package workers

import "context"

// Pool hands tasks to its workers. Its zero value is not usable; use New.
type Pool struct {
	tasks chan func()
}

// New returns a pool with no workers running; start them with Run.
func New() *Pool { return &Pool{tasks: make(chan func())} }

// Run is one worker: it runs tasks until ctx ends. The owner starts as many
// as it wants on goroutines it waits for.
func (p *Pool) Run(ctx context.Context) {
	for {
		select {
		case f := <-p.tasks:
			f()
		case <-ctx.Done():
			return
		}
	}
}

// Submit runs f on an idle worker, or on a goroutine of its own when every
// worker is busy (or stopped): it never waits. The caller owns f's
// completion and must wait for it.
func (p *Pool) Submit(f func()) {
	select {
	case p.tasks <- f:
	default:
		go f()
	}
}
