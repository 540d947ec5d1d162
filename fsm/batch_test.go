package fsm

import (
	"testing"
	"time"
)

func (f *FSM) hasPending() bool { return f.be.Pending() }

// TestAppliedEntriesAreCommittedInBatches checks that applies share one
// write transaction, that a read sees every applied entry without
// committing it, and that the commit timer commits it.
func TestAppliedEntriesAreCommittedInBatches(t *testing.T) {
	f, l := newFSM(t), newTestLog(t)
	// The trimmer's run at open writes in a batch of its own: let it end
	// first, or it may reopen one just after the read below.
	deadline := time.Now().Add(10 * time.Second)
	for f.trimRuns.Load() == 0 || len(f.trimKick) > 0 {
		if time.Now().After(deadline) {
			t.Fatal("the trimmer's run at open did not end")
		}
		time.Sleep(time.Millisecond)
	}
	if err := f.be.Commit(); err != nil { // the trimmer's batch
		t.Fatal(err)
	}
	l.applyOne(f, put("a", "1"))
	l.applyOne(f, put("b", "2"))
	if !f.hasPending() {
		t.Fatal("no pending transaction after two applies: every batch was committed")
	}
	if got := mustRange(t, f, get("a", "c")); got.GetCount() != 2 {
		t.Fatalf("read after two applies found %d keys, want 2", got.GetCount())
	}
	if !f.hasPending() {
		t.Fatal("a read committed the applied entries")
	}

	l.applyOne(f, put("c", "3"))
	deadline = time.Now().Add(10 * commitInterval)
	for f.hasPending() {
		if time.Now().After(deadline) {
			t.Fatalf("pending entries not committed %v after the apply", 10*commitInterval)
		}
		time.Sleep(commitInterval / 10)
	}
	if got := mustRange(t, f, get("c", "")); got.GetCount() != 1 {
		t.Fatalf("key c not found after the timed commit")
	}
}

// TestPendingEntriesSurviveCloseAndReopen checks that a clean close commits
// what was applied, so the reopened state needs no replay.
func TestPendingEntriesSurviveCloseAndReopen(t *testing.T) {
	dir := t.TempDir()
	f, l := openFSM(t, dir), newTestLog(t)
	l.applyOne(f, put("a", "1"))
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	g := openFSM(t, dir)
	if g.Rebuilt() || g.AppliedIndex() != 1 {
		t.Fatalf("reopened: rebuilt %v, applied %d; want a kept state at index 1", g.Rebuilt(), g.AppliedIndex())
	}
	if got := mustRange(t, g, get("a", "")); got.GetCount() != 1 {
		t.Fatal("key a lost over a clean close")
	}
}
