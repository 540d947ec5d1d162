package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	peerv1 "github.com/kvd-io/kvd/proto/peer/v1"
)

// A follower forwards its clients' writes to the leader on one
// PeerService.ProposeStream per leader connection, rather than a Propose call
// each: a unary call cost the leader and the follower more CPU than the rest
// of forwarding a write.

// errNoProposeStream: the leader does not serve ProposeStream (an older
// version during a rolling upgrade). Nothing was sent; use Propose.
var errNoProposeStream = errors.New("leader does not serve proposal streams")

// ProposeStream serves a follower's forwarded proposals, each as Propose
// would.
func (p *peerService) ProposeStream(st peerv1.PeerService_ProposeStreamServer) error {
	ctx := st.Context()
	o := &opServer[*peerv1.ProposeStreamRequest, *peerv1.ProposeResult]{
		s:    p.s,
		recv: st.Recv,
		send: func(results []*peerv1.ProposeResult, draining bool) error {
			return st.Send(&peerv1.ProposeStreamResponse{Results: results, Draining: draining})
		},
	}
	return o.serve(func(req *peerv1.ProposeStreamRequest) {
		for _, op := range req.GetOps() {
			o.goOp(func() *peerv1.ProposeResult { return p.proposeOp(ctx, op) })
		}
	})
}

// proposeOp serves one op of a ProposeStream with Propose, after the checks
// its interceptors make for a unary call.
func (p *peerService) proposeOp(ctx context.Context, op *peerv1.ProposeOp) *peerv1.ProposeResult {
	ctx, cancel := opContext(ctx, op.GetTimeoutMs())
	defer cancel()
	req := &peerv1.ProposeRequest{Command: op.GetCommand()}
	resp, err := p.s.limitRequestSize(ctx, req, nil, func(ctx context.Context, _ any) (any, error) {
		return p.Propose(ctx, req)
	})
	if err != nil {
		return &peerv1.ProposeResult{Id: op.GetId(), Error: streamError(err)}
	}
	return &peerv1.ProposeResult{Id: op.GetId(), Result: resp.(*peerv1.ProposeResponse).GetResult()}
}

// proposeStream is a follower's stream of forwarded proposals on one
// connection to the leader. Calls share it: each op gets an id, and the
// receive loop hands each result to the call waiting for that id.
type proposeStream struct {
	leader string // for errors
	ps     peerv1.PeerService_ProposeStreamClient
	cancel context.CancelFunc
	done   chan struct{} // closed when the receive loop ends

	sendMu sync.Mutex // serialises Send and CloseSend

	mu     sync.Mutex
	nextID uint64
	calls  map[uint64]chan proposeReply
	closed bool  // no more ops: the stream broke, drains or is closed
	err    error // why it closed
}

type proposeReply struct {
	result []byte
	err    error
}

func openProposeStream(conn *grpc.ClientConn, leader string) (*proposeStream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	ps, err := peerv1.NewPeerServiceClient(conn).ProposeStream(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	p := &proposeStream{leader: leader, ps: ps, cancel: cancel, done: make(chan struct{}), calls: make(map[uint64]chan proposeReply)}
	go p.receive()
	return p, nil
}

func (p *proposeStream) usable() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.closed
}

func (p *proposeStream) ended() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// close ends the stream and its receive loop; calls in flight fail.
func (p *proposeStream) close() {
	p.cancel()
	<-p.done
}

