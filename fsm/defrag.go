package fsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	"github.com/kvd-io/kvd/internal/mvcc"
)

// Defragmentation rewrites the state file without the free pages that
// deleted data (a compaction's trim, say) left behind, while the member
// goes on applying the log and serving reads. etcd's defragmentation stops
// every read and write of the member for as long as it copies; this one
// stops applies only for the last few entries and the swap of the files:
//
//  1. With applies held for a moment, the pending batch is committed, a read
//     transaction opened on the state (at some applied index A), and the FSM
//     starts keeping a copy of every entry it applies from then on.
//  2. The read transaction's state is copied, densely packed, into a new
//     file, while applies and reads go on against the old one.
//  3. The kept entries are applied to the new file with the same code that
//     applied them to the old one (it is deterministic), in rounds, while
//     more arrive.
//  4. When a round is small, applies are held, the last entries applied to
//     the new file, which is synced and renamed over the old one.
//
// What the trimmer deleted from the old file meanwhile is not in the new
// one; its progress in meta is the copy's, so it deletes it again there.
// A defragmentation that fails leaves the old file as it was.

// ErrDefragBusy: too much was applied while the copy was made (the entries
// kept to replay on the new file passed maxDefragReplayBytes), or a
// snapshot was restored meanwhile.
var ErrDefragBusy = errors.New("the state changed too much during the defragmentation; try again when the member is less busy")

const (
	// maxDefragReplayBytes bounds the entries kept for the new file.
	maxDefragReplayBytes = 256 << 20
	// defragFinalEntries: a catch-up round this small is the last, done
	// with applies held.
	defragFinalEntries = 512
	// defragCopyTxBytes bounds one write transaction of the copy.
	defragCopyTxBytes = 64 << 20
)

// keepForDefrag keeps a copy of applied entries while a defragmentation
// runs. The caller holds applyMu.
func (f *FSM) keepForDefrag(logs []*raft.Log) {
	if f.defrag == nil || f.defrag.over {
		return
	}
	for _, l := range logs {
		f.defrag.bytes += len(l.Data)
		// A copy: raft owns the entries it hands over.
		f.defrag.logs = append(f.defrag.logs, &raft.Log{Index: l.Index, Term: l.Term, Type: l.Type, Data: bytes.Clone(l.Data)})
	}
	if f.defrag.bytes > maxDefragReplayBytes {
		f.defrag.over = true
		f.defrag.logs = nil
	}
}

// defragState is a defragmentation in progress, guarded by applyMu.
type defragState struct {
	logs  []*raft.Log
	bytes int
	over  bool // too much to keep: the defragmentation gives up
}

// Defragment rewrites the state file without its free space (see above)
// and returns its size before and after. One runs at a time.
func (f *FSM) Defragment(ctx context.Context) (before, after int64, err error) {
	f.defragMu.Lock()
	defer f.defragMu.Unlock()
	// Size counts what is committed: commit first, so that before
	// includes the pending batch, as the copy will.
	if err := f.be.Commit(); err != nil {
		return 0, 0, err
	}
	if before, _, err = f.be.Size(); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	tmp := f.path + ".defrag"
	_ = os.Remove(tmp)
	dst, err := f.be.OpenCopy(tmp)
	if err != nil {
		return 0, 0, fmt.Errorf("fsm: defragment: %w", err)
	}
	swapped := false
	defer func() {
		f.applyMu.Lock()
		f.defrag = nil
		f.applyMu.Unlock()
		if !swapped {
			_ = dst.Close()
			_ = os.Remove(tmp)
		}
	}()

	// 1. A consistent start, and keep what is applied from then on.
	f.applyMu.Lock()
	src, err := f.be.ReadTx()
	if err == nil {
		f.defrag = &defragState{}
	}
	f.applyMu.Unlock()
	if err != nil {
		return 0, 0, fmt.Errorf("fsm: defragment: %w", err)
	}
	// 2. Copy, then write the copy to disk while applies go on: the sync
	// at the swap, with applies held, must only have the last entries to
	// write (a million keys' copy took seconds to sync).
	err = copyState(ctx, src, dst)
	_ = src.Rollback()
	if err == nil {
		err = dst.Sync()
	}
	if err != nil {
		return 0, 0, fmt.Errorf("fsm: defragment: copy: %w", err)
	}
	// The copy's key index, built once and kept up to date by the replays,
	// is taken over at the swap (defragKV), so that the applies held
	// there do not wait for it to be built again.
	dstKV := mvcc.NewStore()
	if err := dst.View(dstKV.Load); err != nil {
		return 0, 0, fmt.Errorf("fsm: defragment: %w", err)
	}
	copied := time.Since(start)
	// 3. and 4. Catch up, then swap with applies held.
	for round := 0; ; round++ {
		f.applyMu.Lock()
		d := f.defrag
		if d.over {
			f.applyMu.Unlock()
			return 0, 0, fmt.Errorf("fsm: defragment: %w", ErrDefragBusy)
		}
		logs := d.logs
		d.logs, d.bytes = nil, 0
		final := len(logs) <= defragFinalEntries || round >= 10
		if !final {
			f.applyMu.Unlock()
		}
		if err := f.replay(dst, dstKV, logs); err != nil {
			if final {
				f.applyMu.Unlock()
			}
			return 0, 0, fmt.Errorf("fsm: defragment: replay: %w", err)
		}
		if !final {
			if err := dst.Sync(); err != nil {
				return 0, 0, fmt.Errorf("fsm: defragment: %w", err)
			}
			if err := ctx.Err(); err != nil {
				return 0, 0, fmt.Errorf("fsm: defragment: %w", err)
			}
			continue
		}
		held := time.Now()
		// The backend takes dst as it is, open: reopening it would walk
		// every page to rebuild its freelist, with applies held.
		swapped = true
		f.defragKV = dstKV
		release, err := f.be.Adopt(dst)
		f.defragKV = nil // taken by initState, or not wanted
		if err != nil {
			release = func() {}
		}
		f.applyMu.Unlock()
		heldFor := time.Since(held)
		// Unmapping and deleting the old file is slow; applies go on.
		release()
		if err != nil {
			return 0, 0, fmt.Errorf("fsm: defragment: swap the files: %w", err)
		}
		f.kickTrimmer()
		after, _, err = f.be.Size()
		f.log.Info("fsm: defragmented the state file", "bytes_before", before, "bytes_after", after,
			"copy", copied.Round(time.Millisecond), "took", time.Since(start).Round(time.Millisecond),
			"applies_held", heldFor.Round(time.Microsecond), "rounds", round+1)
		return before, after, err
	}
}

