package raftlog

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
)

// TestFileCompact checks that compacting the log file gives back the pages
// of trimmed entries and keeps every entry and stable value left, and that
// the file is usable afterwards.
func TestFileCompact(t *testing.T) {
	path := filepath.Join(t.TempDir(), "raft.db")
	f, err := OpenFile(path, raftboltdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data := bytes.Repeat([]byte("x"), 16<<10)
	var logs []*raft.Log
	for i := uint64(1); i <= 2000; i++ {
		logs = append(logs, &raft.Log{Index: i, Term: 1, Data: data})
	}
	if err := f.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	if err := f.SetUint64([]byte("CurrentTerm"), 7); err != nil {
		t.Fatal(err)
	}
	if err := f.DeleteRange(1, 1990); err != nil { // raft trimming after a snapshot
		t.Fatal(err)
	}
	size, inUse, err := f.Size()
	if err != nil || inUse > size/2 {
		t.Fatalf("Size = %d, %d in use (%v); want most of the file free after the trim", size, inUse, err)
	}
	before, after, err := f.Compact(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if before != size || after > before/10 {
		t.Fatalf("Compact: %d bytes before, %d after; want the file %d and at most a tenth of it after", before, after, size)
	}
	first, _ := f.FirstIndex()
	last, _ := f.LastIndex()
	if first != 1991 || last != 2000 {
		t.Fatalf("after Compact the log holds %d..%d, want 1991..2000", first, last)
	}
	var l raft.Log
	if err := f.GetLog(1995, &l); err != nil || !bytes.Equal(l.Data, data) {
		t.Fatalf("entry 1995 after Compact: %v", err)
	}
	if term, err := f.GetUint64([]byte("CurrentTerm")); err != nil || term != 7 {
		t.Fatalf("CurrentTerm after Compact = %d, %v", term, err)
	}
	if err := f.StoreLog(&raft.Log{Index: 2001, Term: 2, Data: []byte("after")}); err != nil {
		t.Fatalf("append after Compact: %v", err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := f.Compact(context.Background()); !errors.Is(err, ErrFileClosed) {
		t.Fatalf("Compact after Close = %v, want ErrFileClosed", err)
	}
	if err := f.StoreLog(&raft.Log{Index: 2002}); !errors.Is(err, ErrFileClosed) {
		t.Fatalf("StoreLog after Close = %v, want ErrFileClosed", err)
	}
	// The compacted file opens again with everything in it.
	g, err := OpenFile(path, raftboltdb.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if last, _ := g.LastIndex(); last != 2001 {
		t.Fatalf("reopened log ends at %d, want 2001", last)
	}
}
