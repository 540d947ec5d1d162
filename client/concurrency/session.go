package concurrency

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kvd-io/kvd/client"
)

// DefaultSessionTTL is a session's lease TTL, in seconds, unless WithTTL
// says otherwise: etcd's.
const DefaultSessionTTL = 60

// ErrSessionExpired: the session's lease is gone (expired, revoked, or no
// longer renewed), so whatever it held is released.
var ErrSessionExpired = errors.New("concurrency: session expired")

// Session is a lease kept alive in the background for as long as the
// session lasts. Locks and elections built on it are released when it ends.
type Session struct {
	client *client.Client
	id     client.LeaseID
	ttl    int64
	ctx    context.Context // ends with the session
	cancel context.CancelFunc
	donec  chan struct{} // closed when the keep-alive ends

	mu       sync.Mutex
	deadline time.Time // when the lease expires at the earliest, unless renewed
}

type sessionOptions struct {
	ttl   int64
	lease client.LeaseID
	ctx   context.Context
}

// SessionOption configures NewSession.
type SessionOption func(*sessionOptions)

// WithTTL sets the session's lease TTL in seconds (DefaultSessionTTL when
// not given). It must be at least the cluster's minimum TTL.
func WithTTL(ttl int64) SessionOption { return func(o *sessionOptions) { o.ttl = ttl } }

// WithLease builds the session on an existing lease rather than granting
// one; the session keeps it alive.
func WithLease(id client.LeaseID) SessionOption {
	return func(o *sessionOptions) { o.lease = id }
}

// WithContext makes the session end (without revoking its lease) when ctx
// ends.
func WithContext(ctx context.Context) SessionOption {
	return func(o *sessionOptions) { o.ctx = ctx }
}

// NewSession grants a lease (or takes the one WithLease names) and keeps it
// alive until Close, Orphan, the context of WithContext ending, or the loss
// of the lease.
func NewSession(c *client.Client, opts ...SessionOption) (*Session, error) {
	o := sessionOptions{ttl: DefaultSessionTTL, ctx: context.Background()}
	for _, fn := range opts {
		fn(&o)
	}
	if o.ttl <= 0 {
		return nil, fmt.Errorf("concurrency: session TTL %d: must be positive", o.ttl)
	}
	sent := time.Now()
	id := o.lease
	if id == client.NoLease {
		resp, err := c.Grant(o.ctx, o.ttl)
		if err != nil {
			return nil, fmt.Errorf("concurrency: grant the session's lease: %w", err)
		}
		id = resp.GetId()
	} else {
		resp, err := c.KeepAliveOnce(o.ctx, id)
		if err != nil {
			return nil, fmt.Errorf("concurrency: renew the session's lease: %w", err)
		}
		o.ttl = resp.GetTtl()
	}
	ctx, cancel := context.WithCancel(o.ctx)
	ch, err := c.KeepAlive(ctx, id)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("concurrency: keep the session's lease alive: %w", err)
	}
	s := &Session{client: c, id: id, ttl: o.ttl, ctx: ctx, cancel: cancel, donec: make(chan struct{}),
		deadline: sent.Add(time.Duration(o.ttl) * time.Second)}
	go s.keepAlive(ch)
	return s, nil
}

// keepAlive follows the renewals until they end or the lease's deadline
// passes without one: either way the session is over.
func (s *Session) keepAlive(ch <-chan *client.LeaseKeepAliveResponse) {
	defer close(s.donec)
	defer s.cancel()
	timer := time.NewTimer(time.Until(s.Deadline()))
	defer timer.Stop()
	for {
		select {
		case resp, ok := <-ch:
			if !ok {
				return
			}
			s.mu.Lock()
			if resp.Deadline.After(s.deadline) {
				s.deadline = resp.Deadline
			}
			d := time.Until(s.deadline)
			s.mu.Unlock()
			timer.Reset(d)
		case <-timer.C:
			if time.Until(s.Deadline()) <= 0 {
				return // not renewed in time: the cluster may have expired it
			}
			timer.Reset(time.Until(s.Deadline()))
		}
	}
}

// Client returns the client the session uses.
func (s *Session) Client() *client.Client { return s.client }

// Lease returns the session's lease id.
func (s *Session) Lease() client.LeaseID { return s.id }

// TTL returns the session's lease TTL, in seconds.
func (s *Session) TTL() int64 { return s.ttl }

// Ctx returns a context that ends when the session does.
func (s *Session) Ctx() context.Context { return s.ctx }

// Done returns a channel closed when the session ends: closed, orphaned,
// its context ended, or its lease lost (the cluster answered that it no
// longer exists, or no renewal succeeded before its deadline).
func (s *Session) Done() <-chan struct{} { return s.donec }

// Deadline returns when the session's lease expires at the earliest by
// this machine's clock unless renewed again: when the latest successful
// renewal was sent, plus the TTL.
func (s *Session) Deadline() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.deadline
}

// Orphan ends the session without revoking its lease: the lease expires
// after its TTL, unless something else renews it.
func (s *Session) Orphan() {
	s.cancel()
	<-s.donec
}

// Close ends the session and revokes its lease, deleting every key written
// with it (releasing its locks and leadership). The revocation is bounded
// by the lease's TTL; if it fails, the lease expires on its own.
func (s *Session) Close() error {
	s.Orphan()
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(s.ttl)*time.Second)
	defer cancel()
	_, err := s.client.Revoke(ctx, s.id)
	if errors.Is(err, client.ErrLeaseNotFound) {
		return nil // it expired meanwhile
	}
	return err
}
