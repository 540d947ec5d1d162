package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/fsm"
	peerv1 "github.com/kvd-io/kvd/proto/peer/v1"
)

// peerPool keeps one gRPC connection per member address.
type peerPool struct {
	mu          sync.Mutex
	conns       map[string]*grpc.ClientConn
	dialTimeout time.Duration
}

func newPeerPool(dialTimeout time.Duration) *peerPool {
	return &peerPool{conns: make(map[string]*grpc.ClientConn), dialTimeout: dialTimeout}
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
			_ = c.Close()
			delete(p.conns, addr)
		}
	}
}

func (p *peerPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for addr, c := range p.conns {
		_ = c.Close()
		delete(p.conns, addr)
	}
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
	b, err := p.apply(ctx, req.GetCommand())
	if err != nil {
		return nil, toStatus(err)
	}
	return &peerv1.ProposeResponse{Result: b}, nil
}

// ProposeBatch applies the commands a follower forwarded for several
// clients. They are proposed concurrently, so raft appends them together;
// each has its own outcome.
func (p *peerService) ProposeBatch(ctx context.Context, req *peerv1.ProposeBatchRequest) (*peerv1.ProposeBatchResponse, error) {
	if !p.s.IsLeader() {
		return nil, toStatus(fmt.Errorf("%w: %s is not the leader", ErrNotApplied, p.s.cfg.Name))
	}
	cmds := req.GetCommands()
	outcomes := make([]*peerv1.ProposeOutcome, len(cmds))
	var wg sync.WaitGroup
	for i, cmd := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, err := p.apply(ctx, cmd)
			if err != nil {
				outcomes[i] = &peerv1.ProposeOutcome{Error: encodeStatus(toStatus(err))}
				return
			}
			outcomes[i] = &peerv1.ProposeOutcome{Result: b}
		}()
	}
	wg.Wait()
	return &peerv1.ProposeBatchResponse{Outcomes: outcomes}, nil
}

// apply applies an encoded command on this member, the leader, and returns
// its encoded fsm.v1.Result.
func (p *peerService) apply(ctx context.Context, cmd []byte) ([]byte, error) {
	res, err := p.s.applyEncoded(ctx, cmd)
	if err != nil {
		return nil, err
	}
	result, err := fsm.EncodeResult(res)
	if err != nil {
		return nil, err
	}
	return proto.Marshal(result)
}

// encodeStatus encodes a gRPC status error as a google.rpc.Status, details
// (the not-applied mark) included.
func encodeStatus(err error) []byte {
	b, merr := proto.Marshal(status.Convert(err).Proto())
	if merr != nil {
		b, _ = proto.Marshal(status.New(codes.Internal, "encode status: "+merr.Error()).Proto())
	}
	return b
}

// decodeStatus is the inverse of encodeStatus.
func decodeStatus(b []byte) error {
	st := &spb.Status{}
	if err := proto.Unmarshal(b, st); err != nil {
		return status.Errorf(codes.Unknown, "decode the leader's status: %v", err)
	}
	if st.GetCode() == int32(codes.OK) {
		return status.Error(codes.Unknown, "the leader answered neither a result nor an error")
	}
	return status.ErrorProto(st)
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
