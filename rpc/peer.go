package rpc

import (
	"context"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/opstream"
	peerv1 "github.com/kvd-io/kvd/proto/peer/v1"
)

// peerService serves peer.v1.PeerService, which only other members call.
type peerService struct {
	peerv1.UnimplementedPeerServiceServer
	node PeerNode
	cfg  Config
	adm  admission
}

// Propose appends a command forwarded by a follower. Only the leader
// accepts it; a member that is not leader refuses before touching the log.
func (p *peerService) Propose(ctx context.Context, req *peerv1.ProposeRequest) (*peerv1.ProposeResponse, error) {
	deadline := time.Now().Add(p.node.RequestTimeout())
	if dl, ok := ctx.Deadline(); ok {
		deadline = dl
	}
	type outcome struct {
		resp *peerv1.ProposeResponse
		err  error
	}
	done := make(chan outcome, 1)
	p.node.ProposeLocal(req.GetCommand(), deadline, func(res any, err error) {
		resp, err := proposed(res, err)
		done <- outcome{resp, err}
	})
	o := <-done // answered by the deadline at the latest
	return o.resp, o.err
}

// proposed is Propose's answer for what a proposal returned.
func proposed(res any, err error) (*peerv1.ProposeResponse, error) {
	if err != nil {
		return nil, err
	}
	result, err := fsm.EncodeResult(res)
	if err != nil {
		return nil, err
	}
	b, err := proto.Marshal(result)
	if err != nil {
		return nil, err
	}
	return &peerv1.ProposeResponse{Result: b}, nil
}

// ProposeStream serves a follower's forwarded proposals, each as Propose
// would, with no goroutine waiting for any of them (a follower forwards its
// clients' writes on one stream per leader connection: a unary call each
// cost the leader and the follower more CPU than the rest of forwarding).
func (p *peerService) ProposeStream(st peerv1.PeerService_ProposeStreamServer) error {
	o := &opstream.Server[*peerv1.ProposeStreamRequest, *peerv1.ProposeResult]{
		Recv: st.Recv,
		Send: func(results []*peerv1.ProposeResult, draining bool) error {
			return st.Send(&peerv1.ProposeStreamResponse{Results: results, Draining: draining})
		},
		Draining: p.node.Draining(),
		Go:       p.cfg.Workers.Submit,
	}
	return o.Serve(func(req *peerv1.ProposeStreamRequest) {
		for _, op := range req.GetOps() {
			start := time.Now()
			finish := func(resp *peerv1.ProposeResponse, err error) {
				p.cfg.Metrics.ObserveRequest(peerv1.PeerService_Propose_FullMethodName, time.Since(start), toStatus(err))
				o.Reply(proposeResult(op.GetId(), resp, err))
			}
			if err := p.adm.admit(&peerv1.ProposeRequest{Command: op.GetCommand()}); err != nil {
				finish(nil, err)
				continue
			}
			timeout := p.node.RequestTimeout()
			if ms := op.GetTimeoutMs(); ms > 0 {
				timeout = time.Duration(ms) * time.Millisecond
			}
			o.Begin()
			p.node.ProposeLocal(op.GetCommand(), start.Add(timeout), func(res any, err error) {
				defer o.Done()
				finish(proposed(res, err))
			})
		}
	})
}

func proposeResult(id uint64, resp *peerv1.ProposeResponse, err error) *peerv1.ProposeResult {
	if err != nil {
		return &peerv1.ProposeResult{Id: id, Error: streamError(err)}
	}
	return &peerv1.ProposeResult{Id: id, Result: resp.GetResult()}
}

// ReadIndex confirms leadership and returns the commit index for a
// follower's linearizable read.
func (p *peerService) ReadIndex(ctx context.Context, _ *peerv1.ReadIndexRequest) (*peerv1.ReadIndexResponse, error) {
	index, err := p.node.ReadIndex(ctx)
	if err != nil {
		return nil, err
	}
	return &peerv1.ReadIndexResponse{Index: index}, nil
}

// LeaseRenew renews a lease for a follower's client.
func (p *peerService) LeaseRenew(ctx context.Context, req *peerv1.LeaseRenewRequest) (*peerv1.LeaseRenewResponse, error) {
	ttl, err := p.node.LeaseRenewLocal(ctx, req.GetId())
	if err != nil {
		return nil, err
	}
	return &peerv1.LeaseRenewResponse{Ttl: ttl}, nil
}

// LeaseRenewBatch renews several leases for a follower's clients.
func (p *peerService) LeaseRenewBatch(ctx context.Context, req *peerv1.LeaseRenewBatchRequest) (*peerv1.LeaseRenewBatchResponse, error) {
	ttls, err := p.node.LeaseRenewBatchLocal(ctx, req.GetIds())
	if err != nil {
		return nil, err
	}
	return &peerv1.LeaseRenewBatchResponse{Ttls: ttls}, nil
}

// LeaseTimeToLive answers a follower's client's LeaseTimeToLive.
func (p *peerService) LeaseTimeToLive(ctx context.Context, req *peerv1.LeaseTimeToLiveRequest) (*peerv1.LeaseTimeToLiveResponse, error) {
	resp, err := p.node.LeaseTimeToLiveLocal(ctx, req.GetId(), req.GetKeys())
	if err != nil {
		return nil, err
	}
	return &peerv1.LeaseTimeToLiveResponse{Response: resp}, nil
}

// MemberRemoved is the leader's notice that a member was removed.
func (p *peerService) MemberRemoved(ctx context.Context, req *peerv1.MemberRemovedRequest) (*peerv1.MemberRemovedResponse, error) {
	p.node.RemovedNotice(req.GetName())
	return &peerv1.MemberRemovedResponse{}, nil
}
