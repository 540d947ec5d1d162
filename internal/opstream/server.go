package opstream

import (
	"errors"
	"io"
	"sync"

	"google.golang.org/protobuf/proto"
)

// MaxResultBytes caps the results packed into one message, so that a
// message stays well under a client's receive limit. A single larger result
// still goes alone.
const MaxResultBytes = 1 << 20

// Server is the member's side of one stream. Req is the message of ops the
// client sends, R one result. Build one per stream, with Recv and Send set,
// and call Serve.
//
// Results are sent by whichever goroutine completes them, and results that
// complete together share a message (see Reply). When Draining is closed,
// the client is told to stop sending and half-close; the stream ends once
// every op received before that is answered.
type Server[Req any, R proto.Message] struct {
	// Recv receives the next message of ops.
	Recv func() (Req, error)
	// Send sends results, and the draining notice when draining is set.
	Send func(results []R, draining bool) error
	// Draining is closed when the member begins to shut down; nil: never.
	Draining <-chan struct{}
	// Go runs a function off the receiving goroutine (the member's
	// workers); it must not wait.
	Go func(func())

	inflight sync.WaitGroup // ops being served; Add only on the receiving goroutine

	mu       sync.Mutex
	pending  []R
	sending  bool // a goroutine is in the send loop; only it calls Send
	draining bool // the draining notice is still to be sent
	broken   bool // a send failed: the client is gone, results are dropped
}

// Serve runs the receive loop, handing each message to dispatch on the
// receiving goroutine, until the client half-closes (nil) or the stream
// fails. Before it returns it waits for every op begun with Begin or Go.
func (o *Server[Req, R]) Serve(dispatch func(Req)) error {
	watchDone := make(chan struct{})
	stopWatch := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-o.Draining:
			o.mu.Lock()
			o.draining = true
			o.sendLoop()
		case <-stopWatch:
		}
	}()
	defer func() {
		close(stopWatch)
		<-watchDone
	}()
	for {
		req, err := o.Recv()
		if err != nil {
			// Answer what was received before the stream ends: after a
			// draining notice the client half-closes (io.EOF here) and
			// waits for these.
			o.inflight.Wait()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		dispatch(req)
	}
}

// Begin counts an op that will be answered later, from another goroutine,
// which must call Done once it has replied. Only dispatch calls it.
func (o *Server[Req, R]) Begin() { o.inflight.Add(1) }

// Done ends an op counted by Begin.
func (o *Server[Req, R]) Done() { o.inflight.Done() }

// GoOp runs op with Go and sends its result. Only dispatch calls it.
func (o *Server[Req, R]) GoOp(op func() R) {
	o.inflight.Add(1)
	o.Go(func() {
		defer o.inflight.Done()
		o.Reply(op())
	})
}

// Reply queues results for sending. Whichever goroutine finds no send loop
// running becomes it, and sends everything queued meanwhile in as few
// messages as fit: no goroutine is woken only to send.
func (o *Server[Req, R]) Reply(rs ...R) {
	o.mu.Lock()
	if o.broken {
		o.mu.Unlock()
		return
	}
	o.pending = append(o.pending, rs...)
	o.sendLoop()
}

// sendLoop is entered with o.mu held and returns with it released.
func (o *Server[Req, R]) sendLoop() {
	if o.sending {
		o.mu.Unlock()
		return
	}
	o.sending = true
	for !o.broken && (len(o.pending) > 0 || o.draining) {
		draining := o.draining
		o.draining = false
		size, n := 0, 0
		for n < len(o.pending) {
			rs := proto.Size(o.pending[n])
			if n > 0 && size+rs > MaxResultBytes {
				break
			}
			size += rs
			n++
		}
		batch := o.pending[:n:n]
		o.pending = o.pending[n:]
		if len(o.pending) == 0 {
			o.pending = nil
		}
		o.mu.Unlock()
		err := o.Send(batch, draining)
		o.mu.Lock()
		if err != nil {
			o.broken = true
			o.pending = nil
		}
	}
	o.sending = false
	o.mu.Unlock()
}
