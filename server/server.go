package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/test/bufconn"

	"github.com/kvd-io/kvd/console"
	"github.com/kvd-io/kvd/etcdapi"
	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/auth"
	"github.com/kvd-io/kvd/internal/memberid"
	"github.com/kvd-io/kvd/internal/peer"
	"github.com/kvd-io/kvd/internal/workers"
	"github.com/kvd-io/kvd/member"
	"github.com/kvd-io/kvd/observe"
	"github.com/kvd-io/kvd/rpc"
)

// Server is one running member and the API it serves. New starts it;
// Shutdown stops it.
type Server struct {
	cfg        Config
	log        *slog.Logger
	clientAddr string // advertised

	member *member.Member
	// memberRef is member for the member token of outgoing calls, which
	// may start before New has returned the member.
	memberRef atomic.Pointer[member.Member]
	peers     *peer.Peers
	workers   *workers.Pool
	metrics   *observe.Metrics
	observe   *observe.Server
	grpc      *grpc.Server
	// console and uiGRPC serve the web console: uiGRPC is the same API as
	// grpc, served in process to the console's clients only (see
	// startConsole).
	console  *console.Console
	uiGRPC   *grpc.Server
	uiDone   chan struct{}
	listener net.Listener

	// ctx ends when Shutdown stops the server's own loops (the workers and
	// the health watcher).
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	stopOnce sync.Once
	stopErr  error
}

// MemberID derives a member's id from its name, so that every member computes
// the same id for a name without coordination.
func MemberID(name string) uint64 { return memberid.FromName(name) }

// workerCount is the number of goroutines that serve gRPC requests, and the
// number that run the callbacks of proposals, reads and stream ops. More
// concurrent requests than this still get goroutines of their own.
const workerCount = 256

// grpcOverheadBytes is allowed above MaxRequestBytes at the gRPC layer, so
// that a slightly oversized request reaches the API's own check and gets a
// clear InvalidArgument rather than gRPC's ResourceExhausted.
const grpcOverheadBytes = 512 * 1024

// New opens the member's data directory, starts raft (bootstrapping a new
// cluster when the directory is empty) and serves the API.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	s := &Server{cfg: cfg, log: cfg.Logger, workers: workers.New()}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if err := s.start(); err != nil {
		s.stopConsole()
		s.cancel()
		s.wg.Wait()
		s.closeResources()
		return nil, err
	}
	return s, nil
}

