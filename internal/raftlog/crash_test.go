package raftlog

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// diskImage is what a member's disk holds at one instant: the journal files
// and the entries of the log store. Restarting from it is what a member
// does after a crash at that instant.
type diskImage struct {
	files map[string][]byte
	logs  []*raft.Log
}

// takeImage copies the journal in dir and the entries of log. The caller
// makes sure nothing writes meanwhile.
func takeImage(t *testing.T, dir string, log raft.LogStore) diskImage {
	t.Helper()
	img := diskImage{files: map[string][]byte{}}
	for _, name := range journalNames {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		img.files[name] = b
	}
	img.logs = allLogs(t, log)
	return img
}

func allLogs(t *testing.T, log raft.LogStore) []*raft.Log {
	t.Helper()
	first, err := log.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := log.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	var logs []*raft.Log
	for i := first; i <= last && last > 0; i++ {
		var l raft.Log
		if err := log.GetLog(i, &l); err != nil {
			t.Fatalf("entry %d of %d-%d: %v", i, first, last, err)
		}
		logs = append(logs, &l)
	}
	return logs
}

// restart opens a Store on a copy of img, as a member restarting after the
// crash does, and returns it with its log store.
func (img diskImage) restart(t *testing.T, cfg Config) (*Store, *heldStore) {
	t.Helper()
	dir := t.TempDir()
	for name, b := range img.files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	under := newHeldStore()
	if err := under.InmemStore.StoreLogs(img.logs); err != nil {
		t.Fatal(err)
	}
	cfg.Dir = dir
	return newStore(t, under, cfg), under
}

// quietCheckpoints keeps checkpoints from starting on their own, so that a
// test decides when they happen.
var quietCheckpoints = Config{CheckpointInterval: time.Hour, CheckpointBytes: 1 << 40}

func init() {
	// Tests copy whole journal files to simulate crashes; small ones keep
	// that fast.
	journalPrealloc = 64 << 10
}

func newJournaledStore(t *testing.T, cfg Config) (*Store, *heldStore, string) {
	t.Helper()
	cfg.Dir = t.TempDir()
	under := newHeldStore()
	return newStore(t, under, cfg), under, cfg.Dir
}

// checkLog fails unless s holds exactly want, in order.
func checkLog(t *testing.T, s *Store, want []*raft.Log) {
	t.Helper()
	first, _ := s.FirstIndex()
	last, _ := s.LastIndex()
	if len(want) == 0 {
		if last != 0 {
			t.Fatalf("log holds %d-%d, want it empty", first, last)
		}
		return
	}
	if first != want[0].Index || last != want[len(want)-1].Index {
		t.Fatalf("log holds %d-%d, want %d-%d", first, last, want[0].Index, want[len(want)-1].Index)
	}
	sameLogs(t, allLogs(t, s), want)
}

func TestAcknowledgedEntriesSurviveACrash(t *testing.T) {
	var leading atomic.Bool
	s, under, dir := newJournaledStore(t, Config{Leading: leading.Load, CheckpointInterval: quietCheckpoints.CheckpointInterval, CheckpointBytes: quietCheckpoints.CheckpointBytes})
	all := richEntries(1, 30, 1)
	// A follower's appends are durable when StoreLogs returns.
	for _, batch := range [][]*raft.Log{all[:1], all[1:10], all[10:12]} {
		if err := s.StoreLogs(batch); err != nil {
			t.Fatal(err)
		}
	}
	// A leader's, once Durable says so.
	leading.Store(true)
	for _, batch := range [][]*raft.Log{all[12:13], all[13:25], all[25:30]} {
		if err := s.StoreLogs(batch); err != nil {
			t.Fatal(err)
		}
	}
	waitDurable(t, s, 30)
	if logs := allLogs(t, under); len(logs) != 0 {
		t.Fatalf("the log store holds %s before any checkpoint", indexes(logs))
	}

	img := takeImage(t, dir, under)
	s2, under2 := img.restart(t, Config{})
	checkLog(t, s2, all)
	// The restart put the journal into the log store and emptied it.
	sameLogs(t, allLogs(t, under2), all)
	if d := s2.Durable(); d != 30 {
		t.Fatalf("durable %d after the restart, want 30", d)
	}
	s3, _ := takeImage(t, s2.cfg.Dir, raft.NewInmemStore()).restart(t, Config{})
	checkLog(t, s3, nil)
}

