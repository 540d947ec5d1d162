package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// testDB is a bbolt file and the Store initialised with it.
type testDB struct {
	*bolt.DB
	s *Store
}

// openDB returns an initialised store in a fresh bbolt file.
func openDB(t *testing.T) *testDB { t.Helper(); return openDBWith(t, nil) }

// openDBWith is openDB with bbolt's options.
func openDBWith(t *testing.T, opts *bolt.Options) *testDB {
	t.Helper()
	db, err := bolt.Open(filepath.Join(t.TempDir(), "s.db"), 0o600, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = db.Close() })
	tdb := &testDB{DB: db, s: NewStore()}
	if err := db.Update(tdb.s.Init); err != nil {
		t.Fatal(err)
	}
	return tdb
}

// apply runs fn in one key-value transaction of its own write transaction
// and returns the transaction's revision and changes.
func apply(t *testing.T, db *testDB, record bool, fn func(*TxnWrite) error) (int64, []Event) {
	t.Helper()
	var (
		rev     int64
		changes []Event
	)
	err := db.Update(func(tx *bolt.Tx) error {
		w := db.s.NewWriter(tx, record)
		txn := w.Begin()
		if err := fn(txn); err != nil {
			return err
		}
		rev, changes = txn.Revision(), txn.Changes()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return rev, changes
}

// randomWrite applies one write chosen by rng: a put or a delete of one of
// keys, a delete of the range a/ to a0, or a txn that writes several keys
// at one revision.
func randomWrite(t *testing.T, db *testDB, rng *rand.Rand, keys []string) {
	t.Helper()
	k := keys[rng.Intn(len(keys))]
	apply(t, db, false, func(txn *TxnWrite) error {
		switch rng.Intn(6) {
		case 0:
			_, err := txn.DeleteRange(&kvv1.DeleteRangeRequest{Key: []byte(k)})
			return err
		case 1:
			_, err := txn.DeleteRange(&kvv1.DeleteRangeRequest{Key: []byte("a/"), RangeEnd: []byte("a0")})
			return err
		case 2: // several keys at one revision
			_, err := txn.Txn(&kvv1.TxnRequest{Success: []*kvv1.RequestOp{opPut("d", "t"), opPut("e"+k, "t"), opDel("c", "")}})
			return err
		}
		_, err := txn.Put(putReq(k, fmt.Sprint(rng.Int())))
		return err
	})
}

func read(t *testing.T, db *testDB, fn func(ReadView)) {
	t.Helper()
	if err := db.View(func(tx *bolt.Tx) error { fn(db.s.Read(tx)); return nil }); err != nil {
		t.Fatal(err)
	}
}

func kv(k, v string, create, mod, version int64) *kvv1.KeyValue {
	return &kvv1.KeyValue{Key: []byte(k), Value: []byte(v), CreateRevision: create, ModRevision: mod, Version: version}
}

func tomb(k string, rev int64) *kvv1.KeyValue {
	return &kvv1.KeyValue{Key: []byte(k), ModRevision: rev}
}

func putReq(k, v string) *kvv1.PutRequest {
	return &kvv1.PutRequest{Key: []byte(k), Value: []byte(v)}
}

func opPut(k, v string) *kvv1.RequestOp {
	return &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestPut{RequestPut: putReq(k, v)}}
}

func opDel(k, end string) *kvv1.RequestOp {
	return &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestDeleteRange{
		RequestDeleteRange: &kvv1.DeleteRangeRequest{Key: []byte(k), RangeEnd: []byte(end)}}}
}

func opGet(k string) *kvv1.RequestOp {
	return &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestRange{RequestRange: &kvv1.RangeRequest{Key: []byte(k)}}}
}

func opTxn(r *kvv1.TxnRequest) *kvv1.RequestOp {
	return &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestTxn{RequestTxn: r}}
}