// call forwards an encoded command and returns the leader's encoded result.
// Its errors are gRPC status errors, as a Propose call's would be: marked not
// applied when the op was never sent.
func (p *proposeStream) call(ctx context.Context, command []byte) ([]byte, error) {
	op := &peerv1.ProposeOp{Command: command}
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left <= 0 {
			return nil, status.FromContextError(context.DeadlineExceeded).Err()
		}
		op.TimeoutMs = int64((left + time.Millisecond - 1) / time.Millisecond)
	}
	ch := make(chan proposeReply, 1)
	p.mu.Lock()
	if p.closed {
		err := p.err
		p.mu.Unlock()
		return nil, p.unsent(err)
	}
	p.nextID++
	op.Id = p.nextID
	p.calls[op.Id] = ch
	p.mu.Unlock()

	p.sendMu.Lock()
	err := p.ps.Send(&peerv1.ProposeStreamRequest{Ops: []*peerv1.ProposeOp{op}})
	p.sendMu.Unlock()
	if err != nil {
		// A failed Send did not put the op on the wire.
		p.mu.Lock()
		delete(p.calls, op.Id)
		p.closeLocked(fmt.Errorf("send: %w", err))
		err = p.err
		p.mu.Unlock()
		return nil, p.unsent(err)
	}
	select {
	case r := <-ch:
		return r.result, r.err
	case <-ctx.Done():
		p.mu.Lock()
		delete(p.calls, op.Id)
		p.mu.Unlock()
		return nil, status.FromContextError(ctx.Err()).Err()
	}
}

// receive hands results to their calls until the stream ends, then fails
// every call still waiting.
func (p *proposeStream) receive() {
	defer close(p.done)
	for {
		resp, err := p.ps.Recv()
		if err != nil {
			p.fail(err)
			return
		}
		p.mu.Lock()
		for _, r := range resp.GetResults() {
			reply := proposeReply{result: r.GetResult()}
			if e := r.GetError(); e != nil {
				reply = proposeReply{err: statusOf(e)}
			}
			p.deliverLocked(r.GetId(), reply)
		}
		drain := resp.GetDraining() && !p.closed
		if drain {
			p.closeLocked(fmt.Errorf("leader %s is shutting down", p.leader))
		}
		p.mu.Unlock()
		if drain {
			// Half-close, so that the leader ends the stream once it has
			// answered what it got.
			p.sendMu.Lock()
			_ = p.ps.CloseSend()
			p.sendMu.Unlock()
		}
	}
}

// fail ends the stream after Recv returned err.
func (p *proposeStream) fail(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closeLocked(err)
	st, _ := status.FromError(err)
	for id := range p.calls {
		if st.Code() == codes.Unimplemented {
			p.deliverLocked(id, proposeReply{err: errNoProposeStream})
			continue
		}
		// Sent and not answered: the write may have been applied.
		p.deliverLocked(id, proposeReply{err: status.Errorf(codes.Unavailable, "stream to leader %s ended before the answer came: %v", p.leader, err)})
	}
	p.cancel()
}

func (p *proposeStream) closeLocked(err error) {
	if !p.closed {
		p.closed = true
		p.err = err
	}
}

func (p *proposeStream) deliverLocked(id uint64, r proposeReply) {
	if ch, ok := p.calls[id]; ok {
		delete(p.calls, id)
		ch <- r // buffered, and each call gets one reply
	}
}

// unsent is the error of an op that was never sent.
func (p *proposeStream) unsent(cause error) error {
	if status.Code(cause) == codes.Unimplemented {
		return errNoProposeStream
	}
	return apierr.NotApplied(codes.Unavailable, fmt.Sprintf("request not sent to leader %s: stream closed: %v", p.leader, cause))
}

// forwardOnStream forwards an encoded command on the connection's proposal
// stream, or as a Propose call when the leader serves no streams, and returns
// the leader's encoded result or a gRPC status error.
func (s *Server) forwardOnStream(ctx context.Context, conn *grpc.ClientConn, leader string, data []byte) ([]byte, error) {
	var encoded []byte
	ps, err := s.peers.proposeStream(conn, leader)
	if err == nil {
		encoded, err = ps.call(ctx, data)
	}
	if errors.Is(err, errNoProposeStream) {
		s.peers.noProposeStream(conn)
		var resp *peerv1.ProposeResponse
		resp, err = peerv1.NewPeerServiceClient(conn).Propose(ctx, &peerv1.ProposeRequest{Command: data})
		encoded = resp.GetResult()
	}
	return encoded, err
}
