// Package backend is kvd's storage file: one bbolt database, the batching of
// the writes applied to it, and the life of the file (open, close, failure,
// copy, replacement). It knows nothing of keys, revisions or raft: its
// callers (package fsm, through package mvcc for the key-value data) decide
// what the buckets hold.
//
// # Batching
//
// Writes go into one pending write transaction, opened by the first Batch
// and committed every Config.CommitInterval or Config.CommitEntries entries,
// and before a long read (ViewCommitted, ReadTx, WriteTo), an explicit
// Commit, a restore and close. Short reads (View, Size) do not commit: they
// read through the pending transaction itself, so a reader sees everything
// written before it without paying for a commit.
//
// # Crashes
//
// Every commit is fsynced, bbolt's way (the pages, then the meta page that
// points to them), so the file on disk is always a complete database as of
// some commit, whatever a crash or a power loss cuts short. A caller that
// keeps what it wrote somewhere else (kvd's raft log) replays what came
// after that commit. Commit makes everything written so far durable, for a
// caller about to drop its own copy (kvd: a raft snapshot, which lets raft
// trim its log).
//
// Files written before commits were fsynced (a data directory of an older
// kvd) are trusted only after a clean close, which left a marker
// (Config.CleanMarker): Open deletes such a file found without the marker,
// since a power loss may have torn it, and starts empty (Rebuilt reports
// it); the caller rebuilds it from its own durable record. A second marker
// (Config.SyncedMarker) records that the file is written with fsynced
// commits, and is trusted from then on. Close still leaves the clean marker,
// so that an older kvd can open the file after a downgrade.
//
// # Failure
//
// A write that fails, or a commit that fails, rolls back the pending
// transaction and fails the backend: every later call returns an error
// wrapping ErrFailed. The file keeps its last commit.
//
// # Concurrency
//
// Batch is called by one writer goroutine at a time (kvd: raft's FSM
// goroutine). The reads may be called from any goroutine at any time; a View
// that runs while writes are pending holds Batch off until it returns, so it
// is for short reads. Restore and Close exclude everything else: they wait
// for running calls and block new ones until they return.
package backend

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
)

// initialMmapSize is the address space mapped for the file when it is
// opened (see open): 10 GiB, or nothing on a 32-bit platform, whose address
// space is too small.
var initialMmapSize = func() int {
	if math.MaxInt == math.MaxInt32 {
		return 0
	}
	gib := 30 // a variable shift, so that 32-bit builds compile
	return 10 << gib
}()

// Errors returned by a backend that can no longer be used.
var (
	// ErrClosed: the backend was closed (or a restore could not reopen it).
	ErrClosed = errors.New("backend: closed")
	// ErrFailed: a write or commit failed earlier; the backend refuses all
	// use until it is reopened, and its file is then discarded.
	ErrFailed = errors.New("backend: stopped after a failed write")
)

// Config configures a Backend.
type Config struct {
	// Dir is the directory that holds the file and its marker. Required.
	Dir string
	// File is the name of the database file inside Dir. Required.
	File string
	// CleanMarker is the name of the marker a clean close leaves beside
	// File. Required.
	CleanMarker string
	// SyncedMarker is the name of the marker recording that File is
	// written with fsynced commits, and so survives any crash. Required.
	SyncedMarker string
	// CommitInterval is how long the pending transaction may stay open
	// after its first write before it is committed. Required, > 0.
	CommitInterval time.Duration
	// CommitEntries is how many entries (as counted by Batch's callers)
	// the pending transaction may hold before it is committed. Required, > 0.
	CommitEntries int
	// Init prepares the database each time it is opened (by Open and by
	// Restore), in a write transaction that commits before any other use:
	// it creates the buckets the caller needs and may read what it keeps
	// in memory. nil means nothing to prepare.
	Init func(tx *bolt.Tx) error
	// Logger receives the backend's logs; nil means slog.Default().
	Logger *slog.Logger
}

