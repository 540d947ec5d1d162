package observe

import (
	"context"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// UnaryServerInterceptor returns an interceptor that counts each unary call
// in kvd_grpc_requests_total{method,code} and times it in
// kvd_grpc_request_duration_seconds{method}, method being the full method
// name ("/kv.v1.KVService/Put") and code the gRPC status code ("OK").
func (m *Metrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	if m == nil {
		return func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			return handler(ctx, req)
		}
	}
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		m.grpc.observe(info.FullMethod, time.Since(start), err)
		return resp, err
	}
}

// StreamServerInterceptor returns an interceptor that records streaming calls
// as UnaryServerInterceptor records unary ones; a stream's duration is its
// whole life.
func (m *Metrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	if m == nil {
		return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			return handler(srv, ss)
		}
	}
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		m.grpc.observe(info.FullMethod, time.Since(start), err)
		return err
	}
}

// ObserveRequest records one request served outside a unary call (an op on
// KVService.Stream) as if it were a call of method, the full name of the
// unary method of the same kind, so that the request metrics count every
// request once whichever way it came. err is a gRPC status error or nil.
func (m *Metrics) ObserveRequest(method string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.grpc.observe(method, d, err)
}

// numCodes is the number of gRPC status codes (OK to Unauthenticated).
const numCodes = int(codes.Unauthenticated) + 1

// grpcMetrics caches the label children of each method, so that a call looks
// them up without locking or allocating. The set of methods is bounded: gRPC
// rejects unknown methods before any interceptor runs.
type grpcMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec

	mu      sync.Mutex                                // serialises additions to methods
	methods atomic.Pointer[map[string]*methodMetrics] // copied on write, never changed in place
}

// methodMetrics holds one method's children; each code's counter is resolved
// on first use, so that only codes that occurred are exported.
type methodMetrics struct {
	method   string
	duration prometheus.Observer
	codes    [numCodes]atomic.Pointer[prometheus.Counter]
}

func newGRPCMetrics() *grpcMetrics {
	g := &grpcMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "kvd_grpc_requests_total",
			Help: "gRPC calls served, by full method name and status code.",
		}, []string{"method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "kvd_grpc_request_duration_seconds",
			Help:    "Time to serve a gRPC call (a stream's whole life), by full method name.",
			Buckets: latencyBuckets,
		}, []string{"method"}),
	}
	g.methods.Store(&map[string]*methodMetrics{})
	return g
}

func (g *grpcMetrics) observe(method string, d time.Duration, err error) {
	mm := g.method(method)
	mm.duration.Observe(d.Seconds())
	g.counter(mm, status.Code(err)).Inc()
}

func (g *grpcMetrics) method(name string) *methodMetrics {
	if mm := (*g.methods.Load())[name]; mm != nil {
		return mm
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	old := *g.methods.Load()
	if mm := old[name]; mm != nil {
		return mm
	}
	mm := &methodMetrics{method: name, duration: g.duration.WithLabelValues(name)}
	next := make(map[string]*methodMetrics, len(old)+1)
	maps.Copy(next, old)
	next[name] = mm
	g.methods.Store(&next)
	return mm
}

func (g *grpcMetrics) counter(mm *methodMetrics, code codes.Code) prometheus.Counter {
	if int(code) >= numCodes {
		return g.requests.WithLabelValues(mm.method, code.String())
	}
	if c := mm.codes[code].Load(); c != nil {
		return *c
	}
	// Two racing first calls both resolve the same child; either store wins.
	c := g.requests.WithLabelValues(mm.method, code.String())
	mm.codes[code].Store(&c)
	return c
}
