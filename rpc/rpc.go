// Package rpc serves kvd's gRPC API over a member (package member): the
// kv.v1 services clients call and the peer.v1 service members call. Each
// service sees the member through a small interface of its own (node.go),
// so that handlers can be tested with a fake.
//
// It is the only code that turns errors into gRPC statuses (errors.go):
// handlers return the member's errors, and one unary and one stream
// interceptor convert them at the return of every call; the ops of a stream
// are converted by one helper.
//
// Another API served on the same gRPC server (package etcdapi, etcd's v3
// API) does its work through Local, the kv.v1 services called in process
// with the same authorization and admission (local.go); its methods have
// the rule ruleDelegated, and its errors go through its own table
// (Config.Statuses) instead of kvd's.
package rpc

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/auth"
	"github.com/kvd-io/kvd/internal/workers"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	peerv1 "github.com/kvd-io/kvd/proto/peer/v1"
)

// Config configures the API.
type Config struct {
	// MaxRequestBytes bounds the encoded size of one request, or of one op
	// of a stream. Required.
	MaxRequestBytes int
	// MaxTxnOps bounds the compares and the operations of each branch of a
	// transaction (etcd's --max-txn-ops); zero means fsm.MaxTxnOps. At most
	// fsm.MaxTxnOpsLimit.
	MaxTxnOps int
	// Version is what Status reports.
	Version string
	// Workers runs the ops of streams off the receiving goroutine.
	// Required.
	Workers *workers.Pool
	// Metrics records the ops of streams as the calls they stand for; nil:
	// nobody does.
	Metrics Metrics

	// TokenKey signs and verifies tokens (HS256, at least 32 bytes; the
	// same on every member); nil means the cluster's secret, drawn when
	// auth was first enabled and replicated with the auth state.
	TokenKey []byte
	// TokenTTL is how long a token lasts; zero means auth.DefaultTokenTTL.
	TokenTTL time.Duration
	// BcryptCost is the cost of password hashes; zero means
	// auth.DefaultBcryptCost.
	BcryptCost int
	// ClientCertAuth makes a verified client certificate's common name the
	// user of a call that carries no token (--client-cert-auth).
	ClientCertAuth bool
	// PeerCAs, when set (TLS on the client port and on the peer port), are
	// the CAs of member certificates: a caller presenting one is a member.
	// Without it, members prove themselves with the member token, and the
	// member API is open to anyone until auth is first enabled.
	PeerCAs *x509.CertPool

	// Statuses turns the errors of another API served on the same gRPC
	// server (package etcdapi's etcd v3 API, over Local) into gRPC
	// statuses, in that API's words: the key is a prefix of the full
	// method names it serves, such as "/etcdserverpb.". Errors of every
	// method no prefix matches, those raised by the interceptors
	// (authorization, admission) included, go through kvd's table
	// (ToStatus). Nil: kvd's table for every method.
	Statuses map[string]func(error) error
}

func (c Config) maxTxnOps() int {
	if c.MaxTxnOps == 0 {
		return fsm.MaxTxnOps
	}
	return c.MaxTxnOps
}

// Metrics records requests. *observe.Metrics implements it.
type Metrics interface {
	// ObserveRequest records one request of method (a unary method's full
	// name) that took d and ended with err (a gRPC status, or nil).
	ObserveRequest(method string, d time.Duration, err error)
}

// Validate reports what is wrong with the config.
func (c Config) Validate() error {
	if c.MaxRequestBytes <= 0 {
		return errors.New("rpc: max request bytes must be positive")
	}
	if c.Workers == nil {
		return errors.New("rpc: Workers is required")
	}
	if len(c.TokenKey) > 0 && len(c.TokenKey) < 32 {
		return fmt.Errorf("rpc: token key of %d bytes: want at least 32", len(c.TokenKey))
	}
	if c.TokenTTL < 0 {
		return fmt.Errorf("rpc: token TTL %v: want positive", c.TokenTTL)
	}
	if c.BcryptCost != 0 && (c.BcryptCost < bcrypt.MinCost || c.BcryptCost > bcrypt.MaxCost) {
		return fmt.Errorf("rpc: bcrypt cost %d: want %d to %d", c.BcryptCost, bcrypt.MinCost, bcrypt.MaxCost)
	}
	if c.MaxTxnOps < 0 || c.MaxTxnOps > fsm.MaxTxnOpsLimit {
		return fmt.Errorf("rpc: max txn ops %d: want 1 to %d", c.MaxTxnOps, fsm.MaxTxnOpsLimit)
	}
	for prefix, fn := range c.Statuses {
		if !strings.HasPrefix(prefix, "/") || fn == nil {
			return fmt.Errorf("rpc: statuses for %q: want a method prefix starting with / and a function", prefix)
		}
	}
	return nil
}

