package checker

import (
	"reflect"
	"testing"

	"github.com/kvd-io/kvd/jepsen/history"
)

// setHistory builds adds with the given outcomes ("ok", "fail", "info",
// "open" for no completion), then one final read per member.
func setHistory(adds map[string]history.Type, reads map[string][]string) []history.Event {
	h := &hist{}
	p := 0
	for _, e := range sorted(keysOf(adds)) {
		h.add(history.Event{Type: history.Invoke, Process: p, F: FAdd, Value: s(e)})
		if t := adds[e]; t != "open" {
			h.add(history.Event{Type: t, Process: p, F: FAdd, Value: s(e)})
		}
		p++
	}
	for _, node := range sorted(keysOf(reads)) {
		h.add(history.Event{Type: history.Invoke, Process: p, F: FReadAll, Node: node})
		if reads[node] == nil {
			h.add(history.Event{Type: history.Fail, Process: p, F: FReadAll, Node: node})
		} else {
			h.add(history.Event{Type: history.OK, Process: p, F: FReadAll, Node: node, Values: reads[node]})
		}
		p++
	}
	return h.events
}

func keysOf[V any](m map[string]V) map[string]bool {
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

func TestCheckSet(t *testing.T) {
	members := []string{"n1", "n2"}
	adds := map[string]history.Type{"1": history.OK, "2": history.OK, "3": history.Fail, "4": history.Info, "5": "open"}
	tests := []struct {
		name       string
		reads      map[string][]string
		verdict    string
		lost       []string
		phantom    []string
		unexpected []string
		vanished   []string
		recovered  int
	}{
		{"all acknowledged present", map[string][]string{"n1": {"1", "2"}, "n2": {"1", "2"}}, Valid, nil, nil, nil, nil, 0},
		{"unknown adds may be present", map[string][]string{"n1": {"1", "2", "4", "5"}, "n2": {"1", "2", "4", "5"}}, Valid, nil, nil, nil, nil, 2},
		{"lost on one member (and so vanished)", map[string][]string{"n1": {"1", "2"}, "n2": {"1"}}, Invalid, []string{"2"}, nil, nil, []string{"2"}, 0},
		{"phantom", map[string][]string{"n1": {"1", "2", "99"}, "n2": {"1", "2", "99"}}, Invalid, nil, []string{"99"}, nil, nil, 0},
		{"failed add present", map[string][]string{"n1": {"1", "2", "3"}, "n2": {"1", "2", "3"}}, Invalid, nil, nil, []string{"3"}, nil, 0},
		{"unknown add vanished", map[string][]string{"n1": {"1", "2", "4"}, "n2": {"1", "2"}}, Invalid, nil, nil, nil, []string{"4"}, 1},
		{"a member never answered", map[string][]string{"n1": {"1", "2"}, "n2": nil}, Unknown, nil, nil, nil, nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := CheckSet(setHistory(adds, tt.reads), members)
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != tt.verdict {
				t.Errorf("verdict %s, want %s (%v)", res.Verdict, tt.verdict, res.Problems)
			}
			for _, c := range []struct {
				what      string
				got, want []string
			}{{"lost", res.Lost, tt.lost}, {"phantom", res.Phantom, tt.phantom}, {"unexpected", res.Unexpected, tt.unexpected}, {"vanished", res.Vanished, tt.vanished}} {
				if len(c.got) != 0 || len(c.want) != 0 {
					if !reflect.DeepEqual(c.got, c.want) {
						t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
					}
				}
			}
			if res.Recovered != tt.recovered {
				t.Errorf("recovered %d, want %d", res.Recovered, tt.recovered)
			}
			if res.Attempted != 5 || res.Acked != 2 || res.Failed != 1 || res.Unknown != 2 {
				t.Errorf("counts %+v", res)
			}
		})
	}
}

func TestCheckSetRejectsDuplicateElements(t *testing.T) {
	h := &hist{}
	h.add(history.Event{Type: history.Invoke, Process: 0, F: FAdd, Value: s("1")})
	h.add(history.Event{Type: history.OK, Process: 0, F: FAdd, Value: s("1")})
	h.add(history.Event{Type: history.Invoke, Process: 0, F: FAdd, Value: s("1")})
	if _, err := CheckSet(h.events, nil); err == nil {
		t.Fatal("duplicate element accepted")
	}
}
