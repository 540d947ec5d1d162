package backend

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var bucket = []byte("b")

func testConfig(dir string) Config {
	return Config{
		Dir:            dir,
		File:           "test.db",
		CleanMarker:    "test.clean",
		SyncedMarker:   "test.synced",
		CommitInterval: time.Hour, // commits only when asked, unless a test says otherwise
		CommitEntries:  100,
		Init: func(tx *bolt.Tx) error {
			_, err := tx.CreateBucketIfNotExists(bucket)
			return err
		},
		Logger: slog.New(slog.DiscardHandler),
	}
}

func open(t *testing.T, cfg Config) *Backend {
	t.Helper()
	b, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

// put writes k=v in a batch of one entry.
func put(t *testing.T, b *Backend, k, v string) {
	t.Helper()
	if err := b.Batch(func(tx *bolt.Tx) (int, error) {
		return 1, tx.Bucket(bucket).Put([]byte(k), []byte(v))
	}); err != nil {
		t.Fatalf("Batch: %v", err)
	}
}

// copyOf returns a copy (WriteTo) of a new database holding k=v.
func copyOf(t *testing.T, k, v string) *bytes.Buffer {
	t.Helper()
	src := open(t, testConfig(t.TempDir()))
	put(t, src, k, v)
	var snap bytes.Buffer
	if _, err := src.WriteTo(&snap, nil); err != nil {
		t.Fatal(err)
	}
	return &snap
}

// get reads k through View; "" means absent.
func get(t *testing.T, b *Backend, k string) string {
	t.Helper()
	var v string
	if err := b.View(func(tx *bolt.Tx) error {
		v = string(tx.Bucket(bucket).Get([]byte(k)))
		return nil
	}); err != nil {
		t.Fatalf("View: %v", err)
	}
	return v
}

func TestConfigValidate(t *testing.T) {
	good := testConfig("d")
	if err := good.Validate(); err != nil {
		t.Fatalf("valid config: %v", err)
	}
	for name, mutate := range map[string]func(*Config){
		"no dir":             func(c *Config) { c.Dir = "" },
		"no file":            func(c *Config) { c.File = "" },
		"file with a path":   func(c *Config) { c.File = "a/b.db" },
		"no marker":          func(c *Config) { c.CleanMarker = "" },
		"marker is the file": func(c *Config) { c.CleanMarker = c.File },
		"no synced marker":   func(c *Config) { c.SyncedMarker = "" },
		"markers are one":    func(c *Config) { c.SyncedMarker = c.CleanMarker },
		"no interval":        func(c *Config) { c.CommitInterval = 0 },
		"no entries":         func(c *Config) { c.CommitEntries = 0 },
	} {
		c := good
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, c)
		}
		if _, err := Open(c); err == nil {
			t.Errorf("%s: Open accepted %+v", name, c)
		}
	}
}

// TestBatchesShareATransaction checks that batches share one pending
// write transaction, that a short read sees it without committing it, that
// a long read or Commit commits it, and that it commits once it holds
// CommitEntries entries.
func TestBatchesShareATransaction(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.CommitEntries = 3
	b := open(t, cfg)
	put(t, b, "a", "1")
	put(t, b, "b", "2")
	if !b.Pending() {
		t.Fatal("no pending transaction after two batches")
	}
	if got := get(t, b, "a") + get(t, b, "b"); got != "12" {
		t.Fatalf("a read after two batches found %q, want 12", got)
	}
	if size, inUse, err := b.Size(); err != nil || size <= 0 || inUse <= 0 {
		t.Fatalf("Size = %d, %d, %v", size, inUse, err)
	}
	if !b.Pending() {
		t.Fatal("a short read committed the pending transaction")
	}
	var long string
	if err := b.ViewCommitted(func(tx *bolt.Tx) error {
		long = string(tx.Bucket(bucket).Get([]byte("b")))
		return nil
	}); err != nil || long != "2" {
		t.Fatalf("ViewCommitted found b=%q (%v), want 2", long, err)
	}
	if b.Pending() {
		t.Fatal("a long read left the pending transaction open")
	}
	put(t, b, "x", "9")
	if err := b.Commit(); err != nil || b.Pending() {
		t.Fatalf("Commit = %v, pending %v", err, b.Pending())
	}
	put(t, b, "c", "3")
	put(t, b, "d", "4")
	if !b.Pending() {
		t.Fatal("two entries committed before CommitEntries")
	}
	put(t, b, "e", "5")
	if b.Pending() {
		t.Fatal("the pending transaction holds CommitEntries entries and is still open")
	}
}

