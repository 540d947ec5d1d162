package checker

import (
	"strings"
	"testing"

	"github.com/kvd-io/kvd/jepsen/history"
)

// timeline builds a history with explicit times (in ms).
type timeline struct{ events []history.Event }

func (tl *timeline) at(ms int64, e history.Event) *timeline {
	e.Index, e.Time = len(tl.events), ms*1e6
	tl.events = append(tl.events, e)
	return tl
}

func (tl *timeline) phase(ms int64, name string) *timeline {
	return tl.at(ms, history.Event{Type: history.Info, Process: history.ControlProcess, F: history.FPhase, Value: s(name)})
}

func (tl *timeline) write(p int, from, to int64, t history.Type) *timeline {
	tl.at(from, history.Event{Type: history.Invoke, Process: p, F: FWrite, Key: "k", Value: s("v")})
	return tl.at(to, history.Event{Type: t, Process: p, F: FWrite, Key: "k", Value: s("v")})
}

func isWrite(f string) bool { return f == FWrite }

func TestStats(t *testing.T) {
	tl := &timeline{}
	tl.phase(0, history.PhaseWarmup)
	tl.write(0, 10, 20, history.OK).write(0, 30, 40, history.OK)
	tl.phase(100, history.PhaseFaults)
	tl.at(100, history.Event{Type: history.Info, Process: history.ControlProcess, F: history.FStart, Nemesis: "kill-leader"})
	tl.write(0, 110, 300, history.Info)
	tl.write(1, 120, 130, history.Fail)
	tl.write(2, 150, 160, history.OK)
	tl.at(400, history.Event{Type: history.Info, Process: history.ControlProcess, F: history.FStop, Nemesis: "kill-leader"})
	tl.write(3, 410, 450, history.OK) // recovery: 50ms after the heal
	tl.phase(600, history.PhaseFinal)
	tl.write(3, 610, 680, history.OK) // final recovery: 80ms
	tl.phase(700, history.PhaseQuiet)
	tl.at(800, history.Event{Type: history.OK, Process: history.ControlProcess, F: history.FHealth, Value: s("leader n1")})

	res, err := Stats(tl.events, StatsOptions{MinWarmupOK: 2, IsWrite: isWrite})
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != Valid {
		t.Fatalf("verdict %s: %v", res.Verdict, res.Problems)
	}
	want := map[string]Availability{
		PhaseWarmup: {Total: 2, OK: 2, Share: 1},
		PhaseFault:  {Total: 3, OK: 1, Fail: 1, Info: 1, Share: 1.0 / 3},
		PhaseHealed: {Total: 1, OK: 1, Share: 1},
		PhaseFinal:  {Total: 1, OK: 1, Share: 1},
	}
	for p, w := range want {
		if got := res.Phases[p]; got != w {
			t.Errorf("phase %s: %+v, want %+v", p, got, w)
		}
	}
	if len(res.Faults) != 1 {
		t.Fatalf("faults %+v", res.Faults)
	}
	f := res.Faults[0]
	if !f.Healed || f.RecoveryNs != 50e6 || f.Availability.Total != 3 {
		t.Errorf("fault %+v", f)
	}
	// No ok write from 160 to 450: the longest gap in [100, 600].
	if f.MaxWriteGapNs != 290e6 {
		t.Errorf("max write gap %d, want 290ms", f.MaxWriteGapNs)
	}
	if res.FinalRecoveryNs != 80e6 || res.MaxRecoveryNs != 80e6 {
		t.Errorf("final recovery %d, max %d", res.FinalRecoveryNs, res.MaxRecoveryNs)
	}
}

