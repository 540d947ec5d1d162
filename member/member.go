package member

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"

	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/commitpush"
	"github.com/kvd-io/kvd/internal/leadership"
	"github.com/kvd-io/kvd/internal/lease"
	"github.com/kvd-io/kvd/internal/memberid"
	"github.com/kvd-io/kvd/internal/proposal"
	"github.com/kvd-io/kvd/internal/raftlog"
	"github.com/kvd-io/kvd/internal/readindex"
	"github.com/kvd-io/kvd/internal/watch"
	"github.com/kvd-io/kvd/internal/workers"
)

// Deps are what a member needs from its assembly.
type Deps struct {
	// Peers calls the other members. Required.
	Peers Peers
	// Workers runs the callbacks of proposals and reads. Required.
	Workers *workers.Pool
	// Observer is told what the member does; nil: nobody is.
	Observer Observer
}

// Member is one running member of a kvd cluster: a raft node whose state
// machine is package fsm. New starts it; Shutdown stops it.
type Member struct {
	cfg     Config
	log     *slog.Logger
	id      uint64
	peers   Peers
	workers *workers.Pool
	obs     Observer

	fsm       *fsm.FSM
	raft      *raft.Raft
	logStore  *raftlog.File
	raftLog   *raftlog.Store            // over logStore; what raft writes its log through
	raftRef   atomic.Pointer[raft.Raft] // raft, for raftLog, which runs before NewRaft returns
	transport raft.Transport
	raftAddr  string // advertised

	buffer  *proposal.Buffer      // every proposal of this member goes through it
	reads   *readindex.Queue      // linearizable reads wait here for a read index
	confirm *leadership.Confirmer // counts followers' answers for reads' leadership rounds
	push    *commitpush.Pusher    // tells followers the commit index at once
	health  *prober
	hub     *watch.Hub    // hands what is applied to watchers
	lessor  *lease.Lessor // the leases' clocks; timing them only while leading
	// renewals batches lease renewals (renew.go).
	renewals *renewBatcher
	// quotaSize is the state file's size as CheckQuota last read it.
	quotaSize sizeCache

	// leaderlessSince is when this member last lost sight of a leader
	// (UnixNano); 0 while it knows one.
	leaderlessSince atomic.Int64

	// raisingAlarm is set while this member proposes its NOSPACE alarm.
	raisingAlarm atomic.Bool

	joining   bool // started with an empty data dir and Join set
	clusterID atomic.Uint64
	// readyTerm is the term whose LeaderStart command this member applied
	// as leader; linearizable reads need it to equal the current term.
	readyTerm atomic.Uint64
	leaderCh  chan bool

	// proposals counts proposals in flight; Drain closes it and waits, so
	// that a restart loses no acknowledged write and fails none.
	proposals gate

	// done is closed when the member stops serving on its own (it was
	// removed from the cluster); doneErr says why.
	done     chan struct{}
	doneOnce sync.Once
	doneErr  error

	// draining is closed when Drain begins: streams tell their clients to
	// move on.
	draining  chan struct{}
	drainOnce sync.Once

	// ctx is the member's lifetime: every loop below runs until Shutdown
	// cancels it, and background calls to other members abort with it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	stopOnce sync.Once
	stopErr  error
}

