package fsm

import (
	"context"
	"errors"
	"fmt"
	"sort"

	bolt "go.etcd.io/bbolt"

	"github.com/kvd-io/kvd/internal/mvcc"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Compaction (COMMAND_TYPE_COMPACT) moves the compact revision when it is
// applied, at once and the same on every member; the history below it is
// then trimmed in the background by each member's trimmer, one bounded
// chunk per write transaction, so that neither the apply loop nor reads
// wait for a large trim (see package mvcc). The trimmer resumes after a
// restart or a snapshot restore from where meta says it got to.

// ErrInvalidCompaction: a compaction without a positive revision.
var ErrInvalidCompaction = errors.New("compaction revision must be positive")

// ValidateCompact checks a compaction before it is proposed and again when
// it is applied.
func ValidateCompact(r *kvv1.CompactRequest) error {
	if r.GetRevision() <= 0 {
		return fmt.Errorf("%w, got %d", ErrInvalidCompaction, r.GetRevision())
	}
	return nil
}

// trimChunk is how many history versions one chunk of the trim deletes at
// most: small enough that the apply loop, which shares the backend's write
// transaction with the trimmer, never waits long for it.
const trimChunk = 1000

func (w *writer) compact(r *kvv1.CompactRequest) (any, error) {
	if err := w.kv.Compact(r.GetRevision()); err != nil {
		if errors.Is(err, mvcc.ErrFutureRevision) || errors.Is(err, mvcc.ErrCompacted) {
			return err, nil // a domain error: nothing was written
		}
		return nil, err
	}
	w.compacted = true
	return &kvv1.CompactResponse{Header: &kvv1.ResponseHeader{Revision: w.kv.Revision()}}, nil
}

// CompactRevision returns the revision below which history is gone (to
// reads; see TrimmedTo for the disk).
//
// The compact revision changes only with what is applied, so it is read
// once per applied index. The state at an index is always the same (a
// restored snapshot's too), so a cached value is never wrong for its
// index; one read while an entry is being applied may be that entry's,
// newer than its index, as a read a moment later would be.
func (f *FSM) CompactRevision() int64 {
	index := f.AppliedIndex()
	if c := f.compactAt.Load(); c != nil && c.index == index {
		return c.rev
	}
	var rev int64
	_ = f.view(func(tx *bolt.Tx) error {
		rev = f.kv.Read(tx).CompactRevision()
		return nil
	})
	f.compactAt.Store(&compactAt{index: index, rev: rev})
	return rev
}

// compactAt is a compact revision and the applied index it was read at.
type compactAt struct {
	index uint64
	rev   int64
}

// TrimmedTo returns the compact revision up to which this member has
// deleted the history compaction put out of reach.
func (f *FSM) TrimmedTo() int64 {
	var rev int64
	_ = f.view(func(tx *bolt.Tx) error {
		rev = f.kv.Read(tx).TrimmedTo()
		return nil
	})
	return rev
}

// WaitTrimmed waits until this member has trimmed its history up to rev
// (a compaction's --physical), or ctx ends.
func (f *FSM) WaitTrimmed(ctx context.Context, rev int64) error {
	for {
		f.trimMu.Lock()
		changed := f.trimmedCh
		f.trimMu.Unlock()
		if f.TrimmedTo() >= rev {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("waiting for the history to be trimmed to %d (trimmed to %d): %w", rev, f.TrimmedTo(), ctx.Err())
		case <-f.closed:
			return errors.New("fsm: closed")
		}
	}
}

// kickTrimmer tells the trimmer there may be history to trim.
func (f *FSM) kickTrimmer() {
	select {
	case f.trimKick <- struct{}{}:
	default:
	}
}

// trim is the trimmer: it deletes what compaction put out of reach, a chunk
// at a time, whenever it is kicked, until the FSM closes.
func (f *FSM) trim() {
	defer close(f.trimDone)
	for {
		select {
		case <-f.closed:
			return
		case <-f.trimKick:
		}
		for {
			var done bool
			err := f.be.Batch(func(tx *bolt.Tx) (int, error) {
				w := f.kv.NewWriter(tx, false)
				d, n, err := w.TrimHistory(trimChunk)
				done = d
				return n, err
			})
			if err != nil {
				// A storage failure: the backend is failed and the
				// member stops at its next apply; nothing more to do.
				f.log.Error("fsm: trim compacted history", "error", err)
				break
			}
			if done {
				break
			}
			select {
			case <-f.closed:
				return
			default:
			}
		}
		f.trimMu.Lock()
		close(f.trimmedCh)
		f.trimmedCh = make(chan struct{})
		f.trimMu.Unlock()
		f.trimRuns.Add(1)
	}
}

// Changes returns the changes of the keys in [key, end) at revisions
// from..to, as the Feed reported them (but with the events of a revision
// in key order; PrevKV as mvcc.ReadView.History gives it), in revision
// order. It fails with an error wrapping ErrCompacted when from is below
// the compact revision. It is how a watcher that fell behind catches up.
func (f *FSM) Changes(key, end []byte, from, to int64) ([]Change, error) {
	type ev struct {
		rev int64
		e   mvcc.Event
	}
	var evs []ev
	err := f.viewCommitted(func(tx *bolt.Tx) error {
		return f.kv.Read(tx).Changes(key, end, from, to, func(rev int64, e mvcc.Event) error {
			evs = append(evs, ev{rev, e})
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	// Key order, then revision order, becomes revision order, then key
	// order: a stable sort by revision.
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].rev < evs[j].rev })
	var out []Change
	for _, e := range evs {
		if n := len(out); n > 0 && out[n-1].Revision == e.rev {
			out[n-1].Events = append(out[n-1].Events, e.e)
			continue
		}
		out = append(out, Change{Revision: e.rev, Events: []mvcc.Event{e.e}})
	}
	return out, nil
}
