package server

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"

	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/leadership"
	"github.com/kvd-io/kvd/internal/proposal"
	"github.com/kvd-io/kvd/internal/raftlog"
	"github.com/kvd-io/kvd/internal/readindex"
	"github.com/kvd-io/kvd/observe"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	peerv1 "github.com/kvd-io/kvd/proto/peer/v1"
)

// Server is one running member. New starts it; Shutdown stops it.
type Server struct {
	cfg        Config
	log        *slog.Logger
	id         uint64
	clientAddr string // advertised
	raftAddr   string // advertised

	fsm       *fsm.FSM
	raft      *raft.Raft
	logStore  *raftboltdb.BoltStore
	raftLog   *raftlog.Store            // over logStore; what raft writes its log through
	raftRef   atomic.Pointer[raft.Raft] // raft, for raftLog, which runs before NewRaft returns
	transport raft.Transport
	grpc      *grpc.Server
	listener  net.Listener
	peers     *peerPool
	reads     *readindex.Queue      // linearizable reads wait here for a read index
	confirm   *leadership.Confirmer // counts followers' answers for reads' leadership rounds
	workers   *workerPool
	buffer    *proposal.Buffer // every proposal of this member goes through it
	health    *prober
	metrics   *observe.Metrics
	observe   *observe.Server

	joining   bool // started with an empty data dir and Join set
	clusterID atomic.Uint64
	// readyTerm is the term whose LeaderStart command this member applied
	// as leader; linearizable reads need it to equal the current term.
	readyTerm atomic.Uint64
	leaderCh  chan bool

	// draining refuses new proposals while Shutdown waits for the ones in
	// flight, so that a restart loses no acknowledged write and fails none.
	proposals gate

	// done is closed when the member stops serving on its own (it was
	// removed from the cluster); doneErr says why.
	done     chan struct{}
	doneOnce sync.Once
	doneErr  error

	// draining is closed when Shutdown begins: streams tell their clients
	// to move on (see kvService.Stream).
	draining chan struct{}

	stop chan struct{} // closed by Shutdown; every loop below watches it
	// ctx is the member's lifetime: cancelled, with stop closed, by Shutdown.
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	stopOnce sync.Once
	stopErr  error
}

// MemberID derives a member's id from its name, so that every member computes
// the same id for a name without coordination.
func MemberID(name string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	return h.Sum64()
}

// New opens the member's data directory, starts raft (bootstrapping a new
// cluster when the directory is empty) and starts serving gRPC.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	s := &Server{
		cfg:      cfg,
		log:      cfg.Logger,
		id:       MemberID(cfg.Name),
		leaderCh: make(chan bool, 1),
		stop:     make(chan struct{}),
		draining: make(chan struct{}),
		done:     make(chan struct{}),
		workers:  newWorkerPool(),
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	var err error
	s.buffer, err = proposal.New(proposal.Config{
		Apply:     func(data []byte) raft.ApplyFuture { return s.raft.Apply(data, s.cfg.RequestTimeout) },
		Batchable: s.membersCanBatch,
		Observe:   func(n int) { s.metrics.ObserveEntry(n) }, // s.metrics is set in start
		Spawn:     s.workers.submit,
		Stopped:   ErrStopped,
	})
	if err != nil {
		return nil, err
	}
	s.reads, err = readindex.New(readindex.Config{
		Fetch:        s.fetchReadIndex,
		FetchTimeout: s.leaderWait(),
		Observe:      func(d time.Duration) { s.metrics.ObserveReadIndex(d) },
		Spawn:        s.workers.submit,
		Stopped:      ErrStopped,
	})
	if err != nil {
		return nil, err
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.log = s.log.With("member", cfg.Name)
	if err := s.start(); err != nil {
		s.cancel()
		s.closeResources()
		return nil, err
	}
	return s, nil
}

