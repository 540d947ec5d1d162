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
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// protoMarshal is the deterministic encoding every stored message uses.
var protoMarshal = proto.MarshalOptions{Deterministic: true}

// StateFile is the name of the state database inside the data directory.
const StateFile = "state.db"

// CleanMarker is written beside StateFile when the state is closed cleanly.
// Commits to the state are not fsynced (see the package doc), so a state
// without the marker may be torn, and is rebuilt.
const CleanMarker = "state.clean"

// Config configures an FSM.
type Config struct {
	// Dir is the directory that holds StateFile. Required.
	Dir string
	// Logger receives the FSM's logs; nil means slog.Default().
	Logger *slog.Logger
	// Observer is told how long each apply batch and snapshot took; nil
	// means nobody is.
	Observer Observer
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
	cfg     Config
	log     *slog.Logger
	path    string
	marshal proto.MarshalOptions

	// mu guards db against Restore swapping it: readers and the applier hold
	// it shared, Restore holds it exclusively.
	mu sync.RWMutex
	db *bolt.DB

	// txMu guards the batch of applied entries not yet committed to db (see
	// ApplyBatch): pending is its open write transaction, or nil.
	txMu           sync.Mutex
	pending        *bolt.Tx
	pendingEntries int
	commitTimer    *time.Timer // commits pending commitInterval after it opened
	failed         error       // set when an apply failed; the FSM then refuses all use

	// applied is the last raft index applied; appliedCh is closed and replaced
	// whenever it moves, to wake waiters.
	appliedMu sync.Mutex
	applied   uint64
	appliedCh chan struct{}

	handlers map[fsmv1.CommandType]handler
	rebuilt  bool

	// members caches the members bucket, which a follower reads for every
	// write it forwards to the leader: reading bbolt would first commit the
	// pending batch each time. membersGen moves whenever the bucket may have
	// changed, so that a read racing a change is not cached.
	membersMu  sync.Mutex
	membersGen uint64
	members    map[string]*fsmv1.MemberAttributes
}

var (
	_ raft.FSM         = (*FSM)(nil)
	_ raft.BatchingFSM = (*FSM)(nil)
)

// New opens (or creates) the state database in cfg.Dir.
func New(cfg Config) (*FSM, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("fsm: create dir: %w", err)
	}
	f := &FSM{
		cfg:       cfg,
		log:       cfg.Logger,
		path:      filepath.Join(cfg.Dir, StateFile),
		marshal:   protoMarshal,
		appliedCh: make(chan struct{}),
	}
	if f.log == nil {
		f.log = slog.Default()
	}
	f.handlers = f.handlerTable()
	if err := f.discardIfUnclean(); err != nil {
		return nil, err
	}
	if err := f.open(); err != nil {
		return nil, err
	}
	return f, nil
}

// discardIfUnclean deletes a state that was not closed cleanly: its last
// commits were never fsynced, so after a power loss it may be torn. The
// member then rebuilds it from its newest raft snapshot and the raft log,
// both of which were fsynced before any write was acknowledged. The marker
// of a clean close is consumed, so that a crash from now on is noticed.
func (f *FSM) discardIfUnclean() error {
	marker := filepath.Join(f.cfg.Dir, CleanMarker)
	_, err := os.Stat(marker)
	clean := err == nil
	if _, err := os.Stat(f.path); err == nil && !clean {
		f.log.Warn("fsm: state was not closed cleanly; discarding it to rebuild it from the last snapshot and the raft log", "path", f.path)
		if err := os.Remove(f.path); err != nil {
			return fmt.Errorf("fsm: discard unclean state: %w", err)
		}
		f.rebuilt = true
	}
	if clean {
		if err := os.Remove(marker); err != nil {
			return fmt.Errorf("fsm: consume clean marker: %w", err)
		}
	}
	return syncDir(f.cfg.Dir)
}

// Rebuilt reports whether New discarded a state that was not closed cleanly;
// the state then starts empty and must be rebuilt from a snapshot and the log.
func (f *FSM) Rebuilt() bool { return f.rebuilt }

// MarkClean records that the state database in dir is complete and synced,
// for a tool that wrote one (a restore) rather than a running FSM.
func MarkClean(dir string) error {
	if err := os.WriteFile(filepath.Join(dir, CleanMarker), []byte("clean\n"), 0o600); err != nil {
		return err
	}
	return syncDir(dir)
}

