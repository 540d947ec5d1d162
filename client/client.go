package client

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/internal/streammux"
)

// ErrClosed is returned by calls on a Client after Close.
var ErrClosed = errors.New("client: closed")

// Client talks to a kvd cluster through a fixed list of endpoints. It is safe
// for concurrent use. Build it with New and release it with Close.
type Client struct {
	cfg      Config
	dialOpts []grpc.DialOption
	conns    []*endpointConn // one per endpoint, in Config.Endpoints order
	pinned   atomic.Int64    // index of the endpoint that last answered
	closed   atomic.Bool
}

// Compile-time checks that Client implements the package's interfaces.
var (
	_ KV          = (*Client)(nil)
	_ Cluster     = (*Client)(nil)
	_ Maintenance = (*Client)(nil)
)

// New validates cfg and returns a Client for its endpoints. It does not
// connect: each endpoint is dialed when a request first needs it, so New
// succeeds even when no endpoint is reachable.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	cfg.Endpoints = slices.Clone(cfg.Endpoints)
	c := &Client{cfg: cfg}
	c.dialOpts = append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   2 * time.Second,
			},
			MinConnectTimeout: cfg.DialTimeout,
		}),
		grpc.WithChainUnaryInterceptor(apierr.MarkUnsent),
	}, cfg.DialOptions...)
	for _, ep := range cfg.Endpoints {
		c.conns = append(c.conns, &endpointConn{addr: ep})
	}
	return c, nil
}

// Endpoints returns a copy of the client's endpoints.
func (c *Client) Endpoints() []string { return slices.Clone(c.cfg.Endpoints) }

// Close closes every connection. Calls in flight fail, and later calls return
// ErrClosed. Close is idempotent.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	var errs []error
	for _, e := range c.conns {
		if err := e.close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// endpointConn is the lazily dialed connection to one endpoint.
type endpointConn struct {
	addr string

	mu       sync.Mutex
	cc       *grpc.ClientConn
	closed   bool
	stream   *opStream   // the stream small requests share; nil until needed
	retiring []*opStream // streams replaced while they still answered ops
	noStream bool        // the endpoint answered Unimplemented to a stream
}

func (e *endpointConn) conn(opts []grpc.DialOption) (*grpc.ClientConn, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	if e.cc == nil {
		cc, err := grpc.NewClient(e.addr, opts...)
		if err != nil {
			return nil, fmt.Errorf("client: endpoint %q: %w", e.addr, err)
		}
		e.cc = cc
	}
	return e.cc, nil
}

// opStream returns the endpoint's stream on cc, opening a new one when there
// is none or the last one closed. When it fails, nothing was sent.
func (e *endpointConn) opStream(cc *grpc.ClientConn) (*opStream, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil, ErrClosed
	}
	if e.noStream {
		return nil, streammux.ErrNotServed
	}
	if e.stream != nil && e.stream.usable() {
		return e.stream, nil
	}
	if e.stream != nil {
		// A draining stream still answers what it sent; keep it until then.
		e.retiring = slices.DeleteFunc(append(e.retiring, e.stream), (*opStream).ended)
		e.stream = nil
	}
	s, err := openStream(cc, e.addr)
	if err != nil {
		return nil, apierr.NotApplied(codes.Unavailable, fmt.Sprintf("request not sent to %s: open stream: %v", e.addr, err))
	}
	e.stream = s
	return s, nil
}

// streamUnsupported records that the endpoint serves no streams, so that
// requests to it go as unary calls.
func (e *endpointConn) streamUnsupported() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.noStream = true
}

func (e *endpointConn) close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	for _, s := range append(e.retiring, e.stream) {
		if s != nil {
			s.close()
		}
	}
	e.stream, e.retiring = nil, nil
	if e.cc == nil {
		return nil
	}
	err := e.cc.Close()
	e.cc = nil
	if err != nil {
		return fmt.Errorf("client: closing endpoint %q: %w", e.addr, err)
	}
	return nil
}

// notReadyError reports that a request was not sent to an endpoint because
// the endpoint's connection did not become ready. Nothing was sent, so it
// carries the apierr not-applied mark and the code Unavailable.
type notReadyError struct {
	endpoint string
	reason   string
	cause    error // the context error that ended the wait, if any
}

func (e *notReadyError) Error() string {
	msg := fmt.Sprintf("endpoint %q is not ready: %s", e.endpoint, e.reason)
	if e.cause != nil {
		msg += ": " + e.cause.Error()
	}
	return msg
}

func (e *notReadyError) Unwrap() error { return e.cause }

// GRPCStatus lets status.Code and apierr.IsNotApplied see the error as an
// Unavailable that certainly was not applied.
func (e *notReadyError) GRPCStatus() *status.Status {
	return status.Convert(apierr.NotApplied(codes.Unavailable, e.Error()))
}

// ready returns e's connection once it is READY. It waits at most
// Config.DialTimeout, and returns a *notReadyError at once when the last
// connection attempt failed (TRANSIENT_FAILURE): the endpoint is down for now
// and the next one should be tried.
func (c *Client) ready(ctx context.Context, e *endpointConn) (*grpc.ClientConn, error) {
	cc, err := e.conn(c.dialOpts)
	if err != nil {
		return nil, err
	}
	if cc.GetState() == connectivity.Ready {
		return cc, nil
	}
	wctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	for {
		s := cc.GetState()
		switch s {
		case connectivity.Ready:
			return cc, nil
		case connectivity.TransientFailure:
			cc.Connect() // keep reconnecting in the background
			return nil, &notReadyError{endpoint: e.addr, reason: "connection failed"}
		case connectivity.Shutdown:
			return nil, ErrClosed
		case connectivity.Idle:
			cc.Connect()
		}
		if !cc.WaitForStateChange(wctx, s) {
			if err := ctx.Err(); err != nil {
				return nil, &notReadyError{endpoint: e.addr, reason: "gave up waiting", cause: err}
			}
			return nil, &notReadyError{endpoint: e.addr,
				reason: fmt.Sprintf("still %s after the dial timeout of %v", s, c.cfg.DialTimeout)}
		}
	}
}