func (s *Server) start() error {
	if err := os.MkdirAll(s.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := checkNotRemoved(s.cfg.DataDir); err != nil {
		return err
	}
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
	s.metrics = observe.NewMetrics(source{s})
	if s.fsm, err = fsm.New(fsm.Config{Dir: s.cfg.DataDir, Logger: s.log, Observer: s.metrics}); err != nil {
		return err
	}
	if err := s.startRaft(); err != nil {
		return err
	}
	s.peers = newPeerPool(s.leaderWait())
	s.health = newProber(s)
	s.grpc = grpc.NewServer(
		grpc.MaxRecvMsgSize(s.cfg.MaxRequestBytes+grpcOverheadBytes),
		// Members ping each other's connections (see peerPool).
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.ChainUnaryInterceptor(s.metrics.UnaryServerInterceptor(), s.limitRequestSize),
		grpc.ChainStreamInterceptor(s.metrics.StreamServerInterceptor()),
		// gRPC otherwise starts a goroutine per request, whose stack then
		// grows (copied) on every call: that was 16% of a member's CPU
		// under serializable gets. Workers keep their grown stacks.
		grpc.NumStreamWorkers(streamWorkers),
	)
	kvv1.RegisterKVServiceServer(s.grpc, &kvService{s: s})
	kvv1.RegisterClusterServiceServer(s.grpc, &clusterService{s: s})
	kvv1.RegisterMaintenanceServiceServer(s.grpc, &maintenanceService{s: s})
	peerv1.RegisterPeerServiceServer(s.grpc, &peerService{s: s})
	healthSrv := health.NewServer()
	healthpb.RegisterHealthServer(s.grpc, healthSrv)
	if err := s.startObserve(); err != nil {
		return fmt.Errorf("start metrics listener: %w", err)
	}

	s.goLoop(func() { _ = s.grpc.Serve(s.listener) })
	s.goLoop(func() { s.reads.Run(s.ctx) })
	for range streamWorkers {
		s.goLoop(func() { s.workers.run(s.stop) })
	}
	s.goLoop(func() { s.buffer.Run(s.ctx) })
	s.goLoop(s.watchLeadership)
	s.goLoop(s.publishSelf)
	s.goLoop(s.health.run)
	s.goLoop(func() { s.watchHealth(healthSrv) })
	s.goLoop(s.watchRemoval)
	if s.joining {
		s.goLoop(s.join)
	}
	s.log.Info("member started", "client_addr", s.clientAddr, "raft_addr", s.raftAddr, "http_addr", s.HTTPAddr(),
		"data_dir", s.cfg.DataDir, "applied_index", s.fsm.AppliedIndex())
	return nil
}

// goLoop runs fn on a goroutine that Shutdown waits for.
func (s *Server) goLoop(fn func()) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		fn()
	}()
}

