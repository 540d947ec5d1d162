package history

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPair(t *testing.T) {
	events := []Event{
		{Index: 0, Type: Info, Process: ControlProcess, F: FPhase, Value: Str(PhaseWarmup)},
		{Index: 1, Type: Invoke, Process: 0, F: "write", Key: "k", Value: Str("1")},
		{Index: 2, Type: Invoke, Process: 1, F: "read", Key: "k"},
		{Index: 3, Type: OK, Process: 1, F: "read", Key: "k"},
		{Index: 4, Type: Info, Process: 0, F: "write", Key: "k", Value: Str("1")},
		{Index: 5, Type: Invoke, Process: 1, F: "read", Key: "k"},
	}
	ops, err := Pair(events)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 3 {
		t.Fatalf("got %d ops, want 3", len(ops))
	}
	for i, want := range []Type{Info, OK, Info} { // the last never completed
		if got := ops[i].Type(); got != want {
			t.Errorf("op %d: type %s, want %s", i, got, want)
		}
	}
	if ops[0].Complete.Index != 4 || ops[2].Complete != nil {
		t.Errorf("wrong pairing: %+v", ops)
	}
}

func TestPairRejectsMalformed(t *testing.T) {
	tests := []struct {
		name   string
		events []Event
		want   string
	}{
		{"two invocations", []Event{
			{Index: 0, Type: Invoke, Process: 3, F: "read"},
			{Index: 1, Type: Invoke, Process: 3, F: "read"},
		}, "still open"},
		{"completion without invocation", []Event{
			{Index: 0, Type: OK, Process: 3, F: "read"},
		}, "without an invocation"},
		{"mismatched f", []Event{
			{Index: 0, Type: Invoke, Process: 3, F: "read"},
			{Index: 1, Type: OK, Process: 3, F: "write"},
		}, "does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Pair(tt.events)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestRecorderRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	rec, err := NewRecorder(path, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a := rec.Record(Event{Type: Invoke, Process: 0, F: "cas", Key: "k", From: Str("1"), Value: Str("2")})
	b := rec.Record(Event{Type: OK, Process: 0, F: "cas", Key: "k", From: Str("1"), Value: Str("2"), Matched: Bool(false)})
	c := rec.Record(Event{Type: OK, Process: 1, F: "read"}) // a read of an absent key: no value
	if a.Index != 0 || b.Index != 1 || b.Time < a.Time || c.Time < b.Time {
		t.Fatalf("bad stamps: %+v %+v %+v", a, b, c)
	}
	if err := rec.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || *got[1].Matched || got[2].Value != nil || *got[0].From != "1" {
		t.Fatalf("read back %+v", got)
	}
	if _, err := Read(bytes.NewBufferString("{not json}\n")); err == nil {
		t.Fatal("bad line accepted")
	}
}
