package fsm

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// Snapshot captures the state as of the last applied entry. raft calls it on
// the FSM goroutine, so no apply runs concurrently; the returned snapshot
// streams a bbolt read transaction, which stays consistent while later
// entries are applied.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if err := f.committed(); err != nil {
		return nil, err
	}
	tx, err := f.db.Begin(false)
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
func (f *FSM) Restore(rc io.ReadCloser) (err error) {
	defer rc.Close()
	if f.cfg.Observer != nil {
		defer func(start time.Time) { f.cfg.Observer.ObserveSnapshot("restore", time.Since(start), err) }(time.Now())
	}
	tmp := f.path + ".restore"
	if err := writeFileSync(tmp, rc); err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	applied, err := checkStateFile(tmp)
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("fsm: restore: snapshot is not a state database: %w", err)
	}

	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db != nil {
		// What is pending is replaced by the snapshot anyway.
		f.txMu.Lock()
		f.rollbackLocked()
		f.txMu.Unlock()
		if err := f.closeDB(); err != nil {
			return fmt.Errorf("fsm: restore: close state: %w", err)
		}
	}
	if err := os.Rename(tmp, f.path); err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	if err := syncDir(filepath.Dir(f.path)); err != nil {
		return fmt.Errorf("fsm: restore: %w", err)
	}
	if err := f.open(); err != nil {
		return err
	}
	f.log.Info("fsm: restored state from snapshot", "applied_index", applied)
	return nil
}

func writeFileSync(path string, r io.Reader) error {
	out, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, r); err != nil {
		out.Close()
		os.Remove(path)
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		os.Remove(path)
		return err
	}
	return out.Close()
}

// checkStateFile opens a database file read-only and returns its applied
// index, proving it is a complete state database.
func checkStateFile(path string) (applied uint64, err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer db.Close()
	defer func() {
		// bbolt asserts on pages it cannot make sense of: a damaged
		// snapshot is an error to return, not a reason to stop.
		if r := recover(); r != nil {
			err = fmt.Errorf("damaged database: %v", r)
		}
	}()
	err = db.View(func(tx *bolt.Tx) error {
		// bbolt does not check that the file holds every page its meta
		// page names; reading past the end of a truncated file would fault.
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if fi.Size() < tx.Size() {
			return fmt.Errorf("truncated: %d bytes, the database needs %d", fi.Size(), tx.Size())
		}
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return errors.New("no meta bucket")
		}
		applied = readU64(meta.Get(metaAppliedIndex))
		return nil
	})
	return applied, err
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