func (s *Server) startRaft() error {
	raftDir := filepath.Join(s.cfg.DataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return fmt.Errorf("create raft dir: %w", err)
	}
	var err error
	s.logStore, err = raftboltdb.New(raftboltdb.Options{
		Path: filepath.Join(raftDir, "raft.db"),
		// Every commit is fsynced; only the freelist is not written with
		// each one (bbolt rebuilds it when the file is opened).
		BoltOptions: &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType},
	})
	if err != nil {
		return fmt.Errorf("open raft log: %w", err)
	}
	// Everything reads and writes the log through raftLog: opening it
	// replays its journal into raft.db, so what comes next sees the whole
	// log.
	s.raftLog, err = raftlog.New(raftlog.Config{
		Log:     s.logStore,
		Dir:     raftDir,
		Leading: func() bool { r := s.raftRef.Load(); return r != nil && r.State() == raft.Leader },
		OnFailure: func(err error) {
			s.log.Error("cannot write the raft log; stopping", "error", err)
			panic(fmt.Sprintf("raft log: %v", err))
		},
		Observer: s.metrics,
	})
	if err != nil {
		return err
	}
	hlog := newRaftLogger(s.log)
	snaps, err := raft.NewFileSnapshotStoreWithLogger(s.cfg.DataDir, s.cfg.SnapshotRetain, hlog)
	if err != nil {
		return fmt.Errorf("open snapshot store: %w", err)
	}
	if s.cfg.RaftTransport != nil {
		s.transport = s.cfg.RaftTransport
	} else {
		s.transport, err = newTCPTransport(s.cfg.RaftAddr, s.cfg.AdvertiseRaftAddr, hlog)
		if err != nil {
			return fmt.Errorf("start raft transport: %w", err)
		}
	}
	s.raftAddr = string(s.transport.LocalAddr())

	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(s.cfg.Name)
	rc.HeartbeatTimeout = s.cfg.HeartbeatTimeout
	rc.ElectionTimeout = s.cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = s.cfg.LeaderLeaseTimeout
	rc.CommitTimeout = s.cfg.CommitTimeout
	rc.MaxAppendEntries = s.cfg.MaxAppendEntries
	rc.BatchApplyCh = true
	// The state machine keeps its applied index on disk with its data, so a
	// restart resumes from there instead of restoring the last snapshot and
	// re-applying everything after it.
	rc.NoSnapshotRestoreOnStart = true
	rc.NotifyCh = s.leaderCh
	rc.Logger = hlog
	rc.SnapshotThreshold = s.cfg.SnapshotThreshold
	rc.SnapshotInterval = s.cfg.SnapshotInterval
	rc.TrailingLogs = s.cfg.TrailingLogs
	// A removed member is told by the leader and stops on its own terms
	// (see watchRemoval); raft itself keeps running until Shutdown.
	rc.ShutdownOnRemove = false

	hasState, err := raft.HasExistingState(s.raftLog, s.logStore, snaps)
	if err != nil {
		return fmt.Errorf("inspect raft state: %w", err)
	}
	if err := s.catchUpFromSnapshot(snaps); err != nil {
		return err
	}
	switch {
	case hasState && s.cfg.ForceNewCluster:
		if err := s.forceNewCluster(rc, snaps); err != nil {
			return err
		}
	case hasState:
		if len(s.cfg.InitialCluster) > 0 || len(s.cfg.Join) > 0 {
			s.log.Info("data dir holds raft state: resuming, ignoring the initial cluster and join flags")
		}
	case s.cfg.ForceNewCluster:
		return fmt.Errorf("force new cluster needs an existing data dir; %s holds no raft state", s.cfg.DataDir)
	case s.fsm.AppliedIndex() > 0:
		return fmt.Errorf("%s holds applied state but the raft log is empty; refusing to bootstrap over it", filepath.Join(s.cfg.DataDir, fsm.StateFile))
	case len(s.cfg.Join) > 0 && (!s.foundingMember() || s.clusterExists()):
		// Start with no configuration: the leader brings this member in
		// once join has asked it to.
		s.joining = true
	default:
		if err := s.bootstrap(rc, snaps); err != nil {
			return err
		}
	}
	// Replication reads back the entries it just wrote; a cache of the
	// newest ones spares those reads from bbolt.
	logs, err := raft.NewLogCache(logCacheSize, s.raftLog)
	if err != nil {
		return fmt.Errorf("log cache: %w", err)
	}
	// The leader writes its log while it replicates it; the gated state
	// machine and transport keep anything from counting an entry as
	// committed before it is on the leader's disk (see package raftlog).
	// The confirmer sees every heartbeat and its answer, for linearizable
	// reads (see leaderReadIndex).
	s.confirm = leadership.New(func(term uint64) bool {
		return s.raft.State() == raft.Leader && s.raft.CurrentTerm() == term
	})
	s.raft, err = raft.NewRaft(rc, s.raftLog.FSM(s.fsm), logs, s.logStore, snaps, s.raftLog.Transport(s.confirm.Transport(s.transport)))
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	s.raftRef.Store(s.raft)
	return nil
}

