package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/internal/opstream"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// LeaseID identifies a lease. Put a key with WithLease(id) to attach it: the
// key is deleted when the lease expires or is revoked.
type LeaseID = int64

// NoLease is the lease id of a key without a lease.
const NoLease LeaseID = 0

// ErrLeaseNotFound: the lease does not exist: it was never granted, was
// revoked, or expired. Errors of the lease calls wrap it.
var ErrLeaseNotFound = errors.New("client: lease not found")

// Lease is the lease API, as etcd's clientv3.Lease. *Client implements it.
//
// A lease lives for its TTL after it is granted and after each renewal
// (KeepAlive, KeepAliveOnce). The cluster's leader times it and, when it
// runs out, revokes it through the log: its keys are deleted on every
// member at one revision. A new leader extends every lease by at least the
// election timeout before it expires any, so a lease never expires early
// because leadership moved; it may outlive its TTL by the time an election
// takes. The shortest TTL a cluster grants is one and a half election
// timeouts, rounded up to a second (2 s with the default timers).
type Lease interface {
	// Grant creates a lease of ttl seconds. Options: WithLeaseID.
	Grant(ctx context.Context, ttl int64, opts ...LeaseOption) (*LeaseGrantResponse, error)
	// Revoke ends a lease now and deletes its keys.
	Revoke(ctx context.Context, id LeaseID) (*LeaseRevokeResponse, error)
	// TimeToLive returns a lease's remaining and granted TTL; TTL is -1
	// when the lease does not exist. Options: WithAttachedKeys.
	TimeToLive(ctx context.Context, id LeaseID, opts ...LeaseOption) (*LeaseTimeToLiveResponse, error)
	// Leases lists every lease of the cluster.
	Leases(ctx context.Context) (*LeaseLeasesResponse, error)
	// KeepAlive renews a lease in the background until ctx ends or the
	// lease is lost; see Client.KeepAlive.
	KeepAlive(ctx context.Context, id LeaseID) (<-chan *LeaseKeepAliveResponse, error)
	// KeepAliveOnce renews a lease once.
	KeepAliveOnce(ctx context.Context, id LeaseID) (*LeaseKeepAliveResponse, error)
}

// LeaseGrantResponse is the result of Grant: ID and TTL are the lease's.
type LeaseGrantResponse struct{ *kvv1.LeaseGrantResponse }

// LeaseRevokeResponse is the result of Revoke; Header.Revision is the
// revision at which the lease's keys were deleted.
type LeaseRevokeResponse struct{ *kvv1.LeaseRevokeResponse }

// LeaseTimeToLiveResponse is the result of TimeToLive.
type LeaseTimeToLiveResponse struct{ *kvv1.LeaseTimeToLiveResponse }

// LeaseLeasesResponse is the result of Leases.
type LeaseLeasesResponse struct{ *kvv1.LeaseLeasesResponse }

// LeaseOption configures Grant or TimeToLive.
type LeaseOption func(*leaseOp)

type leaseOp struct {
	id   LeaseID
	keys bool
}

// WithLeaseID asks Grant for this id rather than one the cluster picks. An
// id in use is refused (FailedPrecondition).
func WithLeaseID(id LeaseID) LeaseOption { return func(o *leaseOp) { o.id = id } }

// WithAttachedKeys makes TimeToLive return the keys attached to the lease.
func WithAttachedKeys() LeaseOption { return func(o *leaseOp) { o.keys = true } }

func leaseOpts(opts []LeaseOption) leaseOp {
	var o leaseOp
	for _, fn := range opts {
		fn(&o)
	}
	return o
}

// leaseError wraps ErrLeaseNotFound around a NotFound answer.
func leaseError(id LeaseID, err error) error {
	if status.Code(err) == codes.NotFound {
		return fmt.Errorf("%w: %x: %w", ErrLeaseNotFound, id, err)
	}
	return err
}

