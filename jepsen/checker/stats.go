package checker

import (
	"fmt"
	"sort"

	"github.com/kvd-io/kvd/jepsen/history"
)

// FaultWindow is one injected fault: from its start event to the stop event
// that healed it (or the end of the history, if none did).
type FaultWindow struct {
	Nemesis     string   `json:"nemesis"`
	Description string   `json:"description,omitempty"`
	Nodes       []string `json:"nodes,omitempty"`
	Start       int64    `json:"start_ns"`
	End         int64    `json:"end_ns"`
	Healed      bool     `json:"healed"`
	// Availability is the share of ok operations among those invoked
	// during the fault.
	Availability Availability `json:"availability"`
	// RecoveryNs is the time from the heal to the first acknowledged write
	// after it; -1 if no write succeeded before the next fault.
	RecoveryNs int64 `json:"recovery_ns"`
	// MaxWriteGapNs is the longest time without an acknowledged write
	// between the fault's start and the next fault (or the final heal):
	// how long the fault made the cluster unwritable, failover included.
	MaxWriteGapNs int64 `json:"max_write_gap_ns"`
}

// FaultWindows pairs the nemesis's start and stop events. A window opens
// at the start's invocation (the runner records one before it injects the
// fault; histories without it open at the start's completion). A start
// that failed (type fail: skipped, or an error) injected nothing and is
// left out.
func FaultWindows(events []history.Event) []FaultWindow {
	var out []FaultWindow
	open := -1
	invoked := int64(-1)
	for _, e := range history.Control(events) {
		switch e.F {
		case history.FStart:
			if e.Type == history.Invoke {
				invoked = e.Time
				continue
			}
			at := e.Time
			if invoked >= 0 {
				at = invoked
			}
			invoked = -1
			if e.Type == history.Fail {
				continue
			}
			w := FaultWindow{Nemesis: e.Nemesis, Nodes: e.Nodes, Start: at, End: -1, RecoveryNs: -1}
			if e.Value != nil {
				w.Description = *e.Value
			}
			out = append(out, w)
			open = len(out) - 1
		case history.FStop:
			if open >= 0 {
				out[open].End = e.Time
				out[open].Healed = e.Type != history.Fail
				open = -1
			}
		}
	}
	end := history.End(events)
	for i := range out {
		if out[i].End < 0 {
			out[i].End = end
		}
	}
	return out
}

// Availability counts operations by outcome.
type Availability struct {
	Total int `json:"total"`
	OK    int `json:"ok"`
	Fail  int `json:"fail"`
	Info  int `json:"info"`
	// Share is OK/Total, or 0 when there were no operations.
	Share float64 `json:"ok_share"`
}

func (a *Availability) add(t history.Type) {
	a.Total++
	switch t {
	case history.OK:
		a.OK++
	case history.Fail:
		a.Fail++
	default:
		a.Info++
	}
	a.Share = float64(a.OK) / float64(a.Total)
}

// StatsResult is availability, recovery and liveness of a run.
type StatsResult struct {
	// Verdict is "valid" when the run was live: enough ok operations
	// before the first fault, an acknowledged write after the final heal,
	// a passing health check, and no incident. Otherwise "unknown": a run that did not
	// exercise the system, or a cluster that did not recover, proves
	// nothing either way and must not pass.
	Verdict  string   `json:"verdict"`
	Problems []string `json:"problems,omitempty"`

	// Phases maps a phase to the availability of the operations invoked
	// in it: warmup (before the first fault), fault (while a fault was
	// active), healed (between faults), final (after the final heal).
	Phases map[string]Availability `json:"phases"`
	Faults []FaultWindow           `json:"faults"`

	// FinalRecoveryNs is the time from the final heal to the first
	// acknowledged write after it; -1 if none.
	FinalRecoveryNs int64 `json:"final_recovery_ns"`
	// MaxRecoveryNs is the longest recovery after any heal, the final one
	// included.
	MaxRecoveryNs int64 `json:"max_recovery_ns"`
	// MaxWriteGapNs is the longest MaxWriteGapNs of any fault.
	MaxWriteGapNs int64  `json:"max_write_gap_ns"`
	Health        string `json:"health,omitempty"`
	// Incidents are what kvd did wrong that a nemesis saw (history
	// FIncident events), e.g. a member that stopped as removed although
	// the leader lists it. Any makes the run inconclusive.
	Incidents []string `json:"incidents,omitempty"`
}

// Phase names used in StatsResult.Phases.
const (
	PhaseWarmup = "warmup"
	PhaseFault  = "fault"
	PhaseHealed = "healed"
	PhaseFinal  = "final"
)

// StatsOptions tunes the liveness rules.
type StatsOptions struct {
	// MinWarmupOK is the fewest ok operations that must complete before
	// the first fault for the run to count.
	MinWarmupOK int
	// IsWrite reports whether an operation (by its F) changes the store;
	// recovery is measured on writes.
	IsWrite func(f string) bool
}

