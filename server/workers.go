package server

// workerPool runs tasks on long-lived goroutines. A fresh goroutine per task
// would grow its stack anew each time (copying it as the call deepens),
// which profiles showed is costly on the request path; a worker keeps its
// grown stack between tasks.
type workerPool struct {
	tasks chan func()
}

func newWorkerPool() *workerPool {
	return &workerPool{tasks: make(chan func())}
}

// run serves tasks until stop is closed. The Server starts streamWorkers of
// these.
func (w *workerPool) run(stop <-chan struct{}) {
	for {
		select {
		case f := <-w.tasks:
			f()
		case <-stop:
			return
		}
	}
}

// submit runs f on an idle worker, or on a goroutine of its own when every
// worker is busy (or stopped): it never waits. The caller owns f's
// completion and must wait for it.
func (w *workerPool) submit(f func()) {
	select {
	case w.tasks <- f:
	default:
		go f()
	}
}
