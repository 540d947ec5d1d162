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
// read at the compact revision itself still works.
//
// History is in revision order, and each version names the one it
// replaced, so the trim walks the versions up to the compact revision once,
// in order: each deletes the version it replaced, and a tombstone itself
// too. What a version deletes does not depend on the compact revision, so
// a later compaction goes on from where the last walk stopped. Where the
// trim has got to is kept in meta ("compact_finished", "compact_cursor"),
// so that a restart or a snapshot taken halfway resumes it. What a member's
// disk still holds below the compact revision is never read, and the
// hashes leave it out (see logicalVersions), so members agree while they
// trim.

var (
	// metaCompactFinished is the compact revision up to which history has
	// been trimmed; metaCompactCursor the history key where the trim goes
	// on (absent: after the versions of compact_finished).
	metaCompactFinished = []byte("compact_finished")
	metaCompactCursor   = []byte("compact_cursor")
)

// LocalMetaKeys are the keys mvcc keeps in meta that describe this member's
// copy rather than the replicated state (how far its history is trimmed,
// the format it is kept in): members that applied the same log may differ
// in them (during a rolling upgrade, members of the version before the
// format record have none), so a hash of the state leaves them out.
var LocalMetaKeys = []string{string(metaCompactFinished), string(metaCompactCursor), string(metaFormat)}

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
	// A trim under way goes on from its cursor to the new target.
	return w.meta.Put(metaCompactRevision, u64(uint64(rev)))
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
// stops once it has deleted limit versions or looked at ten times as many.
// Call it until it reports done; each call is one chunk of a write
// transaction.
func (w *Writer) TrimHistory(limit int) (done bool, deleted int, err error) {
	target := w.Read().CompactRevision()
	finished := int64(readU64(w.meta.Get(metaCompactFinished)))
	if finished >= target {
		return true, 0, nil
	}
	var doomed []trimmedVersion
	c := w.hist.b.Cursor()
	var hk, v []byte
	if cur := w.meta.Get(metaCompactCursor); len(cur) > 0 {
		hk, v = c.Seek(cur)
	} else {
		hk, v = c.Seek(u64(uint64(finished + 1)))
	}
	looked := 0
	for ; hk != nil; hk, v = c.Next() {
		rev, k, err := splitRevKey(hk)
		if err != nil {
			return false, 0, err
		}
		if rev > target {
			hk = nil // done
			break
		}
		if len(doomed) >= limit || looked >= 10*limit {
			break // hk is where the next chunk starts
		}
		looked++
		prev, kvb, err := splitVersion(v)
		if err != nil {
			return false, 0, err
		}
		if prev > 0 {
			doomed = append(doomed, trimmedVersion{key: bytes.Clone(k), rev: prev}) // replaced at or below target
		}
		tomb, err := isTombstone(kvb)
		if err != nil {
			return false, 0, err
		}
		if tomb {
			doomed = append(doomed, trimmedVersion{key: bytes.Clone(k), rev: rev}) // a tombstone at or below target
		}
	}
	next := bytes.Clone(hk) // the versions doomed are all before it
	for _, d := range doomed {
		if err := w.hist.b.Delete(revKey(d.rev, d.key)); err != nil {
			return false, 0, err
		}
	}
	w.idx.trimmed(target, doomed)
	if next != nil {
		return false, len(doomed), w.meta.Put(metaCompactCursor, next)
	}
	if err := w.meta.Delete(metaCompactCursor); err != nil {
		return false, 0, err
	}
	return true, len(doomed), w.meta.Put(metaCompactFinished, u64(uint64(target)))
}

// logicalVersions calls fn with the history key and encoded KeyValue of
// every version a read can still reach at or below rev (rev at least the
// compact revision): the versions live at the compact revision, in key
// order, then every version above it up to rev, in history's order. It is
// what every member holds whether or not it has trimmed its history yet, so
// hashes built on it agree.
func (r ReadView) logicalVersions(rev int64, fn func(hk, v []byte) error) error {
	compact := r.CompactRevision()
	if compact > 0 {
		var ferr error
		err := r.at(nil, rangeEndAll, compact, func(k, v []byte) bool {
			kv, err := decodeKV(v)
			if err == nil {
				err = fn(revKey(kv.GetModRevision(), k), v)
			}
			ferr = err
			return err == nil
		})
		if err != nil {
			return err
		}
		if ferr != nil {
			return ferr
		}
	}
	return r.hist.walk(nil, rangeEndAll, compact+1, rev, func(rev int64, k []byte, _ int64, kv []byte) (bool, error) {
		return true, fn(revKey(rev, k), kv)
	})
}

// Changes calls fn with the changes of the keys in [key, end) at revisions
// from..to (inclusive; to <= 0 means no bound), as History does (PrevKV set
// from the version before), in revision order, then key order. Its cost is
// the number of changes to any key in from..to. It fails with ErrCompacted
// when from is below the compact revision.
func (r ReadView) Changes(key, end []byte, from, to int64, fn func(rev int64, ev Event) error) error {
	if compact := r.CompactRevision(); from < compact {
		return fmt.Errorf("%w: %d < compacted %d", ErrCompacted, from, compact)
	}
	if to <= 0 {
		to = math.MaxInt64
	}
	return r.changes(key, end, from, to, fn)
}
