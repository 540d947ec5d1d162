package mvcc

import (
	"bytes"
	"fmt"
	"math"
)

// Compaction has two halves. Compact, applied through the log, moves the
// compact revision: from then on every member refuses reads and watches
// below it, at once, whatever its disk holds. TrimHistory then deletes, on
// each member on its own and a bounded chunk at a time, the versions that
// no read can reach any more: for each key, every version older than its
// newest one at or below the compact revision, and that one too when it is
// a tombstone (the key was deleted: a read at the compact revision finds
// nothing either way). The newest version of every live key stays, so a
// read at the compact revision itself still works. Where the trim has got
// to is kept in meta ("compact_finished", "compact_cursor"), so that a
// restart or a snapshot taken halfway resumes it. What a member's disk
// still holds below the compact revision is never read, and the hashes
// leave it out (see logicalVersions), so members agree while they trim.

var (
	// metaCompactFinished is the compact revision up to which history has
	// been trimmed; metaCompactCursor the history key where the trim goes
	// on (absent: from the start).
	metaCompactFinished = []byte("compact_finished")
	metaCompactCursor   = []byte("compact_cursor")
)

// LocalMetaKeys are the keys mvcc keeps in meta that describe this member's
// progress rather than the replicated state (how far its history is
// trimmed): members that applied the same log may differ in them, so a hash
// of the state leaves them out.
var LocalMetaKeys = []string{string(metaCompactFinished), string(metaCompactCursor)}

// Compact moves the compact revision to rev. It refuses a revision above
// the current one (ErrFutureRevision) and one at or below the compact
// revision (ErrCompacted), as etcd does. The versions are trimmed later, by
// TrimHistory.
func (w *Writer) Compact(rev int64) error {
	current, compacted := w.Revision(), w.Read().CompactRevision()
	switch {
	case rev > current:
		return fmt.Errorf("%w: %d > current %d", ErrFutureRevision, rev, current)
	case rev <= compacted:
		return fmt.Errorf("%w: %d <= compacted %d", ErrCompacted, rev, compacted)
	}
	if err := w.meta.Put(metaCompactRevision, u64(uint64(rev))); err != nil {
		return err
	}
	// A new target: trim from the start again (the part already trimmed
	// goes fast: nothing is left there below the old target).
	return w.meta.Delete(metaCompactCursor)
}

// TrimPending reports whether history below the compact revision is still
// to be trimmed.
func (r ReadView) TrimPending() bool {
	meta := r.tx.Bucket(bucketMeta)
	return readU64(meta.Get(metaCompactFinished)) < readU64(meta.Get(metaCompactRevision))
}

// TrimmedTo returns the compact revision up to which history has been
// trimmed.
func (r ReadView) TrimmedTo() int64 {
	return int64(readU64(r.tx.Bucket(bucketMeta).Get(metaCompactFinished)))
}

// TrimHistory deletes up to about limit versions that the compact revision
// put out of reach (see Compact), and reports whether the trim is done: it
// stops at a key boundary once it has deleted limit versions or looked at
// ten times as many. Call it until it reports done; each call is one chunk
// of a write transaction.
func (w *Writer) TrimHistory(limit int) (done bool, deleted int, err error) {
	target := w.Read().CompactRevision()
	if int64(readU64(w.meta.Get(metaCompactFinished))) >= target {
		return true, 0, nil
	}
	var doomed [][]byte
	c := w.hist.b.Cursor()
	var hk, v []byte
	if cur := w.meta.Get(metaCompactCursor); len(cur) > 0 {
		hk, v = c.Seek(cur)
	} else {
		hk, v = c.First()
	}
	looked := 0
	var next []byte // where the next chunk starts; nil: the end
	for hk != nil {
		// One key's versions: those at or below the target are in order,
		// the newest of them last.
		prefix := bytes.Clone(hk[:len(hk)-revBytes])
		var below [][]byte // history keys of versions at or below target
		var newest []byte  // the newest of them's value
		for ; hk != nil && bytes.HasPrefix(hk, prefix) && len(hk) == len(prefix)+revBytes; hk, v = c.Next() {
			looked++
			if int64(readU64(hk[len(prefix):])) > target {
				continue
			}
			below = append(below, bytes.Clone(hk))
			newest = v
		}
		if len(below) > 0 {
			kept := below[len(below)-1]
			kv, err := decodeKV(newest)
			if err != nil {
				return false, 0, err
			}
			below = below[:len(below)-1]
			if kv.GetVersion() == 0 {
				below = append(below, kept) // a tombstone: nothing to keep
			}
			doomed = append(doomed, below...)
		}
		if hk != nil && (len(doomed) >= limit || looked >= 10*limit) {
			next = bytes.Clone(hk)
			break
		}
	}
	for _, k := range doomed {
		if err := w.hist.b.Delete(k); err != nil {
			return false, 0, err
		}
	}
	if next != nil {
		return false, len(doomed), w.meta.Put(metaCompactCursor, next)
	}
	if err := w.meta.Delete(metaCompactCursor); err != nil {
		return false, 0, err
	}
	return true, len(doomed), w.meta.Put(metaCompactFinished, u64(uint64(target)))
}

