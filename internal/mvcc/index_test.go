package mvcc

import (
	"errors"
	"fmt"
	"math/rand"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// describeIndex lists every key the index holds and its versions ("~" marks
// a tombstone).
func describeIndex(x *index) string {
	x.mu.RLock()
	defer x.mu.RUnlock()
	var b strings.Builder
	x.tree.Ascend(func(e keyVersions) bool {
		fmt.Fprintf(&b, "%q:", e.key)
		for _, v := range append(slices.Clone(e.older), e.newest) {
			mark := ""
			if v.tomb {
				mark = "~"
			}
			fmt.Fprintf(&b, " %s%d", mark, v.rev)
		}
		b.WriteString("\n")
		return true
	})
	return b.String()
}

// reloaded returns db with a Store of its own, its index built from
// history as opening the database builds it.
func reloaded(t *testing.T, db *testDB) *testDB {
	t.Helper()
	fresh := &testDB{DB: db.DB, s: NewStore()}
	if err := db.View(fresh.s.Load); err != nil {
		t.Fatal(err)
	}
	return fresh
}

// TestIndexKeptByWritesIsTheOneBuiltFromHistory applies random writes,
// compactions and partial trims, and after each round checks that the key
// index the writes and trims kept holds exactly what one built from
// history holds, and that both answer every read alike: an index that
// missed a version, kept one the trim deleted, or lost a key would differ.
func TestIndexKeptByWritesIsTheOneBuiltFromHistory(t *testing.T) {
	rng := rand.New(rand.NewSource(19))
	db := openDB(t)
	keys := []string{"a", "a/1", "a/2", "b", "b\x00c", "c", "d", "e"}
	var compact int64
	for round := range 12 {
		for range 40 {
			randomWrite(t, db, rng, keys)
		}
		var current int64
		read(t, db, func(r ReadView) { current = r.Revision() })
		if round%3 == 2 {
			compact = current - int64(rng.Intn(30))
			compactTo(t, db, compact)
			// Only part of the trim, sometimes: a database opened halfway
			// through one holds versions below the compact revision.
			for i := 0; i < rng.Intn(4); i++ {
				if err := db.Update(func(tx *bolt.Tx) error {
					w := db.s.NewWriter(tx, false)
					_, _, err := w.TrimHistory(5)
					return err
				}); err != nil {
					t.Fatal(err)
				}
			}
		}
		fresh := reloaded(t, db)
		if got, want := describeIndex(db.s.idx), describeIndex(fresh.s.idx); got != want {
			t.Fatalf("round %d: the index kept by the writes holds\n%s\nthe one built from history\n%s", round, got, want)
		}
		if got, want := answers(t, db, max(compact, 1), current), answers(t, fresh, max(compact, 1), current); got != want {
			t.Fatalf("round %d: the index kept by the writes answers\n%s\nthe one built from history\n%s", round, got, want)
		}
	}
	trimAll(t, db)
	if got, want := describeIndex(db.s.idx), describeIndex(reloaded(t, db).s.idx); got != want {
		t.Fatalf("after the whole trim the index holds\n%s\nthe one built from history\n%s", got, want)
	}
}

// TestReadOfAnOvertakenTransaction reads through a read transaction that
// writes overtook, as a member's reads do while a batch is pending: the
// read sees the store at its own revision, not the versions the index has
// gained since; and once a compaction's trim has removed versions it
// needs, it fails with ErrOvertaken, to be read again, rather than miss a
// key.
func TestReadOfAnOvertakenTransaction(t *testing.T) {
	// The map is large enough that no commit remaps the file, which would
	// wait for the read transaction this goroutine holds.
	db := openDBWith(t, &bolt.Options{InitialMmapSize: 64 << 20})
	put := func(k, v string) {
		apply(t, db, false, func(txn *TxnWrite) error { _, err := txn.Put(putReq(k, v)); return err })
	}
	put("a", "1") // 2
	put("b", "1") // 3
	put("c", "1") // 4

	old, err := db.Begin(false)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = old.Rollback() }()
	put("a", "2") // 5
	apply(t, db, false, func(txn *TxnWrite) error {
		_, err := txn.DeleteRange(&kvv1.DeleteRangeRequest{Key: []byte("b")}) // 6
		return err
	})
	put("d", "1") // 7

	r := db.s.Read(old)
	all := &kvv1.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}
	resp, err := r.Range(all)
	if err != nil {
		t.Fatal(err)
	}
	want := []*kvv1.KeyValue{kv("a", "1", 2, 2, 1), kv("b", "1", 3, 3, 1), kv("c", "1", 4, 4, 1)}
	if fmt.Sprint(resp.GetKvs()) != fmt.Sprint(want) || resp.GetCount() != 3 || resp.GetHeader().GetRevision() != 4 {
		t.Fatalf("the overtaken read answers %v (count %d, revision %d), want %v at 4", resp.GetKvs(), resp.GetCount(), resp.GetHeader().GetRevision(), want)
	}
	if n, err := r.KeyCount(); err != nil || n != 3 {
		t.Fatalf("the overtaken read counts %d keys (%v), want 3", n, err)
	}

	// Compacting at 6 and trimming removes a's version 2 and b's
	// versions, which a read at 4 needs.
	compactTo(t, db, 6)
	trimAll(t, db)
	if _, err := r.Range(all); !errors.Is(err, ErrOvertaken) {
		t.Fatalf("a read at its current revision after the trim: %v, want ErrOvertaken", err)
	}
	past := &kvv1.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: 3}
	if _, err := r.Range(past); !errors.Is(err, ErrOvertaken) {
		t.Fatalf("a read at a past revision after the trim: %v, want ErrOvertaken", err)
	}
	if _, err := r.KeyCount(); !errors.Is(err, ErrOvertaken) {
		t.Fatalf("a count after the trim: %v, want ErrOvertaken", err)
	}
	read(t, db, func(r ReadView) {
		if _, err := r.Range(past); !errors.Is(err, ErrCompacted) {
			t.Fatalf("a new read at a past revision after the trim: %v, want ErrCompacted", err)
		}
		resp, err := r.Range(all)
		if err != nil {
			t.Fatal(err)
		}
		want := []*kvv1.KeyValue{kv("a", "2", 2, 5, 2), kv("c", "1", 4, 4, 1), kv("d", "1", 7, 7, 1)}
		if fmt.Sprint(resp.GetKvs()) != fmt.Sprint(want) {
			t.Fatalf("a new read answers %v, want %v", resp.GetKvs(), want)
		}
	})
}

// BenchmarkIndexLoad builds the key index of 200,000 versions of 100,000
// keys from history, as opening a state does.
func BenchmarkIndexLoad(b *testing.B) {
	bdb, err := bolt.Open(filepath.Join(b.TempDir(), "s.db"), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		b.Fatal(err)
	}
	defer bdb.Close()
	s := NewStore()
	if err := bdb.Update(s.Init); err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 256)
	for round := range 20 {
		err := bdb.Update(func(tx *bolt.Tx) error {
			w := s.NewWriter(tx, false)
			for i := range 10000 {
				key := fmt.Appendf(nil, "key-%08d", (round*10000+i*7919)%100000)
				if _, err := w.Begin().Put(&kvv1.PutRequest{Key: key, Value: value}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := bdb.View(NewStore().Load); err != nil {
			b.Fatal(err)
		}
	}
}
