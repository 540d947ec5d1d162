package opstream

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
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
)

// ErrClosed is returned by a Pool after Close.
var ErrClosed = errors.New("connection pool closed")

// PoolConfig configures a Pool.
type PoolConfig[Op, Res any] struct {
	// DialOptions are given to every connection (credentials, keepalive,
	// interceptors, backoff).
	DialOptions []grpc.DialOption
	// DialTimeout bounds Ready's wait for a connection. Required.
	DialTimeout time.Duration
	// Open opens the shared stream on cc, to target (the address, named in
	// errors). Required for Stream.
	Open func(cc *grpc.ClientConn, target string) (*Mux[Op, Res], error)
	// LastError, when set, says why the last attempt to connect to addr
	// failed (a refused TLS handshake, say), nil if it is not known; it
	// becomes the cause of a NotReadyError.
	LastError func(addr string) error
	// RetireGrace is how long a connection that Reset replaced stays open
	// for the calls already on it; zero means DefaultRetireGrace.
	RetireGrace time.Duration
}

// DefaultRetireGrace outlasts a request's deadline (the member's request
// timeout, 5 s by default), so that the calls on a replaced connection end
// by their own answer or deadline rather than by its closing.
const DefaultRetireGrace = 30 * time.Second

// Pool keeps one gRPC connection per address, dialed when first needed,
// and on each connection the stream its calls share. It is safe for
// concurrent use.
type Pool[Op, Res any] struct {
	cfg PoolConfig[Op, Res]

	mu   sync.Mutex
	ends map[string]*endpoint[Op, Res]
	// retired are the endpoints Reset replaced, each closed by its timer
	// once its grace is over (or by Close).
	retired map[*endpoint[Op, Res]]*time.Timer
	closed  bool
}

// endpoint is one address's connection and stream.
type endpoint[Op, Res any] struct {
	cc       *grpc.ClientConn
	stream   *Mux[Op, Res]
	retiring []*Mux[Op, Res] // replaced while they still answered ops
	noStream bool            // the address answered Unimplemented to a stream
}

// NewPool returns an empty pool.
func NewPool[Op, Res any](cfg PoolConfig[Op, Res]) *Pool[Op, Res] {
	if cfg.RetireGrace == 0 {
		cfg.RetireGrace = DefaultRetireGrace
	}
	return &Pool[Op, Res]{cfg: cfg, ends: map[string]*endpoint[Op, Res]{}, retired: map[*endpoint[Op, Res]]*time.Timer{}}
}

// endLocked returns addr's endpoint with a connection, dialing (lazily) when
// it has none. The caller holds p.mu.
func (p *Pool[Op, Res]) endLocked(addr string) (*endpoint[Op, Res], error) {
	if p.closed {
		return nil, ErrClosed
	}
	e := p.ends[addr]
	if e == nil {
		e = &endpoint[Op, Res]{}
		p.ends[addr] = e
	}
	if e.cc == nil {
		cc, err := grpc.NewClient(addr, p.cfg.DialOptions...)
		if err != nil {
			return nil, fmt.Errorf("dial %q: %w", addr, err)
		}
		e.cc = cc
	}
	return e, nil
}

// Conn returns addr's connection, without waiting for it to be ready.
func (p *Pool[Op, Res]) Conn(addr string) (*grpc.ClientConn, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, err := p.endLocked(addr)
	if err != nil {
		return nil, err
	}
	return e.cc, nil
}

// Ready returns addr's connection once it is READY. It waits at most the
// dial timeout, and returns a *NotReadyError at once when the last attempt
// to connect failed (TRANSIENT_FAILURE): the address is down for now, and
// the caller should try another or say so. When it fails, nothing was sent.
func (p *Pool[Op, Res]) Ready(ctx context.Context, addr string) (*grpc.ClientConn, error) {
	cc, err := p.Conn(addr)
	if err != nil {
		return nil, err
	}
	if cc.GetState() == connectivity.Ready {
		return cc, nil
	}
	wctx, cancel := context.WithTimeout(ctx, p.cfg.DialTimeout)
	defer cancel()
	for {
		s := cc.GetState()
		switch s {
		case connectivity.Ready:
			return cc, nil
		case connectivity.TransientFailure:
			cc.Connect() // keep reconnecting in the background
			return nil, &NotReadyError{Target: addr, Reason: "connection failed", Cause: p.lastError(addr)}
		case connectivity.Shutdown:
			return nil, ErrClosed
		case connectivity.Idle:
			cc.Connect()
		}
		if !cc.WaitForStateChange(wctx, s) {
			if err := ctx.Err(); err != nil {
				return nil, &NotReadyError{Target: addr, Reason: "gave up waiting", Cause: err}
			}
			return nil, &NotReadyError{Target: addr, Reason: fmt.Sprintf("still %s after the dial timeout of %v", s, p.cfg.DialTimeout), Cause: p.lastError(addr)}
		}
	}
}

