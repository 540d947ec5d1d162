package checker

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/kvd-io/kvd/jepsen/history"
)

// Register operation names (history.Event.F).
const (
	FRead  = "read"
	FWrite = "write"
	FCAS   = "cas"
)

// RegisterInput is the input of a register operation in porcupine's model.
type RegisterInput struct {
	Op    string // FRead, FWrite or FCAS
	Key   string
	Value string // written value, or a cas's new value
	From  string // a cas's expected value
}

// RegisterOutput is the output of a register operation. The empty string
// stands for an absent key: written values are never empty.
type RegisterOutput struct {
	Value   string // what a read returned
	Matched bool   // whether a cas's compare held
	Unknown bool   // the outcome is unknown (info): any output is accepted
}

// RegisterModel is the sequential specification of one key: a register that
// starts absent ("") and holds the last written value. Histories are
// partitioned by key, so each partition's state is a single string.
func RegisterModel() porcupine.Model {
	return porcupine.Model{
		Partition: partitionByKey,
		Init:      func() interface{} { return "" },
		Step: func(state, input, output interface{}) (bool, interface{}) {
			st := state.(string)
			in := input.(RegisterInput)
			out := output.(RegisterOutput)
			switch in.Op {
			case FRead:
				return out.Unknown || out.Value == st, st
			case FWrite:
				return true, in.Value
			case FCAS:
				holds := st != "" && st == in.From // an absent key fails every value compare
				switch {
				case out.Unknown && holds:
					return true, in.Value
				case out.Unknown:
					return true, st
				case out.Matched:
					return holds, in.Value
				default:
					return !holds, st
				}
			}
			return false, st
		},
		Equal: func(a, b interface{}) bool { return a.(string) == b.(string) },
		DescribeOperation: func(input, output interface{}) string {
			in := input.(RegisterInput)
			out := output.(RegisterOutput)
			switch in.Op {
			case FRead:
				if out.Unknown {
					return "read() -> ?"
				}
				return fmt.Sprintf("read() -> %s", show(out.Value))
			case FWrite:
				if out.Unknown {
					return fmt.Sprintf("write(%s) ?", in.Value)
				}
				return fmt.Sprintf("write(%s)", in.Value)
			case FCAS:
				res := "ok"
				switch {
				case out.Unknown:
					res = "?"
				case !out.Matched:
					res = "did not match"
				}
				return fmt.Sprintf("cas(%s -> %s) %s", show(in.From), in.Value, res)
			}
			return in.Op
		},
		DescribeState: func(state interface{}) string { return show(state.(string)) },
		DescribeOperationMetadata: func(info interface{}) string {
			if m, ok := info.(OpMeta); ok {
				return m.String()
			}
			return ""
		},
	}
}

func show(v string) string {
	if v == "" {
		return "absent"
	}
	return v
}

func partitionByKey(ops []porcupine.Operation) [][]porcupine.Operation {
	byKey := map[string][]porcupine.Operation{}
	var keys []string
	for _, op := range ops {
		k := op.Input.(RegisterInput).Key
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], op)
	}
	out := make([][]porcupine.Operation, 0, len(keys))
	for _, k := range keys {
		out = append(out, byKey[k])
	}
	return out
}

// OpMeta is the metadata of a porcupine operation: the index of its
// invocation in the history and, when the client talked to one member only,
// that member.
type OpMeta struct {
	Event int
	Node  string
}

func (m OpMeta) String() string {
	if m.Node == "" {
		return fmt.Sprintf("event %d", m.Event)
	}
	return fmt.Sprintf("event %d via %s", m.Event, m.Node)
}

// RegisterOperations converts a history's register operations to porcupine
// operations. A failed or unknown read is dropped (it changed nothing), as
// is a failed write or cas. An unknown write or cas, or one that never
// completed, returns at "infinity": one past the end of the history.
func RegisterOperations(events []history.Event) ([]porcupine.Operation, error) {
	ops, err := history.Pair(events)
	if err != nil {
		return nil, err
	}
	infinity := history.End(events) + 1
	var out []porcupine.Operation
	for _, op := range ops {
		inv := op.Invoke
		if inv.F != FRead && inv.F != FWrite && inv.F != FCAS {
			continue
		}
		in := RegisterInput{Op: inv.F, Key: inv.Key}
		if inv.Value != nil {
			in.Value = *inv.Value
		}
		if inv.From != nil {
			in.From = *inv.From
		}
		if inv.F != FRead && in.Value == "" {
			return nil, fmt.Errorf("event %d: %s without a value", inv.Index, inv.F)
		}
		pop := porcupine.Operation{ClientId: inv.Process, Input: in, Call: inv.Time, Metadata: OpMeta{Event: inv.Index, Node: inv.Node}}
		switch op.Type() {
		case history.OK:
			c := op.Complete
			var outp RegisterOutput
			switch inv.F {
			case FRead:
				if c.Value != nil {
					outp.Value = *c.Value
				}
			case FCAS:
				if c.Matched == nil {
					return nil, fmt.Errorf("event %d: ok cas without matched", c.Index)
				}
				outp.Matched = *c.Matched
			}
			pop.Output, pop.Return = outp, c.Time
		case history.Fail:
			continue
		case history.Info:
			if inv.F == FRead {
				continue
			}
			pop.Output, pop.Return = RegisterOutput{Unknown: true}, infinity
		default:
			return nil, fmt.Errorf("event %d: unexpected completion type %q", inv.Index, op.Type())
		}
		out = append(out, pop)
	}
	return out, nil
}

