package server

import (
	"errors"
	"io"
	"sync"

	"google.golang.org/protobuf/proto"
)

// maxResultBatchBytes caps the results packed into one message, so that a
// message stays well under a client's receive limit. A single larger result
// still goes alone.
const maxResultBatchBytes = 1 << 20

// opServer is the member's side of a stream that carries ops with ids and
// answers each with a result (KVService.Stream, PeerService.ProposeStream).
// Req is the message of ops the client sends, R one result.
//
// Results are sent by whichever goroutine completes them, and results that
// complete together share a message (see reply). When the member begins to
// shut down, the client is told to stop sending and half-close; the stream
// ends once every op received before that is answered.
type opServer[Req any, R proto.Message] struct {
	s    *Server
	recv func() (Req, error)
	// send sends results, and the draining notice when draining is set.
	send func(results []R, draining bool) error

	inflight sync.WaitGroup // ops handed to workers; Add only on the receiving goroutine

	mu       sync.Mutex
	pending  []R
	sending  bool // a goroutine is in the send loop; only it calls send
	draining bool // the draining notice is still to be sent
	broken   bool // a send failed: the client is gone, results are dropped
}

// serve runs the receive loop, handing each message to dispatch, until the
// client half-closes (nil) or the stream fails.
func (o *opServer[Req, R]) serve(dispatch func(Req)) error {
	watchDone := make(chan struct{})
	stopWatch := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-o.s.draining:
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
		req, err := o.recv()
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

// goOp runs op on a worker and sends its result. Only dispatch calls it.
func (o *opServer[Req, R]) goOp(op func() R) {
	o.inflight.Add(1)
	o.s.workers.submit(func() {
		defer o.inflight.Done()
		o.reply(op())
	})
}

// reply queues results for sending. Whichever goroutine finds no send loop
// running becomes it, and sends everything queued meanwhile in as few
// messages as fit: no goroutine is woken only to send.
func (o *opServer[Req, R]) reply(rs ...R) {
	o.mu.Lock()
	if o.broken {
		o.mu.Unlock()
		return
	}
	o.pending = append(o.pending, rs...)
	o.sendLoop()
}

// sendLoop is entered with o.mu held and returns with it released.
func (o *opServer[Req, R]) sendLoop() {
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
			if n > 0 && size+rs > maxResultBatchBytes {
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
		err := o.send(batch, draining)
		o.mu.Lock()
		if err != nil {
			o.broken = true
			o.pending = nil
		}
	}
	o.sending = false
	o.mu.Unlock()
}
