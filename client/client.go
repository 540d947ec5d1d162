package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/internal/opstream"
	"github.com/kvd-io/kvd/internal/tlsgrpc"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// ErrClosed is returned by calls on a Client after Close.
var ErrClosed = errors.New("client: closed")

// Client talks to a kvd cluster through a fixed list of endpoints. It is safe
// for concurrent use. Build it with New and release it with Close.
type Client struct {
	cfg     Config
	pool    *opstream.Pool[*kvv1.StreamOp, *kvv1.StreamResult] // one connection and stream per endpoint
	pinned  atomic.Int64                                       // index of the endpoint that last answered
	closed  atomic.Bool
	watches *watchHub // the watch streams and their watchers
	// keepAlives renews the leases of KeepAlive calls.
	keepAlives *keepAlives
	// tokens holds the token of Config.Username (nil without one).
	tokens *tokens
	// renewUnstreamed maps an endpoint to when it last refused a lease
	// renewal on its stream (a member from before them), so that
	// KeepAliveOnce goes straight to a LeaseKeepAlive stream there for a
	// while (see oldRenewals).
	renewUnstreamed sync.Map
}

// Compile-time checks that Client implements the package's interfaces.
var (
	_ KV          = (*Client)(nil)
	_ Cluster     = (*Client)(nil)
	_ Maintenance = (*Client)(nil)
	_ Watcher     = (*Client)(nil)
	_ Lease       = (*Client)(nil)
)

// New validates cfg and returns a Client for its endpoints. It does not
// connect: each endpoint is dialed when a request first needs it, so New
// succeeds even when no endpoint is reachable.
func New(cfg Config) (*Client, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	useTLS := cfg.TLS != nil
	given := cfg.Endpoints
	cfg.Endpoints = make([]string, len(given))
	for i, ep := range given {
		scheme, addr := splitScheme(ep)
		useTLS = useTLS || scheme == "https"
		cfg.Endpoints[i] = addr
	}
	creds := tlsgrpc.NewPlaintextCredentials()
	if useTLS {
		tc := cfg.TLS
		if tc == nil {
			tc = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		creds = tlsgrpc.NewStaticClientCredentials(tc)
	}
	c := &Client{cfg: cfg}
	auth := []grpc.DialOption{grpc.WithChainUnaryInterceptor(apierr.MarkUnsent)}
	if cfg.Username != "" {
		t := &tokens{c: c}
		c.tokens = t
		auth = []grpc.DialOption{grpc.WithPerRPCCredentials(t), grpc.WithChainUnaryInterceptor(apierr.MarkUnsent, t.unary)}
	}
	c.watches = newWatchHub(c)
	c.keepAlives = newKeepAlives(c)
	c.pool = opstream.NewPool(opstream.PoolConfig[*kvv1.StreamOp, *kvv1.StreamResult]{
		DialOptions: append([]grpc.DialOption{
			grpc.WithTransportCredentials(creds),
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff: backoff.Config{
					BaseDelay:  100 * time.Millisecond,
					Multiplier: 1.6,
					Jitter:     0.2,
					MaxDelay:   2 * time.Second,
				},
				MinConnectTimeout: cfg.DialTimeout,
			}),
		}, append(auth, cfg.DialOptions...)...),
		DialTimeout: cfg.DialTimeout,
		Open:        openStream,
		LastError:   creds.LastError,
	})
	return c, nil
}

// Endpoints returns a copy of the client's endpoints as host:port, without
// their scheme.
func (c *Client) Endpoints() []string { return slices.Clone(c.cfg.Endpoints) }

// Close closes every connection. Calls in flight fail, later calls return
// ErrClosed, and every watch channel closes. Close is idempotent.
func (c *Client) Close() error {
	if c.closed.Swap(true) {
		return nil
	}
	c.watches.close()
	c.keepAlives.close()
	if err := c.pool.Close(); err != nil {
		return fmt.Errorf("client: %w", err)
	}
	return nil
}

// ready returns the endpoint's connection once it is READY (see
// opstream.Pool.Ready: a *opstream.NotReadyError, not applied, when it does
// not become ready within Config.DialTimeout or the last attempt failed).
func (c *Client) ready(ctx context.Context, endpoint string) (*grpc.ClientConn, error) {
	cc, err := c.pool.Ready(ctx, endpoint)
	if errors.Is(err, opstream.ErrClosed) {
		return nil, ErrClosed
	}
	return cc, err
}