func TestCheckpointCopiesTheJournalIntoTheLogStore(t *testing.T) {
	obs := &recordingObserver{}
	cfg := quietCheckpoints
	cfg.Observer = obs
	s, under, dir := newJournaledStore(t, cfg)
	all := richEntries(1, 20, 2)
	if err := s.StoreLogs(all[:12]); err != nil {
		t.Fatal(err)
	}
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	sameLogs(t, allLogs(t, under), all[:12])
	s.mu.Lock()
	inMem := len(s.mem)
	s.mu.Unlock()
	if inMem != 0 {
		t.Fatalf("%d entries still in memory after a checkpoint", inMem)
	}
	if err := s.StoreLogs(all[12:]); err != nil {
		t.Fatal(err)
	}
	checkLog(t, s, all)
	if cps := obs.checkpointsSeen(); len(cps) != 1 || cps[0] != 12 {
		t.Fatalf("checkpoints observed %v, want one of 12 entries", cps)
	}

	// The journal now holds only what came after the checkpoint.
	img := takeImage(t, dir, under)
	journalOnly, _ := diskImage{files: img.files}.restart(t, Config{})
	checkLog(t, journalOnly, all[12:])
	s2, _ := img.restart(t, Config{})
	checkLog(t, s2, all)
}

// The checkpointer starts on its own once the journal has held entries for
// CheckpointInterval, or holds CheckpointBytes.
func TestCheckpointsStartOnTheirOwn(t *testing.T) {
	for _, cfg := range []Config{
		{CheckpointInterval: 5 * time.Millisecond, CheckpointBytes: 1 << 40},
		{CheckpointInterval: time.Hour, CheckpointBytes: 1000},
	} {
		s, under, _ := newJournaledStore(t, cfg)
		all := richEntries(1, 40, 1)
		if err := s.StoreLogs(all); err != nil {
			t.Fatal(err)
		}
		eventually(t, "a checkpoint", func() bool { last, _ := under.LastIndex(); return last == 40 })
		checkLog(t, s, all)
	}
}

// Appends wait for a checkpoint once the journal holds more than
// maxJournaled, so a slow log store cannot fill memory; the leader's own
// queue does not count, so a large queue is still written.
func TestAppendsWaitForRoom(t *testing.T) {
	// Restored in a cleanup registered before the store's own, so after
	// the store has closed: its checkpoint goroutine reads maxJournaled
	// until then (a deferred restore raced with it).
	old := maxJournaled
	t.Cleanup(func() { maxJournaled = old })
	maxJournaled = 2000
	var leading atomic.Bool
	cfg := quietCheckpoints
	cfg.Leading = leading.Load
	s, under, _ := newJournaledStore(t, cfg)
	all := richEntries(1, 60, 1) // about 150 bytes each
	leading.Store(true)
	if err := s.StoreLogs(all[:30]); err != nil {
		t.Fatal(err)
	}
	waitDurable(t, s, 30)
	leading.Store(false)
	for i := 30; i < 60; i++ {
		if err := s.StoreLogs(all[i : i+1]); err != nil {
			t.Fatal(err)
		}
	}
	if last, _ := under.LastIndex(); last == 0 {
		t.Fatal("no checkpoint ran although the journal outgrew maxJournaled")
	}
	s.mu.Lock()
	held := s.journaled
	s.mu.Unlock()
	if held > maxJournaled+len(all[59].Data) {
		t.Fatalf("%d bytes journaled in memory, limit %d", held, maxJournaled)
	}
	checkLog(t, s, all)
}