func valueIs(k, v string) *kvv1.Compare {
	return &kvv1.Compare{Key: []byte(k), Result: kvv1.Compare_COMPARE_RESULT_EQUAL,
		Target: kvv1.Compare_COMPARE_TARGET_VALUE, TargetUnion: &kvv1.Compare_Value{Value: []byte(v)}}
}

func sameEvents(a, b []Event) bool {
	return slices.EqualFunc(a, b, func(x, y Event) bool {
		return x.Type == y.Type && proto.Equal(x.KV, y.KV) && proto.Equal(x.PrevKV, y.PrevKV)
	})
}

func TestPutAndDeleteChanges(t *testing.T) {
	db := openDB(t)
	put := func(k, v string) func(*TxnWrite) error {
		return func(t *TxnWrite) error { _, err := t.Put(putReq(k, v)); return err }
	}
	tests := []struct {
		name string
		fn   func(*TxnWrite) error
		rev  int64
		want []Event
	}{
		{name: "create", fn: put("a", "1"), rev: 2, want: []Event{{Type: Put, KV: kv("a", "1", 2, 2, 1)}}},
		{name: "update", fn: put("a", "2"), rev: 3, want: []Event{{Type: Put, KV: kv("a", "2", 2, 3, 2), PrevKV: kv("a", "1", 2, 2, 1)}}},
		{name: "another key", fn: put("b", "1"), rev: 4, want: []Event{{Type: Put, KV: kv("b", "1", 4, 4, 1)}}},
		{name: "delete a range, in key order", rev: 5,
			fn: func(t *TxnWrite) error {
				_, err := t.DeleteRange(&kvv1.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("c")})
				return err
			},
			want: []Event{
				{Type: Delete, KV: tomb("a", 5), PrevKV: kv("a", "2", 2, 3, 2)},
				{Type: Delete, KV: tomb("b", 5), PrevKV: kv("b", "1", 4, 4, 1)},
			}},
		{name: "recreate", fn: put("a", "3"), rev: 6, want: []Event{{Type: Put, KV: kv("a", "3", 6, 6, 1)}}},
	}
	for _, tt := range tests {
		rev, got := apply(t, db, true, tt.fn)
		if rev != tt.rev || !sameEvents(got, tt.want) {
			t.Fatalf("%s: revision %d, changes %v; want %d, %v", tt.name, rev, got, tt.rev, tt.want)
		}
	}
}

// TestTxnChangesInOpOrder checks that a txn's events come in the order its
// operations (nested ones included) applied them, all at one revision.
func TestTxnChangesInOpOrder(t *testing.T) {
	db := openDB(t)
	apply(t, db, true, func(t *TxnWrite) error { _, err := t.Put(putReq("a", "1")); return err })
	r := &kvv1.TxnRequest{
		Compare: []*kvv1.Compare{valueIs("a", "1")},
		Success: []*kvv1.RequestOp{
			opPut("z", "1"),
			opGet("a"),
			opDel("a", ""),
			opTxn(&kvv1.TxnRequest{Success: []*kvv1.RequestOp{opPut("m", "1")}}),
			opPut("b", "1"),
		},
		Failure: []*kvv1.RequestOp{opPut("never", "1")},
	}
	var resp *kvv1.TxnResponse
	rev, got := apply(t, db, true, func(t *TxnWrite) error {
		if err := t.CheckTxn(r); err != nil {
			return err
		}
		var err error
		resp, err = t.Txn(r)
		return err
	})
	want := []Event{
		{Type: Put, KV: kv("z", "1", 3, 3, 1)},
		{Type: Delete, KV: tomb("a", 3), PrevKV: kv("a", "1", 2, 2, 1)},
		{Type: Put, KV: kv("m", "1", 3, 3, 1)},
		{Type: Put, KV: kv("b", "1", 3, 3, 1)},
	}
	if rev != 3 || !sameEvents(got, want) {
		t.Fatalf("revision %d, changes %v; want 3, %v", rev, got, want)
	}
	if !resp.GetSucceeded() || resp.GetHeader().GetRevision() != 3 || len(resp.GetResponses()) != 5 {
		t.Fatalf("response %v", resp)
	}
}

