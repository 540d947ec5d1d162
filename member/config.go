package member

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kvd-io/kvd/internal/memberid"
)

// Config configures a member. The zero value of each field is described on
// it; DefaultConfig fills in the defaults kvd's daemon uses.
type Config struct {
	// Name is the member's name, unique in the cluster. It is the raft server
	// id and the member id is derived from it (memberid.FromName). Required.
	Name string
	// DataDir holds state.db, raft/ and snapshots/. Required.
	DataDir string
	// AdvertiseClientAddr is the address of this member's API that other
	// members and clients are told (the member publishes it through the
	// log). New requires it; Validate allows it empty, because the server
	// fills it in from its listener when the operator did not set it.
	AdvertiseClientAddr string
	// RaftAddr is the address the raft transport listens on. Ignored when
	// RaftTransport is set.
	RaftAddr string
	// AdvertiseRaftAddr is the raft address other members are told; empty
	// means the address RaftAddr bound.
	AdvertiseRaftAddr string
	// InitialCluster lists the founding voters of a new cluster. Every
	// founding member gets the same list, and must be in it. Empty means a
	// single-member cluster of this member. Ignored when DataDir already
	// holds raft state.
	InitialCluster []Peer
	// Join lists client addresses of members of an existing cluster. A
	// member with an empty DataDir asks them to add it, then catches up.
	// Ignored when DataDir already holds raft state. With InitialCluster also
	// set, only a member not named in it joins; the ones named found the
	// cluster (so every StatefulSet pod can get the same flags).
	Join []string
	// JoinAsLearner joins as a non-voting member, to be promoted later.
	JoinAsLearner bool
	// ForceNewCluster turns a surviving member of a cluster that lost quorum
	// for good into a single-voter cluster that keeps all its data
	// (hashicorp/raft's RecoverCluster). Other members then join it anew. It
	// needs a data dir with raft state; InitialCluster and Join are then
	// ignored, so it can be added to a member's usual flags.
	ForceNewCluster bool

	// SnapshotThreshold is how many log entries since the last snapshot
	// trigger a new one; SnapshotInterval is how often that is checked.
	SnapshotThreshold uint64
	SnapshotInterval  time.Duration
	// TrailingLogs is how many entries are kept in the log after a snapshot,
	// so that slightly lagging followers catch up without a snapshot.
	TrailingLogs uint64
	// SnapshotRetain is how many snapshots are kept on disk. A snapshot
	// refers to state.db and takes a few bytes (a follower that received the
	// state from the leader keeps that copy until newer snapshots retire it).
	SnapshotRetain int

	// RequestTimeout bounds a request whose context has no deadline.
	RequestTimeout time.Duration
	// AutoCompactionMode and AutoCompactionRetention compact the history
	// automatically, as etcd's flags of the same names do: mode periodic
	// (the default) keeps about Retention of history (a duration, or a
	// number of hours); mode revision keeps the newest Retention revisions.
	// An empty or zero retention turns it off.
	AutoCompactionMode      string
	AutoCompactionRetention string
	// AutoCompactionRevisionInterval is how often the revision mode
	// compacts; zero means five minutes (etcd's).
	AutoCompactionRevisionInterval time.Duration
	// WatchProgressInterval is how often a watcher that asked for progress
	// notifications gets one while it has no event (etcd's
	// --watch-progress-notify-interval).
	WatchProgressInterval time.Duration
	// LeaseCheckpointInterval is how often the leader records the remaining
	// TTL of each lease whose TTL is longer than it, so that a new leader
	// does not restart such a lease at its full TTL. Zero means five
	// minutes (etcd's).
	LeaseCheckpointInterval time.Duration
	// QuotaBackendBytes is the size the state file may reach before the
	// member raises a NOSPACE alarm and writes that grow it are refused
	// (etcd's --quota-backend-bytes). Zero means 2 GiB, etcd's default.
	QuotaBackendBytes int64

	// HeartbeatTimeout, ElectionTimeout, LeaderLeaseTimeout and
	// CommitTimeout are hashicorp/raft's timers; see raft.Config.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// MaxAppendEntries bounds the entries in one append and one apply batch.
	MaxAppendEntries int

	// Logger receives the member's logs, raft's included; nil means
	// slog.Default().
	Logger *slog.Logger

	// UnsafeLocalReads serves linearizable reads from local state without a
	// read index, breaking linearizability on purpose. It exists only so the
	// jepsen suite can prove it detects stale reads; Validate refuses it
	// unless kvd was built with -tags kvd_unsafe.
	UnsafeLocalReads bool
	// UnsafeVerifyLeader confirms the leadership of linearizable reads with
	// hashicorp/raft's VerifyLeader, as kvd did before it counted only
	// answers to messages sent after a read arrived: a leader that resumes
	// from a stall can then serve a stale read. It exists only so that tests
	// can show they catch that; Validate refuses it unless kvd was built with
	// -tags kvd_unsafe.
	UnsafeVerifyLeader bool
	// UnsafeWatchDropEvery, when positive, makes the member's watch hub
	// drop every Nth event it hands to a watcher, breaking the watch
	// guarantee (every event exactly once) on purpose. It exists only so
	// the jepsen watch workload can prove it detects a lost event; Validate
	// refuses it unless kvd was built with -tags kvd_unsafe.
	UnsafeWatchDropEvery int

	// UnsafeEarlyLeaseExpiry makes the leader expire every lease after a
	// quarter of its TTL, without the extension a new leader owes, breaking
	// the lease guarantees on purpose. It exists only so that the jepsen
	// suite can show its lease and lock checkers catch that; Validate
	// refuses it unless kvd was built with -tags kvd_unsafe.
	UnsafeEarlyLeaseExpiry bool

	// RaftTransport replaces the TCP transport, for in-process test clusters;
	// nil means TCP on RaftAddr.
	RaftTransport raft.Transport
	// RaftTLS secures the TCP transport; nil means plaintext. Ignored when
	// RaftTransport is set.
	RaftTLS *RaftTLS
}