// LeaderConns gives a connection to the leader, so that a follower can pass
// on a membership request only the leader can serve. *peer.Peers implements
// it.
type LeaderConns interface {
	Conn(ctx context.Context, addr string) (*grpc.ClientConn, error)
}

// API is the member's gRPC services.
type API struct {
	cfg   Config
	node  Node
	conns LeaderConns
	adm   admission
	authz *authz

	// The services, shared by Register and Local.
	kv          *kvService
	cluster     *clusterService
	maintenance *maintenanceService
	peer        *peerService
	watch       *watchService
	auth        *authService
	lease       *leaseService
	lock        *lockService
	election    *electionService
}

// New returns the API of node; Register serves it.
func New(cfg Config, node Node, conns LeaderConns) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Metrics == nil {
		cfg.Metrics = nopMetrics{}
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = auth.DefaultTokenTTL
	}
	if cfg.BcryptCost == 0 {
		cfg.BcryptCost = auth.DefaultBcryptCost
	}
	a := &API{
		cfg: cfg, node: node, conns: conns,
		adm:   admission{maxBytes: cfg.MaxRequestBytes, err: node.Err},
		authz: &authz{node: node, cfg: cfg, now: time.Now},
	}
	a.kv = &kvService{node: node, cfg: cfg, adm: a.adm, authz: a.authz}
	a.cluster = &clusterService{node: node, conns: conns}
	a.maintenance = &maintenanceService{node: node, version: cfg.Version}
	a.peer = &peerService{node: node, cfg: cfg, adm: a.adm}
	a.watch = &watchService{node: node, foreign: a.foreignStatus}
	a.auth = &authService{node: node, authz: a.authz, cfg: cfg, now: time.Now}
	a.lease = &leaseService{node: node, cfg: cfg}
	q := &queue{kv: a.kv, node: node}
	a.lock = &lockService{q: q}
	a.election = &electionService{q: q, authz: a.authz}
	return a, nil
}

// ServerOptions are the interceptors every call goes through, innermost
// last: wrap them with the metrics interceptors, so that those see the
// final status.
func (a *API) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(a.unaryErrors, a.authz.unary, a.adm.unary),
		grpc.ChainStreamInterceptor(a.streamErrors, a.authz.stream),
	}
}

// Register registers the services on s.
func (a *API) Register(s *grpc.Server) {
	kvv1.RegisterKVServiceServer(s, a.kv)
	kvv1.RegisterClusterServiceServer(s, a.cluster)
	kvv1.RegisterMaintenanceServiceServer(s, a.maintenance)
	peerv1.RegisterPeerServiceServer(s, a.peer)
	kvv1.RegisterWatchServiceServer(s, a.watch)
	kvv1.RegisterAuthServiceServer(s, a.auth)
	kvv1.RegisterLeaseServiceServer(s, a.lease)
	kvv1.RegisterLockServiceServer(s, a.lock)
	kvv1.RegisterElectionServiceServer(s, a.election)
}

type nopMetrics struct{}

func (nopMetrics) ObserveRequest(string, time.Duration, error) {}

// WatchHealth keeps the gRPC health service (grpc.health.v1) in step with
// serving, until ctx ends: SERVING while it reports true (a leader is known
// and the member serves), NOT_SERVING otherwise.
func WatchHealth(ctx context.Context, h *health.Server, serving func() bool) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if serving() {
			st = healthpb.HealthCheckResponse_SERVING
		}
		h.SetServingStatus("", st)
		h.SetServingStatus(kvv1.KVService_ServiceDesc.ServiceName, st)
		select {
		case <-ctx.Done():
			h.Shutdown()
			return
		case <-tick.C:
		}
	}
}
