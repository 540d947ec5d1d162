package fsm

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/internal/auth"
	"github.com/kvd-io/kvd/internal/backend"
	"github.com/kvd-io/kvd/internal/mvcc"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// protoMarshal is the deterministic encoding every stored message uses.
var protoMarshal = proto.MarshalOptions{Deterministic: true}

// StateFile is the name of the state database inside the data directory.
const StateFile = "state.db"

// CleanMarker is written beside StateFile when the state is closed cleanly.
// A state of an older kvd, whose commits were not fsynced, is trusted only
// with it (see the package doc).
const CleanMarker = "state.clean"

// SyncedMarker is written beside StateFile once its commits are fsynced,
// which they are from then on: the state survives any crash.
const SyncedMarker = "state.synced"

// Config configures an FSM.
type Config struct {
	// Dir is the directory that holds StateFile. Required.
	Dir string
	// Logger receives the FSM's logs; nil means slog.Default().
	Logger *slog.Logger
	// Observer is told how long each apply batch and snapshot took; nil
	// means nobody is.
	Observer Observer
	// Feed is told what each applied batch changed, and when a snapshot
	// replaced the state; nil means nobody listens, at no cost to applies.
	Feed Feed
	// Leases is told of each lease the applied log grants, revokes or
	// checkpoints; nil means nobody listens.
	Leases LeaseFeed
}

// Observer receives the FSM's timings. Its methods are called on raft's FSM
// goroutine (and Persist's) and must return quickly.
type Observer interface {
	// ObserveApply is called after each batch is applied.
	ObserveApply(d time.Duration, batchSize int)
	// ObserveSnapshot is called after a snapshot is persisted ("persist")
	// or restored ("restore").
	ObserveSnapshot(kind string, d time.Duration, err error)
}

// Validate reports what is wrong with the config without changing it.
func (c Config) Validate() error {
	if c.Dir == "" {
		return errors.New("fsm: Dir is required")
	}
	return nil
}