// New opens the member's data directory and starts raft (bootstrapping a new
// cluster when the directory is empty). It does not serve any API: the
// server does, over the member.
func New(cfg Config, deps Deps) (*Member, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("invalid config: %w", err)
	}
	if cfg.AdvertiseClientAddr == "" {
		return nil, errors.New("invalid config: advertised client address is required")
	}
	if deps.Peers == nil || deps.Workers == nil {
		return nil, errors.New("member: Peers and Workers are required")
	}
	m := &Member{
		cfg:      cfg,
		log:      cfg.Logger,
		id:       memberid.FromName(cfg.Name),
		peers:    deps.Peers,
		workers:  deps.Workers,
		obs:      deps.Observer,
		leaderCh: make(chan bool, 1),
		draining: make(chan struct{}),
		done:     make(chan struct{}),
	}
	if m.obs == nil {
		m.obs = nopObserver{}
	}
	if m.log == nil {
		m.log = slog.Default()
	}
	m.log = m.log.With("member", cfg.Name)
	m.ctx, m.cancel = context.WithCancel(context.Background())
	var err error
	m.buffer, err = proposal.New(proposal.Config{
		Apply:     func(data []byte) raft.ApplyFuture { return m.raft.Apply(data, m.cfg.RequestTimeout) },
		Batchable: m.membersCanBatch,
		Observe:   m.obs.ObserveEntry,
		Spawn:     m.workers.Submit,
		Stopped:   ErrStopped,
	})
	if err != nil {
		return nil, err
	}
	m.reads, err = readindex.New(readindex.Config{
		Fetch:        m.fetchReadIndex,
		FetchTimeout: m.leaderWait(),
		Observe:      m.obs.ObserveReadIndex,
		Spawn:        m.workers.Submit,
		Stopped:      ErrStopped,
	})
	if err != nil {
		return nil, err
	}
	if err := m.start(); err != nil {
		m.cancel()
		if cerr := m.closeResources(); cerr != nil {
			m.log.Warn("close after a failed start", "error", cerr)
		}
		return nil, err
	}
	return m, nil
}

func (m *Member) start() error {
	if err := os.MkdirAll(m.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("create data dir: %w", err)
	}
	if err := checkNotRemoved(m.cfg.DataDir); err != nil {
		return err
	}
	var err error
	m.renewals = newRenewBatcher(m.renewBatch)
	m.lessor = lease.New(lease.Config{CheckpointInterval: m.cfg.LeaseCheckpointInterval,
		UnsafeExpireEarly: m.cfg.UnsafeEarlyLeaseExpiry && unsafeBuild})
	if m.fsm, err = fsm.New(fsm.Config{Dir: m.cfg.DataDir, Logger: m.log, Observer: m.obs, Feed: hubFeed{m}, Leases: leaseFeed{m}}); err != nil {
		return err
	}
	// The lessor starts with the state's leases, before raft applies
	// anything; the log then grants and revokes through leaseFeed.
	m.loadLeases()
	// The hub starts at the state's revision, before raft applies anything
	// (a snapshot restore at start included).
	if m.hub, err = watch.New(watch.Config{History: watchHistory{m}, Revision: m.fsm.Revision(), Auth: m.fsm.Auth(), Logger: m.log,
		UnsafeDropEvery: m.cfg.UnsafeWatchDropEvery}); err != nil {
		return err
	}
	if err := m.startRaft(); err != nil {
		return err
	}
	m.health = newProber(m)
	m.goLoop(func() { m.reads.Run(m.ctx) })
	m.goLoop(func() { m.hub.Run(m.ctx) })
	m.goLoop(m.watchLeader)
	m.goLoop(func() { m.buffer.Run(m.ctx) })
	m.goLoop(m.watchLeadership)
	m.goLoop(m.publishSelf)
	m.goLoop(m.health.run)
	m.goLoop(m.watchRemoval)
	m.goLoop(m.expireLeases)
	m.goLoop(func() { m.renewals.run(m.ctx) })
	m.goLoop(m.hastenElections)
	if m.joining {
		m.goLoop(m.join)
	}
	if p, ok, _ := parseCompaction(m.cfg.AutoCompactionMode, m.cfg.AutoCompactionRetention, m.cfg.compactionInterval()); ok {
		m.goLoop(func() { m.compactAutomatically(p) })
	}
	m.log.Info("member started", "client_addr", m.cfg.AdvertiseClientAddr, "raft_addr", m.raftAddr,
		"data_dir", m.cfg.DataDir, "applied_index", m.fsm.AppliedIndex())
	return nil
}

// goLoop runs fn on a goroutine that Shutdown waits for.
func (m *Member) goLoop(fn func()) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		fn()
	}()
}

