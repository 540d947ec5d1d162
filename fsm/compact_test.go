package fsm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// A compaction applied through the log refuses reads below its revision at
// once, keeps every read at or above it, and is trimmed in the background:
// the state file then holds less, and a restart or a snapshot restore taken
// halfway goes on trimming.
func TestCompactionThroughTheLog(t *testing.T) {
	dir := t.TempDir()
	f := openFSM(t, dir)
	log := newTestLog(t)
	for i := range 2000 {
		log.applyOne(f, put(fmt.Sprintf("k%03d", i%100), fmt.Sprint(i)))
	}
	rev := f.Revision()
	before := mustRange(t, f, rangeAll(rev-500))
	if err := f.be.Commit(); err != nil { // sizes count committed pages
		t.Fatal(err)
	}
	sizeBefore := mustStats(t, f).DBSize

	if res := log.applyOne(f, &kvv1.CompactRequest{Revision: rev - 500}); !isCompactResponse(res) {
		t.Fatalf("compact: %v", show(res))
	}
	if _, err := f.Range(rangeAll(rev - 501)); !errors.Is(err, ErrCompacted) {
		t.Fatalf("read below the compact revision: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := f.WaitTrimmed(ctx, rev-500); err != nil {
		t.Fatal(err)
	}
	if after := mustRange(t, f, rangeAll(rev-500)); show(after.GetKvs()) != show(before.GetKvs()) {
		t.Fatal("a read at the compact revision changed with the trim")
	}
	// Compacting again below or at the compact revision, or above the
	// current one, is refused and changes nothing.
	for _, r := range []int64{rev - 600, rev - 500, rev + 1} {
		res := log.applyOne(f, &kvv1.CompactRequest{Revision: r})
		if err, ok := res.(error); !ok || !(errors.Is(err, ErrCompacted) || errors.Is(err, ErrFutureRevision)) {
			t.Fatalf("compact to %d: %v", r, show(res))
		}
	}
	if res := log.applyOne(f, &kvv1.CompactRequest{}); !errors.Is(asError(res), ErrInvalidCompaction) {
		t.Fatalf("compact to 0: %v", show(res))
	}

	// The trim freed pages (the file shrinks only with a defragmentation;
	// bbolt counts pages free once the batch that freed them has committed
	// and the next write transaction has begun).
	if err := f.be.Commit(); err != nil {
		t.Fatal(err)
	}
	log.applyOne(f, put("k000", "after the trim"))
	if err := f.be.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, inUse, err := f.DBSize(); err != nil || inUse >= sizeBefore {
		t.Fatalf("in use %d after the trim, file %d before (%v)", inUse, sizeBefore, err)
	}

	// Changes from the compact revision on; none below it.
	ch, err := f.Changes([]byte("k000"), nil, rev-500, 0)
	if err != nil || len(ch) == 0 {
		t.Fatalf("changes of k000 since the compact revision: %d, %v", len(ch), err)
	}
	for _, c := range ch {
		if c.Revision < rev-500 || len(c.Events) != 1 || !bytes.Equal(c.Events[0].KV.GetKey(), []byte("k000")) {
			t.Fatalf("change %+v", c)
		}
	}
	if _, err := f.Changes([]byte("k000"), nil, rev-501, 0); !errors.Is(err, ErrCompacted) {
		t.Fatalf("changes below the compact revision: %v", err)
	}
}

func TestTrimResumesAfterRestart(t *testing.T) {
	dir := t.TempDir()
	f := openFSM(t, dir)
	log := newTestLog(t)
	for i := range 3000 {
		log.applyOne(f, put("k", fmt.Sprint(i)))
	}
	rev := f.Revision()
	log.applyOne(f, &kvv1.CompactRequest{Revision: rev})
	// Close at once: the trim may be anywhere.
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := MarkClean(dir); err != nil {
		t.Fatal(err)
	}
	g := openFSM(t, dir)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := g.WaitTrimmed(ctx, rev); err != nil {
		t.Fatal(err)
	}
	if got := mustRange(t, g, get("k", "")); len(got.GetKvs()) != 1 || string(got.GetKvs()[0].GetValue()) != "2999" {
		t.Fatalf("the key after the trim: %v", show(got))
	}
}

func isCompactResponse(res any) bool {
	_, ok := res.(*kvv1.CompactResponse)
	return ok
}

func asError(res any) error {
	err, _ := res.(error)
	return err
}

// CompactRevision, read once per applied index, follows a compaction at
// once and a restore that takes the state back before it.
func TestCompactRevisionFollowsAppliesAndRestores(t *testing.T) {
	f := openFSM(t, t.TempDir())
	log := newTestLog(t)
	for i := range 20 {
		log.applyOne(f, put(fmt.Sprintf("k%02d", i), "v"))
	}
	before := snapshotBytes(t, f)
	if got := f.CompactRevision(); got != 0 {
		t.Fatalf("compact revision before any compaction: %d", got)
	}
	if got := f.CompactRevision(); got != 0 { // from the cache
		t.Fatalf("compact revision read again: %d", got)
	}
	rev := f.Revision()
	if res := log.applyOne(f, &kvv1.CompactRequest{Revision: rev - 5}); !isCompactResponse(res) {
		t.Fatalf("compact: %v", show(res))
	}
	if got := f.CompactRevision(); got != rev-5 {
		t.Fatalf("compact revision after compacting to %d: %d", rev-5, got)
	}
	mustRestore(t, f, before)
	if got := f.CompactRevision(); got != 0 {
		t.Fatalf("compact revision after restoring a state from before the compaction: %d", got)
	}
}

// Reads that writes overtake (a count walks its own transaction while
// entries go on being applied) never miss a key when compactions and
// their trims run meanwhile: where a trim removed versions a read needed
// from the key index, the read is made again (mvcc.ErrOvertaken), never
// answered short.
func TestCountsDuringCompactionsNeverMissKeys(t *testing.T) {
	f := newFSM(t)
	log := newTestLog(t)
	const keys = 2000
	var logs []*raft.Log
	for i := range keys {
		logs = append(logs, log.command(put(fmt.Sprintf("k%04d", i), "0")))
	}
	f.ApplyBatch(logs)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	errc := make(chan error, 1)
	go func() {
		defer cancel()
		for i := 1; ctx.Err() == nil; i++ {
			logs := logs[:0]
			for j := range 50 {
				logs = append(logs, log.command(put(fmt.Sprintf("k%04d", (i*50+j)%keys), fmt.Sprint(i))))
			}
			logs = append(logs, log.command(&kvv1.CompactRequest{Revision: f.Revision()}))
			for _, res := range f.ApplyBatch(logs) {
				if err, ok := res.(error); ok && !errors.Is(err, ErrCompacted) {
					errc <- err
					return
				}
			}
		}
		errc <- nil
	}()
	counts := 0
	for ctx.Err() == nil {
		n, err := f.KeyCount()
		if err != nil {
			t.Fatal(err)
		}
		if n != keys {
			t.Fatalf("a count during compactions found %d keys, want %d", n, keys)
		}
		counts++
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	t.Logf("%d counts", counts)
}