// FSM is the replicated key-value state machine. raft calls Apply, ApplyBatch,
// Snapshot and Restore on its FSM goroutine, one at a time; the read methods
// may be called from any goroutine at any time.
type FSM struct {
	cfg  Config
	log  *slog.Logger
	path string
	feed Feed

	// be is the state database: its batching, failure and life.
	be *backend.Backend
	// kv is the key-value store's state in memory (its key index), for
	// the database be holds; initState initialises it whenever be opens
	// one. defragKV, set by a defragmentation under applyMu just before it
	// swaps in its copy, is that copy's, already built, for initState to
	// take over instead of building the index again while applies wait.
	kv       *mvcc.Store
	defragKV *mvcc.Store

	// noSpace mirrors whether a NOSPACE alarm is raised in the state.
	noSpace atomic.Bool
	// auth is the auth state as of the last applied entry.
	auth atomic.Pointer[auth.State]

	// applied is the last raft index applied; appliedCh is closed and replaced
	// whenever it moves, to wake waiters.
	appliedMu sync.Mutex
	applied   uint64
	appliedCh chan struct{}

	// compactAt caches CompactRevision for the applied index it was read
	// at: every watch creation asks, and a read transaction each time was
	// a third of the garbage a watcher's creation left.
	compactAt atomic.Pointer[compactAt]

	handlers map[fsmv1.CommandType]handler

	// openRevision is the store revision read when the database was last
	// opened, for Restore to report. Written by backend's Init hook, under
	// the backend's exclusive lock.
	openRevision int64
	// revision is the store revision that reads see: set once an applied
	// batch (or a newly opened database) is visible, before the applied
	// index moves (see VisibleRevision).
	revision atomic.Int64

	// members caches the members bucket, which a follower reads for every
	// write it forwards to the leader: reading bbolt would first commit the
	// pending batch each time. membersGen moves whenever the bucket may have
	// changed, so that a read racing a change is not cached.
	membersMu  sync.Mutex
	membersGen uint64
	members    map[string]*fsmv1.MemberAttributes

	// The trimmer (compact.go): trimKick wakes it, trimmedCh is closed and
	// replaced when it has finished a trim, trimDone when it has stopped.
	trimKick  chan struct{}
	trimRuns  atomic.Int64 // runs of the trimmer done, for tests to wait for the one at open
	trimMu    sync.Mutex
	trimmedCh chan struct{}
	trimDone  chan struct{}
	closed    chan struct{} // closed by Close
	closeOnce sync.Once

	// applyMu is held while entries are applied (ApplyBatch, Restore) and
	// while a defragmentation takes its start or swaps the files: the
	// state does not change under either. defrag is the defragmentation in
	// progress (defrag.go), nil when there is none; defragMu lets one run
	// at a time.
	applyMu  sync.Mutex
	defrag   *defragState
	defragMu sync.Mutex
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// New opens (or creates) the state database in cfg.Dir. A state of an older
// kvd that was not closed cleanly is discarded (see Rebuilt and the package
// doc).
func New(cfg Config) (*FSM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	f := &FSM{
		cfg:       cfg,
		log:       cfg.Logger,
		kv:        mvcc.NewStore(),
		path:      filepath.Join(cfg.Dir, StateFile),
		feed:      cfg.Feed,
		appliedCh: make(chan struct{}),
		trimKick:  make(chan struct{}, 1),
		trimmedCh: make(chan struct{}),
		trimDone:  make(chan struct{}),
		closed:    make(chan struct{}),
	}
	if f.log == nil {
		f.log = slog.Default()
	}
	f.handlers = f.handlerTable()
	// A defragmentation that a crash cut short left its copy behind.
	_ = os.Remove(f.path + ".defrag")
	be, err := backend.Open(backend.Config{
		Dir:            cfg.Dir,
		File:           StateFile,
		CleanMarker:    CleanMarker,
		SyncedMarker:   SyncedMarker,
		CommitInterval: commitInterval,
		CommitEntries:  commitEntries,
		Init:           f.initState,
		Logger:         f.log,
	})
	if err != nil {
		return nil, fmt.Errorf("fsm: %w", err)
	}
	f.be = be
	go f.trim()
	f.kickTrimmer() // a trim a restart cut short goes on
	return f, nil
}

// initState prepares a freshly opened state database (backend's Init hook,
// run by New and by Restore before any other use of the database): it
// creates the buckets and loads what the FSM keeps in memory.
func (f *FSM) initState(tx *bolt.Tx) error {
	if mvcc.HasLegacyHistory(tx) {
		start := time.Now()
		f.log.Info("converting the state's history to revision order (the format of kvd before December 2026)")
		defer func() { f.log.Info("history converted", "took", time.Since(start).Round(time.Millisecond)) }()
	}
	built := f.defragKV
	f.defragKV = nil
	if err := f.kv.InitFrom(tx, built); err != nil {
		return err
	}
	if _, err := tx.CreateBucketIfNotExists(bucketMembers); err != nil {
		return err
	}
	alarms, err := tx.CreateBucketIfNotExists(bucketAlarms)
	if err != nil {
		return err
	}
	f.noSpace.Store((&writer{alarms: alarms}).noSpace())
	authBucket, err := tx.CreateBucketIfNotExists(bucketAuth)
	if err != nil {
		return err
	}
	authState, err := loadAuth(authBucket)
	if err != nil {
		return err
	}
	f.auth.Store(authState)
	f.openRevision = f.kv.Read(tx).Revision()
	f.revision.Store(f.openRevision)
	f.forgetMembers()
	f.setApplied(readU64(tx.Bucket(bucketMeta).Get(metaAppliedIndex)))
	return nil
}

// Rebuilt reports whether New discarded a state of an older kvd that was not
// closed cleanly; the state then starts empty and must be rebuilt from a
// snapshot (a full copy, as older kvd wrote them) and the log.
func (f *FSM) Rebuilt() bool { return f.be.Rebuilt() }

// MarkClean records that the state database in dir is complete and synced,
// for a tool that wrote one (a restore) rather than a running FSM.
func MarkClean(dir string) error { return backend.MarkClean(dir, CleanMarker) }

// Close commits what was applied, syncs and closes the state database, and
// marks it clean; after a failed apply it leaves no clean marker, and the
// state keeps its last commit (the next start replays the log after it).
func (f *FSM) Close() error {
	f.closeOnce.Do(func() { close(f.closed) })
	<-f.trimDone // the trimmer writes through the backend: stop it first
	if err := f.be.Close(); err != nil {
		return fmt.Errorf("fsm: %w", err)
	}
	return nil
}

func (f *FSM) setApplied(index uint64) {
	f.appliedMu.Lock()
	defer f.appliedMu.Unlock()
	f.applied = index
	close(f.appliedCh)
	f.appliedCh = make(chan struct{})
}

// AppliedIndex returns the last raft log index applied to the state.
func (f *FSM) AppliedIndex() uint64 {
	f.appliedMu.Lock()
	defer f.appliedMu.Unlock()
	return f.applied
}

// AppliedChanged returns a channel that is closed the next time the applied
// index moves.
func (f *FSM) AppliedChanged() <-chan struct{} {
	f.appliedMu.Lock()
	defer f.appliedMu.Unlock()
	return f.appliedCh
}

// WaitApplied blocks until the state has applied index, or ctx ends.
func (f *FSM) WaitApplied(ctx context.Context, index uint64) error {
	for {
		f.appliedMu.Lock()
		applied, ch := f.applied, f.appliedCh
		f.appliedMu.Unlock()
		if applied >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// view runs fn on a transaction of the current database that sees every
// applied entry (backend.View: through the pending batch, which waits for
// it, so fn must be short). Errors from fn are returned as they are; the
// backend's own (closed, or failed after a failed apply) say they come from
// fsm.
func (f *FSM) view(fn func(tx *bolt.Tx) error) error {
	return f.viewWith(f.be.View, fn)
}

// viewCommitted is view for reads that may walk much of the database: the
// pending batch is committed, and fn reads a transaction of its own while
// entries go on being applied.
func (f *FSM) viewCommitted(fn func(tx *bolt.Tx) error) error {
	return f.viewWith(f.be.ViewCommitted, fn)
}

func (f *FSM) viewWith(view func(func(tx *bolt.Tx) error) error, fn func(tx *bolt.Tx) error) error {
	var fnErr error
	read := func(tx *bolt.Tx) error {
		fnErr = fn(tx)
		return fnErr
	}
	err := view(read)
	// A read of its own transaction that writes and a compaction's trim
	// overtook (mvcc.ErrOvertaken) is made again: the new transaction sees
	// that compaction, so only the trim of a later one could overtake it.
	for tries := 0; errors.Is(fnErr, mvcc.ErrOvertaken) && tries < 3; tries++ {
		fnErr = nil
		err = view(read)
	}
	if fnErr != nil {
		return fnErr
	}
	if err != nil {
		return fmt.Errorf("fsm: %w", err)
	}
	return nil
}

// Stats is a consistent summary of the state. It has no key count: counting
// walks the whole key index (about a millisecond per 100,000 keys), which
// Status calls and metrics scrapes, the callers of Stats, need not pay; see
// KeyCount.
type Stats struct {
	Revision        int64
	CompactRevision int64
	AppliedIndex    uint64
	AppliedTerm     uint64
	ClusterID       uint64
	DBSize          int64
}

// KeyCount returns the number of live keys. It walks the whole key index.
func (f *FSM) KeyCount() (int, error) {
	var n int
	err := f.viewCommitted(func(tx *bolt.Tx) error {
		var err error
		n, err = f.kv.Read(tx).KeyCount()
		return err
	})
	return n, err
}

// Stats returns a summary of the state read in one transaction.
func (f *FSM) Stats() (Stats, error) {
	var s Stats
	err := f.view(func(tx *bolt.Tx) error {
		meta, kv := tx.Bucket(bucketMeta), f.kv.Read(tx)
		s.Revision = kv.Revision()
		s.CompactRevision = kv.CompactRevision()
		s.AppliedIndex = readU64(meta.Get(metaAppliedIndex))
		s.AppliedTerm = readU64(meta.Get(metaAppliedTerm))
		s.ClusterID = readU64(meta.Get(metaClusterID))
		s.DBSize = tx.Size()
		return nil
	})
	return s, err
}

// DBSize returns the size of the state database (Stats.DBSize) and the size
// of its pages in use: the file less its free pages, as etcd reports db size
// and db size in use.
func (f *FSM) DBSize() (size, inUse int64, err error) {
	size, inUse, err = f.be.Size()
	if err != nil {
		return 0, 0, fmt.Errorf("fsm: %w", err)
	}
	return size, inUse, nil
}

// VisibleRevision returns the store revision that reads see, without
// reading the database: it is set once an applied batch is visible, and
// before AppliedChanged's channel is closed for it.
func (f *FSM) VisibleRevision() int64 { return f.revision.Load() }

// Revision returns the current store revision.
func (f *FSM) Revision() int64 {
	var rev int64
	_ = f.view(func(tx *bolt.Tx) error {
		rev = f.kv.Read(tx).Revision()
		return nil
	})
	return rev
}

// ClusterID returns the cluster id recorded in the state, zero before the
// first leader recorded it.
func (f *FSM) ClusterID() uint64 {
	var id uint64
	_ = f.view(func(tx *bolt.Tx) error {
		id = readU64(tx.Bucket(bucketMeta).Get(metaClusterID))
		return nil
	})
	return id
}

// Members returns the attributes every member has published, by name.
func (f *FSM) Members() (map[string]*fsmv1.MemberAttributes, error) {
	f.membersMu.Lock()
	cached, gen := f.members, f.membersGen
	f.membersMu.Unlock()
	if cached != nil {
		return maps.Clone(cached), nil
	}
	out := make(map[string]*fsmv1.MemberAttributes)
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMembers).ForEach(func(k, v []byte) error {
			m := &fsmv1.MemberAttributes{}
			if err := proto.Unmarshal(v, m); err != nil {
				return fmt.Errorf("decode member %q: %w", k, err)
			}
			out[string(k)] = m
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	f.membersMu.Lock()
	if f.membersGen == gen {
		f.members = out
	}
	f.membersMu.Unlock()
	return maps.Clone(out), nil
}

// forgetMembers drops the cached members after the bucket changed.
func (f *FSM) forgetMembers() {
	f.membersMu.Lock()
	f.membersGen++
	f.members = nil
	f.membersMu.Unlock()
}

// ReadOnlyTxn reports whether a txn writes nothing, so that it can be
// answered like a range (ReadTxn) instead of going through the log.
func ReadOnlyTxn(r *kvv1.TxnRequest) bool { return mvcc.ReadOnlyTxn(r) }

// ReadTxn answers a read-only txn (ReadOnlyTxn) from the local state, its
// compares and reads in one read transaction. The caller decides whether
// the state is fresh enough, as for Range.
func (f *FSM) ReadTxn(r *kvv1.TxnRequest) (*kvv1.TxnResponse, error) {
	if err := ValidateTxn(r); err != nil {
		return nil, err
	}
	var resp *kvv1.TxnResponse
	err := f.view(func(tx *bolt.Tx) error {
		var err error
		resp, err = f.kv.Read(tx).Txn(r)
		return err
	})
	return resp, err
}

// Range reads keys from the local state. The caller decides whether the
// state is fresh enough (see the server's read index).
func (f *FSM) Range(r *kvv1.RangeRequest) (*kvv1.RangeResponse, error) {
	if err := ValidateRange(r); err != nil {
		return nil, err
	}
	var resp *kvv1.RangeResponse
	err := f.view(func(tx *bolt.Tx) error {
		var err error
		resp, err = f.kv.Read(tx).Range(r)
		return err
	})
	return resp, err
}
