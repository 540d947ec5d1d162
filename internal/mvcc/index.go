package mvcc

import (
	"bytes"
	"slices"
	"sync"

	"github.com/google/btree"
)

// index is the key index, etcd's design: for every key, in key order, the
// revisions of the versions of it that history holds, in memory. Reads find
// through it which version of each key in a range was live at the revision
// they read (the newest at or below it, unless that is a tombstone), then
// read that version from history, where it is keyed by revision. So writes
// only append to history, at its end, however scattered their keys: there is
// no bucket of current values for each write to rewrite a page of (kvd's
// "keys" bucket before, whose page writes were a quarter to two fifths of a
// member's CPU per scattered put; see
// docs/notes/2026-12-keys-in-memory-experiment.md). Counts walk the index
// alone.
//
// It holds exactly the versions the history bucket holds: it is built from
// history whenever the database is opened or replaced (Store.Init), a write
// adds its version to both, and the trim deletes a version from both. A
// version above the revision a reader's transaction sees is ignored by
// that reader, so readers of an older transaction, which writes overtook
// (a read transaction of its own while a batch is pending, a long walk of
// the committed state), read it consistently. The one thing they cannot
// read is a version the trim has since removed: prunedTo records how far
// that has gone, and a read below it fails (ErrOvertaken) rather than miss
// a key.
type index struct {
	mu   sync.RWMutex
	tree *btree.BTreeG[keyVersions]
	// prunedTo is the highest compact revision up to which the trim has
	// removed versions from the index.
	prunedTo int64
}

// keyVersions is one key's versions: its newest, and those before it in
// revision order. The tree holds them by value, and a read of the current
// revision needs only newest: a count of 100,000 keys then reads the
// tree's nodes in order, where following a pointer per key to its versions
// (a cache miss each) took three times as long as bbolt's cursor over the
// keys bucket did. Every change replaces the key's value in the tree; key
// never changes, and older only grows at its end (a write) or loses its
// start (the trim), under the index's lock.
type keyVersions struct {
	key    []byte
	newest indexedVersion
	older  []indexedVersion
}

// indexedVersion is one version: the revision that wrote it, and whether it
// is a tombstone (the key was deleted at rev).
type indexedVersion struct {
	rev  int64
	tomb bool
}

// scanChunk is how many keys a range scan collects under the index's read
// lock at a time: the lock is not held while the caller reads history, and
// a walk of every key does not hold off a write for its whole length.
const scanChunk = 256

// countChunk is scanChunk for a count, which does nothing but count while
// it holds the lock: about 100 µs.
const countChunk = 4096

// btreeDegree is the degree etcd's key index uses.
const btreeDegree = 32

func newIndex() *index {
	return &index{tree: newTree()}
}

func newTree() *btree.BTreeG[keyVersions] {
	return btree.NewG(btreeDegree, func(a, b keyVersions) bool { return bytes.Compare(a.key, b.key) < 0 })
}

// reset replaces the index's contents, built apart (see Store.Init).
func (x *index) reset(tree *btree.BTreeG[keyVersions], prunedTo int64) {
	x.mu.Lock()
	x.tree, x.prunedTo = tree, prunedTo
	x.mu.Unlock()
}

// slot is where a key's next version goes: the key's entry in the index as
// the writer found it (found false: the key has no versions). The writer
// finds the slot once, to learn what a put replaces, and fills it with the
// new version, one descent of the tree each. Only the writer changes the
// index (writes and the trim), so the entry cannot change in between.
type slot struct {
	e     keyVersions
	found bool
}

// live returns the revision of the slot's newest version, if the key is
// live.
func (s slot) live() (rev int64, ok bool) {
	return s.e.newest.rev, s.found && !s.e.newest.tomb
}

// filled returns the slot's entry with key's version written at rev added:
// the newest, above every version the entry holds.
func (s slot) filled(key []byte, rev int64, tomb bool) keyVersions {
	v := indexedVersion{rev: rev, tomb: tomb}
	if !s.found {
		return keyVersions{key: bytes.Clone(key), newest: v}
	}
	e := s.e
	e.older = append(e.older, e.newest)
	e.newest = v
	return e
}

// addTo records in tree key's version written at rev, which is above every
// version of key the tree holds, in a tree the caller owns (Load builds one).
func addTo(tree *btree.BTreeG[keyVersions], key []byte, rev int64, tomb bool) {
	e, found := tree.Get(keyVersions{key: key})
	tree.ReplaceOrInsert(slot{e, found}.filled(key, rev, tomb))
}

// find returns key's slot. Only the writer, which alone changes the index,
// may call it, and fill the slot before it changes key otherwise.
func (x *index) find(key []byte) slot {
	x.mu.RLock()
	defer x.mu.RUnlock()
	e, found := x.tree.Get(keyVersions{key: key})
	return slot{e, found}
}