// Validate reports what is wrong with the config without changing it.
func (c Config) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("backend: Dir is required"))
	}
	if c.File == "" || filepath.Base(c.File) != c.File {
		errs = append(errs, fmt.Errorf("backend: File %q must be a file name", c.File))
	}
	if c.CleanMarker == "" || filepath.Base(c.CleanMarker) != c.CleanMarker || c.CleanMarker == c.File {
		errs = append(errs, fmt.Errorf("backend: CleanMarker %q must be a file name other than File", c.CleanMarker))
	}
	if c.SyncedMarker == "" || filepath.Base(c.SyncedMarker) != c.SyncedMarker || c.SyncedMarker == c.File || c.SyncedMarker == c.CleanMarker {
		errs = append(errs, fmt.Errorf("backend: SyncedMarker %q must be a file name other than File and CleanMarker", c.SyncedMarker))
	}
	if c.CommitInterval <= 0 {
		errs = append(errs, fmt.Errorf("backend: CommitInterval %v must be positive", c.CommitInterval))
	}
	if c.CommitEntries <= 0 {
		errs = append(errs, fmt.Errorf("backend: CommitEntries %d must be positive", c.CommitEntries))
	}
	return errors.Join(errs...)
}

// Backend is an open database file with its pending batch of writes.
type Backend struct {
	cfg  Config
	log  *slog.Logger
	path string

	// mu guards db against Restore and Close swapping or closing it:
	// readers and the writer hold it shared, Restore and Close exclusively.
	mu sync.RWMutex
	db *bolt.DB

	// txMu guards the pending batch: pending is its open write transaction,
	// or nil; entries counts what it holds.
	txMu        sync.Mutex
	pending     *bolt.Tx
	entries     int
	commitTimer *time.Timer // commits pending CommitInterval after it opened
	failed      error       // set when a write or commit failed

	rebuilt bool
}

// Open opens (or creates) the database, after discarding a file of an older
// kvd that was not closed cleanly (see the package doc), and runs
// Config.Init.
func Open(cfg Config) (*Backend, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("backend: create dir: %w", err)
	}
	b := &Backend{cfg: cfg, log: cfg.Logger, path: filepath.Join(cfg.Dir, cfg.File)}
	if b.log == nil {
		b.log = slog.Default()
	}
	if err := b.discardIfUnclean(); err != nil {
		return nil, err
	}
	// A swap that a crash cut short left the replaced file linked.
	if err := os.Remove(b.path + replacedSuffix); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("backend: remove the replaced state: %w", err)
	}
	if err := b.open(); err != nil {
		return nil, err
	}
	// From here on every commit is fsynced, and the file on disk is
	// complete (the unclean one of an older kvd was discarded; a clean one
	// was synced at its close; a new one is empty).
	if err := b.db.Sync(); err != nil {
		b.db.Close()
		return nil, fmt.Errorf("backend: sync %s: %w", b.path, err)
	}
	if err := MarkClean(cfg.Dir, cfg.SyncedMarker); err != nil {
		b.db.Close()
		return nil, fmt.Errorf("backend: mark fsynced commits: %w", err)
	}
	return b, nil
}

// Path is the database file's path.
func (b *Backend) Path() string { return b.path }

// Rebuilt reports whether Open discarded a file of an older kvd that was
// not closed cleanly; the database then started empty.
func (b *Backend) Rebuilt() bool { return b.rebuilt }

// discardIfUnclean deletes a file written without fsynced commits (no synced
// marker: an older kvd's) that was not closed cleanly: its last commits were
// never fsynced, so after a power loss it may be torn. The marker of a clean
// close is consumed, so that it always describes the last close.
func (b *Backend) discardIfUnclean() error {
	marker := filepath.Join(b.cfg.Dir, b.cfg.CleanMarker)
	_, err := os.Stat(marker)
	clean := err == nil
	_, err = os.Stat(filepath.Join(b.cfg.Dir, b.cfg.SyncedMarker))
	synced := err == nil
	if _, err := os.Stat(b.path); err == nil && !clean && !synced {
		b.log.Warn("backend: state of an older kvd was not closed cleanly; discarding it to rebuild it from the last snapshot and the raft log", "path", b.path)
		if err := os.Remove(b.path); err != nil {
			return fmt.Errorf("backend: discard unclean state: %w", err)
		}
		b.rebuilt = true
	}
	if clean {
		if err := os.Remove(marker); err != nil {
			return fmt.Errorf("backend: consume clean marker: %w", err)
		}
	}
	return SyncDir(b.cfg.Dir)
}

// MarkClean writes the marker named marker in dir, recording that the
// database beside it is complete and synced.
func MarkClean(dir, marker string) error {
	if err := os.WriteFile(filepath.Join(dir, marker), []byte("clean\n"), 0o600); err != nil {
		return err
	}
	return SyncDir(dir)
}