func (s *Server) start() error {
	var err error
	if s.listener, err = net.Listen("tcp", s.cfg.ClientAddr); err != nil {
		return fmt.Errorf("listen on client address: %w", err)
	}
	s.clientAddr = s.cfg.AdvertiseClientAddr
	if s.clientAddr == "" {
		if tcp, ok := s.listener.Addr().(*net.TCPAddr); ok && tcp.IP.IsUnspecified() {
			return errors.New("client address listens on all interfaces: set an advertised client address other members and clients can reach")
		}
		s.clientAddr = s.listener.Addr().String()
	}
	tlsSet, err := newTLSSetup(s.cfg, s.log.With("member", s.cfg.Name))
	if err != nil {
		return err
	}
	for range workerCount {
		s.goLoop(func() { s.workers.Run(s.ctx) })
	}
	mcfg := s.cfg.Config
	mcfg.AdvertiseClientAddr = s.clientAddr
	mcfg.RaftTLS = tlsSet.raft
	// Peers wait for a connection as long as a request waits for a leader.
	pcfg := peer.Config{DialTimeout: 2*mcfg.ElectionTimeout + mcfg.HeartbeatTimeout}
	if tlsSet.memberDial != nil {
		pcfg.DialOptions = append(pcfg.DialOptions, tlsSet.memberDial)
		pcfg.LastError = tlsSet.memberDialErr
	}
	// Members prove themselves to each other with the member token when
	// no peer certificate does (see rpc.Config.PeerCAs).
	pcfg.DialOptions = append(pcfg.DialOptions, grpc.WithPerRPCCredentials(memberCreds{m: &s.memberRef}))
	var tokenKey []byte
	if f := s.cfg.Auth.TokenKeyFile; f != "" {
		if tokenKey, err = auth.ReadKeyFile(f); err != nil {
			return err
		}
	}
	s.peers, err = peer.New(pcfg)
	if err != nil {
		return err
	}
	s.metrics = observe.NewMetrics(nil)
	s.member, err = member.New(mcfg, member.Deps{Peers: s.peers, Workers: s.workers, Observer: s.metrics})
	if err != nil {
		return err
	}
	s.memberRef.Store(s.member)
	s.metrics.AddSource(s.member)
	api, err := rpc.New(rpc.Config{
		MaxRequestBytes: s.cfg.MaxRequestBytes, MaxTxnOps: s.cfg.MaxTxnOps, Version: s.cfg.Version, Workers: s.workers, Metrics: s.metrics,
		TokenKey: tokenKey, TokenTTL: s.cfg.Auth.TokenTTL, BcryptCost: s.cfg.Auth.BcryptCost,
		ClientCertAuth: s.cfg.ClientTLS.ClientCertAuth, PeerCAs: tlsSet.peerCAs,
		Statuses: etcdapi.Statuses(),
	}, s.member, s.peers)
	if err != nil {
		return err
	}
	opts := []grpc.ServerOption{
		grpc.MaxRecvMsgSize(s.cfg.MaxRequestBytes + grpcOverheadBytes),
		// Members ping each other's connections (see package peer).
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		// The metrics interceptors come first, so that they see the final
		// status.
		grpc.ChainUnaryInterceptor(s.metrics.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(s.metrics.StreamServerInterceptor()),
		// gRPC otherwise starts a goroutine per request, whose stack then
		// grows (copied) on every call: that was 16% of a member's CPU
		// under serializable gets. Workers keep their grown stacks.
		grpc.NumStreamWorkers(workerCount),
	}
	if tlsSet.grpcCreds != nil {
		opts = append(opts, tlsSet.grpcCreds)
	}
	s.grpc = grpc.NewServer(append(opts, api.ServerOptions()...)...)
	api.Register(s.grpc)
	// etcd's v3 API on the same port, through the same interceptors.
	eapi, err := etcdapi.New(api.Local(), etcdapi.Config{
		EtcdVersion: s.cfg.EtcdVersion, ClientTLS: s.cfg.ClientTLS.CertFile != "", PeerTLS: s.cfg.PeerTLS.CertFile != "",
	})
	if err != nil {
		return err
	}
	eapi.Register(s.grpc)
	healthSrv := health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, healthSrv)
	if s.cfg.HTTPAddr != "" {
		ocfg := observe.Config{Addr: s.cfg.HTTPAddr, Logger: s.log.With("member", s.cfg.Name), TLS: tlsSet.http}
		if s.cfg.UI.Enabled {
			if err := s.startConsole(api, tlsSet); err != nil {
				return err
			}
			ocfg.UI = s.console.Handler()
		}
		if s.observe, err = observe.NewServer(ocfg, s.member, s.metrics); err != nil {
			return fmt.Errorf("start metrics listener: %w", err)
		}
	}
	lis := s.listener
	s.goLoop(func() { _ = s.grpc.Serve(lis) })
	s.goLoop(func() {
		rpc.WatchHealth(s.ctx, healthSrv, func() bool { return s.member.KnownLeader() && s.member.Err() == nil })
	})
	return nil
}