// A crash in the middle of a checkpoint loses nothing: before the log store
// has the entries, the old journal file still does; after, the replay
// writes them again, which changes nothing.
func TestCrashDuringACheckpoint(t *testing.T) {
	t.Run("before the log store has them", func(t *testing.T) {
		s, under, dir := newJournaledStore(t, quietCheckpoints)
		all := richEntries(1, 15, 1)
		if err := s.StoreLogs(all[:10]); err != nil {
			t.Fatal(err)
		}
		under.hold()
		done := make(chan error, 1)
		go func() { done <- s.checkpoint() }()
		waitEntered(t, under)
		// Appends go on into the other file meanwhile.
		if err := s.StoreLogs(all[10:]); err != nil {
			t.Fatal(err)
		}
		img := takeImage(t, dir, under)
		under.release()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		s2, _ := img.restart(t, Config{})
		checkLog(t, s2, all)
	})
	t.Run("before the old file is emptied", func(t *testing.T) {
		s, under, dir := newJournaledStore(t, quietCheckpoints)
		all := richEntries(1, 15, 1)
		if err := s.StoreLogs(all[:10]); err != nil {
			t.Fatal(err)
		}
		var img diskImage
		s.afterCheckpointWrite = func() { img = takeImage(t, dir, under) }
		if err := s.checkpoint(); err != nil {
			t.Fatal(err)
		}
		if err := s.StoreLogs(all[10:]); err != nil {
			t.Fatal(err)
		}
		if len(img.logs) != 10 {
			t.Fatalf("the image holds %d entries in the log store, want 10", len(img.logs))
		}
		s2, _ := img.restart(t, Config{})
		checkLog(t, s2, all[:10])
	})
}

// Deleting entries the journal holds must not let a replay bring them back:
// a follower whose conflicting suffix raft deleted and rewrote finds, after
// a crash, the rewritten entries.
func TestDeletedEntriesStayDeletedAfterACrash(t *testing.T) {
	s, under, dir := newJournaledStore(t, quietCheckpoints)
	old := richEntries(1, 10, 1)
	if err := s.StoreLogs(old); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRange(6, 10); err != nil {
		t.Fatal(err)
	}
	if d := s.Durable(); d != 5 {
		t.Fatalf("durable %d after deleting 6-10, want 5", d)
	}
	rewritten := richEntries(6, 8, 2)
	if err := s.StoreLogs(rewritten); err != nil {
		t.Fatal(err)
	}
	want := append(old[:5:5], rewritten...)
	checkLog(t, s, want)
	s2, _ := takeImage(t, dir, under).restart(t, Config{})
	checkLog(t, s2, want)

	// Compaction of entries the journal holds, as raft does after a
	// snapshot with no trailing logs, also survives a crash.
	if err := s.DeleteRange(1, 7); err != nil {
		t.Fatal(err)
	}
	checkLog(t, s, want[7:])
	s3, _ := takeImage(t, dir, under).restart(t, Config{})
	checkLog(t, s3, want[7:])
}

// A crash during an append leaves whatever reached the disk of it at the
// journal's end; none of it was acknowledged, and the restart ignores it.
// raft compacts the log on its snapshot goroutine while its main goroutine
// goes on appending: entries the leader queues during a deletion's flush of
// the journal are on no disk yet, and must still be written (and counted
// durable) afterwards.
func TestEntriesQueuedDuringAFlushAreWritten(t *testing.T) {
	var leading atomic.Bool
	leading.Store(true)
	s, under, dir := newJournaledStore(t, Config{Leading: leading.Load, CheckpointInterval: quietCheckpoints.CheckpointInterval, CheckpointBytes: quietCheckpoints.CheckpointBytes})
	all := richEntries(1, 8, 1)
	if err := s.StoreLogs(all[:5]); err != nil {
		t.Fatal(err)
	}
	waitDurable(t, s, 5)

	// Where DeleteRange stands once it has written what was queued.
	s.ckptMu.Lock()
	s.writeMu.Lock()
	if err := s.StoreLogs(all[5:]); err != nil { // queued: takes only mu
		t.Fatal(err)
	}
	err := s.flushJournal()
	s.writeMu.Unlock()
	s.ckptMu.Unlock()
	if err != nil {
		t.Fatal(err)
	}

	waitDurable(t, s, 8)
	checkLog(t, s, all)
	want := 0
	for _, l := range all[5:] {
		want += len(l.Data)
	}
	s.mu.Lock()
	journaled := s.journaled
	s.mu.Unlock()
	if journaled != want {
		t.Fatalf("journaled bytes counted %d, want %d (entries 6-8)", journaled, want)
	}
	crashed, _ := takeImage(t, dir, under).restart(t, Config{})
	checkLog(t, crashed, all)
}