// open opens the file and runs Init. The caller holds mu exclusively, or
// is Open.
func (b *Backend) open() error {
	// Every commit is fsynced (see the package doc). The freelist is
	// rebuilt on open rather than written with every commit. A commit that
	// grows the file past the memory map remaps it, and remapping waits
	// for every open read transaction: a defragmentation's copy or a
	// snapshot sent to a follower would hold every apply (and so every
	// write) for as long as it reads. Mapping 10 GiB of address space up
	// front, as etcd does, makes that rare; the file still grows only as
	// it is written.
	db, err := bolt.Open(b.path, 0o600, boltOptions())
	if err != nil {
		return fmt.Errorf("backend: open %s: %w", b.path, err)
	}
	return b.use(db)
}

func boltOptions() *bolt.Options {
	return &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType, InitialMmapSize: initialMmapSize}
}

// use runs Init on db and makes it the backend's database. The caller holds
// mu exclusively, or is Open.
func (b *Backend) use(db *bolt.DB) error {
	if b.cfg.Init != nil {
		if err := db.Update(b.cfg.Init); err != nil {
			db.Close()
			return fmt.Errorf("backend: initialise %s: %w", b.path, err)
		}
	}
	b.db = db
	return nil
}

// OpenCopy creates a new database file at path, beside the backend's, to
// be filled (its commits are not fsynced; Adopt syncs it) and then swapped
// in with Adopt.
func (b *Backend) OpenCopy(path string) (*bolt.DB, error) {
	opts := boltOptions()
	opts.NoSync = true
	return bolt.Open(path, 0o600, opts)
}

// Adopt replaces the state file by db, a database from OpenCopy that holds
// everything the state must (callers make sure nothing pending is missing
// from it), without reopening it: db is synced, renamed over the state
// file and used from then on with fsynced commits. Reopening a large file
// would rebuild its freelist by walking every page. Like Swap, it keeps the
// replaced file until release. On failure db is closed.
func (b *Backend) Adopt(db *bolt.DB) (release func(), err error) {
	db.NoSync = false
	if err := db.Sync(); err != nil {
		db.Close()
		return nil, err
	}
	return b.replace(db.Path(), func() error { return b.use(db) }, func() { db.Close() })
}

// Close commits the pending batch, syncs and closes the database, and
// leaves the clean marker. A failed backend is closed without a commit and
// without the marker (its file keeps its last commit). Close waits
// for running reads and writes (and for read transactions from ReadTx to be
// rolled back) and may be called more than once.
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db == nil {
		return nil
	}
	if err := b.closeDB(); err != nil {
		return fmt.Errorf("backend: close: %w", err)
	}
	if b.failure() != nil {
		return nil // no clean marker: the last commit is what the file holds
	}
	if err := MarkClean(b.cfg.Dir, b.cfg.CleanMarker); err != nil {
		return fmt.Errorf("backend: mark clean close: %w", err)
	}
	return nil
}

// closeDB commits the pending batch (unless the backend failed), syncs and
// closes db. The caller holds mu exclusively.
func (b *Backend) closeDB() error {
	var err error
	if b.failure() == nil {
		err = b.flush()
	}
	if err == nil {
		err = b.db.Sync()
	}
	if cerr := b.db.Close(); err == nil {
		err = cerr
	}
	b.db = nil
	return err
}

func (b *Backend) failure() error {
	b.txMu.Lock()
	defer b.txMu.Unlock()
	return b.failed
}

// Batch runs fn in the pending write transaction, opening it if there is
// none, and counts the entries fn reports towards Config.CommitEntries,
// committing the transaction once it holds that many. What fn writes is
// seen by every read that starts after Batch returns.
//
// An error from fn, or from the commit, rolls back the whole pending
// transaction (everything written since the last commit, not only fn's
// writes) and fails the backend; Batch returns it. fn must not keep tx, and
// must not call the backend's other methods.
//
// Batch is called by one goroutine at a time (kvd: raft's FSM goroutine).
func (b *Backend) Batch(fn func(tx *bolt.Tx) (entries int, err error)) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.db == nil {
		return ErrClosed
	}
	b.txMu.Lock()
	defer b.txMu.Unlock()
	if b.failed != nil {
		return fmt.Errorf("%w: %w", ErrFailed, b.failed)
	}
	if b.pending == nil {
		tx, err := b.db.Begin(true)
		if err != nil {
			err = fmt.Errorf("begin write transaction: %w", err)
			b.failLocked(err)
			return err
		}
		b.pending = tx
		b.commitTimer = time.AfterFunc(b.cfg.CommitInterval, b.commitDue)
	}
	n, err := fn(b.pending)
	if err != nil {
		b.failLocked(err)
		return err
	}
	b.entries += n
	if b.entries >= b.cfg.CommitEntries {
		if err := b.commitLocked(); err != nil {
			b.failLocked(err)
			return err
		}
	}
	return nil
}