// catchUpFromSnapshot restores the state machine from the newest snapshot
// when the state on disk is older than it (state.db lost or replaced). raft
// replays only the log after its newest snapshot, so without this the state
// would miss what lies between.
func (s *Server) catchUpFromSnapshot(snaps raft.SnapshotStore) error {
	list, err := snaps.List()
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	if len(list) == 0 || list[0].Index <= s.fsm.AppliedIndex() {
		return nil
	}
	s.log.Warn("state is older than the newest snapshot; restoring it", "applied_index", s.fsm.AppliedIndex(), "snapshot_index", list[0].Index)
	_, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", list[0].ID, err)
	}
	return s.fsm.Restore(rc)
}

func (s *Server) bootstrap(rc *raft.Config, snaps raft.SnapshotStore) error {
	var servers []raft.Server
	if len(s.cfg.InitialCluster) == 0 {
		servers = []raft.Server{{ID: rc.LocalID, Address: raft.ServerAddress(s.raftAddr), Suffrage: raft.Voter}}
	} else {
		for _, p := range s.cfg.InitialCluster {
			servers = append(servers, raft.Server{ID: raft.ServerID(p.Name), Address: raft.ServerAddress(p.RaftAddr), Suffrage: raft.Voter})
		}
	}
	s.log.Info("bootstrapping a new cluster", "voters", len(servers))
	if err := raft.BootstrapCluster(rc, s.raftLog, s.logStore, snaps, s.transport, raft.Configuration{Servers: servers}); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	return nil
}

// logCacheSize is how many of the newest log entries are kept in memory.
// Replication needs only the entries not yet sent, and under load an entry
// holds a batch of writes (up to proposal.MaxBatchBytes), so this bounds the cache at
// 64 MiB of batches.
const logCacheSize = 1024

// streamWorkers is the number of goroutines that serve gRPC requests, and
// the number that serve the ops of KVService.Stream. More concurrent requests
// than this still get goroutines of their own.
const streamWorkers = 256

// clusterExists asks the join addresses whether a cluster with a leader is
// already running. A founding member that starts with an empty data dir
// while its cluster runs has lost its disk: it must join, not found a second
// cluster under the same name. When the cluster is first created, no member
// answers with a leader yet, and the founders bootstrap.
func (s *Server) clusterExists() bool {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	probe := newPeerPool(time.Second)
	defer probe.Close()
	for _, addr := range s.cfg.Join {
		conn, err := probe.Ready(ctx, addr)
		if err != nil {
			continue
		}
		st, err := kvv1.NewMaintenanceServiceClient(conn).Status(ctx, &kvv1.StatusRequest{})
		if err == nil && st.GetLeaderName() != "" {
			s.log.Warn("a founding member with an empty data dir found its cluster running; joining it instead of founding a new one",
				"via", addr, "leader", st.GetLeaderName())
			return true
		}
	}
	return false
}

// foundingMember reports whether this member is named in InitialCluster.
// With both InitialCluster and Join set, founding members bootstrap and the
// others join: every member of a StatefulSet can get the same flags.
func (s *Server) foundingMember() bool {
	for _, p := range s.cfg.InitialCluster {
		if p.Name == s.cfg.Name {
			return true
		}
	}
	return false
}

// clusterIDFor derives the cluster id from a raft configuration, so that the
// founding members of a cluster agree on it without talking.
func clusterIDFor(cfg raft.Configuration) uint64 {
	parts := make([]string, 0, len(cfg.Servers))
	for _, srv := range cfg.Servers {
		parts = append(parts, string(srv.ID)+"="+string(srv.Address))
	}
	sort.Strings(parts)
	h := fnv.New64a()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{','})
	}
	return h.Sum64()
}

// Name returns the member's name.
func (s *Server) Name() string { return s.cfg.Name }

// ID returns the member's id.
func (s *Server) ID() uint64 { return s.id }

// ClientAddr returns the advertised address of the member's gRPC API.
func (s *Server) ClientAddr() string { return s.clientAddr }

