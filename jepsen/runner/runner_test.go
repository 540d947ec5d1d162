package runner

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/kvd-io/kvd/jepsen/checker"
	"github.com/kvd-io/kvd/jepsen/history"
)

func validConfig() Config {
	c := DefaultConfig()
	c.OutDir, c.KvdBin = "/tmp/x", "/bin/kvd"
	return c
}

func TestConfigValidate(t *testing.T) {
	if err := validConfig().Validate(); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		change func(c *Config)
		want   string
	}{
		{"unknown workload", func(c *Config) { c.Workload = "bank" }, "unknown workload"},
		{"unknown nemesis", func(c *Config) { c.Nemesis = "clock" }, "unknown nemesis"},
		{"warm-up as long as the run", func(c *Config) { c.Warmup = c.TimeLimit }, "warm-up"},
		{"endpoints", func(c *Config) { c.ClientEndpoints = "some" }, "client endpoints"},
		{"rate", func(c *Config) { c.Rate = 0 }, "rate"},
		{"no binary", func(c *Config) { c.KvdBin = "" }, "binary"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.change(&c)
			if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// events builds a register history: a healthy run with one fault, in
// which the last read is stale when stale is true.
func events(stale bool) []history.Event {
	var es []history.Event
	at := func(ms int64, e history.Event) {
		e.Index, e.Time = len(es), ms*1e6
		es = append(es, e)
	}
	s := history.Str
	ctl := func(ms int64, f, v string) {
		at(ms, history.Event{Type: history.Info, Process: history.ControlProcess, F: f, Value: s(v), Nemesis: "partition-leader"})
	}
	ctl(0, history.FPhase, history.PhaseWarmup)
	at(10, history.Event{Type: history.Invoke, Process: 0, F: checker.FWrite, Key: "k", Value: s("1")})
	at(20, history.Event{Type: history.OK, Process: 0, F: checker.FWrite, Key: "k", Value: s("1")})
	ctl(100, history.FPhase, history.PhaseFaults)
	ctl(100, history.FStart, "leader isolated")
	at(110, history.Event{Type: history.Invoke, Process: 0, F: checker.FWrite, Key: "k", Value: s("2")})
	at(120, history.Event{Type: history.OK, Process: 0, F: checker.FWrite, Key: "k", Value: s("2")})
	read := s("2")
	if stale {
		read = s("1")
	}
	at(130, history.Event{Type: history.Invoke, Process: 1, F: checker.FRead, Key: "k"})
	at(140, history.Event{Type: history.OK, Process: 1, F: checker.FRead, Key: "k", Value: read})
	ctl(200, history.FStop, "healed")
	// A skipped fault: kvd refused the removal.
	at(210, history.Event{Type: history.Invoke, Process: history.ControlProcess, F: history.FStart, Nemesis: "member-churn-one"})
	at(220, history.Event{Type: history.Fail, Process: history.ControlProcess, F: history.FStart, Nemesis: "member-churn-one", Error: "fault skipped: refused"})
	at(290, history.Event{Type: history.Info, Process: history.ControlProcess, F: history.FStop, Nemesis: "member-churn-one", Value: s("healed")})
	ctl(300, history.FPhase, history.PhaseFinal)
	at(310, history.Event{Type: history.Invoke, Process: 0, F: checker.FWrite, Key: "k", Value: s("3")})
	at(320, history.Event{Type: history.OK, Process: 0, F: checker.FWrite, Key: "k", Value: s("3")})
	ctl(400, history.FPhase, history.PhaseQuiet)
	at(500, history.Event{Type: history.OK, Process: history.ControlProcess, F: history.FHealth, Value: s("leader n1")})
	return es
}

func TestAnalyze(t *testing.T) {
	meta := Meta{Config: validConfig(), Members: []string{"n1", "n2", "n3"}}
	meta.MinWarmupOK, meta.CheckTimeout = 1, 10*time.Second
	for _, tt := range []struct {
		name  string
		stale bool
		want  string
	}{{"linearizable", false, "valid"}, {"stale read", true, "invalid"}} {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Analyze(meta, events(tt.stale), t.TempDir())
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != tt.want || res.Valid != (tt.want == "valid") {
				t.Fatalf("verdict %s, problems %v", res.Verdict, res.Problems)
			}
			if res.Operations["total"] != 4 || res.FaultsInjected != 1 || res.Stats.FinalRecoveryNs != 20e6 ||
				!reflect.DeepEqual(res.FaultsSkipped, map[string]int{"member-churn-one": 1}) {
				t.Fatalf("result %+v", res)
			}
			if !strings.Contains(res.Summary(), "verdict: "+tt.want) {
				t.Fatal(res.Summary())
			}
		})
	}
}
