package server

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/internal/opstream"
	peerv1 "github.com/kvd-io/kvd/proto/peer/v1"
)

// A follower forwards its clients' writes to the leader on one
// PeerService.ProposeStream per leader connection, rather than a Propose call
// each: a unary call cost the leader and the follower more CPU than the rest
// of forwarding a write.

// ProposeStream serves a follower's forwarded proposals, each as Propose
// would.
func (p *peerService) ProposeStream(st peerv1.PeerService_ProposeStreamServer) error {
	ctx := st.Context()
	o := &opstream.Server[*peerv1.ProposeStreamRequest, *peerv1.ProposeResult]{
		Recv: st.Recv,
		Send: func(results []*peerv1.ProposeResult, draining bool) error {
			return st.Send(&peerv1.ProposeStreamResponse{Results: results, Draining: draining})
		},
		Draining: p.s.draining,
		Go:       p.s.workers.submit,
	}
	return o.Serve(func(req *peerv1.ProposeStreamRequest) {
		for _, op := range req.GetOps() {
			if p.s.IsLeader() {
				p.submitOp(o, op)
				continue
			}
			o.GoOp(func() *peerv1.ProposeResult { return p.proposeOp(ctx, op) })
		}
	})
}

// proposeOp serves one op of a ProposeStream with Propose, after the check
// its interceptor makes for a unary call, and counts it in the request
// metrics as a Propose call.
func (p *peerService) proposeOp(ctx context.Context, op *peerv1.ProposeOp) *peerv1.ProposeResult {
	ctx, cancel := opContext(ctx, op.GetTimeoutMs())
	defer cancel()
	start := time.Now()
	req := &peerv1.ProposeRequest{Command: op.GetCommand()}
	err := p.s.admit(req)
	var resp *peerv1.ProposeResponse
	if err == nil {
		resp, err = p.Propose(ctx, req)
	}
	p.s.metrics.ObserveRequest(peerv1.PeerService_Propose_FullMethodName, time.Since(start), err)
	return proposeResult(op.GetId(), resp, err)
}

// submitOp is proposeOp on the leader with no goroutine waiting for the
// write: the commit queue calls back once it is applied, or given up at its
// deadline, and the result is sent from there.
func (p *peerService) submitOp(o *opstream.Server[*peerv1.ProposeStreamRequest, *peerv1.ProposeResult], op *peerv1.ProposeOp) {
	start := time.Now()
	finish := func(resp *peerv1.ProposeResponse, err error) {
		p.s.metrics.ObserveRequest(peerv1.PeerService_Propose_FullMethodName, time.Since(start), err)
		o.Reply(proposeResult(op.GetId(), resp, err))
	}
	if err := p.s.admit(&peerv1.ProposeRequest{Command: op.GetCommand()}); err != nil {
		finish(nil, err)
		return
	}
	o.Begin()
	p.s.submitEncoded(op.GetCommand(), start.Add(p.s.opTimeout(op.GetTimeoutMs())), func(res any, err error) {
		defer o.Done()
		finish(proposed(res, err))
	})
}

func proposeResult(id uint64, resp *peerv1.ProposeResponse, err error) *peerv1.ProposeResult {
	if err != nil {
		return &peerv1.ProposeResult{Id: id, Error: apierr.ToStream(err)}
	}
	return &peerv1.ProposeResult{Id: id, Result: resp.GetResult()}
}

// openProposeStream opens the stream that every write this member forwards
// to the leader at addr shares (see package opstream).
func openProposeStream(conn *grpc.ClientConn, addr string) (*opstream.Mux[*peerv1.ProposeOp, *peerv1.ProposeResult], error) {
	ctx, cancel := context.WithCancel(context.Background())
	ps, err := peerv1.NewPeerServiceClient(conn).ProposeStream(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	return opstream.New("leader at "+addr, proposeWire{ps}, cancel, proposeCodec), nil
}

// callProposeStream forwards an encoded command on m and returns the
// leader's encoded result. Its errors are gRPC status errors, as a Propose
// call's would be (marked not applied when the op was never sent), or
// opstream.ErrNotServed.
func callProposeStream(ctx context.Context, m *opstream.Mux[*peerv1.ProposeOp, *peerv1.ProposeResult], command []byte) ([]byte, error) {
	res, err := m.Call(ctx, &peerv1.ProposeOp{Command: command})
	if err != nil {
		return nil, err
	}
	if e := res.GetError(); e != nil {
		return nil, apierr.FromStream(e)
	}
	return res.GetResult(), nil
}

// proposeWire is a PeerService.ProposeStream as opstream sees it.
type proposeWire struct {
	ps peerv1.PeerService_ProposeStreamClient
}

func (w proposeWire) Send(ops []*peerv1.ProposeOp) error {
	return w.ps.Send(&peerv1.ProposeStreamRequest{Ops: ops})
}

func (w proposeWire) Recv() ([]*peerv1.ProposeResult, bool, error) {
	resp, err := w.ps.Recv()
	if err != nil {
		return nil, false, err
	}
	return resp.GetResults(), resp.GetDraining(), nil
}

func (w proposeWire) CloseSend() error { return w.ps.CloseSend() }

var proposeCodec = opstream.Codec[*peerv1.ProposeOp, *peerv1.ProposeResult]{
	SetID: func(op *peerv1.ProposeOp, id uint64, timeoutMs int64) {
		op.Id, op.TimeoutMs = id, timeoutMs
	},
	ID:   (*peerv1.ProposeResult).GetId,
	Size: func(op *peerv1.ProposeOp) int { return proto.Size(op) },
}

// forwardOnStream forwards an encoded command on the connection's proposal
// stream, or as a Propose call when the leader serves no streams, and returns
// the leader's encoded result or a gRPC status error.
func (s *Server) forwardOnStream(ctx context.Context, conn *grpc.ClientConn, addr string, data []byte) ([]byte, error) {
	var encoded []byte
	ps, err := s.peers.Stream(addr)
	if err == nil {
		encoded, err = callProposeStream(ctx, ps, data)
	}
	if errors.Is(err, opstream.ErrNotServed) {
		s.peers.NotServed(addr)
		var resp *peerv1.ProposeResponse
		resp, err = peerv1.NewPeerServiceClient(conn).Propose(ctx, &peerv1.ProposeRequest{Command: data})
		encoded = resp.GetResult()
	}
	return encoded, err
}
