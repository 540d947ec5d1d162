package checker

import (
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/kvd-io/kvd/jepsen/history"
)

// hist builds a history from compact steps; times are the indexes, so the
// order of the steps is the real-time order.
type hist struct{ events []history.Event }

func (h *hist) add(e history.Event) *hist {
	e.Index = len(h.events)
	e.Time = int64(e.Index) * 10
	h.events = append(h.events, e)
	return h
}

func (h *hist) invoke(p int, f, key string, value, from *string) *hist {
	return h.add(history.Event{Type: history.Invoke, Process: p, F: f, Key: key, Value: value, From: from})
}

func (h *hist) done(p int, t history.Type, f, key string, value *string, matched *bool) *hist {
	return h.add(history.Event{Type: t, Process: p, F: f, Key: key, Value: value, Matched: matched})
}

var s = history.Str

func check(t *testing.T, events []history.Event) string {
	t.Helper()
	res, err := CheckRegister(events, 10*time.Second, "")
	if err != nil {
		t.Fatal(err)
	}
	return res.Verdict
}

func TestRegisterModel(t *testing.T) {
	tests := []struct {
		name  string
		build func(h *hist)
		want  string
	}{
		{"sequential write then read", func(h *hist) {
			h.invoke(0, FWrite, "k", s("1"), nil).done(0, history.OK, FWrite, "k", s("1"), nil)
			h.invoke(1, FRead, "k", nil, nil).done(1, history.OK, FRead, "k", s("1"), nil)
		}, Valid},
		{"read of an absent key", func(h *hist) {
			h.invoke(1, FRead, "k", nil, nil).done(1, history.OK, FRead, "k", nil, nil)
		}, Valid},
		{"concurrent read may see the old or new value", func(h *hist) {
			h.invoke(0, FWrite, "k", s("1"), nil).done(0, history.OK, FWrite, "k", s("1"), nil)
			h.invoke(0, FWrite, "k", s("2"), nil)
			h.invoke(1, FRead, "k", nil, nil).done(1, history.OK, FRead, "k", s("1"), nil)
			h.done(0, history.OK, FWrite, "k", s("2"), nil)
		}, Valid},
		{"stale read after a completed write", func(h *hist) {
			h.invoke(0, FWrite, "k", s("1"), nil).done(0, history.OK, FWrite, "k", s("1"), nil)
			h.invoke(0, FWrite, "k", s("2"), nil).done(0, history.OK, FWrite, "k", s("2"), nil)
			h.invoke(1, FRead, "k", nil, nil).done(1, history.OK, FRead, "k", s("1"), nil)
		}, Invalid},
		{"read of absent after a write", func(h *hist) {
			h.invoke(0, FWrite, "k", s("1"), nil).done(0, history.OK, FWrite, "k", s("1"), nil)
			h.invoke(1, FRead, "k", nil, nil).done(1, history.OK, FRead, "k", nil, nil)
		}, Invalid},
		{"value never written", func(h *hist) {
			h.invoke(1, FRead, "k", nil, nil).done(1, history.OK, FRead, "k", s("7"), nil)
		}, Invalid},
		{"info write may have applied", func(h *hist) {
			h.invoke(0, FWrite, "k", s("1"), nil).done(0, history.Info, FWrite, "k", s("1"), nil)
			h.invoke(1, FRead, "k", nil, nil).done(1, history.OK, FRead, "k", s("1"), nil)
		}, Valid},
		{"info write may not have applied", func(h *hist) {
			h.invoke(0, FWrite, "k", s("1"), nil).done(0, history.Info, FWrite, "k", s("1"), nil)
			h.invoke(1, FRead, "k", nil, nil).done(1, history.OK, FRead, "k", nil, nil)
		}, Valid},
		{"info write applies late, after later reads saw the old value", func(h *hist) {
			h.invoke(0, FWrite, "k", s("1"), nil).done(0, history.OK, FWrite, "k", s("1"), nil)
			h.invoke(2, FWrite, "k", s("2"), nil).done(2, history.Info, FWrite, "k", s("2"), nil)
			h.invoke(1, FRead, "k", nil, nil).done(1, history.OK, FRead, "k", s("1"), nil)
			h.invoke(1, FRead, "k", nil, nil).done(1, history.OK, FRead, "k", s("2"), nil)
		}, Valid},
		{"info write cannot un-apply", func(h *hist) {
			h.invoke(2, FWrite, "k", s("2"), nil).done(2, history.Info, FWrite, "k", s("2"), nil)
			h.invoke(1, FRead, "k", nil, nil).done(1, history.OK, FRead, "k", s("2"), nil)
			h.invoke(1, FRead, "k", nil, nil).done(1, history.OK, FRead, "k", nil, nil)
		}, Invalid},
		{"failed write did not happen", func(h *hist) {
			h.invoke(0, FWrite, "k", s("1"), nil).done(0, history.Fail, FWrite, "k", s("1"), nil)
			h.invoke(1, FRead, "k", nil, nil).done(1, history.OK, FRead, "k", nil, nil)
		}, Valid},
		{"failed write is dropped even if seen", func(h *hist) {
			// The checker trusts fail: the value then comes from nowhere.
			h.invoke(0, FWrite, "k", s("1"), nil).done(0, history.Fail, FWrite, "k", s("1"), nil)
			h.invoke(1, FRead, "k", nil, nil).done(1, history.OK, FRead, "k", s("1"), nil)
		}, Invalid},
		{"failed and info reads are dropped", func(h *hist) {
			h.invoke(0, FWrite, "k", s("1"), nil).done(0, history.OK, FWrite, "k", s("1"), nil)
			h.invoke(1, FRead, "k", nil, nil).done(1, history.Fail, FRead, "k", nil, nil)
			h.invoke(2, FRead, "k", nil, nil).done(2, history.Info, FRead, "k", nil, nil)
		}, Valid},
		{"cas that matched", func(h *hist) {
			h.invoke(0, FWrite, "k", s("1"), nil).done(0, history.OK, FWrite, "k", s("1"), nil)
			h.invoke(0, FCAS, "k", s("2"), s("1")).done(0, history.OK, FCAS, "k", s("2"), history.Bool(true))
			h.invoke(1, FRead, "k", nil, nil).done(1, history.OK, FRead, "k", s("2"), nil)
		}, Valid},
		{"cas that did not match changes nothing", func(h *hist) {
			h.invoke(0, FWrite, "k", s("1"), nil).done(0, history.OK, FWrite, "k", s("1"), nil)
			h.invoke(0, FCAS, "k", s("2"), s("9")).done(0, history.OK, FCAS, "k", s("2"), history.Bool(false))
			h.invoke(1, FRead, "k", nil, nil).done(1, history.OK, FRead, "k", s("1"), nil)
		}, Valid},
		{"cas reported as not matching although it should have", func(h *hist) {
			h.invoke(0, FWrite, "k", s("1"), nil).done(0, history.OK, FWrite, "k", s("1"), nil)
			h.invoke(0, FCAS, "k", s("2"), s("1")).done(0, history.OK, FCAS, "k", s("2"), history.Bool(false))
		}, Invalid},
		{"cas on an absent key never matches", func(h *hist) {
			h.invoke(0, FCAS, "k", s("2"), s("1")).done(0, history.OK, FCAS, "k", s("2"), history.Bool(true))
		}, Invalid},
		{"info cas may apply", func(h *hist) {
			h.invoke(0, FWrite, "k", s("1"), nil).done(0, history.OK, FWrite, "k", s("1"), nil)
			h.invoke(0, FCAS, "k", s("2"), s("1")).done(0, history.Info, FCAS, "k", s("2"), nil)
			h.invoke(1, FRead, "k", nil, nil).done(1, history.OK, FRead, "k", s("2"), nil)
		}, Valid},
		{"info cas applies only if it matches", func(h *hist) {
			h.invoke(0, FWrite, "k", s("1"), nil).done(0, history.OK, FWrite, "k", s("1"), nil)
			h.invoke(0, FCAS, "k", s("2"), s("9")).done(0, history.Info, FCAS, "k", s("2"), nil)
			h.invoke(1, FRead, "k", nil, nil).done(1, history.OK, FRead, "k", s("2"), nil)
		}, Invalid},
		{"keys are independent", func(h *hist) {
			h.invoke(0, FWrite, "a", s("1"), nil).done(0, history.OK, FWrite, "a", s("1"), nil)
			h.invoke(1, FRead, "b", nil, nil).done(1, history.OK, FRead, "b", nil, nil)
		}, Valid},
		{"uncompleted write counts as info", func(h *hist) {
			h.invoke(0, FWrite, "k", s("1"), nil)
			h.invoke(1, FRead, "k", nil, nil).done(1, history.OK, FRead, "k", s("1"), nil)
		}, Valid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &hist{}
			h.add(history.Event{Type: history.Info, Process: history.ControlProcess, F: history.FPhase, Value: s(history.PhaseWarmup)})
			tt.build(h)
			if got := check(t, h.events); got != tt.want {
				t.Fatalf("verdict %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRegisterOperations(t *testing.T) {
	h := &hist{}
	h.invoke(0, FWrite, "k", s("1"), nil).done(0, history.Info, FWrite, "k", s("1"), nil)
	h.invoke(1, FRead, "k", nil, nil).done(1, history.Fail, FRead, "k", nil, nil)
	h.invoke(2, FCAS, "k", s("3"), s("1")).done(2, history.OK, FCAS, "k", s("3"), history.Bool(true))
	h.invoke(3, FRead, "k", nil, nil).done(3, history.OK, FRead, "k", s("3"), nil)
	h.invoke(4, FWrite, "k", s("5"), nil).done(4, history.Fail, FWrite, "k", s("5"), nil)
	ops, err := RegisterOperations(h.events)
	if err != nil {
		t.Fatal(err)
	}
	if len(ops) != 3 {
		t.Fatalf("got %d operations, want 3 (failed read and write dropped): %+v", len(ops), ops)
	}
	end := history.End(h.events)
	want := []struct {
		in     RegisterInput
		out    RegisterOutput
		call   int64
		ret    int64
		client int
	}{
		{RegisterInput{Op: FWrite, Key: "k", Value: "1"}, RegisterOutput{Unknown: true}, 0, end + 1, 0},
		{RegisterInput{Op: FCAS, Key: "k", Value: "3", From: "1"}, RegisterOutput{Matched: true}, 40, 50, 2},
		{RegisterInput{Op: FRead, Key: "k"}, RegisterOutput{Value: "3"}, 60, 70, 3},
	}
	for i, w := range want {
		op := ops[i]
		if op.Input != w.in || op.Output != w.out || op.Call != w.call || op.Return != w.ret || op.ClientId != w.client {
			t.Errorf("op %d = %+v, want %+v", i, op, w)
		}
	}
	// The model the ops feed accepts them.
	if porcupine.CheckOperations(RegisterModel(), ops) != true {
		t.Error("converted history is not linearizable")
	}
}

func TestCheckRegisterNamesBadKeysAndWritesHTML(t *testing.T) {
	h := &hist{}
	h.add(history.Event{Type: history.Info, Process: history.ControlProcess, F: history.FStart, Nemesis: "partition-leader", Value: s("leader isolated")})
	h.invoke(0, FWrite, "good", s("1"), nil).done(0, history.OK, FWrite, "good", s("1"), nil)
	h.invoke(0, FWrite, "bad", s("2"), nil).done(0, history.OK, FWrite, "bad", s("2"), nil)
	h.invoke(1, FRead, "bad", nil, nil).done(1, history.OK, FRead, "bad", nil, nil)
	h.add(history.Event{Type: history.Info, Process: history.ControlProcess, F: history.FStop, Nemesis: "partition-leader"})
	path := t.TempDir() + "/history.html"
	res, err := CheckRegister(h.events, 10*time.Second, path)
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != Invalid || len(res.Anomalies) != 1 || res.Anomalies[0].Key != "bad" || len(res.Anomalies[0].Ops) != 2 {
		t.Fatalf("result %+v", res)
	}
	if res.Operations != 3 || res.Keys != 2 || res.Visualization != "history.html" {
		t.Fatalf("result %+v", res)
	}
}
