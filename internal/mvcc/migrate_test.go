package mvcc

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand"
	"testing"

	bolt "go.etcd.io/bbolt"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// TestHistoryInTheOlderFormatIsConverted writes the same changes into a
// store, and into a second store whose history is in the format kvd kept
// until December 2026 (by key, then revision); opening the second converts
// it. Both must then answer every read, watch catch-up and hash alike, hold
// the same versions, and compact alike, whether the older history was
// trimmed or not.
func TestHistoryInTheOlderFormatIsConverted(t *testing.T) {
	for _, trimmed := range []bool{false, true} {
		t.Run(fmt.Sprint("trimmed=", trimmed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(7))
			a := openDB(t)
			keys := []string{"a", "a/1", "a/2", "b", "b\x00c", "c", "d"}
			for range 200 {
				randomWrite(t, a, rng, keys)
			}
			var current int64
			read(t, a, func(r ReadView) { current = r.Revision() })
			var compact int64
			if trimmed {
				compact = current / 2
				compactTo(t, a, compact)
				trimAll(t, a)
			}
			b := legacyCopy(t, a)
			if err := b.Update(b.s.Init); err != nil {
				t.Fatal(err)
			}

			same := func(stage string, from int64) {
				t.Helper()
				if x, y := answers(t, a, from, current), answers(t, b, from, current); x != y {
					t.Fatalf("%s: the converted store answers\n%s\nthe other\n%s", stage, y, x)
				}
				if x, y := dump(t, a, !trimmed), dump(t, b, !trimmed); x != y {
					t.Fatalf("%s: the converted store holds\n%s\nthe other\n%s", stage, y, x)
				}
			}
			if !trimmed {
				same("converted", 1)
			} else {
				// The links of the oldest versions left may differ (the
				// older format does not say what a version replaced, once
				// that was trimmed), but never what a read finds.
				if x, y := answers(t, a, compact, current), answers(t, b, compact, current); x != y {
					t.Fatalf("converted: the converted store answers\n%s\nthe other\n%s", y, x)
				}
			}
			read(t, b, func(r ReadView) {
				if r.tx.Bucket(legacyHistoryBucket) != nil {
					t.Fatal("the older history bucket is still there")
				}
				if r.tx.Bucket(bucketKeys) != nil {
					t.Fatal("the keys bucket is still there")
				}
				if r.TrimPending() != trimmed {
					t.Fatalf("trim pending %v after the conversion", r.TrimPending())
				}
			})
			trimAll(t, b)
			compact = current - 20
			compactTo(t, a, compact)
			compactTo(t, b, compact)
			trimAll(t, a)
			trimAll(t, b)
			same("compacted after the conversion", compact)
		})
	}
}

// trimAll runs TrimHistory to the end.
func trimAll(t *testing.T, db *testDB) {
	t.Helper()
	for done := false; !done; {
		err := db.Update(func(tx *bolt.Tx) error {
			w := db.s.NewWriter(tx, false)
			var err error
			done, _, err = w.TrimHistory(5)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// legacyCopy returns a store with src's meta, its live keys in the keys
// bucket and its history in the older format (by key, escaped, then
// revision, no links), as kvd kept them before December 2026.
func legacyCopy(t *testing.T, src *testDB) *testDB {
	t.Helper()
	dst := openDB(t)
	err := src.View(func(stx *bolt.Tx) error {
		return dst.Update(func(dtx *bolt.Tx) error {
			if err := dtx.DeleteBucket(bucketHistory); err != nil {
				return err
			}
			meta := dtx.Bucket(bucketMeta)
			if err := stx.Bucket(bucketMeta).ForEach(func(k, v []byte) error { return meta.Put(k, v) }); err != nil {
				return err
			}
			keys, err := dtx.CreateBucket(bucketKeys)
			if err != nil {
				return err
			}
			r := src.s.Read(stx)
			var perr error
			if err := r.at(nil, rangeEndAll, r.Revision(), func(k, v []byte) bool {
				perr = keys.Put(k, v)
				return perr == nil
			}); err != nil || perr != nil {
				return errors.Join(err, perr)
			}
			old, err := dtx.CreateBucket(legacyHistoryBucket)
			if err != nil {
				return err
			}
			return history{stx.Bucket(bucketHistory)}.walk(nil, rangeEndAll, 0, math.MaxInt64, func(rev int64, k []byte, _ int64, kv []byte) (bool, error) {
				return true, old.Put(historyKey(k, rev), kv)
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// answers describes every read at revisions from..to, the changes from
// each of them, and the hashes.
func answers(t *testing.T, db *testDB, from, to int64) string {
	t.Helper()
	var out bytes.Buffer
	read(t, db, func(r ReadView) {
		for rev := from; rev <= to; rev++ {
			resp, err := r.Range(&kvv1.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev})
			if err != nil {
				t.Fatalf("range at %d: %v", rev, err)
			}
			fmt.Fprintf(&out, "%d: %v\n", rev, resp.GetKvs())
			resp, err = r.Range(&kvv1.RangeRequest{Key: []byte("a/"), RangeEnd: []byte("a0"), Revision: rev, Limit: 1})
			if err != nil {
				t.Fatalf("range at %d: %v", rev, err)
			}
			fmt.Fprintf(&out, "%d a/*: %v count %d more %v\n", rev, resp.GetKvs(), resp.GetCount(), resp.GetMore())
			h, _, _, err := r.HashKV(rev)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&out, "%d: hash %08x\n", rev, h)
			err = r.Changes([]byte("a"), []byte("b\x00d"), rev, 0, func(rev int64, ev Event) error {
				fmt.Fprintf(&out, "  %s\n", describe(rev, ev))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	})
	return out.String()
}

// dump lists what the history bucket holds, with or without each
// version's link to the one it replaced.
func dump(t *testing.T, db *testDB, links bool) string {
	t.Helper()
	var out bytes.Buffer
	err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketHistory).ForEach(func(k, v []byte) error {
			if !links {
				v = v[revBytes:]
			}
			fmt.Fprintf(&out, "%x %x\n", k, v)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out.String()
}

// Init records the format; a database of a newer one is refused by Init
// and Inspect, and Init writes nothing into it.
func TestNewerFormatRefused(t *testing.T) {
	db := openDB(t)
	if err := db.View(func(tx *bolt.Tx) error {
		if got := readU64(tx.Bucket(bucketMeta).Get(metaFormat)); got != Format {
			t.Errorf("format %d recorded, want %d", got, Format)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(metaFormat, u64(Format+1)) }); err != nil {
		t.Fatal(err)
	}
	err := db.Update(func(tx *bolt.Tx) error {
		if err := NewStore().Init(tx); !errors.Is(err, ErrNewerFormat) {
			t.Errorf("Init: %v, want ErrNewerFormat", err)
		}
		if _, _, err := Inspect(tx); !errors.Is(err, ErrNewerFormat) {
			t.Errorf("Inspect: %v, want ErrNewerFormat", err)
		}
		if got := readU64(tx.Bucket(bucketMeta).Get(metaFormat)); got != Format+1 {
			t.Errorf("format %d after the refusal", got)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
