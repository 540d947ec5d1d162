package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/kvd-io/kvd/internal/mvcc"
)

// TestStateWithHistoryInTheOlderFormat opens, and restores as a snapshot,
// a state whose history is in the format kvd kept until December 2026 (by
// key, then revision): each must answer every read, hash and watch
// catch-up as the state it was made from, and go on applying.
func TestStateWithHistoryInTheOlderFormat(t *testing.T) {
	log := newTestLog(t)
	entries := workload(t, log, 3, 400)
	ref := newFSM(t)
	applyInBatches(ref, entries, 16)

	dir := t.TempDir()
	old := openFSM(t, dir)
	applyInBatches(old, entries, 16)
	if err := old.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, StateFile)
	toOlderHistoryFormat(t, path)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	opened := openFSM(t, dir)
	restored := newFSM(t)
	mustRestore(t, restored, data)
	for name, f := range map[string]*FSM{"opened": opened, "restored": restored} {
		t.Run(name, func(t *testing.T) {
			if err := f.view(func(tx *bolt.Tx) error {
				if tx.Bucket([]byte("history")) != nil {
					t.Error("the older history bucket is still there")
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			sameState(t, ref, f)
			rev := ref.Revision()
			for _, from := range []int64{2, rev / 2, rev} {
				a, err := ref.Changes([]byte{0}, []byte{0}, from, 0)
				if err != nil {
					t.Fatal(err)
				}
				b, err := f.Changes([]byte{0}, []byte{0}, from, 0)
				if err != nil {
					t.Fatal(err)
				}
				if show(a) != show(b) {
					t.Fatalf("changes from %d:\n%s\nwant\n%s", from, show(b), show(a))
				}
			}
		})
	}
	// Both go on applying as the reference does.
	more := workload(t, log, 4, 50)
	for _, f := range []*FSM{ref, opened, restored} {
		applyInBatches(f, more, 8)
	}
	sameState(t, ref, opened)
	sameState(t, ref, restored)
}

// toOlderHistoryFormat rewrites the history of the state file at path in
// the older format: bucket "history", each version keyed by the key
// (0x00 written as 0x00 0xFF, ended by 0x00 0x01) and the big-endian
// revision, the value the KeyValue alone.
func toOlderHistoryFormat(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		old, err := tx.CreateBucket([]byte("history"))
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketHistory).ForEach(func(k, v []byte) error {
			rev, key := k[:8], k[8:]
			var hk []byte
			for _, b := range key {
				if b == 0 {
					hk = append(hk, 0, 0xFF)
					continue
				}
				hk = append(hk, b)
			}
			hk = append(append(hk, 0, 1), rev...)
			return old.Put(hk, v[8:])
		})
		if err != nil {
			return err
		}
		return tx.DeleteBucket(bucketHistory)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// A state written by a newer kvd, in a format this one does not know, is
// refused with ErrNewerFormat, as a file to open and as a snapshot to
// restore, and left as it was; this kvd's own state records its format.
func TestStateOfANewerFormatIsRefused(t *testing.T) {
	log := newTestLog(t)
	dir := t.TempDir()
	f := openFSM(t, dir)
	applyInBatches(f, workload(t, log, 5, 100), 16)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, StateFile)
	format := func() uint64 {
		t.Helper()
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var v uint64
		_ = db.View(func(tx *bolt.Tx) error { v = readU64(tx.Bucket(bucketMeta).Get([]byte("format"))); return nil })
		return v
	}
	if got := format(); got != mvcc.Format {
		t.Fatalf("the state records format %d, want %d", got, mvcc.Format)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put([]byte("format"), binary.BigEndian.AppendUint64(nil, mvcc.Format+1))
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	if g, err := New(Config{Dir: dir, Logger: slog.New(slog.DiscardHandler)}); !errors.Is(err, mvcc.ErrNewerFormat) {
		if g != nil {
			_ = g.Close()
		}
		t.Fatalf("opening a newer format: %v, want ErrNewerFormat", err)
	}
	if got := format(); got != mvcc.Format+1 {
		t.Fatalf("the refused state now records format %d", got)
	}

	other := newFSM(t)
	applyInBatches(other, workload(t, newTestLog(t), 6, 20), 8)
	rev := other.Revision()
	if err := other.Restore(io.NopCloser(bytes.NewReader(data))); !errors.Is(err, mvcc.ErrNewerFormat) {
		t.Fatalf("restoring a newer format: %v, want ErrNewerFormat", err)
	}
	if got := other.Revision(); got != rev {
		t.Fatalf("after the refused restore the revision is %d, was %d", got, rev)
	}
}