func (f *FSM) open() error {
	// No fsync per commit: the raft log, fsynced before any write is
	// acknowledged, holds everything applied since the last snapshot; see
	// discardIfUnclean for how a crash is survived. The freelist is rebuilt
	// on open rather than written with every commit.
	db, err := bolt.Open(f.path, 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("fsm: open %s: %w", f.path, err)
	}
	var applied uint64
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range allBuckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		meta := tx.Bucket(bucketMeta)
		if meta.Get(metaRevision) == nil {
			// etcd's convention: an empty store is at revision 1, so the
			// first write is revision 2 and revision 0 can mean "current".
			if err := meta.Put(metaRevision, u64(1)); err != nil {
				return err
			}
		}
		applied = readU64(meta.Get(metaAppliedIndex))
		return nil
	})
	if err != nil {
		db.Close()
		return fmt.Errorf("fsm: initialise %s: %w", f.path, err)
	}
	f.db = db
	f.forgetMembers()
	f.setApplied(applied)
	return nil
}

// Close closes the state database.
func (f *FSM) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db == nil {
		return nil
	}
	if err := f.closeDB(); err != nil {
		return fmt.Errorf("fsm: close: %w", err)
	}
	if f.failed != nil {
		// Leave no marker: the next start discards this state and rebuilds it.
		return nil
	}
	if err := MarkClean(f.cfg.Dir); err != nil {
		return fmt.Errorf("fsm: mark clean close: %w", err)
	}
	return nil
}

// closeDB commits the pending batch (unless an apply failed), syncs and
// closes db. The caller holds mu exclusively.
func (f *FSM) closeDB() error {
	var err error
	if f.failed == nil {
		err = f.flush()
	}
	if err == nil {
		err = f.db.Sync()
	}
	if cerr := f.db.Close(); err == nil {
		err = cerr
	}
	f.db = nil
	return err
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

// view runs fn in a read transaction of the current database, after
// committing the pending batch so that the read sees every applied entry.
func (f *FSM) view(fn func(tx *bolt.Tx) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if err := f.committed(); err != nil {
		return err
	}
	return f.db.View(fn)
}

// committed commits the pending batch of the open database, so that a read
// transaction begun next holds every applied entry. The caller holds mu.
func (f *FSM) committed() error {
	if f.db == nil {
		return errors.New("fsm: closed")
	}
	return f.flush()
}

// Stats is a consistent summary of the state. It has no key count: counting
// walks every page of the keys bucket (milliseconds per 100,000 keys), which
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

// KeyCount returns the number of live keys. It walks the whole keys bucket.
func (f *FSM) KeyCount() (int, error) {
	var n int
	err := f.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketKeys).Stats().KeyN
		return nil
	})
	return n, err
}

// Stats returns a summary of the state read in one transaction.
func (f *FSM) Stats() (Stats, error) {
	var s Stats
	err := f.view(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		s.Revision = int64(readU64(meta.Get(metaRevision)))
		s.CompactRevision = int64(readU64(meta.Get(metaCompactRevision)))
		s.AppliedIndex = readU64(meta.Get(metaAppliedIndex))
		s.AppliedTerm = readU64(meta.Get(metaAppliedTerm))
		s.ClusterID = readU64(meta.Get(metaClusterID))
		s.DBSize = tx.Size()
		return nil
	})
	return s, err
}

// Revision returns the current store revision.
func (f *FSM) Revision() int64 {
	var rev int64
	_ = f.view(func(tx *bolt.Tx) error {
		rev = int64(readU64(tx.Bucket(bucketMeta).Get(metaRevision)))
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

// Range reads keys from the local state. The caller decides whether the
// state is fresh enough (see the server's read index).
func (f *FSM) Range(r *kvv1.RangeRequest) (*kvv1.RangeResponse, error) {
	if err := ValidateRange(r); err != nil {
		return nil, err
	}
	var resp *kvv1.RangeResponse
	err := f.view(func(tx *bolt.Tx) error {
		var err error
		resp, err = rangeTx(tx, r)
		return err
	})
	return resp, err
}