func (p *Pool[Op, Res]) lastError(addr string) error {
	if p.cfg.LastError == nil {
		return nil
	}
	return p.cfg.LastError(addr)
}

// Stream returns the stream calls to addr share, opening one on addr's
// connection when there is none or the last one closed. When it fails,
// nothing was sent: the error is an Unavailable marked not applied, or
// ErrNotServed once the address has answered that it serves no stream.
func (p *Pool[Op, Res]) Stream(addr string) (*Mux[Op, Res], error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, err := p.endLocked(addr)
	if err != nil {
		return nil, err
	}
	if e.noStream {
		return nil, ErrNotServed
	}
	if e.stream != nil {
		if e.stream.Usable() {
			return e.stream, nil
		}
		// A draining stream still answers what it sent; keep it until then.
		e.retiring = slices.DeleteFunc(append(e.retiring, e.stream), (*Mux[Op, Res]).Ended)
		e.stream = nil
	}
	m, err := p.cfg.Open(e.cc, addr)
	if err != nil {
		return nil, apierr.NotApplied(codes.Unavailable, fmt.Sprintf("request not sent to %s: open stream: %v", addr, err))
	}
	e.stream = m
	return m, nil
}

// NotServed records that addr serves no stream, so that its calls go as
// unary calls.
func (p *Pool[Op, Res]) NotServed(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.ends[addr]; e != nil {
		e.noStream = true
	}
}

// Reset replaces addr's connection after a call on it failed in a way that
// may mean the connection itself is dead, so that the next call dials anew:
// after a partition heals, a fresh connection works at once, while the old
// one may still be stuck. The old connection and its stream stay open for
// RetireGrace, for the calls already on them: when the failure was one
// slow call on a healthy connection (a timed-out probe on a loaded
// machine), the other callers' forwarded writes still get their answers
// instead of an unknown outcome.
func (p *Pool[Op, Res]) Reset(addr string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	e := p.ends[addr]
	if e == nil {
		return
	}
	delete(p.ends, addr)
	p.retired[e] = time.AfterFunc(p.cfg.RetireGrace, func() {
		p.mu.Lock()
		_, ok := p.retired[e]
		delete(p.retired, e)
		p.mu.Unlock()
		if ok {
			_ = e.close()
		}
	})
}

// Close closes every connection; calls in flight fail, later ones get
// ErrClosed. Close is idempotent.
func (p *Pool[Op, Res]) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	var errs []error
	for e, t := range p.retired {
		t.Stop()
		_ = e.close() // replaced already: its errors say nothing new
		delete(p.retired, e)
	}
	for addr, e := range p.ends {
		if err := e.close(); err != nil {
			errs = append(errs, fmt.Errorf("close connection to %q: %w", addr, err))
		}
		delete(p.ends, addr)
	}
	return errors.Join(errs...)
}

func (e *endpoint[Op, Res]) close() error {
	for _, s := range append(e.retiring, e.stream) {
		if s != nil {
			s.Close()
		}
	}
	e.stream, e.retiring = nil, nil
	if e.cc == nil {
		return nil
	}
	err := e.cc.Close()
	e.cc = nil
	return err
}

// NotReadyError reports that a call was not sent because the connection to
// its target did not become ready. Nothing was sent, so it is an Unavailable
// marked not applied.
type NotReadyError struct {
	Target string
	Reason string
	Cause  error // the context error that ended the wait, or why connecting failed, if known
}

func (e *NotReadyError) Error() string {
	msg := fmt.Sprintf("endpoint %q is not ready: %s", e.Target, e.Reason)
	if e.Cause != nil {
		msg += ": " + e.Cause.Error()
	}
	return msg
}

func (e *NotReadyError) Unwrap() error { return e.Cause }

// GRPCStatus lets status.Code and apierr.IsNotApplied see the error as an
// Unavailable that certainly was not applied.
func (e *NotReadyError) GRPCStatus() *status.Status {
	return status.Convert(apierr.NotApplied(codes.Unavailable, e.Error()))
}
