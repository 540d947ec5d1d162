package member

import "sync"

// gate counts operations in flight and, once closed, admits no more and
// tells when the last one has left. Shutdown uses it to let proposals finish.
type gate struct {
	mu     sync.Mutex
	closed bool
	n      int
	empty  chan struct{} // closed when closed and n reaches zero
}

// enter admits an operation; false once the gate is closed.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closed {
		return false
	}
	g.n++
	return true
}

// leave ends an operation that enter admitted.
func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.closed && g.n == 0 && g.empty != nil {
		close(g.empty)
		g.empty = nil
	}
}

// close admits no more operations and returns a channel closed once every
// admitted one has left.
func (g *gate) close() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	ch := make(chan struct{})
	g.closed = true
	if g.n == 0 {
		close(ch)
	} else {
		g.empty = ch
	}
	return ch
}
