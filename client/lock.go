package client

import (
	"context"
	"errors"
	"fmt"
	"io"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// The cluster's lock and election services (kv.v1.LockService and
// ElectionService): the recipes of package concurrency run by the member,
// for callers that want no session of their own beyond a kept-alive lease.
// Both use the same keys as package concurrency, so a Lock here and a
// concurrency.Mutex on the same name exclude each other.

// ErrElectionNoLeader: Leader found nobody leading the election.
var ErrElectionNoLeader = errors.New("client: election has no leader")

// ErrElectionNotLeader: Proclaim by a leader key that no longer leads.
var ErrElectionNotLeader = errors.New("client: election: not leader")

// LockResponse is the result of Lock: Key is the holder's key (pass it to
// Unlock) and CreateRevision the lock's fencing token.
type LockResponse struct{ *kvv1.LockResponse }

// UnlockResponse is the result of Unlock.
type UnlockResponse struct{ *kvv1.UnlockResponse }

// LeaderKey identifies a leadership that Campaign won.
type LeaderKey = kvv1.LeaderKey

// CampaignResponse is the result of Campaign.
type CampaignResponse struct{ *kvv1.CampaignResponse }

// ProclaimResponse is the result of Proclaim.
type ProclaimResponse struct{ *kvv1.ProclaimResponse }

// LeaderResponse is the result of Leader: Kv is the leader's key and
// proposal.
type LeaderResponse struct{ *kvv1.LeaderResponse }

// ResignResponse is the result of Resign.
type ResignResponse struct{ *kvv1.ResignResponse }

// ObserveResponse is one leader that Observe saw.
type ObserveResponse = kvv1.ObserveResponse

// Lock waits until lease holds the lock named, then returns its key and
// fencing token. The caller keeps the lease alive (KeepAlive); a lease that
// ends while Lock waits fails it with an error wrapping ErrLeaseNotFound,
// never with the lock. A lease holds one place in a lock's queue, so Lock is
// retried on another endpoint like a read: a retry keeps the place.
func (c *Client) Lock(ctx context.Context, name string, lease LeaseID) (*LockResponse, error) {
	req := &kvv1.LockRequest{Name: []byte(name), Lease: lease}
	var resp *kvv1.LockResponse
	err := c.invoke(ctx, kindRead, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = kvv1.NewLockServiceClient(cc).Lock(ctx, req)
		return err
	})
	if err != nil {
		return nil, leaseError(lease, err)
	}
	return &LockResponse{resp}, nil
}

// Unlock releases the lock held with key (LockResponse.Key).
func (c *Client) Unlock(ctx context.Context, key string) (*UnlockResponse, error) {
	req := &kvv1.UnlockRequest{Key: []byte(key)}
	var resp *kvv1.UnlockResponse
	err := c.invoke(ctx, kindWrite, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = kvv1.NewLockServiceClient(cc).Unlock(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &UnlockResponse{resp}, nil
}

// Campaign joins the election named with lease and proposal val, and waits
// until it leads. Like Lock, a lease that ends meanwhile fails it (wrapping
// ErrLeaseNotFound), and it is retried like a read: a lease holds one place.
func (c *Client) Campaign(ctx context.Context, name string, lease LeaseID, val string) (*CampaignResponse, error) {
	req := &kvv1.CampaignRequest{Name: []byte(name), Lease: lease, Value: []byte(val)}
	var resp *kvv1.CampaignResponse
	err := c.invoke(ctx, kindRead, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = kvv1.NewElectionServiceClient(cc).Campaign(ctx, req)
		return err
	})
	if err != nil {
		return nil, leaseError(lease, err)
	}
	return &CampaignResponse{resp}, nil
}

// Proclaim changes the leader's proposal; it fails with an error wrapping
// ErrElectionNotLeader once leader no longer leads.
func (c *Client) Proclaim(ctx context.Context, leader *LeaderKey, val string) (*ProclaimResponse, error) {
	req := &kvv1.ProclaimRequest{Leader: leader, Value: []byte(val)}
	var resp *kvv1.ProclaimResponse
	err := c.invoke(ctx, kindWrite, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = kvv1.NewElectionServiceClient(cc).Proclaim(ctx, req)
		return err
	})
	if status.Code(err) == codes.FailedPrecondition {
		return nil, fmt.Errorf("%w: %w", ErrElectionNotLeader, err)
	}
	if err != nil {
		return nil, err
	}
	return &ProclaimResponse{resp}, nil
}

// Leader returns the election's leader, or an error wrapping
// ErrElectionNoLeader.
func (c *Client) Leader(ctx context.Context, name string) (*LeaderResponse, error) {
	req := &kvv1.LeaderRequest{Name: []byte(name)}
	var resp *kvv1.LeaderResponse
	err := c.invoke(ctx, kindRead, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = kvv1.NewElectionServiceClient(cc).Leader(ctx, req)
		return err
	})
	if status.Code(err) == codes.NotFound {
		return nil, fmt.Errorf("%w: %w", ErrElectionNoLeader, err)
	}
	if err != nil {
		return nil, err
	}
	return &LeaderResponse{resp}, nil
}

// Resign gives up the leadership leader, if it still leads; otherwise it
// does nothing. It is retried like a read: it deletes only that
// generation of the key.
func (c *Client) Resign(ctx context.Context, leader *LeaderKey) (*ResignResponse, error) {
	req := &kvv1.ResignRequest{Leader: leader}
	var resp *kvv1.ResignResponse
	err := c.invoke(ctx, kindRead, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = kvv1.NewElectionServiceClient(cc).Resign(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &ResignResponse{resp}, nil
}

// Observe follows the election named: the channel receives the leader each
// time one is elected or proclaims, in order, beginning with the current
// one. When its member fails, Observe moves to another and reads the
// leader again (a leader elected and gone meanwhile is then missed; none
// is sent twice). The channel is closed when ctx ends, or with a last
// error when the cluster refuses the request (Err).
func (c *Client) Observe(ctx context.Context, name string) <-chan ObserveEvent {
	ch := make(chan ObserveEvent)
	go func() {
		defer close(ch)
		var last *kvv1.KeyValue
		send := func(ev ObserveEvent) bool {
			select {
			case ch <- ev:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for ctx.Err() == nil {
			err := c.invoke(ctx, kindRead, func(ctx context.Context, cc grpc.ClientConnInterface) error {
				st, err := kvv1.NewElectionServiceClient(cc).Observe(ctx, &kvv1.ObserveRequest{Name: []byte(name)})
				if err != nil {
					return err
				}
				for {
					r, err := st.Recv()
					if errors.Is(err, io.EOF) {
						return status.Error(codes.Unavailable, "observe stream ended by the member")
					}
					if err != nil {
						return err
					}
					kv := r.GetKv()
					if last != nil && string(last.GetKey()) == string(kv.GetKey()) && last.GetModRevision() >= kv.GetModRevision() {
						continue // seen before the stream moved
					}
					last = kv
					if !send(ObserveEvent{ObserveResponse: r}) {
						return ctx.Err()
					}
				}
			})
			if err != nil && ctx.Err() == nil {
				send(ObserveEvent{err: err})
				return
			}
		}
	}()
	return ch
}

// ObserveEvent is what Observe sends: a leader, or the error that ended
// it.
type ObserveEvent struct {
	*ObserveResponse
	err error
}

// Err is the error that ended Observe, nil for a leader.
func (e ObserveEvent) Err() error { return e.err }
