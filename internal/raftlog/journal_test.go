package raftlog

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// richEntries returns entries from..to with every field of raft.Log set, so
// that a round trip through the journal shows any field it loses.
func richEntries(from, to uint64, term uint64) []*raft.Log {
	var ls []*raft.Log
	for i := from; i <= to; i++ {
		l := &raft.Log{
			Index:      i,
			Term:       term,
			Type:       raft.LogType(i % 6),
			Data:       bytes.Repeat([]byte{byte(i)}, int(i%7)*50),
			AppendedAt: time.Unix(1700000000, int64(i)*1000),
		}
		if i%3 == 0 {
			l.Extensions = []byte("ext")
		}
		if i%5 == 0 {
			l.AppendedAt = time.Time{}
		}
		ls = append(ls, l)
	}
	return ls
}

func sameLogs(t *testing.T, got, want []*raft.Log) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d entries (%s), want %d (%s)", len(got), indexes(got), len(want), indexes(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.Index != w.Index || g.Term != w.Term || g.Type != w.Type || !bytes.Equal(g.Data, w.Data) ||
			!bytes.Equal(g.Extensions, w.Extensions) || !g.AppendedAt.Equal(w.AppendedAt) {
			t.Fatalf("entry %d: got %+v, want %+v", i, *g, *w)
		}
	}
}

func indexes(ls []*raft.Log) string {
	var idx []uint64
	for _, l := range ls {
		idx = append(idx, l.Index)
	}
	return fmt.Sprint(idx)
}

// newTestJournal creates an empty journal in a new directory, ready for
// appends.
func newTestJournal(t *testing.T) (*journal, string) {
	t.Helper()
	dir := t.TempDir()
	j := openTestJournal(t, dir, nil)
	if err := j.resetAll(); err != nil {
		t.Fatal(err)
	}
	return j, dir
}

// openTestJournal opens the journal in dir and checks that it holds want.
func openTestJournal(t *testing.T, dir string, want []*raft.Log) *journal {
	t.Helper()
	j, got, err := openJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.close() })
	sameLogs(t, got, want)
	return j
}

func TestJournalRoundTrip(t *testing.T) {
	j, dir := newTestJournal(t)
	all := richEntries(1, 40, 3)
	for _, batch := range [][]*raft.Log{all[:1], all[1:7], all[7:40]} {
		if err := j.append(batch); err != nil {
			t.Fatal(err)
		}
	}
	j.close()
	openTestJournal(t, dir, all)
}