// RegisterResult is the register checker's verdict.
type RegisterResult struct {
	// Verdict is "valid", "invalid" (porcupine found no linearization) or
	// "unknown" (the check timed out: inconclusive, never a pass).
	Verdict    string        `json:"verdict"`
	Operations int           `json:"operations"` // porcupine operations checked
	Keys       int           `json:"keys"`
	Unknown    int           `json:"unknown_ops"` // writes and cas with unknown outcome
	Duration   time.Duration `json:"check_ns"`
	// Anomalies lists each key that has no linearization, with its
	// operations.
	Anomalies []RegisterAnomaly `json:"anomalies,omitempty"`
	// Visualization is the name of the file, in the run directory, that
	// porcupine's HTML was written to, if any.
	Visualization string `json:"visualization,omitempty"`
}

// RegisterAnomaly is one key whose history is not linearizable.
type RegisterAnomaly struct {
	Key string `json:"key"`
	// Ops describes the key's operations in invocation order:
	// "[call..return] process: op", with "@member" after the process when
	// the client talked to one member only.
	Ops []string `json:"ops"`
}

// Verdicts.
const (
	Valid   = "valid"
	Invalid = "invalid"
	Unknown = "unknown"
)

// CheckRegister checks the register operations in events. If htmlPath is
// not empty it writes porcupine's visualization there, with the fault
// windows drawn as annotations.
func CheckRegister(events []history.Event, timeout time.Duration, htmlPath string) (RegisterResult, error) {
	ops, err := RegisterOperations(events)
	if err != nil {
		return RegisterResult{}, err
	}
	res := RegisterResult{Operations: len(ops), Keys: len(partitionByKey(ops))}
	for _, op := range ops {
		if op.Output.(RegisterOutput).Unknown {
			res.Unknown++
		}
	}
	model := RegisterModel()
	start := time.Now()
	verdict, info := porcupine.CheckOperationsVerbose(model, ops, timeout)
	res.Duration = time.Since(start)
	switch verdict {
	case porcupine.Ok:
		res.Verdict = Valid
	case porcupine.Illegal:
		res.Verdict = Invalid
		res.Anomalies = illegalKeys(model, ops, timeout)
	default:
		res.Verdict = Unknown
	}
	if htmlPath != "" {
		info.AddAnnotations(faultAnnotations(events))
		if err := porcupine.VisualizePath(model, info, htmlPath); err != nil {
			return res, fmt.Errorf("checker: visualization: %w", err)
		}
		res.Visualization = filepath.Base(htmlPath)
	}
	return res, nil
}

// illegalKeys checks each key on its own to name the ones that fail.
func illegalKeys(model porcupine.Model, ops []porcupine.Operation, timeout time.Duration) []RegisterAnomaly {
	var out []RegisterAnomaly
	for _, part := range partitionByKey(ops) {
		if porcupine.CheckOperationsTimeout(model, part, timeout) != porcupine.Illegal {
			continue
		}
		a := RegisterAnomaly{Key: part[0].Input.(RegisterInput).Key}
		sorted := append([]porcupine.Operation(nil), part...)
		sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Call < sorted[j].Call })
		for _, op := range sorted {
			ret := fmt.Sprintf("%.3fs", float64(op.Return)/1e9)
			if op.Output.(RegisterOutput).Unknown {
				ret = "∞"
			}
			via := ""
			if m, ok := op.Metadata.(OpMeta); ok && m.Node != "" {
				via = "@" + m.Node
			}
			a.Ops = append(a.Ops, fmt.Sprintf("[%.3fs..%s] p%d%s: %s", float64(op.Call)/1e9, ret, op.ClientId, via,
				model.DescribeOperation(op.Input, op.Output)))
		}
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// faultAnnotations turns the nemesis's start and stop events into
// annotations on a "nemesis" lane.
func faultAnnotations(events []history.Event) []porcupine.Annotation {
	var out []porcupine.Annotation
	for _, w := range FaultWindows(events) {
		out = append(out, porcupine.Annotation{
			Tag:             "nemesis",
			Start:           w.Start,
			End:             w.End,
			Description:     w.Nemesis,
			Details:         strings.TrimSpace(w.Description + " " + strings.Join(w.Nodes, ",")),
			BackgroundColor: "#f4c7c3",
		})
	}
	return out
}
