package server

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/opstream"
	peerv1 "github.com/kvd-io/kvd/proto/peer/v1"
)

// peerPool is a member's connections to the other members' APIs, and on a
// connection to the leader the stream that forwarded proposals share.
type peerPool = opstream.Pool[*peerv1.ProposeOp, *peerv1.ProposeResult]

func newPeerPool(dialTimeout time.Duration) *peerPool {
	return opstream.NewPool(opstream.PoolConfig[*peerv1.ProposeOp, *peerv1.ProposeResult]{
		DialOptions: []grpc.DialOption{
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			// Find a connection that a partition left dead without waiting
			// for TCP's retransmission backoff.
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 3 * time.Second, PermitWithoutStream: true}),
			// A call that never left this member is safe to retry: say so.
			grpc.WithChainUnaryInterceptor(apierr.MarkUnsent),
		},
		DialTimeout: dialTimeout,
		Open:        openProposeStream,
	})
}

// peerService serves the other members.
type peerService struct {
	peerv1.UnimplementedPeerServiceServer
	s *Server
}

// Propose applies a command forwarded by a follower. Only the leader accepts
// it; a member that is not leader refuses before touching the log.
func (p *peerService) Propose(ctx context.Context, req *peerv1.ProposeRequest) (*peerv1.ProposeResponse, error) {
	if !p.s.IsLeader() {
		return nil, toStatus(fmt.Errorf("%w: %s is not the leader", ErrNotApplied, p.s.cfg.Name))
	}
	return proposed(p.s.applyEncoded(ctx, req.GetCommand()))
}

// proposed is Propose's answer for what a proposal returned.
func proposed(res any, err error) (*peerv1.ProposeResponse, error) {
	if err != nil {
		return nil, toStatus(err)
	}
	result, err := fsm.EncodeResult(res)
	if err != nil {
		return nil, toStatus(err)
	}
	b, err := proto.Marshal(result)
	if err != nil {
		return nil, toStatus(err)
	}
	return &peerv1.ProposeResponse{Result: b}, nil
}

// ReadIndex confirms leadership and returns the commit index for a
// follower's linearizable read.
func (p *peerService) ReadIndex(ctx context.Context, _ *peerv1.ReadIndexRequest) (*peerv1.ReadIndexResponse, error) {
	if !p.s.IsLeader() {
		return nil, toStatus(fmt.Errorf("%w: %s is not the leader", ErrNoLeader, p.s.cfg.Name))
	}
	index, err := p.s.reads.ReadIndex(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &peerv1.ReadIndexResponse{Index: index}, nil
}