// startConsole starts the web console. Its handlers call the member's API
// through the Go client, each user with their own token, over an
// in-process listener served by a second gRPC server with the same
// services and the same interceptors (authorization, admission, metrics)
// as the client port. In process, so that the console needs no client
// certificate of its own when the client port requires one: presenting
// the member's own would make its calls a member's, which authorization
// trusts beyond any user.
func (s *Server) startConsole(api *rpc.API, tlsSet *tlsSetup) error {
	lis := bufconn.Listen(consoleConnBuffer)
	s.uiGRPC = grpc.NewServer(append([]grpc.ServerOption{
		grpc.MaxRecvMsgSize(s.cfg.MaxRequestBytes + grpcOverheadBytes),
		grpc.ChainUnaryInterceptor(s.metrics.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(s.metrics.StreamServerInterceptor()),
	}, api.ServerOptions()...)...)
	api.Register(s.uiGRPC)
	s.uiDone = make(chan struct{})
	go func() {
		defer close(s.uiDone)
		_ = s.uiGRPC.Serve(lis)
	}()
	var peers []grpc.DialOption
	if tlsSet.memberDial != nil {
		peers = append(peers, tlsSet.memberDial)
	}
	var err error
	s.console, err = console.New(console.Config{
		MemberName: s.cfg.Name,
		API: console.Dialer{Endpoint: s.clientAddr, DialOptions: []grpc.DialOption{
			grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		}},
		Peers:         peers,
		ReadOnly:      s.cfg.UI.ReadOnly,
		Metrics:       s.metrics.Gatherer(),
		SecureCookies: tlsSet.http != nil,
		Logger:        s.log.With("member", s.cfg.Name),
	})
	if err != nil {
		return fmt.Errorf("start the console: %w", err)
	}
	return nil
}

// consoleConnBuffer is the buffer of each in-process connection of the
// console to the API.
const consoleConnBuffer = 256 << 10

// stopConsole ends the console's pages' streams and sessions and stops its
// gRPC server; it is safe when the console is off or partly started.
func (s *Server) stopConsole() {
	if s.console != nil {
		if err := s.console.Close(); err != nil {
			s.log.Debug("console closed with an error", "error", err)
		}
	}
	if s.uiGRPC != nil {
		s.uiGRPC.Stop()
		<-s.uiDone
	}
}

// goLoop runs fn on a goroutine that Shutdown waits for.
func (s *Server) goLoop(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

// Name returns the member's name.
func (s *Server) Name() string { return s.cfg.Name }

// ID returns the member's id.
func (s *Server) ID() uint64 { return s.member.ID() }

// ClientAddr returns the advertised address of the member's gRPC API.
func (s *Server) ClientAddr() string { return s.clientAddr }

// RaftAddr returns the advertised address of the member's raft transport.
func (s *Server) RaftAddr() string { return s.member.RaftAddr() }

// HTTPAddr returns the address of the metrics and probes listener, empty when
// it is off.
func (s *Server) HTTPAddr() string {
	if s.observe == nil {
		return ""
	}
	return s.observe.Addr()
}

// IsLeader reports whether the member is the raft leader.
func (s *Server) IsLeader() bool { return s.member.IsLeader() }

// Member returns the member the server serves.
func (s *Server) Member() *member.Member { return s.member }

// FSM returns the member's state machine, for tests and tools that compare
// members' states.
func (s *Server) FSM() *fsm.FSM { return s.member.FSM() }

// Raft returns the member's raft node, for tests and operational tooling.
func (s *Server) Raft() *raft.Raft { return s.member.Raft() }

// Done is closed when the member stops serving on its own, because it was
// removed from the cluster (member.ErrRemoved) or its join was refused
// (member.ErrJoinRefused); Err then says why. The owner should call
// Shutdown.
func (s *Server) Done() <-chan struct{} { return s.member.Done() }

// Err returns why the member stopped serving on its own, nil while it serves.
func (s *Server) Err() error { return s.member.Err() }

// Shutdown stops the member without failing a client request that can be
// retried elsewhere: the member drains (it refuses new proposals as not
// applied, waits for those in flight, and hands leadership to another voter;
// streams tell their clients to move on); the server stops accepting
// requests and lets the ones in flight finish; then the member stops raft
// and closes its files. When ctx ends, the remaining steps are cut short.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.member.Drain(ctx)
		// Let in-flight requests finish while raft and the loops they wait
		// on still run; only then stop the member.
		done := make(chan struct{})
		go func() { s.grpc.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
			s.grpc.Stop()
			<-done
		}
		// The console's streams last as long as their pages: end them
		// first, or the HTTP server's shutdown would wait for them.
		s.stopConsole()
		if s.observe != nil {
			if err := s.observe.Shutdown(ctx); err != nil {
				s.stopErr = errors.Join(s.stopErr, fmt.Errorf("stop metrics listener: %w", err))
			}
		}
		s.stopErr = errors.Join(s.stopErr, s.member.Shutdown(ctx))
		s.cancel()
		s.wg.Wait()
		s.closeResources()
	})
	return s.stopErr
}

// closeResources closes what start opened and the member does not own; it
// is safe on a partly started server.
func (s *Server) closeResources() {
	if s.peers != nil {
		_ = s.peers.Close()
	}
	if s.listener != nil && s.grpc == nil {
		_ = s.listener.Close()
	}
}

var _ observe.Source = (*member.Member)(nil)