func TestCommitTimer(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.CommitInterval = 10 * time.Millisecond
	b := open(t, cfg)
	put(t, b, "a", "1")
	deadline := time.Now().Add(time.Second)
	for b.Pending() {
		if time.Now().After(deadline) {
			t.Fatal("the pending transaction was not committed by its timer")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestReadersSeeEveryWrite checks the other ways of reading: a read
// transaction, a copy of the file, the sizes.
func TestReadersSeeEveryWrite(t *testing.T) {
	b := open(t, testConfig(t.TempDir()))
	put(t, b, "a", "1")
	tx, err := b.ReadTx()
	if err != nil {
		t.Fatal(err)
	}
	if v := tx.Bucket(bucket).Get([]byte("a")); string(v) != "1" {
		t.Fatalf("ReadTx sees a=%q", v)
	}
	_ = tx.Rollback()

	put(t, b, "b", "2")
	var buf bytes.Buffer
	var announced int64
	n, err := b.WriteTo(&buf, func(size int64) { announced = size })
	if err != nil || n != int64(buf.Len()) || announced != n {
		t.Fatalf("WriteTo = %d, %v; wrote %d bytes, announced %d", n, err, buf.Len(), announced)
	}
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	if err := os.WriteFile(copyPath, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	err = CheckFile(copyPath, func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucket).Get([]byte("b")); string(v) != "2" {
			return errors.New("the copy lacks b")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the copy: %v", err)
	}

	size, inUse, err := b.Size()
	if err != nil || size <= 0 || inUse <= 0 || inUse > size {
		t.Fatalf("Size = %d, %d, %v", size, inUse, err)
	}
}

// TestFailureRefusesUse checks that a failed write rolls back everything
// pending, refuses all later use, and leaves the file at its last commit.
func TestFailureRefusesUse(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	b := open(t, cfg)
	put(t, b, "kept", "1")
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	put(t, b, "pending", "1")
	boom := errors.New("boom")
	err := b.Batch(func(tx *bolt.Tx) (int, error) {
		_ = tx.Bucket(bucket).Put([]byte("failing"), []byte("1"))
		return 1, boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Batch = %v, want boom", err)
	}
	if b.Pending() {
		t.Fatal("a failed batch left a pending transaction")
	}
	for name, use := range map[string]func() error{
		"Batch": func() error { return b.Batch(func(*bolt.Tx) (int, error) { return 1, nil }) },
		"View":  func() error { return b.View(func(*bolt.Tx) error { return nil }) },
		"ViewCommitted": func() error {
			return b.ViewCommitted(func(*bolt.Tx) error { return nil })
		},
		"Commit": b.Commit,
		"ReadTx": func() error {
			tx, err := b.ReadTx()
			if err == nil {
				_ = tx.Rollback()
			}
			return err
		},
		"WriteTo": func() error { _, err := b.WriteTo(&bytes.Buffer{}, nil); return err },
		"Size":    func() error { _, _, err := b.Size(); return err },
	} {
		if err := use(); !errors.Is(err, ErrFailed) || !errors.Is(err, boom) {
			t.Errorf("%s after a failure = %v, want ErrFailed wrapping boom", name, err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, cfg.CleanMarker)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a failed backend was marked clean: %v", err)
	}
	b = open(t, cfg)
	if b.Rebuilt() || get(t, b, "kept") != "1" || get(t, b, "pending") != "" {
		t.Fatalf("reopened after a failure: rebuilt %v, kept=%q, pending=%q; want the last commit", b.Rebuilt(), get(t, b, "kept"), get(t, b, "pending"))
	}
}

// TestCrashKeepsCommits checks that a file left by a crash (copied while
// the backend is open: what a kill leaves on disk) opens with every commit
// and without what was pending.
func TestCrashKeepsCommits(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(dir)
	b := open(t, cfg)
	put(t, b, "a", "1")
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	put(t, b, "pending", "1")
	crashed := t.TempDir()
	for _, name := range []string{cfg.File, cfg.SyncedMarker} {
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crashed, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, cfg.CleanMarker)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("an open backend has a clean marker: %v", err)
	}
	c := open(t, testConfig(crashed))
	if c.Rebuilt() || get(t, c, "a") != "1" || get(t, c, "pending") != "" {
		t.Fatalf("reopened after a crash: rebuilt %v, a=%q, pending=%q; want the last commit", c.Rebuilt(), get(t, c, "a"), get(t, c, "pending"))
	}
}

// TestOlderFiles checks files written before commits were fsynced (no
// synced marker): one closed cleanly is kept, and marked synced from then
// on; one without the clean marker is discarded.
func TestOlderFiles(t *testing.T) {
	for _, clean := range []bool{true, false} {
		dir := t.TempDir()
		cfg := testConfig(dir)
		b := open(t, cfg)
		put(t, b, "a", "1")
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatalf("a second Close: %v", err)
		}
		if err := b.View(func(*bolt.Tx) error { return nil }); !errors.Is(err, ErrClosed) {
			t.Fatalf("View after Close = %v, want ErrClosed", err)
		}
		// An older kvd's directory: no synced marker.
		if err := os.Remove(filepath.Join(dir, cfg.SyncedMarker)); err != nil {
			t.Fatal(err)
		}
		if !clean {
			if err := os.Remove(filepath.Join(dir, cfg.CleanMarker)); err != nil {
				t.Fatal(err)
			}
		}
		b = open(t, cfg)
		if b.Rebuilt() == clean || (get(t, b, "a") == "1") != clean {
			t.Fatalf("clean %v: reopened with rebuilt %v, a=%q", clean, b.Rebuilt(), get(t, b, "a"))
		}
		for _, m := range []string{cfg.CleanMarker, cfg.SyncedMarker} {
			_, err := os.Stat(filepath.Join(dir, m))
			if gone := errors.Is(err, os.ErrNotExist); gone != (m == cfg.CleanMarker) {
				t.Fatalf("clean %v: after open, %s exists: %v; want only the synced marker", clean, m, !gone)
			}
		}
	}
}

// TestRestore checks the swap: the new file replaces the old, with what was
// pending discarded and Init run; a file the check refuses changes nothing.
func TestRestore(t *testing.T) {
	snap := copyOf(t, "from", "src")

	dir := t.TempDir()
	cfg := testConfig(dir)
	inits := 0
	initBucket := cfg.Init
	cfg.Init = func(tx *bolt.Tx) error { inits++; return initBucket(tx) }
	b := open(t, cfg)
	put(t, b, "old", "1")
	put(t, b, "pending", "1")

	refused := errors.New("refused")
	if err := b.Restore(bytes.NewReader(snap.Bytes()), func(string) error { return refused }); !errors.Is(err, refused) {
		t.Fatalf("Restore with a refusing check = %v", err)
	}
	if _, err := os.Stat(b.Path() + ".restore"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused restore left its temporary file: %v", err)
	}
	if get(t, b, "old") != "1" || get(t, b, "pending") != "1" {
		t.Fatal("a refused restore changed the state")
	}

	put(t, b, "pending2", "1")
	var checked string
	if err := b.Restore(bytes.NewReader(snap.Bytes()), func(path string) error {
		checked = path
		return CheckFile(path, nil)
	}); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if checked != b.Path()+".restore" {
		t.Fatalf("check was given %q", checked)
	}
	if inits != 2 {
		t.Fatalf("Init ran %d times, want 2 (open and restore)", inits)
	}
	if get(t, b, "from") != "src" || get(t, b, "old") != "" || get(t, b, "pending2") != "" {
		t.Fatal("the restored state is not the snapshot's")
	}
	put(t, b, "after", "1")
	if get(t, b, "after") != "1" {
		t.Fatal("cannot write after a restore")
	}
	if _, err := os.Stat(b.Path() + replacedSuffix); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the replaced file is still there after the restore: %v", err)
	}
}

// TestSwapKeepsTheReplacedFileUntilReleased checks that the replaced file
// stays linked until release, and that a link a crash left is removed at
// open.
func TestSwapKeepsTheReplacedFileUntilReleased(t *testing.T) {
	snap := copyOf(t, "from", "src")
	dir := t.TempDir()
	cfg := testConfig(dir)
	b := open(t, cfg)
	put(t, b, "old", "1")
	if err := b.Commit(); err != nil {
		t.Fatal(err)
	}
	next := filepath.Join(dir, "next.db")
	if err := os.WriteFile(next, snap.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	release, err := b.Swap(next)
	if err != nil {
		t.Fatal(err)
	}
	if get(t, b, "from") != "src" || get(t, b, "old") != "" {
		t.Fatal("the swapped-in state is not the new file's")
	}
	replaced := b.Path() + replacedSuffix
	if _, err := os.Stat(replaced); err != nil {
		t.Fatalf("the replaced file is gone before release: %v", err)
	}
	release()
	if _, err := os.Stat(replaced); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the replaced file is still there after release: %v", err)
	}
	// A crash before release leaves the link; the next open removes it.
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(replaced, snap.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	b = open(t, cfg)
	if _, err := os.Stat(replaced); !errors.Is(err, os.ErrNotExist) || get(t, b, "from") != "src" {
		t.Fatalf("reopened: replaced file %v, from=%q", err, get(t, b, "from"))
	}
}

func TestCheckFileRefusesDamage(t *testing.T) {
	buf := copyOf(t, "a", "1")
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"truncated": buf.Bytes()[:buf.Len()/2+1],
		"garbage":   bytes.Repeat([]byte{0xAB}, 8192),
	} {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := CheckFile(path, nil); err == nil {
			t.Errorf("%s: CheckFile accepted it", name)
		}
	}
}

// TestAdopt checks that a copy filled through OpenCopy replaces the state
// as it is, open, and is written with fsynced commits from then on.
func TestAdopt(t *testing.T) {
	dir := t.TempDir()
	b := open(t, testConfig(dir))
	put(t, b, "old", "1")
	copyDB, err := b.OpenCopy(filepath.Join(dir, "copy.db"))
	if err != nil {
		t.Fatal(err)
	}
	if err := copyDB.Update(func(tx *bolt.Tx) error {
		bk, err := tx.CreateBucketIfNotExists(bucket)
		if err != nil {
			return err
		}
		return bk.Put([]byte("new"), []byte("1"))
	}); err != nil {
		t.Fatal(err)
	}
	release, err := b.Adopt(copyDB)
	if err != nil {
		t.Fatal(err)
	}
	release()
	if get(t, b, "new") != "1" || get(t, b, "old") != "" {
		t.Fatal("the adopted state is not the copy's")
	}
	if copyDB.NoSync {
		t.Fatal("the adopted database still commits without fsync")
	}
	put(t, b, "after", "1")
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"copy.db", "test.db" + replacedSuffix} {
		if _, err := os.Stat(filepath.Join(dir, name)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("%s is still there: %v", name, err)
		}
	}
	b = open(t, testConfig(dir))
	if get(t, b, "new") != "1" || get(t, b, "after") != "1" {
		t.Fatal("the adopted state did not survive a reopen")
	}
}
