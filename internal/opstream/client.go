package opstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
)

// Wire is one stream, seen through the messages of its service.
type Wire[Op, Res any] interface {
	// Send sends ops in one message.
	Send(ops []Op) error
	// Recv returns the results of the next message, and whether it
	// carried the server's draining notice.
	Recv() (results []Res, draining bool, err error)
	// CloseSend half-closes the stream.
	CloseSend() error
}

// Codec reads and writes what the multiplexer needs of ops and results.
type Codec[Op, Res any] struct {
	// SetID gives op its id and its timeout in milliseconds, rounded up
	// (zero: none).
	SetID func(op Op, id uint64, timeoutMs int64)
	// ID returns the id of the op res answers.
	ID func(res Res) uint64
	// Size is op's encoded size, for capping messages at MaxBatchBytes.
	Size func(op Op) int
}

// MaxBatchBytes caps the ops packed into one message; a single larger op
// still goes alone.
const MaxBatchBytes = 512 << 10

// ErrNotServed is the error of an op sent to a server that does not serve
// the stream (it answered Unimplemented, an older version): nothing ran, and
// the caller should send the op some other way.
var ErrNotServed = errors.New("the server does not serve this stream")

// UnsentError is the error of an op that never left: the stream had closed,
// or Send failed. Nothing of it reached the server, so it is an Unavailable
// marked not applied (apierr.IsNotApplied), safe to retry anywhere.
type UnsentError struct {
	Target string // the server, for the message
	Cause  error
}

func (e *UnsentError) Error() string {
	return fmt.Sprintf("request not sent to %s: stream closed: %v", e.Target, e.Cause)
}

func (e *UnsentError) Unwrap() error { return e.Cause }

// GRPCStatus makes the error an Unavailable marked not applied.
func (e *UnsentError) GRPCStatus() *status.Status {
	return status.Convert(apierr.NotApplied(codes.Unavailable, e.Error()))
}

// BrokenError is the error of an op that was sent and not answered before
// the stream ended: the server may or may not have acted on it. Its gRPC
// code is the stream's, or Unavailable when the stream ended without one.
type BrokenError struct {
	Target string // the server, for the message
	Cause  error
}

func (e *BrokenError) Error() string {
	return fmt.Sprintf("stream to %s ended before the answer came: %v", e.Target, e.Cause)
}

func (e *BrokenError) Unwrap() error { return e.Cause }

// GRPCStatus gives the error the stream's code, not marked not applied.
func (e *BrokenError) GRPCStatus() *status.Status {
	code := status.Code(e.Cause)
	if code == codes.OK || code == codes.Unknown {
		code = codes.Unavailable
	}
	return status.New(code, e.Error())
}

// errDraining closes a stream whose server is shutting down.
var errDraining = errors.New("the server is shutting down")

// Mux is the client side of one stream. Build it with New; Close ends it.
type Mux[Op, Res any] struct {
	target string
	wire   Wire[Op, Res]
	codec  Codec[Op, Res]
	cancel context.CancelFunc
	done   chan struct{} // closed when the receive loop ends

	mu      sync.Mutex
	nextID  uint64
	calls   map[uint64]chan reply[Res]
	queue   []Op     // ops to send, in order
	ids     []uint64 // the ids of queue's ops
	sending bool     // a caller is in the send loop; only it calls Send
	closed  bool     // no more ops: the stream broke, drains or is closed
	halfGo  bool     // CloseSend is owed once the send loop is idle
	err     error    // why it closed
	// unsent are ops whose Send met the end of the stream (io.EOF): they did
	// not leave, and the receive loop, which learns why the stream ended,
	// fails them.
	unsent []uint64
	// inflight are the ids of the batch in Send: the send loop, which
	// learns whether it left, settles them.
	inflight []uint64
	ended    bool  // the receive loop has ended
	endErr   error // why the receive loop ended
}

type reply[Res any] struct {
	res Res
	err error
}

// New starts the receive loop of wire, a stream to target (named in
// errors). cancel ends the stream (the context the stream was opened with);
// Close calls it.
func New[Op, Res any](target string, wire Wire[Op, Res], cancel context.CancelFunc, codec Codec[Op, Res]) *Mux[Op, Res] {
	m := &Mux[Op, Res]{target: target, wire: wire, codec: codec, cancel: cancel, done: make(chan struct{}), calls: make(map[uint64]chan reply[Res])}
	go m.receive()
	return m
}

// Usable reports whether new ops may be sent.
func (m *Mux[Op, Res]) Usable() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.closed
}

// Ended reports whether the stream has ended.
func (m *Mux[Op, Res]) Ended() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// Close ends the stream and its receive loop; calls in flight fail with a
// BrokenError.
func (m *Mux[Op, Res]) Close() {
	m.cancel()
	<-m.done
}