// TestRevisionOnlyOnWrite checks that a transaction that writes nothing
// allocates no revision and reports no change.
func TestRevisionOnlyOnWrite(t *testing.T) {
	db := openDB(t)
	apply(t, db, true, func(t *TxnWrite) error { _, err := t.Put(putReq("a", "1")); return err })
	for name, fn := range map[string]func(*TxnWrite) error{
		"delete of nothing": func(t *TxnWrite) error {
			resp, err := t.DeleteRange(&kvv1.DeleteRangeRequest{Key: []byte("b"), RangeEnd: []byte("c")})
			if err == nil && (resp.GetDeleted() != 0 || resp.GetHeader().GetRevision() != 2) {
				return errors.New("unexpected delete response")
			}
			return err
		},
		"read-only txn": func(t *TxnWrite) error {
			_, err := t.Txn(&kvv1.TxnRequest{Success: []*kvv1.RequestOp{opGet("a")}})
			return err
		},
		"failed compare, empty branch": func(t *TxnWrite) error {
			_, err := t.Txn(&kvv1.TxnRequest{Compare: []*kvv1.Compare{valueIs("a", "2")}, Success: []*kvv1.RequestOp{opPut("x", "1")}})
			return err
		},
		"txn deleting nothing": func(t *TxnWrite) error {
			_, err := t.Txn(&kvv1.TxnRequest{Success: []*kvv1.RequestOp{opDel("q", "")}})
			return err
		},
	} {
		rev, got := apply(t, db, true, fn)
		if rev != 0 || got != nil {
			t.Fatalf("%s: revision %d, changes %v; want none", name, rev, got)
		}
		read(t, db, func(r ReadView) {
			if r.Revision() != 2 {
				t.Fatalf("%s moved the store revision to %d", name, r.Revision())
			}
		})
	}
}

// TestNoChangesWithoutRecording checks that a Writer that does not record
// reports nothing.
func TestNoChangesWithoutRecording(t *testing.T) {
	db := openDB(t)
	rev, got := apply(t, db, false, func(t *TxnWrite) error { _, err := t.Put(putReq("a", "1")); return err })
	if rev != 2 || got != nil {
		t.Fatalf("revision %d, changes %v; want 2 and none", rev, got)
	}
}

