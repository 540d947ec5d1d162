package mvcc

import (
	"bytes"
	"fmt"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// legacyHistoryBucket is where kvd kept history until December 2026: every
// version keyed by the key (escaped, see historyKey) and then the revision.
// Scattered writes dirtied a page of it per key, so history is now kept by
// revision (see history).
var legacyHistoryBucket = []byte("history")

// HasLegacyHistory reports whether tx holds history in the older format,
// which Init converts.
func HasLegacyHistory(tx *bolt.Tx) bool { return tx.Bucket(legacyHistoryBucket) != nil }

// migrateHistory moves history kept in the older format (a data directory,
// a backup or a snapshot from an older kvd) into the revisions bucket, in
// tx, and drops the old bucket. Each version's link to the one it replaced
// is the key's version before it, when that is not a tombstone; a key's
// oldest version that history holds links to none. Within a revision the
// old format kept the keys in key order, as the new one does. Compaction's
// trim starts over: its cursor was a key in the old format.
func migrateHistory(tx *bolt.Tx) error {
	old := tx.Bucket(legacyHistoryBucket)
	if old == nil {
		return nil
	}
	// The old bucket is in key order, the new one in revision order:
	// collect, sort, then append in order (bbolt splits its nodes only at
	// commit, so putting out of order into one fresh node would move
	// everything after each put).
	type version struct {
		hk, v []byte // in the new format; v still without its link
		prev  int64
	}
	var all []version
	var (
		curKey []byte
		prev   int64 // the revision of curKey's version before, if live
	)
	err := old.ForEach(func(hk, v []byte) error {
		k, rev, err := splitHistoryKey(hk)
		if err != nil {
			return err
		}
		if !bytes.Equal(k, curKey) {
			curKey, prev = k, 0
		}
		kv, err := decodeKV(v)
		if err != nil {
			return err
		}
		all = append(all, version{revKey(rev, k), v, prev})
		prev = 0
		if kv.GetVersion() > 0 {
			prev = rev
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("mvcc: convert history to the revision order: %w", err)
	}
	slices.SortFunc(all, func(a, b version) int { return bytes.Compare(a.hk, b.hk) })
	neu := tx.Bucket(bucketHistory)
	neu.FillPercent = fillPercent
	for _, v := range all {
		if err := neu.Put(v.hk, versionValue(v.prev, v.v)); err != nil {
			return fmt.Errorf("mvcc: convert history to the revision order: %w", err)
		}
	}
	if err := tx.DeleteBucket(legacyHistoryBucket); err != nil {
		return err
	}
	meta := tx.Bucket(bucketMeta)
	for _, k := range [][]byte{metaCompactCursor, metaCompactFinished} {
		if err := meta.Delete(k); err != nil {
			return err
		}
	}
	return nil
}
