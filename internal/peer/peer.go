// Package peer is how a member calls the other members' APIs over gRPC: it
// implements member.Peers. Writes a follower forwards share one
// PeerService.ProposeStream per connection to the leader (package opstream);
// the other calls are unary. Connections are kept, one per member, in one
// opstream.Pool, and dropped when a call on one fails in a way that may mean
// the connection itself is dead.
package peer

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/internal/opstream"
	"github.com/kvd-io/kvd/member"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	peerv1 "github.com/kvd-io/kvd/proto/peer/v1"
)

// Config configures Peers.
type Config struct {
	// DialTimeout bounds the wait for a connection to become ready.
	// Required.
	DialTimeout time.Duration
	// DialOptions are added to every connection's (after the defaults:
	// plaintext, keepalive, the not-applied mark on unsent calls).
	DialOptions []grpc.DialOption
	// LastError, when set, says why the last connection to addr failed
	// (a refused TLS handshake, say), so that ErrUnreachable errors say it
	// too; nil when not known. The TLS credentials of DialOptions know.
	LastError func(addr string) error
}

// Validate reports what is wrong with the config.
func (c Config) Validate() error {
	if c.DialTimeout <= 0 {
		return fmt.Errorf("peer: dial timeout must be positive, got %s", c.DialTimeout)
	}
	return nil
}

// Peers calls other members. It is safe for concurrent use.
type Peers struct {
	pool *opstream.Pool[*peerv1.ProposeOp, *peerv1.ProposeResult]
}

var _ member.Peers = (*Peers)(nil)

// New returns Peers with no connection open yet.
func New(cfg Config) (*Peers, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	return &Peers{pool: opstream.NewPool(opstream.PoolConfig[*peerv1.ProposeOp, *peerv1.ProposeResult]{
		DialOptions: append([]grpc.DialOption{
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			// Find a connection that a partition left dead without waiting
			// for TCP's retransmission backoff.
			grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 3 * time.Second, PermitWithoutStream: true}),
			// A call that never left this member is safe to retry: say so.
			grpc.WithChainUnaryInterceptor(apierr.MarkUnsent),
		}, cfg.DialOptions...),
		DialTimeout: cfg.DialTimeout,
		Open:        openProposeStream,
		LastError:   cfg.LastError,
	})}, nil
}

// Close closes every connection.
func (p *Peers) Close() error { return p.pool.Close() }

// Conn returns a ready connection to the member at addr, for a call another
// layer makes (the RPC layer forwards membership requests to the leader).
// When it fails, nothing was sent and the error wraps member.ErrUnreachable.
func (p *Peers) Conn(ctx context.Context, addr string) (*grpc.ClientConn, error) {
	cc, err := p.pool.Ready(ctx, addr)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", member.ErrUnreachable, err)
	}
	return cc, nil
}

// Ready implements member.Peers.
func (p *Peers) Ready(ctx context.Context, addr string) error {
	_, err := p.Conn(ctx, addr)
	return err
}

// Propose implements member.Peers: on the connection's proposal stream, or
// as a Propose call to a leader that serves no streams.
func (p *Peers) Propose(ctx context.Context, addr string, cmd []byte) ([]byte, error) {
	cc, err := p.Conn(ctx, addr)
	if err != nil {
		return nil, err
	}
	var encoded []byte
	s, err := p.pool.Stream(addr)
	if err == nil {
		encoded, err = callProposeStream(ctx, s, cmd)
	}
	if errors.Is(err, opstream.ErrNotServed) {
		p.pool.NotServed(addr)
		var resp *peerv1.ProposeResponse
		resp, err = peerv1.NewPeerServiceClient(cc).Propose(ctx, &peerv1.ProposeRequest{Command: cmd})
		encoded = resp.GetResult()
	}
	if err != nil {
		p.failed(addr, err)
		return nil, relayError(addr, err)
	}
	return encoded, nil
}

// ReadIndex implements member.Peers.
func (p *Peers) ReadIndex(ctx context.Context, addr string) (uint64, error) {
	cc, err := p.Conn(ctx, addr)
	if err != nil {
		return 0, err
	}
	resp, err := peerv1.NewPeerServiceClient(cc).ReadIndex(ctx, &peerv1.ReadIndexRequest{})
	if err != nil {
		p.failed(addr, err)
		return 0, err
	}
	return resp.GetIndex(), nil
}

// LeaseRenewBatch implements member.Peers. A leader of an older version,
// which does not serve PeerService.LeaseRenewBatch, is asked one lease at
// a time.
func (p *Peers) LeaseRenewBatch(ctx context.Context, addr string, ids []int64) ([]int64, error) {
	cc, err := p.Conn(ctx, addr)
	if err != nil {
		return nil, err
	}
	c := peerv1.NewPeerServiceClient(cc)
	resp, err := c.LeaseRenewBatch(ctx, &peerv1.LeaseRenewBatchRequest{Ids: ids})
	if status.Code(err) == codes.Unimplemented {
		return leaseRenewEach(ctx, c, ids)
	}
	if err != nil {
		p.failed(addr, err)
		return nil, err
	}
	return resp.GetTtls(), nil
}

