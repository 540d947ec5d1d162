package fsm

import (
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/kvd-io/kvd/internal/backend"
)

// Snapshot captures the state as of the last applied entry. raft calls it on
// the FSM goroutine, so no apply runs concurrently; the returned snapshot
// streams a bbolt read transaction, which stays consistent while later
// entries are applied.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	tx, err := f.be.ReadTx()
	if err != nil {
		return nil, fmt.Errorf("fsm: begin snapshot: %w", err)
	}
	return &snapshot{tx: tx, obs: f.cfg.Observer}, nil
}

type snapshot struct {
	tx      *bolt.Tx
	obs     Observer
	release sync.Once
}

var _ raft.FSMSnapshot = (*snapshot)(nil)

// Persist writes the whole database, as of the snapshot, to sink, then ends
// the read transaction: an open one would keep the database from closing,
// and not every caller calls Release (raft's RecoverCluster does not).
func (s *snapshot) Persist(sink raft.SnapshotSink) (err error) {
	defer s.Release()
	if s.obs != nil {
		defer func(start time.Time) { s.obs.ObserveSnapshot("persist", time.Since(start), err) }(time.Now())
	}
	if _, err := s.tx.WriteTo(sink); err != nil {
		sink.Cancel()
		return fmt.Errorf("fsm: write snapshot: %w", err)
	}
	return sink.Close()
}

// Release ends the read transaction; it may be called more than once.
func (s *snapshot) Release() { s.release.Do(func() { _ = s.tx.Rollback() }) }

// Restore replaces the state with a snapshot: the stream is written to a
// temporary file beside the database, synced, checked to be a database, and
// renamed over state.db, so a crash leaves either the old state or the new.
// Config.Feed, if set, is then told the revision of the new state.
func (f *FSM) Restore(rc io.ReadCloser) (err error) {
	defer rc.Close()
	// The state is replaced: a defragmentation copying the old one must
	// not swap its copy in afterwards.
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	if f.defrag != nil {
		f.defrag.over = true
		f.defrag.logs = nil
	}
	if f.cfg.Observer != nil {
		defer func(start time.Time) { f.cfg.Observer.ObserveSnapshot("restore", time.Since(start), err) }(time.Now())
	}
	var applied uint64
	err = f.be.Restore(rc, func(path string) error {
		var err error
		if applied, err = checkStateFile(path); err != nil {
			return fmt.Errorf("snapshot is not a state database: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	f.log.Info("fsm: restored state from snapshot", "applied_index", applied)
	f.kickTrimmer() // the snapshot may have been taken halfway through a trim
	if f.feed != nil {
		f.feed.AuthChanged(f.Auth())
		f.feed.Restored(f.openRevision)
	}
	if f.cfg.Leases != nil {
		f.cfg.Leases.LeasesRestored()
	}
	return nil
}

// checkStateFile opens a database file read-only and returns its applied
// index, proving it is a complete state database.
func checkStateFile(path string) (applied uint64, err error) {
	err = backend.CheckFile(path, func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return errors.New("no meta bucket")
		}
		applied = readU64(meta.Get(metaAppliedIndex))
		return nil
	})
	return applied, err
}
