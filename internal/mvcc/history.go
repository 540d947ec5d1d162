package mvcc

import (
	"bytes"

	bolt "go.etcd.io/bbolt"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// history is the one way into the history bucket: the writes, the scans, and
// (when it comes) compaction, which will trim versions here and nowhere else.
type history struct{ b *bolt.Bucket }

// put records v as the version of key written at rev.
func (h history) put(key []byte, rev int64, v []byte) error {
	return h.b.Put(historyKey(key, rev), v)
}

// bounds returns where the history keys of [key, end) start, and where they
// stop (nil: at the end of the bucket).
func bounds(key, end []byte) (start, stop []byte) {
	switch {
	case len(end) == 0:
		// Every history key of key starts with its prefix, which ends in the
		// terminator 0x00 0x01; 0x00 0x02 never occurs, so it bounds them.
		stop = historyPrefix(key)
		stop[len(stop)-1]++
	case !bytes.Equal(end, rangeEndAll):
		stop = historyPrefix(end)
	}
	return historyPrefix(key), stop
}

// versions returns an iterator over every version of every key in
// [key, end), in key order and, for each key, in revision order.
func (h history) versions(key, end []byte) versionIter {
	start, stop := bounds(key, end)
	return versionIter{c: h.b.Cursor(), start: start, stop: stop}
}

// versionIter walks history keys in a range; see history.versions. It is a
// value, so a scan allocates no closure.
type versionIter struct {
	c       *bolt.Cursor
	start   []byte
	stop    []byte // nil: the end of the bucket
	started bool
}

// next returns the next version: its user key, revision and stored
// KeyValue (valid until the transaction ends), or ok false at the end.
func (it *versionIter) next() (userKey []byte, rev int64, v []byte, ok bool, err error) {
	var hk []byte
	if !it.started {
		it.started = true
		hk, v = it.c.Seek(it.start)
	} else {
		hk, v = it.c.Next()
	}
	if hk == nil || (it.stop != nil && bytes.Compare(hk, it.stop) >= 0) {
		return nil, 0, nil, false, nil
	}
	userKey, rev, err = splitHistoryKey(hk)
	if err != nil {
		return nil, 0, nil, false, err
	}
	return userKey, rev, v, true, nil
}

// at calls emit for every key in [key, end) that was live at rev, with the
// version it had then, in key order. It walks the cursor itself rather than
// through versions: Range at a past revision is a hot path, and this way its
// cursor and bounds stay off the heap.
func (h history) at(key, end []byte, rev int64, emit func(*kvv1.KeyValue)) error {
	c := h.b.Cursor()
	var stop []byte // history keys from here on are past the range
	switch {
	case len(end) == 0:
		// See bounds.
		stop = historyPrefix(key)
		stop[len(stop)-1]++
	case !bytes.Equal(end, rangeEndAll):
		stop = historyPrefix(end)
	}
	var (
		curKey  []byte
		visible []byte // the newest version of curKey at or before rev
	)
	flush := func() error {
		if visible == nil {
			return nil
		}
		kv, err := decodeKV(visible)
		if err != nil {
			return err
		}
		visible = nil
		if kv.GetVersion() > 0 { // tombstones have version 0
			emit(kv)
		}
		return nil
	}
	for hk, v := c.Seek(historyPrefix(key)); hk != nil; hk, v = c.Next() {
		if stop != nil && bytes.Compare(hk, stop) >= 0 {
			break
		}
		uk, r, err := splitHistoryKey(hk)
		if err != nil {
			return err
		}
		if !bytes.Equal(uk, curKey) {
			if err := flush(); err != nil {
				return err
			}
			curKey = uk
		}
		if r <= rev {
			visible = v
		}
	}
	return flush()
}
