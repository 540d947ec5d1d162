package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/streammux"
	peerv1 "github.com/kvd-io/kvd/proto/peer/v1"
)

// peerPool keeps one gRPC connection per member address, and on a
// connection to the leader the stream that forwarded proposals share.
type peerPool struct {
	mu          sync.Mutex
	conns       map[string]*grpc.ClientConn
	streams     map[*grpc.ClientConn]*proposeStream
	retiring    []*proposeStream // replaced while they still answered ops
	noStream    map[*grpc.ClientConn]bool
	dialTimeout time.Duration
}

func newPeerPool(dialTimeout time.Duration) *peerPool {
	return &peerPool{
		conns:       make(map[string]*grpc.ClientConn),
		streams:     make(map[*grpc.ClientConn]*proposeStream),
		noStream:    make(map[*grpc.ClientConn]bool),
		dialTimeout: dialTimeout,
	}
}

// proposeStream returns conn's proposal stream, opening one when there is
// none or the last one closed. When it fails, nothing was sent.
func (p *peerPool) proposeStream(conn *grpc.ClientConn, leader string) (*proposeStream, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.noStream[conn] {
		return nil, streammux.ErrNotServed
	}
	if ps := p.streams[conn]; ps != nil {
		if ps.usable() {
			return ps, nil
		}
		// A draining stream still answers what it sent; keep it until then.
		p.retiring = slices.DeleteFunc(append(p.retiring, ps), (*proposeStream).ended)
		delete(p.streams, conn)
	}
	ps, err := openProposeStream(conn, leader)
	if err != nil {
		return nil, apierr.NotApplied(codes.Unavailable, fmt.Sprintf("request not sent to leader %s: open stream: %v", leader, err))
	}
	p.streams[conn] = ps
	return ps, nil
}

// noProposeStream records that conn's member serves no proposal streams.
func (p *peerPool) noProposeStream(conn *grpc.ClientConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.noStream[conn] = true
}

// dropLocked closes conn and its stream. The caller holds mu.
func (p *peerPool) dropLocked(addr string, conn *grpc.ClientConn) {
	if ps := p.streams[conn]; ps != nil {
		ps.close()
		delete(p.streams, conn)
	}
	delete(p.noStream, conn)
	_ = conn.Close()
	delete(p.conns, addr)
}

// ready returns a connection to addr that is ready to send on, connecting if
// needed. When it fails, nothing was sent.
func (p *peerPool) ready(ctx context.Context, addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	conn, ok := p.conns[addr]
	if !ok {
		var err error
		conn, err = grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
			// Find a connection that a partition left dead without waiting
			// for TCP's retransmission backoff.
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 3 * time.Second, PermitWithoutStream: true}),
			// A call that never left this member is safe to retry: say so.
			grpc.WithChainUnaryInterceptor(apierr.MarkUnsent))
		if err != nil {
			p.mu.Unlock()
			return nil, fmt.Errorf("dial %s: %w", addr, err)
		}
		p.conns[addr] = conn
	}
	p.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, p.dialTimeout)
	defer cancel()
	for {
		st := conn.GetState()
		switch st {
		case connectivity.Ready:
			return conn, nil
		case connectivity.Idle:
			conn.Connect()
		case connectivity.Shutdown:
			return nil, errors.New("connection closed")
		case connectivity.TransientFailure:
			// The last attempt failed (refused, unreachable): say so now
			// rather than wait for gRPC's reconnect backoff.
			return nil, fmt.Errorf("connect to %s: connection failed", addr)
		}
		if !conn.WaitForStateChange(ctx, st) {
			return nil, fmt.Errorf("connect to %s: %w (state %s)", addr, ctx.Err(), st)
		}
	}
}

// reset drops the connection to conn's address after a call on it failed,
// so that the next call dials anew: after a partition heals, a fresh
// connection works at once, while the old one may still be stuck.
func (p *peerPool) reset(conn *grpc.ClientConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, c := range p.conns {
		if c == conn {
			p.dropLocked(addr, c)
		}
	}
}

func (p *peerPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, c := range p.conns {
		p.dropLocked(addr, c)
	}
	for _, ps := range p.retiring {
		ps.close()
	}
	p.retiring = nil
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
	index, err := p.s.reads.readIndex(ctx)
	if err != nil {
		return nil, toStatus(err)
	}
	return &peerv1.ReadIndexResponse{Index: index}, nil
}