// replay applies logs to dst, whose key index is kv, with the code that
// applied them to the state, skipping those dst already holds.
func (f *FSM) replay(dst *bolt.DB, kv *mvcc.Store, logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	return dst.Update(func(tx *bolt.Tx) error {
		authState, err := loadAuth(tx.Bucket(bucketAuth))
		if err != nil {
			return err
		}
		w := newWriter(tx, kv, false, authState)
		applied := readU64(tx.Bucket(bucketMeta).Get(metaAppliedIndex))
		_, _, err = f.applyEntries(w, logs, applied, make([]any, len(logs)))
		return err
	})
}

// copyState copies every bucket of src into dst, packed densely (the keys
// go in in order), in write transactions of defragCopyTxBytes at most.
func copyState(ctx context.Context, src *bolt.Tx, dst *bolt.DB) error {
	tx, err := dst.Begin(true)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback() }()
	size := 0
	var copyBucket func(from *bolt.Bucket, path [][]byte) error
	// bucketIn returns the bucket at path in tx, creating it.
	bucketIn := func(path [][]byte) (*bolt.Bucket, error) {
		b, err := tx.CreateBucketIfNotExists(path[0])
		for _, name := range path[1:] {
			if err != nil {
				return nil, err
			}
			b, err = b.CreateBucketIfNotExists(name)
		}
		if err == nil {
			b.FillPercent = 1.0
		}
		return b, err
	}
	copyBucket = func(from *bolt.Bucket, path [][]byte) error {
		to, err := bucketIn(path)
		if err != nil {
			return err
		}
		c := from.Cursor()
		for k, v := c.First(); k != nil; k, v = c.Next() {
			if v == nil { // a nested bucket
				if err := copyBucket(from.Bucket(k), append(path[:len(path):len(path)], k)); err != nil {
					return err
				}
				if to, err = bucketIn(path); err != nil {
					return err
				}
				continue
			}
			if err := to.Put(k, v); err != nil {
				return err
			}
			size += len(k) + len(v)
			if size < defragCopyTxBytes {
				continue
			}
			// Commit what is copied and go on in a new transaction. The
			// sync keeps the copy from piling up gigabytes of dirty pages,
			// whose writeback would stall the raft log's own syncs.
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := tx.Commit(); err != nil {
				return err
			}
			if err := dst.Sync(); err != nil {
				return err
			}
			if tx, err = dst.Begin(true); err != nil {
				return err
			}
			size = 0
			if to, err = bucketIn(path); err != nil {
				return err
			}
		}
		return nil
	}
	err = src.ForEach(func(name []byte, b *bolt.Bucket) error {
		return copyBucket(b, [][]byte{name})
	})
	if err != nil {
		return err
	}
	return tx.Commit()
}