// fill records key's version written at rev (a tombstone if tomb) in the
// slot find returned for key.
func (x *index) fill(s slot, key []byte, rev int64, tomb bool) {
	// filled appends to the array readers see the entry's older versions
	// in, past their end: under the lock, as every change to the tree.
	x.mu.Lock()
	x.tree.ReplaceOrInsert(s.filled(key, rev, tomb))
	x.mu.Unlock()
}

// liveAt returns the revision of e's version live at rev: its newest at or
// below rev, unless that is a tombstone or there is none.
func (e *keyVersions) liveAt(rev int64) (int64, bool) {
	if e.newest.rev <= rev {
		return e.newest.rev, !e.newest.tomb
	}
	for i := len(e.older) - 1; i >= 0; i-- {
		if v := e.older[i]; v.rev <= rev {
			return v.rev, !v.tomb
		}
	}
	return 0, false
}

// live calls fn with every key in [key, end) (a request's range: an empty
// end is the single key, {0} unbounded) that was live at rev, and the
// revision of its version then, in key order, until fn returns false or an
// error. fn runs without the index's lock; the keys it gets must not be
// changed. rev must not be below the compact revision the reader's
// transaction sees; ErrOvertaken means the trim has since gone past it.
func (x *index) live(key, end []byte, rev int64, fn func(k []byte, mod int64) (bool, error)) error {
	type hit struct {
		k   []byte
		mod int64
	}
	if len(end) == 0 {
		x.mu.RLock()
		if rev < x.prunedTo {
			x.mu.RUnlock()
			return ErrOvertaken
		}
		var h hit
		if e, ok := x.tree.Get(keyVersions{key: key}); ok {
			if mod, live := e.liveAt(rev); live {
				h = hit{e.key, mod}
			}
		}
		x.mu.RUnlock()
		if h.k == nil {
			return nil
		}
		_, err := fn(h.k, h.mod)
		return err
	}
	in := beforeEnd(end)
	from := key
	chunk := make([]hit, 0, scanChunk)
	for {
		chunk = chunk[:0]
		var next []byte // where the next chunk starts; nil: the range is done
		x.mu.RLock()
		if rev < x.prunedTo {
			x.mu.RUnlock()
			return ErrOvertaken
		}
		x.tree.AscendGreaterOrEqual(keyVersions{key: from}, func(e keyVersions) bool {
			if !in(e.key) {
				return false
			}
			if len(chunk) == scanChunk {
				next = e.key
				return false
			}
			if mod, ok := e.liveAt(rev); ok {
				chunk = append(chunk, hit{e.key, mod})
			}
			return true
		})
		x.mu.RUnlock()
		for _, h := range chunk {
			more, err := fn(h.k, h.mod)
			if err != nil || !more {
				return err
			}
		}
		if next == nil {
			return nil
		}
		from = next
	}
}

// count returns the number of keys in [key, end) live at rev, as live
// would call fn with. It holds the read lock for countChunk keys at a time.
// It walks the tree as live does, on its own: sharing one walk through a
// visiting function made a count of 10,000 keys 20 % slower (a second
// indirect call, and a copy of the entry, per key).
func (x *index) count(key, end []byte, rev int64) (int64, error) {
	if len(end) == 0 {
		var n int64
		err := x.live(key, end, rev, func([]byte, int64) (bool, error) {
			n++
			return true, nil
		})
		return n, err
	}
	in := beforeEnd(end)
	var n int64
	for from := key; ; {
		var next []byte // where the next chunk starts; nil: the range is done
		seen := 0
		x.mu.RLock()
		if rev < x.prunedTo {
			x.mu.RUnlock()
			return 0, ErrOvertaken
		}
		x.tree.AscendGreaterOrEqual(keyVersions{key: from}, func(e keyVersions) bool {
			if !in(e.key) {
				return false
			}
			if seen == countChunk {
				next = e.key
				return false
			}
			seen++
			if _, ok := e.liveAt(rev); ok {
				n++
			}
			return true
		})
		x.mu.RUnlock()
		if next == nil {
			return n, nil
		}
		from = next
	}
}

// trimmed removes the versions the trim deleted from history, each key's
// oldest (see TrimHistory), for a compact revision of target: from then on
// reads below target fail with ErrOvertaken.
func (x *index) trimmed(target int64, doomed []trimmedVersion) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.prunedTo = max(x.prunedTo, target)
	for _, d := range doomed {
		e, ok := x.tree.Get(keyVersions{key: d.key})
		if !ok {
			continue
		}
		if e.newest.rev == d.rev {
			// A tombstone: the trim deletes each key's versions oldest
			// first, so this was the last one the key had.
			x.tree.Delete(e)
			continue
		}
		for i, v := range e.older {
			if v.rev != d.rev {
				continue
			}
			switch {
			case len(e.older) == 1:
				e.older = nil // let go of the array a long history grew
			case i == 0:
				e.older = e.older[1:] // the usual case: no copy of a long history
			default:
				e.older = slices.Delete(e.older, i, i+1)
			}
			x.tree.ReplaceOrInsert(e)
			break
		}
	}
}

// trimmedVersion names a version the trim deleted.
type trimmedVersion struct {
	key []byte
	rev int64
}