func (m *Member) startRaft() error {
	raftDir := filepath.Join(m.cfg.DataDir, "raft")
	if err := os.MkdirAll(raftDir, 0o700); err != nil {
		return fmt.Errorf("create raft dir: %w", err)
	}
	var err error
	m.logStore, err = raftlog.OpenFile(filepath.Join(raftDir, "raft.db"), raftboltdb.Options{
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
	m.raftLog, err = raftlog.New(raftlog.Config{
		Log:     m.logStore,
		Dir:     raftDir,
		Leading: func() bool { r := m.raftRef.Load(); return r != nil && r.State() == raft.Leader },
		OnFailure: func(err error) {
			m.log.Error("cannot write the raft log; stopping", "error", err)
			panic(fmt.Sprintf("raft log: %v", err))
		},
		Observer: m.obs,
	})
	if err != nil {
		return err
	}
	rc := m.cfg.raftConfig(m.log)
	files, err := raft.NewFileSnapshotStoreWithLogger(m.cfg.DataDir, m.cfg.SnapshotRetain, rc.Logger)
	if err != nil {
		return fmt.Errorf("open snapshot store: %w", err)
	}
	// Snapshots refer to state.db rather than copy it; the store copies
	// the state only to send it to a follower (see package fsm).
	snaps := m.fsm.SnapshotStore(files)
	if m.cfg.RaftTransport != nil {
		m.transport = m.cfg.RaftTransport
	} else {
		m.transport, err = newTCPTransport(m.cfg.RaftAddr, m.cfg.AdvertiseRaftAddr, m.cfg.RaftTLS, m.log, rc.Logger)
		if err != nil {
			return fmt.Errorf("start raft transport: %w", err)
		}
	}
	m.raftAddr = string(m.transport.LocalAddr())
	rc.NotifyCh = m.leaderCh

	hasState, err := raft.HasExistingState(m.raftLog, m.logStore, snaps)
	if err != nil {
		return fmt.Errorf("inspect raft state: %w", err)
	}
	if err := m.catchUpFromSnapshot(snaps); err != nil {
		return err
	}
	switch {
	case hasState && m.cfg.ForceNewCluster:
		if err := m.forceNewCluster(rc, snaps); err != nil {
			return err
		}
	case hasState:
		if len(m.cfg.InitialCluster) > 0 || len(m.cfg.Join) > 0 {
			m.log.Info("data dir holds raft state: resuming, ignoring the initial cluster and join flags")
		}
	case m.cfg.ForceNewCluster:
		return fmt.Errorf("force new cluster needs an existing data dir; %s holds no raft state", m.cfg.DataDir)
	case m.fsm.AppliedIndex() > 0:
		return fmt.Errorf("%s holds applied state but the raft log is empty; refusing to bootstrap over it", filepath.Join(m.cfg.DataDir, fsm.StateFile))
	case len(m.cfg.Join) > 0 && (!m.foundingMember() || m.clusterExists()):
		// Start with no configuration: the leader brings this member in
		// once join has asked it to.
		m.joining = true
	default:
		if err := m.bootstrap(rc, snaps); err != nil {
			return err
		}
	}
	// Replication reads back the entries it just wrote; a cache of the
	// newest ones spares those reads from bbolt.
	logs, err := raft.NewLogCache(logCacheSize, m.raftLog)
	if err != nil {
		return fmt.Errorf("log cache: %w", err)
	}
	// The confirmer sees every heartbeat and its answer, for linearizable
	// reads (see leaderReadIndex).
	m.confirm = leadership.New(func(term uint64) bool {
		return m.raft.State() == raft.Leader && m.raft.CurrentTerm() == term
	})
	// The leader writes its log while it replicates it; the gated state
	// machine and transport keep anything from counting an entry as
	// committed before it is on the leader's disk (see package raftlog).
	// The pusher tells followers the leader's commit index as soon as the
	// leader applies an entry, not with raft's next append (see package
	// commitpush); it sits inside the gates so that it only pushes what is
	// on the leader's disk.
	m.push = commitpush.New(func() bool { r := m.raftRef.Load(); return r != nil && r.State() == raft.Leader })
	fsmChain := m.raftLog.FSM(m.push.FSM(m.fsm))
	transport := m.raftLog.Transport(m.push.Transport(m.confirm.Transport(m.transport)))
	m.raft, err = raft.NewRaft(rc, fsmChain, logs, m.logStore, snaps, transport)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	m.raftRef.Store(m.raft)
	return nil
}

// logCacheSize is how many of the newest log entries are kept in memory.
// Replication needs only the entries not yet sent, and under load an entry
// holds a batch of writes (up to proposal.MaxBatchBytes), so this bounds the
// cache at 64 MiB of batches.
const logCacheSize = 1024

// catchUpFromSnapshot restores the state machine from the newest snapshot
// when the state on disk is older than it: an older kvd's state that was
// discarded after a crash, whose snapshots are full copies. raft replays only
// the log after its newest snapshot, so without this the state would miss
// what lies between. A snapshot that refers to the state cannot help (the
// open fails with fsm.ErrStateBehindSnapshot): state.db was lost or
// replaced, and the member must be rebuilt from the cluster.
func (m *Member) catchUpFromSnapshot(snaps raft.SnapshotStore) error {
	list, err := snaps.List()
	if err != nil {
		return fmt.Errorf("list snapshots: %w", err)
	}
	if len(list) == 0 || list[0].Index <= m.fsm.AppliedIndex() {
		return nil
	}
	m.log.Warn("state is older than the newest snapshot; restoring it", "applied_index", m.fsm.AppliedIndex(), "snapshot_index", list[0].Index)
	_, rc, err := snaps.Open(list[0].ID)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", list[0].ID, err)
	}
	return m.fsm.Restore(rc)
}

func (m *Member) bootstrap(rc *raft.Config, snaps raft.SnapshotStore) error {
	var servers []raft.Server
	if len(m.cfg.InitialCluster) == 0 {
		servers = []raft.Server{{ID: rc.LocalID, Address: raft.ServerAddress(m.raftAddr), Suffrage: raft.Voter}}
	} else {
		for _, p := range m.cfg.InitialCluster {
			servers = append(servers, raft.Server{ID: raft.ServerID(p.Name), Address: raft.ServerAddress(p.RaftAddr), Suffrage: raft.Voter})
		}
	}
	m.log.Info("bootstrapping a new cluster", "voters", len(servers))
	if err := raft.BootstrapCluster(rc, m.raftLog, m.logStore, snaps, m.transport, raft.Configuration{Servers: servers}); err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	return nil
}

// clusterExists asks the join addresses whether a cluster with a leader is
// already running. A founding member that starts with an empty data dir
// while its cluster runs has lost its disk: it must join, not found a second
// cluster under the same name. When the cluster is first created, no member
// answers with a leader yet, and the founders bootstrap.
func (m *Member) clusterExists() bool {
	ctx, cancel := context.WithTimeout(m.ctx, 3*time.Second)
	defer cancel()
	for _, addr := range m.cfg.Join {
		st, err := m.peers.Status(ctx, addr)
		if err == nil && st.LeaderName != "" {
			m.log.Warn("a founding member with an empty data dir found its cluster running; joining it instead of founding a new one",
				"via", addr, "leader", st.LeaderName)
			return true
		}
	}
	return false
}

// foundingMember reports whether this member is named in InitialCluster.
// With both InitialCluster and Join set, founding members bootstrap and the
// others join: every member of a StatefulSet can get the same flags.
func (m *Member) foundingMember() bool {
	for _, p := range m.cfg.InitialCluster {
		if p.Name == m.cfg.Name {
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
func (m *Member) Name() string { return m.cfg.Name }

// ID returns the member's id.
func (m *Member) ID() uint64 { return m.id }

// ClientAddr returns the advertised address of the member's API.
func (m *Member) ClientAddr() string { return m.cfg.AdvertiseClientAddr }

// RaftAddr returns the advertised address of the member's raft transport.
func (m *Member) RaftAddr() string { return m.raftAddr }

// IsLeader reports whether the member is the raft leader.
func (m *Member) IsLeader() bool { return m.raft.State() == raft.Leader }

// RequestTimeout is how long a request without a deadline may take.
func (m *Member) RequestTimeout() time.Duration { return m.cfg.RequestTimeout }

// FSM returns the member's state machine, for reads and for tests and
// tools that compare members' states.
func (m *Member) FSM() *fsm.FSM { return m.fsm }

// Raft returns the member's raft node, for tests and operational tooling.
func (m *Member) Raft() *raft.Raft { return m.raft }

// ClusterID returns the id of the member's cluster, 0 until it is known.
func (m *Member) ClusterID() uint64 {
	id := m.clusterID.Load()
	if id == 0 {
		id = m.fsm.ClusterID()
		m.clusterID.Store(id)
	}
	return id
}

// Draining is closed when the member begins to shut down (Drain): a stream
// should tell its client to move on.
func (m *Member) Draining() <-chan struct{} { return m.draining }

// Drain is Shutdown's first step: it refuses new proposals (as not applied)
// and waits, until ctx ends, for those in flight; then, when it leads a
// cluster of several voters, it hands leadership to another voter. The
// server calls it before it stops accepting requests, so that none fails
// that could have gone elsewhere.
func (m *Member) Drain(ctx context.Context) {
	m.drainOnce.Do(func() {
		close(m.draining)
		select {
		case <-m.proposals.close():
		case <-ctx.Done():
			m.log.Warn("shutdown: proposals still in flight when the timeout passed")
		}
		if m.raft != nil && m.IsLeader() && m.voters() > 1 {
			if err := m.raft.LeadershipTransfer().Error(); err != nil {
				m.log.Warn("leadership transfer before shutdown failed", "error", err)
			}
		}
	})
}

// Shutdown stops the member: it drains (see Drain) unless that was done,
// stops its loops and raft, and closes its files. When ctx ends, the
// remaining waits are cut short.
func (m *Member) Shutdown(ctx context.Context) error {
	m.stopOnce.Do(func() {
		m.Drain(ctx)
		m.cancel()
		if m.raft != nil {
			m.push.Close()
			if err := m.raft.Shutdown().Error(); err != nil {
				m.stopErr = errors.Join(m.stopErr, fmt.Errorf("stop raft: %w", err))
			}
		}
		m.wg.Wait()
		m.stopErr = errors.Join(m.stopErr, m.closeResources())
		m.log.Info("member stopped")
	})
	return m.stopErr
}

// Done is closed when the member stops serving on its own, because it was
// removed from the cluster (ErrRemoved) or its join was refused
// (ErrJoinRefused); Err then says why. The owner should call Shutdown.
func (m *Member) Done() <-chan struct{} { return m.done }

// Err returns why the member stopped serving on its own, nil while it serves.
func (m *Member) Err() error {
	select {
	case <-m.done:
		return m.doneErr
	default:
		return nil
	}
}

func (m *Member) voters() int {
	cfg, _, err := m.configuration()
	if err != nil {
		return 0
	}
	n := 0
	for _, srv := range cfg.Servers {
		if srv.Suffrage == raft.Voter {
			n++
		}
	}
	return n
}

// closeResources closes what start opened, in reverse order; it is safe on a
// partly started member.
func (m *Member) closeResources() error {
	var errs []error
	if c, ok := m.transport.(raft.WithClose); ok && m.cfg.RaftTransport == nil {
		errs = append(errs, c.Close())
	}
	if m.raftLog != nil {
		errs = append(errs, m.raftLog.Close())
	}
	if m.logStore != nil {
		errs = append(errs, m.logStore.Close())
	}
	if m.fsm != nil {
		errs = append(errs, m.fsm.Close())
	}
	return errors.Join(errs...)
}

// nopObserver observes nothing.
type nopObserver struct{}

func (nopObserver) ObserveApply(time.Duration, int)              {}
func (nopObserver) ObserveSnapshot(string, time.Duration, error) {}
func (nopObserver) ObserveLogAppend(time.Duration, bool)         {}
func (nopObserver) ObserveLogDurableWait(time.Duration)          {}
func (nopObserver) ObserveLogCheckpoint(time.Duration, int)      {}
func (nopObserver) LeaderChanged()                               {}
func (nopObserver) ObserveEntry(int)                             {}
func (nopObserver) ObserveReadIndex(time.Duration)               {}
func (nopObserver) LeadershipRoundBegun()                        {}
