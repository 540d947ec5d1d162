package history

import (
	"fmt"
	"sort"
)

// Type is the kind of an event.
type Type string

// Event types, as Jepsen names them.
const (
	Invoke Type = "invoke" // an operation is about to be sent
	OK     Type = "ok"     // it happened
	Fail   Type = "fail"   // it certainly did not happen
	Info   Type = "info"   // its outcome is unknown
)

// ControlProcess is the process of events that are not client operations:
// phases, faults and health checks.
const ControlProcess = -1

// Control event functions (Event.F of ControlProcess events).
const (
	FPhase  = "phase"  // Value: one of the Phase* names
	FStart  = "start"  // a fault was injected; Nemesis, Nodes, Value describe it
	FStop   = "stop"   // the fault was healed
	FHealth = "health" // the post-run health check: ok or fail, Value describes it
	// FIncident: kvd misbehaved in a way a nemesis saw outside the
	// clients' operations (a member that stopped as removed although the
	// leader still lists it); type fail, Nemesis names the nemesis, Value
	// describes it.
	FIncident = "incident"
)

// Phase names carried by FPhase events.
const (
	PhaseWarmup = "warmup" // clients running, no faults yet
	PhaseFaults = "faults" // the nemesis schedule starts
	PhaseFinal  = "final"  // every fault healed; clients keep running
	PhaseQuiet  = "quiet"  // clients stopped
	PhaseReads  = "final-reads"
	PhaseDone   = "done"
)

// Event is one line of history.jsonl.
type Event struct {
	// Index is the event's position in the history, from 0.
	Index int `json:"index"`
	// Type says whether this is an invocation or a completion.
	Type Type `json:"type"`
	// Process identifies the logical client's current incarnation; a logical
	// client continues under a new process after an info. ControlProcess for
	// control events.
	Process int `json:"process"`
	// F is the operation: the workload's names (read, write, cas, add,
	// read-all) or the control names (phase, start, stop, health).
	F string `json:"f"`
	// Key is the key a register operation works on.
	Key string `json:"key,omitempty"`
	// Value is the written value, the value a read returned (nil: the key
	// was absent), the new value of a cas, the element of an add, or the
	// description of a control event.
	Value *string `json:"value,omitempty"`
	// From is the value a cas expects.
	From *string `json:"from,omitempty"`
	// Matched is a completed cas's outcome: whether the compare held.
	Matched *bool `json:"matched,omitempty"`
	// Values are the elements a final set read returned; for the watch
	// workload, the keys of a write, the events a watcher received, or the
	// pairs of a final read.
	Values []string `json:"values,omitempty"`
	// Revision is the store revision an operation saw: a write's, a
	// read's, or the revision through which a watcher received every event.
	Revision int64 `json:"revision,omitempty"`
	// Node is the member an operation was sent to, when the client talks
	// to one member only (final reads, --client-endpoints one).
	Node string `json:"node,omitempty"`
	// Nemesis names the fault of a start or stop event; Nodes are the
	// members it hit.
	Nemesis string   `json:"nemesis,omitempty"`
	Nodes   []string `json:"nodes,omitempty"`
	// Time is nanoseconds since the start of the run (monotonic).
	Time int64 `json:"time"`
	// Error is the error a fail or info completion got.
	Error string `json:"error,omitempty"`

	// Lease is the lease an operation of the lease workload works on.
	Lease int64 `json:"lease,omitempty"`
	// Token is the fencing token a lock workload's holder wrote with.
	Token int64 `json:"token,omitempty"`
	// Rev is the revision an operation saw or wrote at: a read's header
	// revision, or the revision a read value was last modified at.
	Rev int64 `json:"rev,omitempty"`
	// Acquired and Released bound a lock holder's tenure (run clock, ns):
	// when Lock returned, and when Unlock was about to be sent.
	Acquired int64 `json:"acquired,omitempty"`
	Released int64 `json:"released,omitempty"`
	// Deadline is the earliest a lease may expire by the guarantees kvd
	// states (run clock, ns): the send time of its last acknowledged
	// renewal (or of its grant) plus its TTL.
	Deadline int64 `json:"deadline,omitempty"`
}

// Str returns a pointer to s, for Event's optional fields.
func Str(s string) *string { return &s }

// Bool returns a pointer to b.
func Bool(b bool) *bool { return &b }

// Op is an invocation paired with its completion.
type Op struct {
	Invoke Event
	// Complete is the completion; nil when the run ended first, which
	// counts as info.
	Complete *Event
}

// Type is the outcome of the operation: ok, fail or info (also for an
// operation that never completed).
func (o Op) Type() Type {
	if o.Complete == nil {
		return Info
	}
	return o.Complete.Type
}

// Pair matches every client invocation with the completion that follows it
// on the same process and returns the operations in invocation order.
// Control events are skipped. It fails when a process has two invocations
// in flight or a completion without an invocation.
func Pair(events []Event) ([]Op, error) {
	var ops []Op
	open := map[int]int{} // process -> index in ops
	for _, e := range events {
		if e.Process == ControlProcess {
			continue
		}
		if e.Type == Invoke {
			if i, ok := open[e.Process]; ok {
				return nil, fmt.Errorf("event %d: process %d invokes while event %d is still open", e.Index, e.Process, ops[i].Invoke.Index)
			}
			open[e.Process] = len(ops)
			ops = append(ops, Op{Invoke: e})
			continue
		}
		i, ok := open[e.Process]
		if !ok {
			return nil, fmt.Errorf("event %d: %s completion of process %d without an invocation", e.Index, e.Type, e.Process)
		}
		if e.F != ops[i].Invoke.F {
			return nil, fmt.Errorf("event %d: completion %q of process %d does not match invocation %q", e.Index, e.F, e.Process, ops[i].Invoke.F)
		}
		c := e
		ops[i].Complete = &c
		delete(open, e.Process)
	}
	sort.SliceStable(ops, func(a, b int) bool { return ops[a].Invoke.Index < ops[b].Invoke.Index })
	return ops, nil
}

// Control returns the control events, in order.
func Control(events []Event) []Event {
	var out []Event
	for _, e := range events {
		if e.Process == ControlProcess {
			out = append(out, e)
		}
	}
	return out
}

// End returns the time of the last event, or 0 for an empty history.
func End(events []Event) int64 {
	var t int64
	for _, e := range events {
		t = max(t, e.Time)
	}
	return t
}