func TestStatsLiveness(t *testing.T) {
	tests := []struct {
		name  string
		build func(tl *timeline)
		want  string
	}{
		{"too little load before the first fault", func(tl *timeline) {
			tl.phase(0, history.PhaseWarmup).write(0, 10, 20, history.Fail)
			tl.phase(100, history.PhaseFaults).phase(200, history.PhaseFinal).write(0, 210, 220, history.OK)
			tl.at(300, history.Event{Type: history.OK, Process: history.ControlProcess, F: history.FHealth})
		}, "did not exercise"},
		{"no write after the final heal", func(tl *timeline) {
			tl.phase(0, history.PhaseWarmup).write(0, 10, 20, history.OK)
			tl.phase(100, history.PhaseFaults).phase(200, history.PhaseFinal).write(0, 210, 220, history.Info)
			tl.at(300, history.Event{Type: history.OK, Process: history.ControlProcess, F: history.FHealth})
		}, "never recovered"},
		{"health check failed", func(tl *timeline) {
			tl.phase(0, history.PhaseWarmup).write(0, 10, 20, history.OK)
			tl.phase(100, history.PhaseFaults).phase(200, history.PhaseFinal).write(0, 210, 220, history.OK)
			tl.at(300, history.Event{Type: history.Fail, Process: history.ControlProcess, F: history.FHealth, Value: s("2 members lead")})
		}, "2 members lead"},
		{"fault never healed", func(tl *timeline) {
			tl.phase(0, history.PhaseWarmup).write(0, 10, 20, history.OK)
			tl.phase(100, history.PhaseFaults)
			tl.at(100, history.Event{Type: history.Info, Process: history.ControlProcess, F: history.FStart, Nemesis: "pause-one"})
			tl.phase(200, history.PhaseFinal).write(0, 210, 220, history.OK)
			tl.at(300, history.Event{Type: history.OK, Process: history.ControlProcess, F: history.FHealth})
		}, "never healed"},
		{"kvd misbehaved", func(tl *timeline) {
			tl.phase(0, history.PhaseWarmup).write(0, 10, 20, history.OK)
			tl.phase(100, history.PhaseFaults)
			tl.at(150, history.Event{Type: history.Fail, Process: history.ControlProcess, F: history.FIncident, Nemesis: "member-churn-one",
				Value: s("n4 exited with status 3 (removed) although the leader n1 lists it as a member")})
			tl.phase(200, history.PhaseFinal).write(0, 210, 220, history.OK)
			tl.at(300, history.Event{Type: history.OK, Process: history.ControlProcess, F: history.FHealth})
		}, "kvd misbehaved: 0.1s member-churn-one: n4 exited with status 3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tl := &timeline{}
			tt.build(tl)
			res, err := Stats(tl.events, StatsOptions{MinWarmupOK: 1, IsWrite: isWrite})
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != Unknown || !strings.Contains(strings.Join(res.Problems, "\n"), tt.want) {
				t.Fatalf("verdict %s, problems %v; want unknown with %q", res.Verdict, res.Problems, tt.want)
			}
		})
	}
}

func TestFaultWindowOpensAtTheInvocation(t *testing.T) {
	ctl := func(ms int64, typ history.Type, f, nem string) history.Event {
		return history.Event{Type: typ, Process: history.ControlProcess, F: f, Nemesis: nem}
	}
	tl := &timeline{}
	tl.at(100, ctl(100, history.Invoke, history.FStart, "member-churn-one"))
	tl.at(900, ctl(900, history.Info, history.FStart, "member-churn-one"))
	tl.at(2000, ctl(2000, history.Info, history.FStop, "member-churn-one"))
	// A skipped start injected nothing; the stop after it closes nothing.
	tl.at(3000, ctl(3000, history.Invoke, history.FStart, "leader-transfer-to"))
	tl.at(3100, ctl(3100, history.Fail, history.FStart, "leader-transfer-to"))
	tl.at(4000, ctl(4000, history.Info, history.FStop, "leader-transfer-to"))
	// An old history without the invocation opens at the start.
	tl.at(5000, ctl(5000, history.Info, history.FStart, "kill-one"))
	tl.at(6000, ctl(6000, history.Info, history.FStop, "kill-one"))
	ws := FaultWindows(tl.events)
	if len(ws) != 2 {
		t.Fatalf("windows %+v", ws)
	}
	if ws[0].Start != 100e6 || ws[0].End != 2000e6 || ws[1].Start != 5000e6 || ws[1].Nemesis != "kill-one" {
		t.Fatalf("windows %+v", ws)
	}
}
