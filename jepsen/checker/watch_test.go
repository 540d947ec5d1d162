package checker

import (
	"strings"
	"testing"

	"github.com/kvd-io/kvd/jepsen/history"
)

// watchWriteSpec is one write of a hand-made watch history.
type watchWriteSpec struct {
	value string
	keys  []string
	typ   history.Type // "open" for no completion
	rev   int64        // for ok
}

// The writes of every case: a put per revision 2..6, a transaction at 7,
// one failed write, one unknown that took effect at 8, one unknown that did
// not.
var watchWrites = []watchWriteSpec{
	{"1", []string{"k/a"}, history.OK, 2},
	{"2", []string{"k/b"}, history.OK, 3},
	{"3", []string{"k/a"}, history.OK, 4},
	{"4", []string{"k/c"}, history.OK, 5},
	{"5", []string{"k/b"}, history.OK, 6},
	{"6", []string{"k/a", "k/c"}, history.OK, 7},
	{"7", []string{"k/b"}, history.Fail, 0},
	{"8", []string{"k/b"}, history.Info, 0},
	{"9", []string{"k/a"}, "open", 0},
}

// cleanEvents is what every watcher must see: every committed write, with
// the unknown write "8" at revision 8.
var cleanEvents = []string{
	"2 put k/a 1 m1", "3 put k/b 2 m1", "4 put k/a 3 m1", "5 put k/c 4 m2",
	"6 put k/b 5 m2", "7 put k/a 6 m2", "7 put k/c 6 m2", "8 put k/b 8 m3",
}

var cleanFinal = []string{"k/a 7 6", "k/b 8 8", "k/c 7 6"}

type watcherSpec struct {
	node    string
	typ     history.Type
	through int64
	events  []string
}

func watchHistory(writes []watchWriteSpec, watchers []watcherSpec, final []string, finalRev int64) []history.Event {
	h := &hist{}
	p := 100
	for i, w := range watchers {
		h.add(history.Event{Type: history.Invoke, Process: p + i, F: FWatch, Node: w.node})
	}
	for i, w := range writes {
		h.add(history.Event{Type: history.Invoke, Process: i, F: FWrite, Value: s(w.value), Values: w.keys})
		if w.typ != "open" {
			h.add(history.Event{Type: w.typ, Process: i, F: FWrite, Value: s(w.value), Values: w.keys, Revision: w.rev})
		}
	}
	if final != nil {
		h.add(history.Event{Type: history.Invoke, Process: 99, F: FReadAll})
		h.add(history.Event{Type: history.OK, Process: 99, F: FReadAll, Values: final, Revision: finalRev})
	}
	for i, w := range watchers {
		h.add(history.Event{Type: w.typ, Process: p + i, F: FWatch, Node: w.node, Values: w.events, Revision: w.through})
	}
	return h.events
}

func edit(events []string, fn func([]string) []string) []string {
	return fn(append([]string(nil), events...))
}

