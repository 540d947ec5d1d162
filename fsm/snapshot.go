package fsm

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/kvd-io/kvd/internal/backend"
	"github.com/kvd-io/kvd/internal/mvcc"
)

// Snapshots refer to the state database instead of copying it. The state
// on disk is complete as of its last fsynced commit (package backend), so
// once a snapshot has committed what was applied, the state file itself is
// the snapshot, as in etcd and Vault: the raft snapshot is a small record
// of the applied index it covers, and raft may trim its log up to there.
// Only when raft sends a snapshot to a follower that is too far behind
// (SnapshotStore's Open) is the database copied, as it is then, which
// covers the record's index and maybe more; the follower's state machine
// skips the entries its restored state already holds.

// snapshotRefMagic starts a snapshot that refers to the state database.
// A snapshot that does not start with it is a copy of a database (sent by a
// leader, or written by an older kvd).
const snapshotRefMagic = "kvd state reference 1\n"

// Snapshot commits what was applied, fsynced, and returns a snapshot that
// records the applied index. raft calls it on the FSM goroutine, so no
// apply runs concurrently: the state on disk then holds exactly the
// entries raft counts in the snapshot.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	start := time.Now()
	if err := f.be.Commit(); err != nil {
		return nil, fmt.Errorf("fsm: snapshot: %w", err)
	}
	return &snapshot{applied: f.AppliedIndex(), took: time.Since(start), obs: f.cfg.Observer}, nil
}

type snapshot struct {
	applied uint64
	took    time.Duration // of the commit in Snapshot
	obs     Observer
}

var _ raft.FSMSnapshot = (*snapshot)(nil)

// Persist writes the reference record to sink.
func (s *snapshot) Persist(sink raft.SnapshotSink) (err error) {
	if s.obs != nil {
		defer func(start time.Time) { s.obs.ObserveSnapshot("persist", s.took+time.Since(start), err) }(time.Now())
	}
	if _, err := fmt.Fprintf(sink, "%s%d\n", snapshotRefMagic, s.applied); err != nil {
		sink.Cancel()
		return fmt.Errorf("fsm: write snapshot: %w", err)
	}
	return sink.Close()
}

// Release does nothing: the snapshot holds nothing open.
func (s *snapshot) Release() {}

// SnapshotStore wraps raft's snapshot store so that opening a snapshot that
// refers to the state (which raft does to send it to a follower) streams a
// copy of the state database. Snapshots that are copies already open as
// they are.
func (f *FSM) SnapshotStore(inner raft.SnapshotStore) raft.SnapshotStore {
	return &snapshotStore{SnapshotStore: inner, f: f}
}

type snapshotStore struct {
	raft.SnapshotStore
	f *FSM
}

// ErrStateBehindSnapshot: a snapshot refers to the state database, but the
// state holds fewer entries than the snapshot covers (state.db was replaced
// or lost), so neither can rebuild the other.
var ErrStateBehindSnapshot = errors.New("the state database is older than the snapshot that refers to it")

func (s *snapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	meta, rc, err := s.SnapshotStore.Open(id)
	if err != nil {
		return nil, nil, err
	}
	br := bufio.NewReader(rc)
	head, _ := br.Peek(len(snapshotRefMagic))
	if string(head) != snapshotRefMagic {
		return meta, struct {
			io.Reader
			io.Closer
		}{br, rc}, nil
	}
	line, err := br.ReadString('\n') // the magic
	if err == nil {
		line, err = br.ReadString('\n')
	}
	rc.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("fsm: snapshot %s: read reference: %w", id, err)
	}
	covers, err := strconv.ParseUint(strings.TrimSpace(line), 10, 64)
	if err != nil {
		return nil, nil, fmt.Errorf("fsm: snapshot %s: bad reference %q", id, line)
	}
	tx, err := s.f.be.ReadTx()
	if err != nil {
		return nil, nil, fmt.Errorf("fsm: snapshot %s: %w", id, err)
	}
	if applied := readU64(tx.Bucket(bucketMeta).Get(metaAppliedIndex)); applied < covers {
		_ = tx.Rollback()
		return nil, nil, fmt.Errorf("fsm: snapshot %s covers index %d: %w (applied index %d)", id, covers, ErrStateBehindSnapshot, applied)
	}
	copied := *meta
	copied.Size = tx.Size() // what WriteTo writes, which raft checks
	pr, pw := io.Pipe()
	// The copier ends when the copy is written or the reader is closed
	// (its writes then fail); it always ends the read transaction.
	go func() {
		_, err := tx.WriteTo(pw)
		_ = tx.Rollback()
		pw.CloseWithError(err)
	}()
	return &copied, pr, nil
}

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
	// A read during an apply may have cached that entry's compact
	// revision at the index before it; the restored state may be that
	// index's.
	f.compactAt.Store(nil)
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
		return mvcc.CheckFormat(tx)
	})
	return applied, err
}