// Stats measures availability and recovery and checks liveness.
func Stats(events []history.Event, opts StatsOptions) (StatsResult, error) {
	ops, err := history.Pair(events)
	if err != nil {
		return StatsResult{}, err
	}
	res := StatsResult{Phases: map[string]Availability{}, FinalRecoveryNs: -1}
	res.Faults = FaultWindows(events)
	marks := phaseMarks(events)
	faultsAt, haveFaults := marks[history.PhaseFaults]
	finalAt, haveFinal := marks[history.PhaseFinal]
	quietAt, haveQuiet := marks[history.PhaseQuiet]
	if !haveFaults {
		faultsAt = -1
	}
	for _, op := range ops {
		if !IsLoad(op.Invoke.F) { // final reads and watchers are not load
			continue
		}
		t := op.Invoke.Time
		if haveQuiet && t >= quietAt {
			continue
		}
		phase := PhaseHealed
		switch {
		case haveFinal && t >= finalAt:
			phase = PhaseFinal
		case !haveFaults || t < faultsAt:
			phase = PhaseWarmup
		default:
			for i := range res.Faults {
				if w := &res.Faults[i]; t >= w.Start && t < w.End {
					phase = PhaseFault
					w.Availability.add(op.Type())
					break
				}
			}
		}
		a := res.Phases[phase]
		a.add(op.Type())
		res.Phases[phase] = a
	}

	// Recovery: the first ok write completed after each heal.
	var writes []int64 // completion times of ok writes
	for _, op := range ops {
		if op.Type() == history.OK && opts.IsWrite != nil && opts.IsWrite(op.Invoke.F) {
			writes = append(writes, op.Complete.Time)
		}
	}
	sort.Slice(writes, func(i, j int) bool { return writes[i] < writes[j] })
	firstAfter := func(t, before int64) int64 {
		i := sort.Search(len(writes), func(i int) bool { return writes[i] > t })
		if i < len(writes) && (before < 0 || writes[i] < before) {
			return writes[i] - t
		}
		return -1
	}
	for i := range res.Faults {
		w := &res.Faults[i]
		next := int64(-1)
		if i+1 < len(res.Faults) {
			next = res.Faults[i+1].Start
		}
		spanEnd := next
		if spanEnd < 0 && haveFinal {
			spanEnd = finalAt
		}
		if spanEnd < 0 {
			spanEnd = history.End(events)
		}
		w.MaxWriteGapNs = maxGap(writes, w.Start, spanEnd)
		res.MaxWriteGapNs = max(res.MaxWriteGapNs, w.MaxWriteGapNs)
		if !w.Healed {
			continue
		}
		w.RecoveryNs = firstAfter(w.End, next)
		res.MaxRecoveryNs = max(res.MaxRecoveryNs, w.RecoveryNs)
	}
	if haveFinal {
		res.FinalRecoveryNs = firstAfter(finalAt, -1)
		res.MaxRecoveryNs = max(res.MaxRecoveryNs, res.FinalRecoveryNs)
	}

	// Liveness.
	if w := res.Phases[PhaseWarmup]; w.OK < opts.MinWarmupOK {
		res.Problems = append(res.Problems, fmt.Sprintf("only %d ok operations before the first fault (want at least %d): the run did not exercise the cluster", w.OK, opts.MinWarmupOK))
	}
	if !haveFinal {
		res.Problems = append(res.Problems, "the history has no final heal")
	} else if res.FinalRecoveryNs < 0 {
		res.Problems = append(res.Problems, "no write was acknowledged after the final heal: the cluster never recovered")
	}
	for _, w := range res.Faults {
		if !w.Healed {
			res.Problems = append(res.Problems, fmt.Sprintf("fault %s at %.1fs was never healed", w.Nemesis, float64(w.Start)/1e9))
		}
	}
	for _, e := range history.Control(events) {
		if e.F == history.FIncident {
			desc := ""
			if e.Value != nil {
				desc = *e.Value
			}
			inc := fmt.Sprintf("%.1fs %s: %s", float64(e.Time)/1e9, e.Nemesis, desc)
			res.Incidents = append(res.Incidents, inc)
			res.Problems = append(res.Problems, "kvd misbehaved: "+inc)
		}
	}
	health, healthy := healthOf(events)
	res.Health = health
	if !healthy {
		res.Problems = append(res.Problems, "health check after the final heal: "+health)
	}
	res.Verdict = Valid
	if len(res.Problems) > 0 {
		res.Verdict = Unknown
	}
	return res, nil
}

// maxGap returns the longest interval in [from, to] without a time in
// sorted.
func maxGap(sorted []int64, from, to int64) int64 {
	i := sort.Search(len(sorted), func(i int) bool { return sorted[i] >= from })
	gap, last := int64(0), from
	for ; i < len(sorted) && sorted[i] <= to; i++ {
		gap = max(gap, sorted[i]-last)
		last = sorted[i]
	}
	return max(gap, to-last)
}

// phaseMarks returns the time of each phase event.
func phaseMarks(events []history.Event) map[string]int64 {
	m := map[string]int64{}
	for _, e := range history.Control(events) {
		if e.F == history.FPhase && e.Value != nil {
			if _, ok := m[*e.Value]; !ok {
				m[*e.Value] = e.Time
			}
		}
	}
	return m
}

// healthOf returns the description of the last health event and whether
// it passed; a history without one did not pass.
func healthOf(events []history.Event) (string, bool) {
	desc, ok := "no health check recorded", false
	for _, e := range history.Control(events) {
		if e.F == history.FHealth {
			desc, ok = "", e.Type == history.OK
			if e.Value != nil {
				desc = *e.Value
			}
		}
	}
	return desc, ok
}