func TestCheckWatch(t *testing.T) {
	clean := func(node string) watcherSpec { return watcherSpec{node, history.OK, 8, cleanEvents} }
	tests := []struct {
		name     string
		watchers []watcherSpec
		final    []string
		verdict  string
		problem  string // part of a problem, for invalid and unknown
	}{
		{"clean", []watcherSpec{clean("n1"), clean("n2"), clean("n3")}, cleanFinal, Valid, ""},
		{"a watcher that ended early: no anomaly in its prefix, but inconclusive", []watcherSpec{clean("n1"),
			{"n2", history.Info, 5, cleanEvents[:4]}}, cleanFinal, Unknown, "did not catch up"},
		{"gap", []watcherSpec{clean("n1"), {"n2", history.OK, 8, edit(cleanEvents, func(e []string) []string {
			return append(e[:2], e[3:]...)
		})}}, cleanFinal, Invalid, "1 missing events"},
		{"half a transaction", []watcherSpec{clean("n1"), {"n2", history.OK, 8, edit(cleanEvents, func(e []string) []string {
			return append(e[:6], e[7:]...)
		})}}, cleanFinal, Invalid, "1 missing events"},
		{"gap before the end of an early watcher", []watcherSpec{clean("n1"), {"n2", history.Info, 5, edit(cleanEvents[:4], func(e []string) []string {
			return append(e[:1], e[2:]...)
		})}}, cleanFinal, Invalid, "1 missing events"},
		{"duplicate across a reconnect", []watcherSpec{clean("n1"), {"n2", history.OK, 8, edit(cleanEvents, func(e []string) []string {
			out := append([]string(nil), e[:5]...)
			out = append(out, "6 put k/b 5 m3") // resumed one revision too early
			return append(out, e[5:]...)
		})}}, cleanFinal, Invalid, "1 duplicate events"},
		{"duplicate at a later revision", []watcherSpec{clean("n1"), {"n2", history.OK, 8, append(append([]string(nil), cleanEvents...), "9 put k/b 8 m3")}},
			cleanFinal, Invalid, "duplicate"},
		{"reorder", []watcherSpec{clean("n1"), {"n2", history.OK, 8, edit(cleanEvents, func(e []string) []string {
			e[2], e[3] = e[3], e[2]
			return e
		})}}, cleanFinal, Invalid, "out of order"},
		{"events of a revision out of key order", []watcherSpec{clean("n1"), {"n2", history.OK, 8, edit(cleanEvents, func(e []string) []string {
			e[5], e[6] = e[6], e[5]
			return e
		})}}, cleanFinal, Invalid, "out of order"},
		{"phantom event", []watcherSpec{clean("n1"), {"n2", history.OK, 9, append(append([]string(nil), cleanEvents...), "9 put k/a 42 m3")}},
			cleanFinal, Invalid, "phantom"},
		{"event of a failed write", []watcherSpec{clean("n1"), {"n2", history.OK, 9, append(append([]string(nil), cleanEvents...), "9 put k/b 7 m3")}},
			cleanFinal, Invalid, "phantom"},
		{"an acknowledged write at another revision", []watcherSpec{clean("n1"), {"n2", history.OK, 8, edit(cleanEvents, func(e []string) []string {
			e[0] = "1 put k/a 1 m1"
			return e
		})}}, cleanFinal, Invalid, "wrong revision"},
		{"watchers disagree on an unknown write's revision", []watcherSpec{clean("n1"), {"n2", history.OK, 9, edit(cleanEvents, func(e []string) []string {
			e[7] = "9 put k/b 8 m3"
			return e
		})}}, cleanFinal, Invalid, ""},
		{"an unknown write seen by one watcher only", []watcherSpec{clean("n1"), {"n2", history.OK, 8, cleanEvents[:7]}},
			cleanFinal, Invalid, "1 missing events"},
		{"final read disagrees", []watcherSpec{clean("n1")}, []string{"k/a 4 3", "k/b 8 8", "k/c 7 6"}, Invalid, ""},
		{"no final read", []watcherSpec{clean("n1")}, nil, Unknown, "no final read"},
		{"a watcher behind the final read", []watcherSpec{clean("n1"), {"n2", history.Info, 6, cleanEvents[:5]}},
			cleanFinal, Unknown, "did not catch up"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := CheckWatch(watchHistory(watchWrites, tt.watchers, tt.final, 8))
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != tt.verdict {
				t.Fatalf("verdict %s, want %s; problems %v, anomalies %v", res.Verdict, tt.verdict, res.Problems, res.Anomalies)
			}
			if tt.problem != "" && !strings.Contains(strings.Join(res.Problems, "; "), tt.problem) {
				t.Fatalf("problems %v, want one with %q; anomalies %v", res.Problems, tt.problem, res.Anomalies)
			}
			if tt.verdict == Invalid && len(res.Anomalies) == 0 {
				t.Fatal("invalid without an anomaly listed")
			}
			if tt.verdict == Valid && (len(res.Anomalies) > 0 || len(res.Problems) > 0) {
				t.Fatalf("valid with anomalies %v, problems %v", res.Anomalies, res.Problems)
			}
		})
	}
}

func TestCheckWatchCounts(t *testing.T) {
	res, err := CheckWatch(watchHistory(watchWrites, []watcherSpec{{"n1", history.OK, 8, cleanEvents}, {"n2", history.OK, 8, cleanEvents}}, cleanFinal, 8))
	if err != nil {
		t.Fatal(err)
	}
	if res.Attempted != 9 || res.Acked != 6 || res.Failed != 1 || res.Unknown != 2 || res.UnknownSeen != 1 ||
		res.Committed != 7 || res.CommittedEvents != 8 || res.EventsChecked != 16 || res.EmptyRevisions != 0 {
		t.Fatalf("counts: %+v", res)
	}
	if w := res.Watchers[0]; w.Members != 3 || w.Moves != 2 || w.Events != 8 || w.Through != 8 {
		t.Fatalf("watcher: %+v", w)
	}
}

func TestCheckWatchRejectsMalformed(t *testing.T) {
	for name, events := range map[string][]history.Event{
		"value written twice":       watchHistory([]watchWriteSpec{{"1", []string{"k"}, history.OK, 2}, {"1", []string{"k"}, history.OK, 3}}, nil, nil, 0),
		"ok write without revision": watchHistory([]watchWriteSpec{{"1", []string{"k"}, history.OK, 0}}, nil, nil, 0),
		"bad event":                 watchHistory(nil, []watcherSpec{{"n1", history.OK, 2, []string{"2 put k"}}}, nil, 0),
	} {
		if _, err := CheckWatch(events); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestWatchEventRoundTrip(t *testing.T) {
	e := WatchEvent{Revision: 12, Type: "delete", Key: "k/a", Member: "3f"}
	got, err := ParseWatchEvent(FormatWatchEvent(e))
	if err != nil || got != e {
		t.Fatalf("%+v, %v", got, err)
	}
}