// Peer is one founding member: its name and raft address.
type Peer struct {
	Name     string
	RaftAddr string
}

// DefaultConfig returns the daemon's defaults, tuned for a LAN.
func DefaultConfig() Config {
	return Config{
		DataDir:               "kvd-data",
		RaftAddr:              "127.0.0.1:7380",
		RequestTimeout:        5 * time.Second,
		WatchProgressInterval: 10 * time.Minute,
		// hashicorp/raft's LAN defaults: a leader is replaced about one to
		// two seconds after it dies, and a busy disk or a GC pause on a
		// small machine does not depose a healthy one.
		HeartbeatTimeout:   time.Second,
		ElectionTimeout:    time.Second,
		LeaderLeaseTimeout: 500 * time.Millisecond,
		// Followers learn each commit from package commitpush at once;
		// raft's empty append after CommitTimeout of quiet only covers a
		// lost push, and more often costs idle CPU (see docs/design.md).
		CommitTimeout:    100 * time.Millisecond,
		MaxAppendEntries: 256,
		// A snapshot costs one fsynced commit of state.db (it refers to
		// the file rather than copying it), so it is taken often, and raft
		// trims its log soon. Under load an entry is a batch of many
		// writes (tens of KiB), so 1,024 trailing entries are still
		// seconds of writes, and far more than etcd's 5,000 requests.
		SnapshotThreshold: 2048,
		SnapshotInterval:  5 * time.Second,
		TrailingLogs:      1024,
		SnapshotRetain:    2,
	}
}