// Pending reports whether a write transaction is open and uncommitted.
func (b *Backend) Pending() bool {
	b.txMu.Lock()
	defer b.txMu.Unlock()
	return b.pending != nil
}

// commitLocked commits the pending transaction, if any. The caller holds
// txMu.
func (b *Backend) commitLocked() error {
	if b.pending == nil {
		return nil
	}
	b.commitTimer.Stop()
	tx := b.pending
	b.pending, b.entries = nil, 0
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// flush commits the pending transaction. A commit that fails leaves the
// file behind what was written, so it fails the backend like a failed
// write. The caller holds mu.
func (b *Backend) flush() error {
	b.txMu.Lock()
	defer b.txMu.Unlock()
	if b.failed != nil {
		return fmt.Errorf("%w: %w", ErrFailed, b.failed)
	}
	if err := b.commitLocked(); err != nil {
		b.failLocked(err)
		b.log.Error("backend: cannot commit applied entries; the state will be rebuilt at the next start", "error", err)
		return err
	}
	return nil
}

// commitDue is the commit timer's callback.
func (b *Backend) commitDue() {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.db != nil {
		_ = b.flush() // a failure is logged and fails the backend
	}
}

// failLocked rolls back the pending transaction and records err. The
// caller holds txMu.
func (b *Backend) failLocked(err error) {
	b.rollbackLocked()
	if b.failed == nil {
		b.failed = err
	}
}

// rollbackLocked discards the pending transaction, if any. The caller holds
// txMu.
func (b *Backend) rollbackLocked() {
	if b.pending == nil {
		return
	}
	b.commitTimer.Stop()
	_ = b.pending.Rollback()
	b.pending, b.entries = nil, 0
}

// readable commits the pending batch so that a read transaction begun next
// sees every write. The caller holds mu.
func (b *Backend) readable() error {
	if b.db == nil {
		return ErrClosed
	}
	return b.flush()
}

// Commit commits the pending batch, fsynced: everything written so far is
// then durable. Any goroutine.
func (b *Backend) Commit() error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.readable()
}

// View runs fn on a transaction that sees every write made so far, without
// committing anything: while a batch is pending, fn reads through the
// pending write transaction itself, and Batch waits until fn returns (so
// View is for short reads; see ViewCommitted). fn must only read, and must
// not keep tx or anything it returned. Any goroutine.
func (b *Backend) View(fn func(tx *bolt.Tx) error) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.db == nil {
		return ErrClosed
	}
	b.txMu.Lock()
	if b.failed != nil {
		b.txMu.Unlock()
		return fmt.Errorf("%w: %w", ErrFailed, b.failed)
	}
	if b.pending != nil {
		defer b.txMu.Unlock()
		return fn(b.pending)
	}
	// Nothing pending: a read transaction of its own, which writes that
	// start meanwhile do not wait for. Holding txMu until it has begun
	// keeps a batch from opening and committing in between.
	tx, err := b.db.Begin(false)
	b.txMu.Unlock()
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	return fn(tx)
}

// ViewCommitted runs fn in a read transaction of its own that sees every
// write made so far: the pending batch is committed first. Writes go on
// while fn runs, so it suits reads that walk much of the database. fn must
// not keep tx. Any goroutine.
func (b *Backend) ViewCommitted(fn func(tx *bolt.Tx) error) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if err := b.readable(); err != nil {
		return err
	}
	return b.db.View(fn)
}

// ReadTx begins a read transaction that sees every write made so far, for
// a reader that outlives one call (a snapshot streaming the database). The
// caller must roll it back: until then Close and Restore wait. Any
// goroutine.
func (b *Backend) ReadTx() (*bolt.Tx, error) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if err := b.readable(); err != nil {
		return nil, err
	}
	return b.db.Begin(false)
}

// WriteTo writes a consistent copy of the database, with every write made
// so far, to w and returns its size. It runs in a read transaction, so
// writes continue meanwhile. size, if not nil, is called with the size of
// the copy before anything is written. Any goroutine.
func (b *Backend) WriteTo(w io.Writer, size func(int64)) (int64, error) {
	var n int64
	err := b.ViewCommitted(func(tx *bolt.Tx) error {
		if size != nil {
			size(tx.Size())
		}
		var err error
		n, err = tx.WriteTo(w)
		return err
	})
	return n, err
}

