package mvcc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

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
// link is what lets a watcher catching up, and compaction, find a key's
// earlier version without the key index.
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

// versionReader looks up versions in history by revision and key, with
// one cursor and one key buffer for a read of many keys.
type versionReader struct {
	c   *bolt.Cursor
	buf []byte
	arr [64]byte // buf's first array: most history keys fit
	// last is the revision of the version the cursor stands on, 0 when
	// it stands nowhere known.
	last int64
}

func (h history) reader() *versionReader {
	v := &versionReader{c: h.b.Cursor()}
	v.buf = v.arr[:0]
	return v
}

// get returns the encoded KeyValue of key's version written at rev, or nil
// if history does not hold it (never written, or trimmed by compaction).
// It is valid until the transaction ends.
//
// A range reads its keys' versions in key order. Keys written in key order
// (a bulk load, a transaction's keys) have their versions next to each
// other in history, so when rev is the revision the cursor stands on or
// the one after, the cursor's next item is tried first: a step instead of
// a descent from the root (about a quarter of the cost), and a wasted step
// only when that guess fails.
func (v *versionReader) get(key []byte, rev int64) ([]byte, error) {
	v.buf = binary.BigEndian.AppendUint64(v.buf[:0], uint64(rev))
	v.buf = append(v.buf, key...)
	var hk, val []byte
	if v.last != 0 && (rev == v.last || rev == v.last+1) {
		hk, val = v.c.Next()
	}
	if !bytes.Equal(hk, v.buf) {
		hk, val = v.c.Seek(v.buf)
	}
	if !bytes.Equal(hk, v.buf) {
		v.last = 0
		return nil, nil
	}
	v.last = rev
	_, kv, err := splitVersion(val)
	return kv, err
}

// indexed is get for a version the key index names, which history must
// hold.
func (v *versionReader) indexed(key []byte, rev int64) ([]byte, error) {
	kv, err := v.get(key, rev)
	if err == nil && kv == nil {
		err = fmt.Errorf("mvcc: history lacks %q at revision %d, which the key index holds", key, rev)
	}
	return kv, err
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
// [key, end) that was live at rev, in key order, until emit returns false:
// the key index names each one's version then, which history holds. rev
// must not be below the compact revision.
func (r ReadView) at(key, end []byte, rev int64, emit func(k, kv []byte) bool) error {
	vr := r.hist.reader()
	return r.idx.live(key, end, rev, func(k []byte, mod int64) (bool, error) {
		v, err := vr.indexed(k, mod)
		if err != nil {
			return false, err
		}
		return emit(k, v), nil
	})
}
