package client

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/apierr"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

const (
	// maxStreamOpBytes is the largest request sent on a stream; larger ones
	// go as unary calls. A request over the member's size limit fails alone
	// that way, instead of ending the stream under every op in flight on it.
	maxStreamOpBytes = 256 << 10
	// maxOpBatchBytes caps the ops packed into one StreamRequest.
	maxOpBatchBytes = 512 << 10
	// maxStreamRecvBytes lets a stream carry results as large as unary calls
	// with a raised receive limit would.
	maxStreamRecvBytes = math.MaxInt32
)

// errNoStream reports that the endpoint does not serve KVService.Stream
// (Unimplemented): the op was not run and goes as a unary call instead.
var errNoStream = errors.New("client: endpoint does not serve streams")

// opStream is the client side of one KVService.Stream on one endpoint's
// connection. Every call to that endpoint shares it: each op gets an id, and
// the receive loop hands each result to the call waiting for that id.
type opStream struct {
	endpoint string
	cs       kvv1.KVService_StreamClient
	cancel   context.CancelFunc
	done     chan struct{} // closed when the receive loop ends

	mu      sync.Mutex
	nextID  uint64
	calls   map[uint64]chan streamReply
	queue   []*kvv1.StreamOp
	sending bool  // a goroutine is in the send loop; only it calls cs.Send
	closed  bool  // no more ops: the stream broke, drains or is closed
	halfGo  bool  // CloseSend is owed once the send loop is idle
	err     error // why it closed
}

type streamReply struct {
	resp *kvv1.ResponseOp
	err  error
}

// openStream starts a stream on cc and its receive loop. The loop ends when
// the stream does; close ends both.
func openStream(cc *grpc.ClientConn, endpoint string) (*opStream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	cs, err := kvv1.NewKVServiceClient(cc).Stream(ctx, grpc.MaxCallRecvMsgSize(maxStreamRecvBytes))
	if err != nil {
		cancel()
		return nil, err
	}
	s := &opStream{endpoint: endpoint, cs: cs, cancel: cancel, done: make(chan struct{}), calls: make(map[uint64]chan streamReply)}
	go s.receive()
	return s, nil
}

// usable reports whether new ops may be sent on s.
func (s *opStream) usable() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed
}

// ended reports whether the stream's receive loop has ended.
func (s *opStream) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// close ends the stream and its receive loop, failing the ops in flight.
func (s *opStream) close() {
	s.cancel()
	<-s.done
}