// Grant creates a lease of ttl seconds. The cluster refuses a TTL below its
// minimum with InvalidArgument. It is retried like a write: on another
// endpoint only when it certainly was not applied.
func (c *Client) Grant(ctx context.Context, ttl int64, opts ...LeaseOption) (*LeaseGrantResponse, error) {
	if ttl <= 0 {
		return nil, fmt.Errorf("client: Grant TTL %d: must be positive", ttl)
	}
	o := leaseOpts(opts)
	if o.id < 0 {
		return nil, fmt.Errorf("client: Grant lease id %d: must not be negative", o.id)
	}
	req := &kvv1.LeaseGrantRequest{Ttl: ttl, Id: o.id}
	var resp *kvv1.LeaseGrantResponse
	err := c.invoke(ctx, kindWrite, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = kvv1.NewLeaseServiceClient(cc).LeaseGrant(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &LeaseGrantResponse{resp}, nil
}

// Revoke ends a lease now: its keys are deleted at one revision. A lease
// that does not exist fails with an error wrapping ErrLeaseNotFound. It is
// retried like a write.
func (c *Client) Revoke(ctx context.Context, id LeaseID) (*LeaseRevokeResponse, error) {
	var resp *kvv1.LeaseRevokeResponse
	err := c.invoke(ctx, kindWrite, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = kvv1.NewLeaseServiceClient(cc).LeaseRevoke(ctx, &kvv1.LeaseRevokeRequest{Id: id})
		return err
	})
	if err != nil {
		return nil, leaseError(id, err)
	}
	c.keepAlives.forget(id)
	return &LeaseRevokeResponse{resp}, nil
}

// TimeToLive returns a lease's remaining TTL (rounded up to a second) and
// its granted TTL, as the leader's clock has them. TTL is -1 when the lease
// does not exist. Options: WithAttachedKeys.
func (c *Client) TimeToLive(ctx context.Context, id LeaseID, opts ...LeaseOption) (*LeaseTimeToLiveResponse, error) {
	req := &kvv1.LeaseTimeToLiveRequest{Id: id, Keys: leaseOpts(opts).keys}
	var resp *kvv1.LeaseTimeToLiveResponse
	err := c.invoke(ctx, kindRead, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = kvv1.NewLeaseServiceClient(cc).LeaseTimeToLive(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &LeaseTimeToLiveResponse{resp}, nil
}

// Leases lists every lease of the cluster.
func (c *Client) Leases(ctx context.Context) (*LeaseLeasesResponse, error) {
	var resp *kvv1.LeaseLeasesResponse
	err := c.invoke(ctx, kindRead, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = kvv1.NewLeaseServiceClient(cc).LeaseLeases(ctx, &kvv1.LeaseLeasesRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &LeaseLeasesResponse{resp}, nil
}

// KeepAliveOnce renews a lease once. A lease that no longer exists fails
// with an error wrapping ErrLeaseNotFound. A renewal changes nothing but
// the lease's clock, so it is retried on another endpoint like a read.
//
// The renewal goes on the endpoint's shared stream, with the client's other
// requests (see Config.UnaryCalls), or on a LeaseKeepAlive stream of its
// own for a member that predates renewals on the shared stream.
func (c *Client) KeepAliveOnce(ctx context.Context, id LeaseID) (*LeaseKeepAliveResponse, error) {
	var resp *LeaseKeepAliveResponse
	err := c.retry(ctx, kindRead, func(ctx context.Context, endpoint string) error {
		cc, err := c.ready(ctx, endpoint)
		if err != nil {
			return err
		}
		if !c.cfg.UnaryCalls && !c.renewsUnstreamed(endpoint) {
			sent := now()
			res, err := c.streamOp(ctx, endpoint, func() *kvv1.StreamOp {
				return &kvv1.StreamOp{LeaseRenew: &kvv1.StreamLeaseRenew{Id: id}}
			})
			switch {
			case err == nil && res.GetLeaseRenewed() == nil:
				return status.Error(codes.Internal, "client: a lease renewal was answered without its outcome")
			case err == nil:
				r := res.GetLeaseRenewed()
				resp = newKeepAliveResponse(&kvv1.LeaseKeepAliveResponse{Header: r.GetHeader(), Id: id, Ttl: r.GetTtl()}, sent)
				return nil
			case renewNotStreamed(err):
				c.renewUnstreamed.Store(endpoint, now())
			case !errors.Is(err, opstream.ErrNotServed):
				return err
			}
		}
		resp, err = keepAliveStreamOnce(ctx, cc, id)
		return err
	})
	if err != nil {
		return nil, leaseError(id, err)
	}
	if resp.GetTtl() <= 0 {
		return nil, fmt.Errorf("%w: %x expired or was revoked", ErrLeaseNotFound, id)
	}
	return resp, nil
}

// oldRenewals is how long KeepAliveOnce renews on LeaseKeepAlive streams
// at an endpoint that refused a renewal on its shared stream, before it
// tries the shared stream there again (the member may have been upgraded
// meanwhile). Without it every renewal at an old member during a rolling
// upgrade would cost a refused op first.
const oldRenewals = time.Minute

// renewsUnstreamed reports whether endpoint refused a renewal on its
// shared stream less than oldRenewals ago.
func (c *Client) renewsUnstreamed(endpoint string) bool {
	at, ok := c.renewUnstreamed.Load(endpoint)
	return ok && now().Sub(at.(time.Time)) < oldRenewals
}

// renewNotStreamed reports whether err is how a member that predates
// renewals on the shared stream refuses one: it sees an op without a
// request. Nothing ran.
func renewNotStreamed(err error) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.InvalidArgument && strings.Contains(st.Message(), "stream op has no request")
}

// keepAliveStreamOnce renews id once on a LeaseKeepAlive stream of its own.
func keepAliveStreamOnce(ctx context.Context, cc grpc.ClientConnInterface, id LeaseID) (*LeaseKeepAliveResponse, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := kvv1.NewLeaseServiceClient(cc).LeaseKeepAlive(ctx)
	if err != nil {
		return nil, err
	}
	sent := now()
	if err := st.Send(&kvv1.LeaseKeepAliveRequest{Id: id}); err != nil {
		return nil, err
	}
	r, err := st.Recv()
	if err != nil {
		return nil, err
	}
	return newKeepAliveResponse(r, sent), nil
}