// A follower's failed journal append stops the member: the file may hold
// records past its tail that a later, shorter append would not overwrite.
func TestFailedJournalAppendStopsTheStore(t *testing.T) {
	failures := make(chan error, 1)
	cfg := quietCheckpoints
	cfg.OnFailure = func(err error) { failures <- err }
	s, _, _ := newJournaledStore(t, cfg)
	all := richEntries(1, 4, 1)
	if err := s.StoreLogs(all[:2]); err != nil {
		t.Fatal(err)
	}
	_ = s.j.files[s.j.active].f.Close() // every write to it fails now
	if err := s.StoreLogs(all[2:3]); err == nil {
		t.Fatal("append to a closed journal file succeeded")
	}
	select {
	case <-failures:
	default:
		t.Fatal("a failed journal append was not reported through OnFailure")
	}
	if err := s.StoreLogs(all[3:]); err == nil {
		t.Fatal("the store took an append after a failed one")
	}
}

// After installing a snapshot, raft appends from the snapshot's index on
// while older entries may stay in the log: the store takes the gap, as
// raft-boltdb does, and keeps it across a crash.
func TestAppendAfterAGap(t *testing.T) {
	s, under, dir := newJournaledStore(t, quietCheckpoints)
	before, after := richEntries(1, 3, 1), richEntries(10, 12, 2)
	if err := s.StoreLogs(before); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(after); err != nil {
		t.Fatalf("append after a gap: %v", err)
	}
	if err := s.StoreLogs(richEntries(13, 13, 2)); err != nil {
		t.Fatal(err)
	}
	want := append(append(before, after...), richEntries(13, 13, 2)...)
	check := func(s *Store) {
		t.Helper()
		if first, _ := s.FirstIndex(); first != 1 {
			t.Fatalf("first index %d, want 1", first)
		}
		if last, _ := s.LastIndex(); last != 13 {
			t.Fatalf("last index %d, want 13", last)
		}
		var got []*raft.Log
		for _, w := range want {
			var l raft.Log
			if err := s.GetLog(w.Index, &l); err != nil {
				t.Fatalf("entry %d: %v", w.Index, err)
			}
			got = append(got, &l)
		}
		sameLogs(t, got, want)
	}
	check(s)
	crashed, _ := takeImage(t, dir, under).restart(t, Config{})
	check(crashed)
}

func TestTornAppendIsIgnored(t *testing.T) {
	s, under, dir := newJournaledStore(t, quietCheckpoints)
	all := richEntries(1, 8, 1)
	if err := s.StoreLogs(all); err != nil {
		t.Fatal(err)
	}
	img := takeImage(t, dir, under)
	torn := appendJournalRecord(nil, s.j.files[s.j.active].gen, richEntries(9, 9, 1)[0])
	name := journalNames[s.j.active]
	tail := s.j.files[s.j.active].tail
	img.files[name] = append(img.files[name][:tail:tail], torn[:len(torn)-3]...)
	s2, _ := img.restart(t, Config{})
	checkLog(t, s2, all)
}

// TestJournalModel runs random appends, deletions, checkpoints and crashes
// against a Store and checks after each step that it holds what a plain log
// would, and that a restart from its disk holds the same.
func TestJournalModel(t *testing.T) {
	seeds := 40
	if testing.Short() {
		seeds = 3 // make check's inner loop; make test runs them all
	}
	for seed := range uint64(seeds) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { runJournalModel(t, seed) })
	}
}