// leaseRenewEach renews ids one PeerService.LeaseRenew at a time.
func leaseRenewEach(ctx context.Context, c peerv1.PeerServiceClient, ids []int64) ([]int64, error) {
	ttls := make([]int64, len(ids))
	for i, id := range ids {
		resp, err := c.LeaseRenew(ctx, &peerv1.LeaseRenewRequest{Id: id})
		switch {
		case status.Code(err) == codes.NotFound:
			// ttl 0: no such lease
		case err != nil:
			return nil, err
		default:
			ttls[i] = resp.GetTtl()
		}
	}
	return ttls, nil
}

// LeaseTimeToLive implements member.Peers.
func (p *Peers) LeaseTimeToLive(ctx context.Context, addr string, req *kvv1.LeaseTimeToLiveRequest) (*kvv1.LeaseTimeToLiveResponse, error) {
	cc, err := p.Conn(ctx, addr)
	if err != nil {
		return nil, err
	}
	resp, err := peerv1.NewPeerServiceClient(cc).LeaseTimeToLive(ctx, &peerv1.LeaseTimeToLiveRequest{Id: req.GetId(), Keys: req.GetKeys()})
	if err != nil {
		p.failed(addr, err)
		return nil, err
	}
	return resp.GetResponse(), nil
}

// Status implements member.Peers.
func (p *Peers) Status(ctx context.Context, addr string) (member.PeerStatus, error) {
	cc, err := p.Conn(ctx, addr)
	if err != nil {
		return member.PeerStatus{}, err
	}
	st, err := kvv1.NewMaintenanceServiceClient(cc).Status(ctx, &kvv1.StatusRequest{})
	if err != nil {
		p.failed(addr, err)
		return member.PeerStatus{}, err
	}
	return member.PeerStatus{Name: st.GetName(), LeaderName: st.GetLeaderName(),
		AppliedIndex: st.GetAppliedIndex(), Revision: st.GetHeader().GetRevision()}, nil
}

// AddMember implements member.Peers.
func (p *Peers) AddMember(ctx context.Context, addr string, req *kvv1.MemberAddRequest) error {
	cc, err := p.Conn(ctx, addr)
	if err != nil {
		return err
	}
	_, err = kvv1.NewClusterServiceClient(cc).MemberAdd(ctx, req)
	switch status.Code(err) {
	case codes.OK:
		return nil
	case codes.InvalidArgument, codes.AlreadyExists, codes.FailedPrecondition:
		return fmt.Errorf("%w: %w", member.ErrRefused, err)
	}
	p.failed(addr, err)
	return err
}

// Members implements member.Peers.
func (p *Peers) Members(ctx context.Context, addr string) ([]*kvv1.Member, error) {
	cc, err := p.Conn(ctx, addr)
	if err != nil {
		return nil, err
	}
	resp, err := kvv1.NewClusterServiceClient(cc).MemberList(ctx, &kvv1.MemberListRequest{})
	if err != nil {
		p.failed(addr, err)
		return nil, err
	}
	return resp.GetMembers(), nil
}

// NotifyRemoved implements member.Peers.
func (p *Peers) NotifyRemoved(ctx context.Context, addr, name string, clusterID uint64) error {
	cc, err := p.Conn(ctx, addr)
	if err != nil {
		return err
	}
	_, err = peerv1.NewPeerServiceClient(cc).MemberRemoved(ctx, &peerv1.MemberRemovedRequest{Name: name, ClusterId: clusterID})
	return err
}

// failed drops the connection to addr after a call on it failed in a way
// that may mean the connection itself is dead, so that the next call dials
// anew: after a partition heals, a fresh connection works at once, while
// the old one may still be stuck.
func (p *Peers) failed(addr string, err error) {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		if !apierr.IsNotApplied(err) {
			p.pool.Reset(addr)
		}
	}
}

// relayError passes on what the leader answered a forwarded write. A status
// the leader raised itself is passed through; a failure of the connection
// after the request was sent leaves the write's outcome unknown.
func relayError(leader string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%w: forward to leader at %s: %w", member.ErrOutcomeUnknown, leader, err)
	}
	switch st.Code() {
	case codes.Unavailable, codes.Canceled, codes.Internal:
		if apierr.IsNotApplied(err) {
			return err
		}
		return status.Errorf(codes.Unknown, "%v: forwarding to leader at %s failed after sending; the write may or may not have been applied: %s", member.ErrOutcomeUnknown, leader, st.Message())
	case codes.DeadlineExceeded:
		return status.Errorf(codes.DeadlineExceeded, "forwarding to leader at %s timed out; the write may or may not have been applied", leader)
	default:
		return err
	}
}

// openProposeStream opens the stream that every write this member forwards
// to the leader at addr shares.
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
