package mvcc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// history is the one way into the history bucket: every version of every
// key, keyed by the revision that wrote it and then the key (see revKey), so
// that each write lands at the end of the bucket. The writes of a commit
// then fill a few pages at the end of the file, however scattered their
// keys: a bucket keyed by key first (kvd's layout before) dirtied one page
// per written key, which under writes all over the key space made bbolt's
// commit most of a member's CPU (see docs/notes/2026-12-history-by-revision.md).
//
// A stored version is the revision of the version it replaced (8 bytes,
// big-endian; 0 when the key did not exist before), then the KeyValue. That
// link is what lets a read at a past revision, and compaction, find a key's
// earlier version without an index of versions by key.
type history struct{ b *bolt.Bucket }

// revKey returns the history key of key's version written at rev.
func revKey(rev int64, key []byte) []byte {
	out := make([]byte, revBytes, revBytes+len(key))
	binary.BigEndian.PutUint64(out, uint64(rev))
	return append(out, key...)
}

// splitRevKey returns the revision and user key of a history key; the key
// aliases hk.
func splitRevKey(hk []byte) (int64, []byte, error) {
	if len(hk) < revBytes {
		return 0, nil, errBadHistoryKey
	}
	return int64(binary.BigEndian.Uint64(hk)), hk[revBytes:], nil
}

var errBadVersion = errors.New("malformed history version")

// versionValue returns the stored form of a version that replaced the
// version at prev (0: none).
func versionValue(prev int64, kv []byte) []byte {
	out := make([]byte, revBytes, revBytes+len(kv))
	binary.BigEndian.PutUint64(out, uint64(prev))
	return append(out, kv...)
}

// splitVersion returns the revision of the version a stored version
// replaced and its KeyValue, which aliases v.
func splitVersion(v []byte) (prev int64, kv []byte, err error) {
	if len(v) < revBytes {
		return 0, nil, errBadVersion
	}
	return int64(binary.BigEndian.Uint64(v)), v[revBytes:], nil
}

// put records kv (encoded) as the version of key written at rev, which
// replaced the version at prev (0: the key did not exist).
func (h history) put(key []byte, rev, prev int64, kv []byte) error {
	return h.b.Put(revKey(rev, key), versionValue(prev, kv))
}

// get returns the encoded KeyValue of key's version written at rev, or nil
// if history does not hold it (never written, or trimmed by compaction).
// It is valid until the transaction ends.
func (h history) get(rev int64, key []byte) ([]byte, error) {
	_, kv, err := h.version(rev, key)
	return kv, err
}

// version returns key's version written at rev, as get does, with the
// revision of the version it replaced.
func (h history) version(rev int64, key []byte) (prev int64, kv []byte, err error) {
	v := h.b.Get(revKey(rev, key))
	if v == nil {
		return 0, nil, nil
	}
	return splitVersion(v)
}

// walk calls fn with every version history holds at revisions from..to
// (inclusive) whose key is in [key, end), in revision order and, within a
// revision, in key order, until fn returns false or an error. The slices
// fn gets are valid until the transaction ends. Its cost is the number of
// versions in from..to, whatever the range: history is not indexed by key.
func (h history) walk(key, end []byte, from, to int64, fn func(rev int64, k []byte, prev int64, kv []byte) (bool, error)) error {
	c := h.b.Cursor()
	for hk, v := c.Seek(u64(uint64(max(from, 0)))); hk != nil; hk, v = c.Next() {
		rev, k, err := splitRevKey(hk)
		if err != nil {
			return err
		}
		if rev > to {
			return nil
		}
		if !InRange(k, key, end) {
			continue
		}
		prev, kv, err := splitVersion(v)
		if err != nil {
			return err
		}
		more, err := fn(rev, k, prev, kv)
		if err != nil || !more {
			return err
		}
	}
	return nil
}

// at calls emit with the key and encoded KeyValue of every key in
// [key, end) that was live at rev, in key order, until emit returns false.
// The keys that have not changed since rev are live in the keys bucket
// with the version they had then; for each key that has, the first change
// after rev names the version it replaced, the one live at rev (none if
// the key did not exist). So a read at a past revision costs the keys in
// the range plus the changes to any key since that revision. rev must not
// be below the compact revision: the versions it needs may be trimmed.
func (r ReadView) at(key, end []byte, rev int64, emit func(k, kv []byte) bool) error {
	h := history{r.tx.Bucket(bucketHistory)}
	if len(end) == 0 {
		if done, err := r.atByLinks(h, key, rev, emit); done || err != nil {
			return err
		}
	}
	changed := map[string]int64{} // key -> the version its first change after rev replaced
	err := h.walk(key, end, rev+1, math.MaxInt64, func(_ int64, k []byte, prev int64, _ []byte) (bool, error) {
		if _, seen := changed[string(k)]; !seen {
			changed[string(k)] = prev
		}
		return true, nil
	})
	if err != nil {
		return err
	}
	type version struct{ k, kv []byte }
	var then []version // the versions of the changed keys live at rev
	for k, prev := range changed {
		if prev == 0 {
			continue
		}
		kv, err := h.get(prev, []byte(k))
		if err != nil {
			return err
		}
		if kv == nil {
			return fmt.Errorf("mvcc: history lacks %q at revision %d, live at revision %d", k, prev, rev)
		}
		then = append(then, version{[]byte(k), kv})
	}
	slices.SortFunc(then, func(a, b version) int { return bytes.Compare(a.k, b.k) })

	c := r.tx.Bucket(bucketKeys).Cursor()
	k, v := c.Seek(key)
	for {
		for k != nil && InRange(k, key, end) {
			if _, ok := changed[string(k)]; !ok {
				break
			}
			k, v = c.Next() // changed since rev: its version then is in then
		}
		if k != nil && !InRange(k, key, end) {
			k = nil
		}
		switch {
		case k == nil && len(then) == 0:
			return nil
		case k != nil && (len(then) == 0 || bytes.Compare(k, then[0].k) < 0):
			if !emit(k, v) {
				return nil
			}
			k, v = c.Next()
		default:
			if !emit(then[0].k, then[0].kv) {
				return nil
			}
			then = then[1:]
		}
	}
}

// atByLinks is at for one key that is live and was created at or before
// rev: its versions since then are linked one to the next (only a
// deletion breaks the links), so following them back from its live
// version costs its own changes since rev, not every key's. It reports
// false, having emitted nothing, for a key it cannot read that way.
func (r ReadView) atByLinks(h history, key []byte, rev int64, emit func(k, kv []byte) bool) (bool, error) {
	v := r.tx.Bucket(bucketKeys).Get(key)
	if v == nil {
		return false, nil
	}
	kv, err := decodeKV(v)
	if err != nil {
		return false, err
	}
	if kv.GetCreateRevision() > rev {
		return false, nil // created since: what it was at rev is history's
	}
	// Each step back reads one stored version, the one the version in hand
	// replaced, which carries the link for the next step.
	mod := kv.GetModRevision()
	var prev int64
	if mod > rev {
		if prev, _, err = h.version(mod, key); err != nil {
			return false, err
		}
	}
	for mod > rev {
		if prev == 0 {
			return false, fmt.Errorf("mvcc: history has no version of %q before revision %d, though it was created at %d", key, mod, kv.GetCreateRevision())
		}
		before, pv, err := h.version(prev, key)
		if err != nil {
			return false, err
		}
		if pv == nil {
			return false, fmt.Errorf("mvcc: history lacks %q at revision %d, live at revision %d", key, prev, rev)
		}
		mod, prev, v = prev, before, pv
	}
	emit(key, v)
	return true, nil
}