// call sends req and waits for its result, or for ctx to end.
func (s *opStream) call(ctx context.Context, req *kvv1.RequestOp) (*kvv1.ResponseOp, error) {
	op := &kvv1.StreamOp{Request: req}
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return nil, status.FromContextError(context.DeadlineExceeded).Err()
		}
		op.TimeoutMs = int64((left + time.Millisecond - 1) / time.Millisecond)
	}
	ch := make(chan streamReply, 1)
	s.mu.Lock()
	if s.closed {
		err := s.err
		s.mu.Unlock()
		return nil, s.unsent(err)
	}
	s.nextID++
	op.Id = s.nextID
	s.calls[op.Id] = ch
	s.queue = append(s.queue, op)
	s.sendLoop()

	select {
	case r := <-ch:
		return r.resp, r.err
	case <-ctx.Done():
		s.mu.Lock()
		delete(s.calls, op.Id)
		s.mu.Unlock()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// sendLoop is entered with s.mu held and returns with it released. Whichever
// caller finds no send loop running becomes it and sends everything queued
// meanwhile, several ops to a message: concurrent calls share messages, and
// no goroutine is woken only to send.
func (s *opStream) sendLoop() {
	if s.sending {
		s.mu.Unlock()
		return
	}
	s.sending = true
	for len(s.queue) > 0 && !s.closed {
		size, n := 0, 0
		for n < len(s.queue) {
			sz := proto.Size(s.queue[n])
			if n > 0 && size+sz > maxOpBatchBytes {
				break
			}
			size += sz
			n++
		}
		batch := s.queue[:n:n]
		s.queue = s.queue[n:]
		s.mu.Unlock()
		err := s.cs.Send(&kvv1.StreamRequest{Ops: batch})
		s.mu.Lock()
		if err != nil {
			// A failed Send did not put the message on the wire: its ops,
			// and those queued behind it, were not sent.
			s.closeLocked(fmt.Errorf("send: %w", err))
			for _, op := range batch {
				s.deliverLocked(op.GetId(), streamReply{err: s.unsent(s.err)})
			}
		}
	}
	if s.closed {
		for _, op := range s.queue {
			s.deliverLocked(op.GetId(), streamReply{err: s.unsent(s.err)})
		}
		s.queue = nil
	}
	if s.halfGo {
		s.halfGo = false
		_ = s.cs.CloseSend()
	}
	s.sending = false
	s.mu.Unlock()
}

// receive hands results to their calls until the stream ends, then fails
// every call still waiting.
func (s *opStream) receive() {
	defer close(s.done)
	for {
		resp, err := s.cs.Recv()
		if err != nil {
			s.fail(err)
			return
		}
		s.mu.Lock()
		for _, r := range resp.GetResults() {
			s.deliverLocked(r.GetId(), resultReply(r))
		}
		if resp.GetDraining() && !s.closed {
			// The member is shutting down: send nothing more, and
			// half-close so that it can end the stream once it has
			// answered what it got.
			s.closeLocked(fmt.Errorf("endpoint %s is shutting down", s.endpoint))
			s.halfGo = true
			s.sendLoop()
			continue
		}
		s.mu.Unlock()
	}
}

// fail ends the stream after Recv returned err.
func (s *opStream) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeLocked(err)
	st, _ := status.FromError(err)
	for id := range s.calls {
		if st.Code() == codes.Unimplemented {
			s.deliverLocked(id, streamReply{err: errNoStream})
			continue
		}
		// These ops were sent and not answered: a write may have been
		// applied, so the error is not marked as not applied.
		code := st.Code()
		if code == codes.OK || code == codes.Unknown {
			code = codes.Unavailable // the stream ended without a status
		}
		s.deliverLocked(id, streamReply{err: status.Errorf(code, "stream to %s ended before the answer came: %v", s.endpoint, err)})
	}
	s.cancel()
}

// closeLocked marks the stream closed for new ops.
func (s *opStream) closeLocked(err error) {
	if !s.closed {
		s.closed = true
		s.err = err
	}
}

// deliverLocked hands r to the call waiting for id, if it still waits.
func (s *opStream) deliverLocked(id uint64, r streamReply) {
	if ch, ok := s.calls[id]; ok {
		delete(s.calls, id)
		ch <- r // buffered, and each call gets one reply
	}
}

// unsent is the error of an op that was never sent because the stream had
// closed: safe to retry elsewhere.
func (s *opStream) unsent(cause error) error {
	if status.Code(cause) == codes.Unimplemented {
		return errNoStream
	}
	return apierr.NotApplied(codes.Unavailable, fmt.Sprintf("request not sent to %s: stream closed: %v", s.endpoint, cause))
}

// resultReply turns a result off the wire into the call's reply.
func resultReply(r *kvv1.StreamResult) streamReply {
	e := r.GetError()
	if e == nil {
		if r.GetResponse() == nil {
			return streamReply{err: status.Error(codes.Internal, "stream result has neither a response nor an error")}
		}
		return streamReply{resp: r.GetResponse()}
	}
	code := codes.Code(e.GetCode())
	if e.GetNotApplied() {
		return streamReply{err: apierr.NotApplied(code, e.GetMessage())}
	}
	if code == codes.OK {
		code = codes.Unknown
	}
	return streamReply{err: status.Error(code, e.GetMessage())}
}