// TestReadAtPastRevisions checks Range at every revision of a short
// history, and the revision checks.
func TestReadAtPastRevisions(t *testing.T) {
	db := openDB(t)
	steps := []func(*TxnWrite) error{
		func(t *TxnWrite) error { _, err := t.Put(putReq("a", "1")); return err }, // 2
		func(t *TxnWrite) error { _, err := t.Put(putReq("b", "1")); return err }, // 3
		func(t *TxnWrite) error { _, err := t.Put(putReq("a", "2")); return err }, // 4
		func(t *TxnWrite) error { // 5
			_, err := t.DeleteRange(&kvv1.DeleteRangeRequest{Key: []byte("a")})
			return err
		},
		func(t *TxnWrite) error { _, err := t.Put(putReq("c", "1")); return err }, // 6
	}
	for _, s := range steps {
		apply(t, db, false, s)
	}
	want := map[int64][]*kvv1.KeyValue{
		1: nil,
		2: {kv("a", "1", 2, 2, 1)},
		3: {kv("a", "1", 2, 2, 1), kv("b", "1", 3, 3, 1)},
		4: {kv("a", "2", 2, 4, 2), kv("b", "1", 3, 3, 1)},
		5: {kv("b", "1", 3, 3, 1)},
		6: {kv("b", "1", 3, 3, 1), kv("c", "1", 6, 6, 1)},
		0: {kv("b", "1", 3, 3, 1), kv("c", "1", 6, 6, 1)},
	}
	read(t, db, func(r ReadView) {
		for rev, kvs := range want {
			resp, err := r.Range(&kvv1.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev})
			if err != nil {
				t.Fatalf("Range at %d: %v", rev, err)
			}
			if resp.GetHeader().GetRevision() != 6 || !slices.EqualFunc(resp.GetKvs(), kvs, func(a, b *kvv1.KeyValue) bool { return proto.Equal(a, b) }) {
				t.Fatalf("Range at %d = %v, want %v", rev, resp, kvs)
			}
			one, err := r.Range(&kvv1.RangeRequest{Key: []byte("a"), Revision: rev})
			if err != nil {
				t.Fatal(err)
			}
			if wantA := slices.IndexFunc(kvs, func(kv *kvv1.KeyValue) bool { return string(kv.Key) == "a" }) >= 0; (one.GetCount() == 1) != wantA {
				t.Fatalf("single-key Range of a at %d = %v", rev, one)
			}
		}
		if _, err := r.Range(&kvv1.RangeRequest{Key: []byte("a"), Revision: 7}); !errors.Is(err, ErrFutureRevision) {
			t.Fatalf("Range at a future revision = %v", err)
		}
		resp, err := r.Range(&kvv1.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: 4, Limit: 1, KeysOnly: true})
		if err != nil || resp.GetCount() != 2 || !resp.GetMore() || len(resp.GetKvs()) != 1 || resp.GetKvs()[0].GetValue() != nil {
			t.Fatalf("limited keys-only Range = %v, %v", resp, err)
		}
		if resp, err := r.Range(&kvv1.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: 3, CountOnly: true}); err != nil || resp.GetCount() != 2 || len(resp.GetKvs()) != 0 {
			t.Fatalf("count-only Range = %v, %v", resp, err)
		}
	})

	// A compacted revision is refused, by reads and by txns that read it.
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(metaCompactRevision, u64(4)) }); err != nil {
		t.Fatal(err)
	}
	read(t, db, func(r ReadView) {
		if _, err := r.Range(&kvv1.RangeRequest{Key: []byte("a"), Revision: 3}); !errors.Is(err, ErrCompacted) {
			t.Fatalf("Range below the compact revision = %v", err)
		}
		if _, _, _, err := r.HashKV(3); !errors.Is(err, ErrCompacted) {
			t.Fatalf("HashKV below the compact revision = %v", err)
		}
	})
	err := db.Update(func(tx *bolt.Tx) error {
		w := db.s.NewWriter(tx, true)
		nested := &kvv1.TxnRequest{Success: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestRange{RequestRange: &kvv1.RangeRequest{Key: []byte("a"), Revision: 3}}}}}
		if err := w.Begin().CheckTxn(&kvv1.TxnRequest{Failure: []*kvv1.RequestOp{opTxn(nested)}}); !errors.Is(err, ErrCompacted) {
			t.Fatalf("CheckTxn of a nested read below the compact revision = %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestHistoryMatchesChanges checks that History yields the events that the
// transactions reported, by key within a revision, from a given revision.
func TestHistoryMatchesChanges(t *testing.T) {
	db := openDB(t)
	byRev := map[int64][]Event{}
	record := func(fn func(*TxnWrite) error) {
		rev, changes := apply(t, db, true, fn)
		if rev != 0 {
			byRev[rev] = changes
		}
	}
	txn := func(r *kvv1.TxnRequest) func(*TxnWrite) error {
		return func(t *TxnWrite) error { _, err := t.Txn(r); return err }
	}
	record(txn(&kvv1.TxnRequest{Success: []*kvv1.RequestOp{opPut("b", "1"), opPut("a", "1"), opPut("c", "1")}})) // 2
	record(txn(&kvv1.TxnRequest{Success: []*kvv1.RequestOp{opPut("c", "2"), opDel("a", "b")}}))                  // 3
	record(txn(&kvv1.TxnRequest{Success: []*kvv1.RequestOp{opPut("a", "2"), opDel("b", "c")}}))                  // 4
	for _, from := range []int64{0, 2, 3, 4, 5} {
		got := map[int64][]Event{}
		read(t, db, func(r ReadView) {
			if err := r.History([]byte{0}, []byte{0}, from, func(rev int64, ev Event) error {
				got[rev] = append(got[rev], ev)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		})
		for rev := int64(2); rev <= 4; rev++ {
			want := slices.Clone(byRev[rev])
			slices.SortStableFunc(want, func(a, b Event) int { return bytes.Compare(a.KV.GetKey(), b.KV.GetKey()) })
			if rev < from {
				want = nil
			}
			if !sameEvents(got[rev], want) {
				t.Fatalf("History from %d at revision %d = %v, want %v", from, rev, got[rev], want)
			}
		}
	}
	// One key only.
	var revs []int64
	read(t, db, func(r ReadView) {
		_ = r.History([]byte("a"), nil, 0, func(rev int64, ev Event) error { revs = append(revs, rev); return nil })
	})
	if !slices.Equal(revs, []int64{2, 3, 4}) {
		t.Fatalf("History of a: revisions %v", revs)
	}
}

// TestHashKV checks that HashKV covers history up to a revision.
func TestHashKV(t *testing.T) {
	hashes := func(values ...string) []uint32 {
		db := openDB(t)
		for _, v := range values {
			apply(t, db, false, func(t *TxnWrite) error { _, err := t.Put(putReq("k", v)); return err })
		}
		var out []uint32
		read(t, db, func(r ReadView) {
			for rev := int64(1); rev <= r.Revision(); rev++ {
				h, hashRev, _, err := r.HashKV(rev)
				if err != nil || hashRev != rev {
					t.Fatalf("HashKV(%d) = %d, %v", rev, hashRev, err)
				}
				out = append(out, h)
			}
			if _, _, _, err := r.HashKV(r.Revision() + 1); !errors.Is(err, ErrFutureRevision) {
				t.Fatalf("HashKV of a future revision = %v", err)
			}
		})
		return out
	}
	a, b := hashes("1", "2", "3"), hashes("1", "2", "x")
	if a[0] != b[0] || a[1] != b[1] || a[2] != b[2] || a[3] == b[3] {
		t.Fatalf("hashes %v and %v: want equal up to revision 3, different at 4", a, b)
	}
}

// TestReadOfOneKeyAtPastRevisions checks a single key read at each past
// revision (which follows the key's links back from its live version when
// it can) against the same key read as a range (which walks the changes).
func TestReadOfOneKeyAtPastRevisions(t *testing.T) {
	db := openDB(t)
	put := func(k, v string) {
		apply(t, db, false, func(txn *TxnWrite) error { _, err := txn.Put(putReq(k, v)); return err })
	}
	del := func(k string) {
		apply(t, db, false, func(txn *TxnWrite) error {
			_, err := txn.DeleteRange(&kvv1.DeleteRangeRequest{Key: []byte(k)})
			return err
		})
	}
	put("b", "0")
	put("a", "1")
	put("a", "2")
	put("b", "1")
	put("a", "3")
	del("a")
	put("b", "2")
	put("a", "4") // recreated: its links stop here
	put("a", "5")
	put("a", "6")
	del("b")
	read(t, db, func(r ReadView) {
		for rev := int64(1); rev <= r.Revision(); rev++ {
			for _, k := range []string{"a", "b"} {
				one, err := r.Range(&kvv1.RangeRequest{Key: []byte(k), Revision: rev})
				if err != nil {
					t.Fatal(err)
				}
				asRange, err := r.Range(&kvv1.RangeRequest{Key: []byte(k), RangeEnd: []byte(k + "\x00"), Revision: rev})
				if err != nil {
					t.Fatal(err)
				}
				if fmt.Sprint(one.GetKvs()) != fmt.Sprint(asRange.GetKvs()) {
					t.Fatalf("%s at revision %d: %v, as a range %v", k, rev, one.GetKvs(), asRange.GetKvs())
				}
			}
		}
	})
}