// Size returns the size of the database file as bbolt sees it, and the
// size of its pages in use (the file less its free pages), as etcd reports
// db size and db size in use. Any goroutine.
func (b *Backend) Size() (size, inUse int64, err error) {
	err = b.View(func(tx *bolt.Tx) error {
		size, inUse = b.sizeOf(tx)
		return nil
	})
	return size, inUse, err
}

// sizeOf is Size inside a read transaction of this backend.
func (b *Backend) sizeOf(tx *bolt.Tx) (size, inUse int64) {
	size = tx.Size()
	free := int64(tx.DB().Stats().FreePageN) * int64(tx.DB().Info().PageSize)
	return size, size - free
}

// Restore replaces the database with the one read from r. The stream is
// written to a temporary file beside the database and synced; check (if
// not nil) is then called with its path and may refuse it; the file is
// renamed over the database, so a crash leaves either the old one or the
// new, and opened with Config.Init. The pending batch is discarded: the new
// database replaces it anyway. A failed backend stays failed. Restore
// waits for running calls and blocks new ones while it swaps the file.
func (b *Backend) Restore(r io.Reader, check func(path string) error) error {
	tmp := b.path + ".restore"
	if err := writeFileSync(tmp, r); err != nil {
		return err
	}
	if check != nil {
		if err := check(tmp); err != nil {
			os.Remove(tmp)
			return err
		}
	}
	release, err := b.Swap(tmp)
	if err != nil {
		return err
	}
	release()
	return nil
}

// Swap replaces the state file by the complete, synced database file at
// path (which it renames into place), as Restore does: the pending
// transaction is dropped, the new file opened and initialised
// (Config.Init), and used from then on. Callers make sure that nothing
// pending is missing from the new file.
//
// The replaced file stays open, and linked beside the new one, until the
// caller calls release: unmapping a large file and giving its blocks back
// to the file system take hundreds of milliseconds, which the caller can
// spend without holding anything. A crash before release leaves the link,
// which Open deletes.
func (b *Backend) Swap(path string) (release func(), err error) {
	return b.replace(path, b.open, func() {})
}

// replace renames the file at path over the state file and calls open to
// use it; abandon undoes what open would have taken if it is not reached.
// See Swap.
func (b *Backend) replace(path string, open func() error, abandon func()) (release func(), err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	old := b.db
	replaced := b.path + replacedSuffix
	if old != nil {
		b.txMu.Lock()
		b.rollbackLocked()
		b.txMu.Unlock()
		_ = os.Remove(replaced)
		if err := os.Link(b.path, replaced); err != nil {
			abandon()
			return nil, fmt.Errorf("keep the replaced state: %w", err)
		}
	}
	release = func() {
		if old != nil {
			_ = old.Close()
		}
		_ = os.Remove(replaced)
	}
	if err := os.Rename(path, b.path); err != nil {
		abandon()
		release()
		b.db = nil
		return nil, err
	}
	if err := SyncDir(b.cfg.Dir); err != nil {
		abandon()
		release()
		b.db = nil
		return nil, err
	}
	if err := open(); err != nil {
		release()
		b.db = nil
		return nil, err
	}
	return release, nil
}

// replacedSuffix names the link Swap keeps to the file it replaced.
const replacedSuffix = ".replaced"

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

// CheckFile opens the database file at path read-only and runs fn in a read
// transaction, after checking that the file holds every page bbolt's meta
// page names. A damaged file is an error, not a panic.
func CheckFile(path string, fn func(tx *bolt.Tx) error) (err error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	defer func() {
		// bbolt asserts on pages it cannot make sense of: a damaged file is
		// an error to return, not a reason to stop.
		if r := recover(); r != nil {
			err = fmt.Errorf("damaged database: %v", r)
		}
	}()
	return db.View(func(tx *bolt.Tx) error {
		// bbolt does not check that the file holds every page its meta
		// page names; reading past the end of a truncated file would fault.
		fi, err := os.Stat(path)
		if err != nil {
			return err
		}
		if fi.Size() < tx.Size() {
			return fmt.Errorf("truncated: %d bytes, the database needs %d", fi.Size(), tx.Size())
		}
		if fn == nil {
			return nil
		}
		return fn(tx)
	})
}

// SyncDir fsyncs a directory, making renames and removals in it durable.
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