func runJournalModel(t *testing.T, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	var leading atomic.Bool
	cfg := quietCheckpoints
	cfg.Leading = leading.Load
	s, under, dir := newJournaledStore(t, cfg)
	var model []*raft.Log // what the log must hold, in order
	term := uint64(1)
	// compacted is the last index compaction removed: as in raft, after a
	// snapshot the log goes on above it even when nothing is left in it.
	var compacted uint64
	next := func() uint64 {
		if len(model) == 0 {
			return compacted + 1
		}
		return model[len(model)-1].Index + 1
	}
	for step := 0; step < 60; step++ {
		var what string
		switch op := rng.IntN(10); {
		case op < 4: // a follower's append
			n := 1 + rng.IntN(5)
			batch := richEntries(next(), next()+uint64(n)-1, term)
			leading.Store(false)
			if err := s.StoreLogs(batch); err != nil {
				t.Fatal(err)
			}
			model = append(model, batch...)
			what = fmt.Sprintf("follower append %s", indexes(batch))
		case op < 6: // a leader's append
			n := 1 + rng.IntN(5)
			batch := richEntries(next(), next()+uint64(n)-1, term)
			leading.Store(true)
			if err := s.StoreLogs(batch); err != nil {
				t.Fatal(err)
			}
			model = append(model, batch...)
			waitDurable(t, s, batch[n-1].Index)
			what = fmt.Sprintf("leader append %s", indexes(batch))
		case op < 7 && len(model) > 0: // a conflicting suffix deleted
			k := rng.IntN(len(model))
			if err := s.DeleteRange(model[k].Index, model[len(model)-1].Index); err != nil {
				t.Fatal(err)
			}
			what = fmt.Sprintf("delete suffix %d-%d", model[k].Index, model[len(model)-1].Index)
			model = model[:k]
			term++
		case op < 8 && len(model) > 1: // compaction
			k := rng.IntN(len(model) - 1)
			if err := s.DeleteRange(model[0].Index, model[k].Index); err != nil {
				t.Fatal(err)
			}
			what = fmt.Sprintf("compact %d-%d", model[0].Index, model[k].Index)
			compacted = model[k].Index
			model = model[k+1:]
		case op < 9:
			if err := s.checkpoint(); err != nil {
				t.Fatal(err)
			}
			what = "checkpoint"
		default:
			img := takeImage(t, dir, under)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			s, under = img.restart(t, cfg)
			dir = s.cfg.Dir
			what = "crash and restart"
		}
		t.Logf("step %d: %s", step, what)
		checkLog(t, s, model)
	}
	s2, _ := takeImage(t, dir, under).restart(t, Config{})
	checkLog(t, s2, model)
}

// Appends, checkpoints and reads run concurrently, as they do in a member:
// nothing is lost or read wrong, and the race detector has something to
// look at.
func TestConcurrentAppendsCheckpointsAndReads(t *testing.T) {
	s, under, _ := newJournaledStore(t, Config{CheckpointInterval: time.Millisecond, CheckpointBytes: 2000})
	const n = 2000
	all := richEntries(1, n, 1)
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 2 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				last, _ := s.LastIndex()
				for i := last; i > 0 && i+20 > last; i-- {
					var l raft.Log
					if err := s.GetLog(i, &l); err != nil {
						t.Errorf("read %d of %d: %v", i, last, err)
						return
					}
					if l.Index != i || len(l.Data) != len(all[i-1].Data) {
						t.Errorf("read %d: got entry %d", i, l.Index)
						return
					}
				}
			}
		}()
	}
	for i := 0; i < n; {
		k := min(1+i%7, n-i)
		if err := s.StoreLogs(all[i : i+k]); err != nil {
			t.Fatal(err)
		}
		i += k
	}
	close(stop)
	readers.Wait()
	checkLog(t, s, all)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	sameLogs(t, allLogs(t, under), all)
}