// RaftAddr returns the advertised address of the member's raft transport.
func (s *Server) RaftAddr() string { return s.raftAddr }

// IsLeader reports whether the member is the raft leader.
func (s *Server) IsLeader() bool { return s.raft.State() == raft.Leader }

// FSM returns the member's state machine, for tests and tools that compare
// members' states.
func (s *Server) FSM() *fsm.FSM { return s.fsm }

// Raft returns the member's raft node, for tests and operational tooling.
func (s *Server) Raft() *raft.Raft { return s.raft }

// Shutdown stops the member without failing a client request that can be
// retried elsewhere: it refuses new proposals (as not applied) and waits for
// those in flight; when it leads a cluster of several voters it hands
// leadership to another voter; it stops accepting requests and lets the ones
// in flight finish; then it stops raft and closes its files. When ctx ends,
// the remaining steps are cut short.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopOnce.Do(func() {
		close(s.draining)
		s.drain(ctx)
		if s.raft != nil && s.IsLeader() && s.voters() > 1 {
			if err := s.raft.LeadershipTransfer().Error(); err != nil {
				s.log.Warn("leadership transfer before shutdown failed", "error", err)
			}
		}
		// Let in-flight requests finish while raft and the loops they wait
		// on still run; only then stop the loops.
		if s.grpc != nil {
			done := make(chan struct{})
			go func() { s.grpc.GracefulStop(); close(done) }()
			select {
			case <-done:
			case <-ctx.Done():
				s.grpc.Stop()
				<-done
			}
		}
		close(s.stop)
		s.cancel()
		if s.observe != nil {
			if err := s.observe.Shutdown(ctx); err != nil {
				s.stopErr = errors.Join(s.stopErr, fmt.Errorf("stop metrics listener: %w", err))
			}
		}
		if s.raft != nil {
			if err := s.raft.Shutdown().Error(); err != nil {
				s.stopErr = errors.Join(s.stopErr, fmt.Errorf("stop raft: %w", err))
			}
		}
		s.wg.Wait()
		s.stopErr = errors.Join(s.stopErr, s.closeResources())
		s.log.Info("member stopped")
	})
	return s.stopErr
}

// drain stops new proposals and waits (until ctx ends) for the ones in
// flight to be answered.
func (s *Server) drain(ctx context.Context) {
	select {
	case <-s.proposals.close():
	case <-ctx.Done():
		s.log.Warn("shutdown: proposals still in flight when the timeout passed")
	}
}

// Done is closed when the member stops serving on its own, because it was
// removed from the cluster (ErrRemoved) or its join was refused
// (ErrJoinRefused); Err then says why. The owner should call
// Shutdown.
func (s *Server) Done() <-chan struct{} { return s.done }

// Err returns why the member stopped serving on its own, nil while it serves.
func (s *Server) Err() error {
	select {
	case <-s.done:
		return s.doneErr
	default:
		return nil
	}
}

func (s *Server) voters() int {
	f := s.raft.GetConfiguration()
	if f.Error() != nil {
		return 0
	}
	n := 0
	for _, srv := range f.Configuration().Servers {
		if srv.Suffrage == raft.Voter {
			n++
		}
	}
	return n
}

// closeResources closes what start opened, in reverse order; it is safe on a
// partly started member.
func (s *Server) closeResources() error {
	var errs []error
	if s.peers != nil {
		_ = s.peers.Close()
	}
	if s.listener != nil && s.grpc == nil {
		errs = append(errs, s.listener.Close())
	}
	if c, ok := s.transport.(raft.WithClose); ok && s.cfg.RaftTransport == nil {
		errs = append(errs, c.Close())
	}
	if s.raftLog != nil {
		errs = append(errs, s.raftLog.Close())
	}
	if s.logStore != nil {
		errs = append(errs, s.logStore.Close())
	}
	if s.fsm != nil {
		errs = append(errs, s.fsm.Close())
	}
	return errors.Join(errs...)
}
