package checker

import (
	"fmt"
	"sort"

	"github.com/kvd-io/kvd/jepsen/history"
)

// Set operation names (history.Event.F).
const (
	FAdd     = "add"      // Value: the element
	FReadAll = "read-all" // Node: the member read; Values on ok
)

// SetResult is the set checker's verdict.
type SetResult struct {
	// Verdict is "valid", "invalid" (an anomaly below) or "unknown" (no
	// member answered its final read, so nothing could be checked).
	Verdict string `json:"verdict"`

	Attempted int `json:"attempted"` // adds invoked
	Acked     int `json:"acknowledged"`
	Failed    int `json:"failed"`        // adds certainly not applied
	Unknown   int `json:"unknown"`       // adds with unknown outcome
	Recovered int `json:"unknown_found"` // unknown adds present at the end

	// FinalReads maps each member to the size of its final read, or -1
	// when it never answered.
	FinalReads map[string]int `json:"final_reads"`

	// Lost: acknowledged, but missing from some member's final read.
	Lost []string `json:"lost,omitempty"`
	// Phantom: present, but never added.
	Phantom []string `json:"phantom,omitempty"`
	// Unexpected: present, but its add was reported as certainly failed.
	Unexpected []string `json:"unexpected,omitempty"`
	// Vanished: in one final read, missing from a later one.
	Vanished []string `json:"vanished,omitempty"`
	// Problems explains the verdict in words.
	Problems []string `json:"problems,omitempty"`
}

// CheckSet checks the set workload: adds, then final reads on every member
// after the cluster healed and went quiet. members lists every member that
// must have answered a final read.
func CheckSet(events []history.Event, members []string) (SetResult, error) {
	ops, err := history.Pair(events)
	if err != nil {
		return SetResult{}, err
	}
	res := SetResult{FinalReads: map[string]int{}}
	attempted := map[string]bool{}
	acked := map[string]bool{}
	failed := map[string]bool{}
	unknown := map[string]bool{}
	type read struct {
		node   string
		at     int64
		values map[string]bool
	}
	var reads []read
	for _, m := range members {
		res.FinalReads[m] = -1
	}
	for _, op := range ops {
		switch op.Invoke.F {
		case FAdd:
			if op.Invoke.Value == nil {
				return res, fmt.Errorf("event %d: add without an element", op.Invoke.Index)
			}
			e := *op.Invoke.Value
			if attempted[e] {
				return res, fmt.Errorf("event %d: element %s added twice; elements must be unique", op.Invoke.Index, e)
			}
			attempted[e] = true
			switch op.Type() {
			case history.OK:
				acked[e] = true
			case history.Fail:
				failed[e] = true
			default:
				unknown[e] = true
			}
		case FReadAll:
			if op.Type() != history.OK {
				continue
			}
			r := read{node: op.Invoke.Node, at: op.Invoke.Time, values: map[string]bool{}}
			for _, v := range op.Complete.Values {
				r.values[v] = true
			}
			res.FinalReads[r.node] = len(r.values)
			reads = append(reads, r)
		}
	}
	res.Attempted, res.Acked, res.Failed, res.Unknown = len(attempted), len(acked), len(failed), len(unknown)

	lost, phantom, unexpected, vanished, recovered := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	sort.SliceStable(reads, func(i, j int) bool { return reads[i].at < reads[j].at })
	for i, r := range reads {
		for e := range acked {
			if !r.values[e] {
				lost[e] = true
			}
		}
		for e := range r.values {
			switch {
			case !attempted[e]:
				phantom[e] = true
			case failed[e]:
				unexpected[e] = true
			case unknown[e]:
				recovered[e] = true
			}
			for _, later := range reads[i+1:] {
				if !later.values[e] {
					vanished[e] = true
				}
			}
		}
	}
	res.Recovered = len(recovered)
	res.Lost, res.Phantom, res.Unexpected, res.Vanished = sorted(lost), sorted(phantom), sorted(unexpected), sorted(vanished)

	for _, a := range []struct {
		what string
		els  []string
	}{
		{"acknowledged adds lost", res.Lost},
		{"phantom elements (never added)", res.Phantom},
		{"elements whose add was reported as certainly failed", res.Unexpected},
		{"elements that vanished between final reads", res.Vanished},
	} {
		if len(a.els) > 0 {
			res.Problems = append(res.Problems, fmt.Sprintf("%d %s: %s", len(a.els), a.what, abbreviate(a.els, 20)))
		}
	}
	invalid := len(res.Problems) > 0
	var missing []string
	for _, m := range members {
		if res.FinalReads[m] < 0 {
			missing = append(missing, m)
		}
	}
	if len(missing) > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("no final read from %v", missing))
	}
	switch {
	case invalid:
		res.Verdict = Invalid
	case len(reads) == 0 || len(missing) > 0:
		res.Verdict = Unknown
	default:
		res.Verdict = Valid
	}
	return res, nil
}

func sorted(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func abbreviate(s []string, n int) string {
	if len(s) <= n {
		return fmt.Sprint(s)
	}
	return fmt.Sprintf("%v ... (%d more)", s[:n], len(s)-n)
}
