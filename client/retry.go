package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/internal/opstream"
	"github.com/kvd-io/kvd/internal/tlsconfig"
)

// rpcKind says whether a call may change the store, which decides what is
// safe to retry.
type rpcKind int

const (
	kindRead rpcKind = iota + 1
	kindWrite
)

// rpcFunc sends one request on one connection.
type rpcFunc func(ctx context.Context, cc grpc.ClientConnInterface) error

// invoke runs call on the endpoints' connections in turn, as retry does.
func (c *Client) invoke(ctx context.Context, kind rpcKind, call rpcFunc) error {
	return c.retry(ctx, kind, func(ctx context.Context, endpoint string) error {
		return c.try(ctx, endpoint, call)
	})
}

// try sends call to endpoint once its connection is ready.
func (c *Client) try(ctx context.Context, endpoint string, call rpcFunc) error {
	cc, err := c.ready(ctx, endpoint)
	if err != nil {
		return err
	}
	return call(ctx, cc)
}

// attemptFunc sends one request to one endpoint.
type attemptFunc func(ctx context.Context, endpoint string) error

// retry runs attempt on the endpoints in turn, starting with the one that
// last answered, following the retry policy in the package documentation.
// When every endpoint refused the TLS handshake over a certificate, it
// returns that error at once: no retry can cure it.
func (c *Client) retry(ctx context.Context, kind rpcKind, attempt attemptFunc) error {
	return c.retryLoop(ctx, kind, "", true, attempt)
}

// retryAvoiding is retry, but in each round it tries the endpoint avoid (one
// that just failed, such as the member under a watch stream that broke)
// last rather than first, so that the call moves to another member when
// there is one. It keeps trying when certificates are refused: the watches
// and keep-alives that use it outlive a certificate mistake that an
// operator fixes by replacing the files.
func (c *Client) retryAvoiding(ctx context.Context, kind rpcKind, avoid string, attempt attemptFunc) error {
	return c.retryLoop(ctx, kind, avoid, false, attempt)
}

func (c *Client) retryLoop(ctx context.Context, kind rpcKind, avoid string, failOnRefusedCert bool, attempt attemptFunc) error {
	if c.closed.Load() {
		return ErrClosed
	}
	wait := c.cfg.RetryBackoff
	var lastErr error
	for {
		var refused error // the first certificate refusal of this round
		refusals := 0
		start := int(c.pinned.Load())
		if avoid != "" && c.cfg.Endpoints[start] == avoid {
			start = (start + 1) % len(c.cfg.Endpoints)
		}
		for i := range c.cfg.Endpoints {
			idx := (start + i) % len(c.cfg.Endpoints)
			err := attempt(ctx, c.cfg.Endpoints[idx])
			if err == nil {
				c.pinned.Store(int64(idx))
				return nil
			}
			if !retryable(err, kind) {
				if ctxErr := ended(ctx); ctxErr != nil {
					return interrupted(ctxErr, kind, err)
				}
				return err
			}
			if ctx.Err() != nil {
				return giveUp(ctx, err)
			}
			lastErr = err
			if tlsconfig.CertificateRefused(err) {
				refusals++
				if refused == nil {
					refused = err
				}
			}
		}
		if failOnRefusedCert && refusals == len(c.cfg.Endpoints) {
			return &CertificateError{Endpoints: len(c.cfg.Endpoints), Err: refused}
		}
		// Every endpoint failed in a retryable way: no leader, or nothing is
		// reachable. Wait, then go round again until ctx ends.
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return giveUp(ctx, lastErr)
		case <-t.C:
		}
		wait = min(2*wait, c.cfg.MaxRetryBackoff)
	}
}

// CertificateError is returned by a request when every endpoint refused the
// TLS handshake over a certificate (an unknown CA, an expired certificate,
// a wrong name, a client certificate the members do not accept): the
// client gives up at once rather than retrying until the context ends,
// since trying again with the same certificates cannot succeed. Err is the
// first endpoint's failure, with a hint of what to check; it wraps the
// crypto/tls or crypto/x509 error. Nothing was sent, so nothing was applied.
type CertificateError struct {
	Endpoints int
	Err       error
}

func (e *CertificateError) Error() string {
	if e.Endpoints == 1 {
		return "client: TLS certificate refused: " + e.Err.Error()
	}
	return fmt.Sprintf("client: TLS certificate refused by all %d endpoints: %s", e.Endpoints, e.Err.Error())
}

func (e *CertificateError) Unwrap() error { return e.Err }

// giveUp is the error of a call whose context ended while it was retrying.
func giveUp(ctx context.Context, lastErr error) error {
	if lastErr == nil {
		return fmt.Errorf("client: %w", ctx.Err())
	}
	return fmt.Errorf("client: %w; last error: %w", ctx.Err(), lastErr)
}

// interrupted is the error of an attempt that the caller's context cut short
// while the request was in flight. It wraps both the context's error and the
// gRPC error.
func interrupted(ctxErr error, kind rpcKind, err error) error {
	if kind == kindWrite {
		return fmt.Errorf("client: %w while the write was in flight, so it may have been applied: %w", ctxErr, err)
	}
	return fmt.Errorf("client: %w: %w", ctxErr, err)
}

// ended returns ctx's error, or context.DeadlineExceeded when ctx's deadline
// has passed but its timer has not fired yet: the server, which got the
// deadline with the request, may notice first.
func ended(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
		return context.DeadlineExceeded
	}
	return nil
}

// retryable reports whether a request of kind that failed with err may be sent
// to another endpoint.
func retryable(err error, kind rpcKind) bool {
	if errors.Is(err, ErrClosed) {
		return false
	}
	var nr *opstream.NotReadyError
	if errors.As(err, &nr) {
		return true // nothing was sent
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists,
		codes.PermissionDenied, codes.FailedPrecondition, codes.OutOfRange,
		codes.Unimplemented, codes.Unauthenticated, codes.Canceled,
		codes.DeadlineExceeded:
		// The request itself is at fault, or the caller gave up.
		return false
	case codes.Unavailable:
		return kind == kindRead || apierr.IsNotApplied(err)
	default:
		return apierr.IsNotApplied(err)
	}
}
