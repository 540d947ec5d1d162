package fsm

import (
	"testing"
	"time"
)

// raft's RecoverCluster persists a snapshot and never releases it. The read
// transaction must end with Persist, or closing the database waits forever.
func TestPersistEndsReadTransactionWithoutRelease(t *testing.T) {
	f := newFSM(t)
	l := newTestLog(t)
	l.applyOne(f, put("a", "1"))
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(&memSink{}); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- f.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close blocked: the snapshot's read transaction is still open")
	}
	snap.Release() // still safe afterwards
}
