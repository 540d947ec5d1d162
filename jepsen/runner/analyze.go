package runner

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/kvd-io/kvd/jepsen/checker"
	"github.com/kvd-io/kvd/jepsen/history"
	"github.com/kvd-io/kvd/jepsen/workload"
)

// Result is results.json.
type Result struct {
	// Valid is true only when the checker found the history correct and
	// the run was live (see checker.Stats). Verdict is "valid", "invalid"
	// (an anomaly: a safety violation) or "unknown" (inconclusive: the
	// check timed out, the cluster did not recover, too little load).
	Valid    bool     `json:"valid"`
	Verdict  string   `json:"verdict"`
	Problems []string `json:"problems,omitempty"`

	Workload string `json:"workload"`
	Nemesis  string `json:"nemesis"`
	Nodes    int    `json:"nodes"`
	Seed     int64  `json:"seed"`

	// Operations counts client operations by outcome (final reads
	// excluded), and FaultsInjected the faults started.
	Operations     map[string]int `json:"operations"`
	FaultsInjected int            `json:"faults_injected"`
	FaultKinds     map[string]int `json:"fault_kinds,omitempty"`
	// FaultsSkipped counts, per nemesis, the starts that injected nothing:
	// refused by kvd as unsafe or not applicable at the time (logged, not
	// a problem), or failed (then also a harness problem).
	FaultsSkipped map[string]int `json:"faults_skipped,omitempty"`
	DurationNs    int64          `json:"duration_ns"`

	Checker workload.Report     `json:"checker"`
	Stats   checker.StatsResult `json:"stats"`
}

// Analyze checks a run's history. dir receives the visualization
// (history.html) for workloads that have one.
func Analyze(meta Meta, events []history.Event, dir string) (*Result, error) {
	wl, err := workload.New(meta.Workload)
	if err != nil {
		return nil, err
	}
	res := &Result{Workload: meta.Workload, Nemesis: meta.Nemesis, Nodes: meta.Nodes, Seed: meta.Seed,
		Operations: map[string]int{}, FaultKinds: map[string]int{}, DurationNs: history.End(events)}
	ops, err := history.Pair(events)
	if err != nil {
		return nil, err
	}
	for _, op := range ops {
		if !checker.IsLoad(op.Invoke.F) {
			continue
		}
		res.Operations[string(op.Type())]++
		res.Operations["total"]++
	}
	for _, w := range checker.FaultWindows(events) {
		res.FaultsInjected++
		res.FaultKinds[w.Nemesis]++
	}
	for _, e := range history.Control(events) {
		if e.F == history.FStart && e.Type == history.Fail {
			if res.FaultsSkipped == nil {
				res.FaultsSkipped = map[string]int{}
			}
			res.FaultsSkipped[e.Nemesis]++
		}
	}
	opts := workload.CheckOptions{Members: meta.Members, Timeout: meta.CheckTimeout}
	if (meta.Workload == "register" || meta.Workload == "lock") && dir != "" {
		opts.HTMLPath = filepath.Join(dir, "history.html")
	}
	res.Checker, err = wl.Check(events, opts)
	if err != nil {
		return nil, err
	}
	res.Stats, err = checker.Stats(events, checker.StatsOptions{MinWarmupOK: meta.MinWarmupOK, IsWrite: wl.IsWrite})
	if err != nil {
		return nil, err
	}
	res.Problems = append(res.Problems, res.Checker.Problems...)
	res.Problems = append(res.Problems, res.Stats.Problems...)
	switch {
	case res.Checker.Verdict == checker.Invalid:
		res.Verdict = checker.Invalid
	case res.Checker.Verdict == checker.Valid && res.Stats.Verdict == checker.Valid:
		res.Verdict = checker.Valid
	default:
		res.Verdict = checker.Unknown
	}
	res.Valid = res.Verdict == checker.Valid
	return res, nil
}

// Recheck analyses the run saved in dir again and rewrites its
// results.json.
func Recheck(dir string) (*Result, error) {
	b, err := os.ReadFile(filepath.Join(dir, "config.json"))
	if err != nil {
		return nil, err
	}
	var meta Meta
	if err := json.Unmarshal(b, &meta); err != nil {
		return nil, fmt.Errorf("%s/config.json: %w", dir, err)
	}
	events, err := history.ReadFile(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		return nil, err
	}
	res, err := Analyze(meta, events, dir)
	if err != nil {
		return nil, err
	}
	return res, writeJSON(filepath.Join(dir, "results.json"), res)
}

// Summary renders the main numbers of a result in a few lines.
func (r *Result) Summary() string {
	s := fmt.Sprintf("verdict: %s\nworkload %s, nemesis %s, %d nodes, seed %d, %.1fs\n",
		r.Verdict, r.Workload, r.Nemesis, r.Nodes, r.Seed, float64(r.DurationNs)/1e9)
	s += fmt.Sprintf("operations: %d (ok %d, fail %d, info %d); faults injected: %d %v",
		r.Operations["total"], r.Operations["ok"], r.Operations["fail"], r.Operations["info"], r.FaultsInjected, r.FaultKinds)
	if len(r.FaultsSkipped) > 0 {
		s += fmt.Sprintf("; skipped: %v", r.FaultsSkipped)
	}
	s += "\n"
	var phases []string
	for p := range r.Stats.Phases {
		phases = append(phases, p)
	}
	sort.Slice(phases, func(i, j int) bool { return phaseOrder(phases[i]) < phaseOrder(phases[j]) })
	s += "availability (ok share by phase):"
	for _, p := range phases {
		a := r.Stats.Phases[p]
		s += fmt.Sprintf(" %s %.1f%% of %d;", p, 100*a.Share, a.Total)
	}
	s += "\nfaults (longest stretch without an ok write; heal to first ok write):"
	for _, w := range r.Stats.Faults {
		s += fmt.Sprintf(" %s %s, %s;", w.Nemesis, ms(w.MaxWriteGapNs), ms(w.RecoveryNs))
	}
	s += fmt.Sprintf(" final %s\n", ms(r.Stats.FinalRecoveryNs))
	s += fmt.Sprintf("health: %s\n", r.Stats.Health)
	for _, p := range r.Problems {
		s += "problem: " + p + "\n"
	}
	return s
}

func phaseOrder(p string) int {
	switch p {
	case checker.PhaseWarmup:
		return 0
	case checker.PhaseFault:
		return 1
	case checker.PhaseHealed:
		return 2
	}
	return 3
}

func ms(ns int64) string {
	if ns < 0 {
		return "never"
	}
	return fmt.Sprintf("%dms", ns/1e6)
}