// logicalVersions calls fn with the history key and value of every version
// a read can still reach at or below rev: those above the compact revision,
// and for each key its newest version at or below it unless that is a
// tombstone. It is what every member holds whether or not it has trimmed
// its history yet, so hashes built on it agree.
func (r ReadView) logicalVersions(rev int64, fn func(hk, v []byte) error) error {
	compact := r.CompactRevision()
	c := r.tx.Bucket(bucketHistory).Cursor()
	var (
		prefix []byte
		kept   []byte // the newest version of prefix's key at or below compact
		keptK  []byte
	)
	flush := func() error {
		if kept == nil {
			return nil
		}
		kv, err := decodeKV(kept)
		if err != nil {
			return err
		}
		k, v := keptK, kept
		keptK, kept = nil, nil
		if kv.GetVersion() == 0 {
			return nil // a tombstone at or below compact: trimmed
		}
		return fn(k, v)
	}
	for hk, v := c.First(); hk != nil; hk, v = c.Next() {
		if len(hk) < revBytes {
			return errBadHistoryKey
		}
		p := hk[:len(hk)-revBytes]
		if !bytes.Equal(p, prefix) {
			if err := flush(); err != nil {
				return err
			}
			prefix = bytes.Clone(p)
		}
		r := int64(readU64(hk[len(p):]))
		switch {
		case r > rev:
		case r > compact:
			if err := flush(); err != nil {
				return err
			}
			if err := fn(hk, v); err != nil {
				return err
			}
		default:
			keptK, kept = bytes.Clone(hk), bytes.Clone(v)
		}
	}
	return flush()
}

// Changes calls fn with the changes of the keys in [key, end) at revisions
// from..to (inclusive; to <= 0 means no bound), as History does (PrevKV set
// from the version before), in key order then revision order. Unlike
// History it seeks to each key's first version at or after from, so its
// cost is the number of keys in the range plus the changes returned, not
// the whole history of the range. It fails with ErrCompacted when from is
// below the compact revision.
func (r ReadView) Changes(key, end []byte, from, to int64, fn func(rev int64, ev Event) error) error {
	if compact := r.CompactRevision(); from < compact {
		return fmt.Errorf("%w: %d < compacted %d", ErrCompacted, from, compact)
	}
	if to <= 0 {
		to = math.MaxInt64
	}
	start, stop := bounds(key, end)
	c := r.tx.Bucket(bucketHistory).Cursor()
	hk, v := c.Seek(start)
	for hk != nil && (stop == nil || bytes.Compare(hk, stop) < 0) {
		if len(hk) < revBytes {
			return errBadHistoryKey
		}
		prefix := bytes.Clone(hk[:len(hk)-revBytes])
		// The first version at or after from, and the one before it.
		ours := func(k []byte) bool {
			return k != nil && len(k) == len(prefix)+revBytes && bytes.HasPrefix(k, prefix)
		}
		var before []byte
		if int64(readU64(hk[len(prefix):])) < from {
			hk, v = c.Seek(append(bytes.Clone(prefix), u64(uint64(from))...))
			if !ours(hk) {
				continue // no version of this key at or after from
			}
			if pk, pv := c.Prev(); ours(pk) {
				before = bytes.Clone(pv)
			}
			hk, v = c.Next() // back to the first version at or after from
		}
		for ; ours(hk); hk, v = c.Next() {
			rev := int64(readU64(hk[len(prefix):]))
			if rev > to {
				// Past the bound: on to the next key.
				hk, v = c.Seek(append(bytes.Clone(prefix), u64(math.MaxUint64)...))
				break
			}
			kv, err := decodeKV(v)
			if err != nil {
				return err
			}
			ev := Event{Type: Put, KV: kv}
			if kv.GetVersion() == 0 {
				ev.Type = Delete
			}
			if before != nil {
				pkv, err := decodeKV(before)
				if err != nil {
					return err
				}
				if pkv.GetVersion() > 0 {
					ev.PrevKV = pkv
				}
			}
			if err := fn(rev, ev); err != nil {
				return err
			}
			before = bytes.Clone(v)
		}
	}
	return nil
}