// Validate reports the first thing wrong with the config, quoting the bad
// value. It does not change the config.
func (c Config) Validate() error {
	if err := memberid.CheckName(c.Name); err != nil {
		return err
	}
	if c.DataDir == "" {
		return errors.New("data dir is required")
	}
	if c.RaftTransport == nil {
		if err := checkHostPort("raft address", c.RaftAddr); err != nil {
			return err
		}
	}
	for _, a := range []struct{ what, addr string }{
		{"advertised client address", c.AdvertiseClientAddr},
		{"advertised raft address", c.AdvertiseRaftAddr},
	} {
		if a.addr == "" {
			continue
		}
		if err := checkHostPort(a.what, a.addr); err != nil {
			return err
		}
		if host, _, _ := net.SplitHostPort(a.addr); host == "" || host == "0.0.0.0" || host == "::" {
			return fmt.Errorf("%s %q must name a reachable host, not a wildcard", a.what, a.addr)
		}
	}
	if len(c.InitialCluster) > 0 {
		seen := map[string]bool{}
		self := false
		for _, p := range c.InitialCluster {
			if p.Name == "" || p.RaftAddr == "" {
				return fmt.Errorf("initial cluster member %q=%q needs a name and a raft address", p.Name, p.RaftAddr)
			}
			if seen[p.Name] {
				return fmt.Errorf("initial cluster names %q twice", p.Name)
			}
			seen[p.Name] = true
			self = self || p.Name == c.Name
		}
		if !self && len(c.Join) == 0 {
			return fmt.Errorf("initial cluster does not include this member's name %q (a member that is not a founder needs join)", c.Name)
		}
	}

	for _, a := range c.Join {
		if err := checkHostPort("join address", a); err != nil {
			return err
		}
	}
	if c.JoinAsLearner && len(c.Join) == 0 {
		return errors.New("learner needs join: only a joining member can start as a learner")
	}
	if c.SnapshotThreshold == 0 || c.SnapshotInterval <= 0 || c.SnapshotRetain < 1 {
		return fmt.Errorf("snapshot threshold (%d), interval (%s) and retain (%d) must be positive", c.SnapshotThreshold, c.SnapshotInterval, c.SnapshotRetain)
	}
	if c.RequestTimeout <= 0 {
		return fmt.Errorf("request timeout must be positive, got %s", c.RequestTimeout)
	}
	if _, _, err := parseCompaction(c.AutoCompactionMode, c.AutoCompactionRetention, c.compactionInterval()); err != nil {
		return err
	}
	if c.QuotaBackendBytes < 0 {
		return fmt.Errorf("quota backend bytes must not be negative, got %d", c.QuotaBackendBytes)
	}
	if c.LeaseCheckpointInterval < 0 {
		return fmt.Errorf("lease checkpoint interval must not be negative, got %s", c.LeaseCheckpointInterval)
	}
	if c.WatchProgressInterval <= 0 {
		return fmt.Errorf("watch progress notify interval must be positive, got %s", c.WatchProgressInterval)
	}
	if c.HeartbeatTimeout <= 0 || c.ElectionTimeout <= 0 || c.LeaderLeaseTimeout <= 0 || c.CommitTimeout <= 0 {
		return errors.New("raft timeouts must be positive")
	}
	if c.LeaderLeaseTimeout > c.HeartbeatTimeout {
		return fmt.Errorf("leader lease timeout %s must not exceed heartbeat timeout %s", c.LeaderLeaseTimeout, c.HeartbeatTimeout)
	}
	if c.UnsafeLocalReads && !unsafeBuild {
		return errors.New("unsafe local reads are only available in a build with -tags kvd_unsafe")
	}
	if c.UnsafeVerifyLeader && !unsafeBuild {
		return errors.New("unsafe verify leader is only available in a build with -tags kvd_unsafe")
	}
	if c.UnsafeWatchDropEvery < 0 {
		return fmt.Errorf("unsafe watch drop every must not be negative, got %d", c.UnsafeWatchDropEvery)
	}
	if c.UnsafeWatchDropEvery > 0 && !unsafeBuild {
		return errors.New("unsafe watch drop every is only available in a build with -tags kvd_unsafe")
	}
	if c.UnsafeEarlyLeaseExpiry && !unsafeBuild {
		return errors.New("unsafe early lease expiry is only available in a build with -tags kvd_unsafe")
	}
	if c.MaxAppendEntries <= 0 || c.MaxAppendEntries > 1024 {
		return fmt.Errorf("max append entries must be in 1..1024, got %d", c.MaxAppendEntries)
	}
	// raft checks the combinations of its own timers that the checks above
	// do not (an election timeout below the heartbeat timeout, say), before
	// any listener opens.
	if err := raft.ValidateConfig(c.raftConfig(nil)); err != nil {
		return fmt.Errorf("raft: %w", err)
	}
	return nil
}

// raftConfig is the raft configuration the member runs with, logging to
// logger (nil: nowhere).
func (c Config) raftConfig(logger *slog.Logger) *raft.Config {
	if logger == nil {
		logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(c.Name)
	rc.HeartbeatTimeout = c.HeartbeatTimeout
	rc.ElectionTimeout = c.ElectionTimeout
	rc.LeaderLeaseTimeout = c.LeaderLeaseTimeout
	rc.CommitTimeout = c.CommitTimeout
	rc.MaxAppendEntries = c.MaxAppendEntries
	rc.BatchApplyCh = true
	// The state machine keeps its applied index on disk with its data, so a
	// restart resumes from there instead of restoring the last snapshot and
	// re-applying everything after it.
	rc.NoSnapshotRestoreOnStart = true
	rc.Logger = newRaftLogger(logger)
	rc.SnapshotThreshold = c.SnapshotThreshold
	rc.SnapshotInterval = c.SnapshotInterval
	rc.TrailingLogs = c.TrailingLogs
	// A removed member is told by the leader and stops on its own terms
	// (see watchRemoval); raft itself keeps running until Shutdown.
	rc.ShutdownOnRemove = false
	return rc
}

func checkHostPort(what, addr string) error {
	if addr == "" {
		return fmt.Errorf("%s is required", what)
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%s %q: %w", what, addr, err)
	}
	return nil
}

// ParseInitialCluster parses "name=raftaddr,name=raftaddr,...".
func ParseInitialCluster(s string) ([]Peer, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var peers []Peer
	for _, part := range strings.Split(s, ",") {
		name, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok || name == "" || addr == "" {
			return nil, fmt.Errorf("initial cluster entry %q: want name=raftaddr", part)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			return nil, fmt.Errorf("initial cluster entry %q: %w", part, err)
		}
		peers = append(peers, Peer{Name: name, RaftAddr: addr})
	}
	return peers, nil
}

func (c Config) compactionInterval() time.Duration {
	if c.AutoCompactionRevisionInterval > 0 {
		return c.AutoCompactionRevisionInterval
	}
	return 5 * time.Minute
}