// A crash while a record was being written leaves a tail that does not
// check out, wherever the write stopped: the journal ends before it.
func TestJournalEndsAtATornRecord(t *testing.T) {
	j, dir := newTestJournal(t)
	all := richEntries(1, 6, 2)
	if err := j.append(all[:4]); err != nil {
		t.Fatal(err)
	}
	lastStart := j.files[j.active].tail
	if err := j.append(all[4:]); err != nil {
		t.Fatal(err)
	}
	end := j.files[j.active].tail
	j.close()
	f, err := os.OpenFile(filepath.Join(dir, journalNames[0]), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pristine := make([]byte, end)
	if _, err := f.ReadAt(pristine, 0); err != nil {
		t.Fatal(err)
	}
	// Entry 5's record starts at lastStart; entry 6's follows it.
	fifthEnd := lastStart + int64(len(appendJournalRecord(nil, 0, all[4])))
	// Every offset, or under -short (make check) every fifth and the last.
	step := int64(1)
	if testing.Short() {
		step = 5
	}
	for off := lastStart; off < end; off = min(off+step, max(off+1, end-1)) {
		for name, garble := range map[string]func([]byte){
			"a flipped bit":        func(b []byte) { b[off] ^= 0x40 },
			"a write cut short":    func(b []byte) { clear(b[off:]) },
			"garbage from a crash": func(b []byte) { copy(b[off:], bytes.Repeat([]byte{0xff}, int(end-off))) },
		} {
			b := bytes.Clone(pristine)
			garble(b)
			if _, err := f.WriteAt(b[lastStart:], lastStart); err != nil {
				t.Fatal(err)
			}
			// Entry 5 survives when the damage starts after it, or left
			// its bytes as they were (zeros cut short are still zeros).
			want := all[:4]
			if bytes.Equal(b[lastStart:fifthEnd], pristine[lastStart:fifthEnd]) {
				want = all[:5]
			}
			j, got, err := openJournal(dir)
			if err != nil {
				t.Fatalf("%s at offset %d: %v", name, off, err)
			}
			j.close()
			if len(got) != len(want) {
				t.Fatalf("%s at offset %d: replayed %s, want %s", name, off, indexes(got), indexes(want))
			}
			sameLogs(t, got, want)
		}
	}
}

// After a reset the file's old records no longer count, even where the new
// ones are shorter and the old ones follow them intact.
func TestJournalResetHidesOldRecords(t *testing.T) {
	j, dir := newTestJournal(t)
	if err := j.append(richEntries(1, 30, 1)); err != nil {
		t.Fatal(err)
	}
	if err := j.resetAll(); err != nil {
		t.Fatal(err)
	}
	next := richEntries(31, 32, 1)
	if err := j.append(next); err != nil {
		t.Fatal(err)
	}
	j.close()
	openTestJournal(t, dir, next)
}

// A checkpoint switches files; until the old one is reset, both hold
// entries, and the older generation is replayed first.
func TestJournalReplaysTheOlderFileFirst(t *testing.T) {
	for _, startActive := range []int{0, 1} {
		dir := t.TempDir()
		j := openTestJournal(t, dir, nil)
		j.active = startActive
		if err := j.resetAll(); err != nil {
			t.Fatal(err)
		}
		all := richEntries(1, 9, 4)
		if err := j.append(all[:5]); err != nil {
			t.Fatal(err)
		}
		old, first, last, gen := j.switchActive()
		if old != startActive || first != 1 || last != 5 {
			t.Fatalf("switch: old file %d with %d-%d, want %d with 1-5", old, first, last, startActive)
		}
		if err := j.append(all[5:]); err != nil {
			t.Fatal(err)
		}
		j.close()
		j2 := openTestJournal(t, dir, all)
		j2.close()

		// Once the old file is reset, only the new one's entries remain.
		j3, _, err := openJournal(dir)
		if err != nil {
			t.Fatal(err)
		}
		j3.files[0].gen, j3.files[1].gen = 0, 0 // forget what was read; reset by the generation switchActive chose
		if err := j3.reset(old, gen); err != nil {
			t.Fatal(err)
		}
		j3.close()
		openTestJournal(t, dir, all[5:])
	}
}

// A header torn by a crash during a reset makes its file read as empty: a
// reset happens only once the file's entries are in the log store.
func TestJournalTornHeaderReadsAsEmpty(t *testing.T) {
	j, dir := newTestJournal(t)
	if err := j.append(richEntries(1, 3, 1)); err != nil {
		t.Fatal(err)
	}
	j.close()
	path := filepath.Join(dir, journalNames[0])
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[9] ^= 1 // inside the generation
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	j2 := openTestJournal(t, dir, nil)
	if j2.files[0].gen != 0 {
		t.Fatalf("generation of a torn header = %d, want 0", j2.files[0].gen)
	}
}

// Entries that do not follow each other across the two files mean the
// journal is not what this package wrote: opening fails rather than guess.
func TestJournalRefusesAGapBetweenFiles(t *testing.T) {
	j, dir := newTestJournal(t)
	if err := j.append(richEntries(1, 3, 1)); err != nil {
		t.Fatal(err)
	}
	j.switchActive()
	if err := j.append(richEntries(7, 8, 1)); err != nil {
		t.Fatal(err)
	}
	j.close()
	if _, _, err := openJournal(dir); err == nil || !strings.Contains(err.Error(), "inconsistent") {
		t.Fatalf("open = %v, want an inconsistent journal", err)
	}
}

func TestJournalPayloadRejectsBadLengths(t *testing.T) {
	l := richEntries(3, 3, 1)[0]
	rec := appendJournalRecord(nil, 1, l)
	payload := rec[journalRecordHead:]
	if _, ok := decodeJournalPayload(payload); !ok {
		t.Fatal("a good payload does not decode")
	}
	for _, cut := range []int{1, len(payload) - journalPayloadMin, len(payload) - 1} {
		if _, ok := decodeJournalPayload(payload[:len(payload)-cut]); ok {
			t.Errorf("a payload %d bytes short decodes", cut)
		}
	}
	long := append(bytes.Clone(payload), 0)
	if _, ok := decodeJournalPayload(long); ok {
		t.Error("a payload with a trailing byte decodes")
	}
}