// Call sends op and waits for its result, or for ctx to end; the op's
// timeout is what is left of ctx's deadline. An op that never left fails
// with an UnsentError; one that left and was not answered, with a
// BrokenError; either fails with ErrNotServed when the server does not
// serve the stream. When ctx ends first, the error is ctx's as a gRPC
// status.
func (m *Mux[Op, Res]) Call(ctx context.Context, op Op) (Res, error) {
	var zero Res
	var timeoutMs int64
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return zero, status.FromContextError(context.DeadlineExceeded).Err()
		}
		timeoutMs = int64((left + time.Millisecond - 1) / time.Millisecond)
	}
	ch := make(chan reply[Res], 1)
	m.mu.Lock()
	if m.closed {
		err := m.unsentLocked()
		m.mu.Unlock()
		return zero, err
	}
	m.nextID++
	id := m.nextID
	m.codec.SetID(op, id, timeoutMs)
	m.calls[id] = ch
	m.queue = append(m.queue, op)
	m.ids = append(m.ids, id)
	m.sendLoop()

	select {
	case r := <-ch:
		return r.res, r.err
	case <-ctx.Done():
		m.mu.Lock()
		delete(m.calls, id)
		m.mu.Unlock()
		return zero, status.FromContextError(ctx.Err()).Err()
	}
}

// sendLoop is entered with m.mu held and returns with it released. The
// caller that finds no send loop running becomes it and sends everything
// queued meanwhile: no goroutine is woken only to send.
func (m *Mux[Op, Res]) sendLoop() {
	if m.sending {
		m.mu.Unlock()
		return
	}
	m.sending = true
	for len(m.queue) > 0 && !m.closed {
		size, n := 0, 0
		for n < len(m.queue) {
			sz := m.codec.Size(m.queue[n])
			if n > 0 && size+sz > MaxBatchBytes {
				break
			}
			size += sz
			n++
		}
		batch, ids := m.queue[:n:n], m.ids[:n:n]
		m.queue, m.ids = m.queue[n:], m.ids[n:]
		m.inflight = ids
		m.mu.Unlock()
		err := m.wire.Send(batch)
		m.mu.Lock()
		m.inflight = nil
		switch {
		case err == nil && m.ended:
			// It left, and the stream ended before any answer could.
			for _, id := range ids {
				m.deliverLocked(id, reply[Res]{err: m.brokenLocked()})
			}
		case errors.Is(err, io.EOF) && !m.ended:
			// The stream has ended; why (Unimplemented, say) is for the
			// receive loop to learn. The message did not leave.
			m.closeLocked(fmt.Errorf("send: %w", err))
			m.unsent = append(m.unsent, ids...)
		case err != nil:
			// A failed Send did not put the message on the wire.
			m.closeLocked(fmt.Errorf("send: %w", err))
			m.failUnsentLocked(ids)
		}
	}
	if m.closed {
		m.failUnsentLocked(m.ids)
		m.queue, m.ids = nil, nil
	}
	if m.halfGo {
		m.halfGo = false
		_ = m.wire.CloseSend()
	}
	m.sending = false
	m.mu.Unlock()
}

// failUnsentLocked fails the calls of ops that never left.
func (m *Mux[Op, Res]) failUnsentLocked(ids []uint64) {
	for _, id := range ids {
		m.deliverLocked(id, reply[Res]{err: m.unsentLocked()})
	}
}

// receive hands results to their calls until the stream ends, then fails
// every call still waiting.
func (m *Mux[Op, Res]) receive() {
	defer close(m.done)
	for {
		results, draining, err := m.wire.Recv()
		if err != nil {
			m.mu.Lock()
			m.ended, m.endErr = true, err
			if m.closed && len(m.unsent) > 0 {
				m.err = err // why the sends met the end
			}
			m.closeLocked(err)
			m.failUnsentLocked(m.unsent)
			m.unsent = nil
			// Ops still queued or in Send are the send loop's to settle:
			// only it knows whether they left.
			notSent := make(map[uint64]bool, len(m.ids)+len(m.inflight))
			for _, ids := range [][]uint64{m.ids, m.inflight} {
				for _, id := range ids {
					notSent[id] = true
				}
			}
			for id := range m.calls {
				if !notSent[id] {
					m.deliverLocked(id, reply[Res]{err: m.brokenLocked()})
				}
			}
			m.mu.Unlock()
			m.cancel()
			return
		}
		m.mu.Lock()
		for _, r := range results {
			m.deliverLocked(m.codec.ID(r), reply[Res]{res: r})
		}
		if draining && !m.closed {
			// Send nothing more, and half-close so that the server can
			// end the stream once it has answered what it got.
			m.closeLocked(errDraining)
			m.halfGo = true
			m.sendLoop()
			continue
		}
		m.mu.Unlock()
	}
}

// brokenLocked is the error of an op that left and whose answer the ended
// stream will never bring.
func (m *Mux[Op, Res]) brokenLocked() error {
	if status.Code(m.endErr) == codes.Unimplemented {
		return ErrNotServed // refused before it read any op
	}
	return &BrokenError{Target: m.target, Cause: m.endErr}
}

// unsentLocked is the error of an op that did not leave a closed stream.
func (m *Mux[Op, Res]) unsentLocked() error {
	if status.Code(m.err) == codes.Unimplemented {
		return ErrNotServed
	}
	return &UnsentError{Target: m.target, Cause: m.err}
}

// closeLocked takes no more ops, for the reason err.
func (m *Mux[Op, Res]) closeLocked(err error) {
	if !m.closed {
		m.closed = true
		m.err = err
	}
}

// deliverLocked hands r to the call waiting for id, if it still waits.
func (m *Mux[Op, Res]) deliverLocked(id uint64, r reply[Res]) {
	if ch, ok := m.calls[id]; ok {
		delete(m.calls, id)
		ch <- r // buffered, and each call gets one reply
	}
}
