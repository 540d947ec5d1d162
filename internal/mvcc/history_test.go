package mvcc

import (
	"fmt"
	"testing"

	bolt "go.etcd.io/bbolt"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// A version reader finds every version whatever the order it is asked
// for them: next to the last one (its step), at the same revision under
// another key, out of order, missing, and after a miss.
func TestVersionReaderFindsAnyOrder(t *testing.T) {
	db := openDB(t)
	// Revisions r+1..r+6: one key each, a..f in key order.
	var r int64
	for i, k := range []string{"a", "b", "c", "d", "e", "f"} {
		rev, _ := apply(t, db, false, func(txn *TxnWrite) error {
			_, err := txn.Put(&kvv1.PutRequest{Key: []byte(k), Value: []byte("v" + k)})
			return err
		})
		if i == 0 {
			r = rev - 1
		}
	}
	// Revision r+7: three keys in one transaction.
	apply(t, db, false, func(txn *TxnWrite) error {
		for _, k := range []string{"x", "y", "z"} {
			if _, err := txn.Put(&kvv1.PutRequest{Key: []byte(k), Value: []byte("v" + k)}); err != nil {
				return err
			}
		}
		return nil
	})
	type ask struct {
		key  string
		rev  int64  // after r
		want string // "": not in history
	}
	asks := []ask{
		{"a", 1, "va"}, {"b", 2, "vb"}, {"c", 3, "vc"}, // steps
		{"e", 5, "ve"},               // skips one
		{"d", 4, "vd"},               // backwards
		{"e", 5, "ve"},               // the next again
		{"q", 6, ""}, {"f", 6, "vf"}, // a miss at the next revision, then a hit
		{"x", 7, "vx"}, {"z", 7, "vz"}, // same revision, not the next item
		{"y", 7, "vy"}, // same revision, behind
		{"z", 7, "vz"}, // the next item
		{"a", 8, ""},   // past the end
		{"a", 1, "va"},
	}
	err := db.View(func(tx *bolt.Tx) error {
		v := history{tx.Bucket(bucketHistory)}.reader()
		for i, a := range asks {
			raw, err := v.get([]byte(a.key), r+a.rev)
			if err != nil {
				return err
			}
			got := ""
			if raw != nil {
				kv, err := decodeKV(raw)
				if err != nil {
					return err
				}
				got = string(kv.GetValue())
			}
			if got != a.want {
				return fmt.Errorf("ask %d, %q at %d: %q, want %q", i, a.key, a.rev, got, a.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
