package checker

import (
	"strings"
	"testing"
	"time"

	"github.com/kvd-io/kvd/jepsen/history"
)

// lockHist builds lock workload histories with explicit times (ms).
type lockHist struct{ events []history.Event }

func (h *lockHist) add(ms int64, e history.Event) {
	e.Index = len(h.events)
	e.Time = ms * 1e6
	h.events = append(h.events, e)
}

// cycle is one fenced write by process p: invoked at inv, lock held from
// acq to rel with the lease guaranteed until dl, completed at ret. applied
// says whether the guard held (nil: the outcome is unknown).
func (h *lockHist) cycle(p int, inv, acq, rel, dl, ret int64, token, rev int64, unique string, applied *bool) {
	h.add(inv, history.Event{Type: history.Invoke, Process: p, F: FFencedWrite, Key: "r", Value: history.Str(unique)})
	c := history.Event{Type: history.OK, Process: p, F: FFencedWrite, Key: "r", Value: history.Str(FencedValue(token, unique)),
		Token: token, Acquired: acq * 1e6, Released: rel * 1e6, Deadline: dl * 1e6}
	if applied == nil {
		c.Type = history.Info
	} else {
		c.Matched = history.Bool(*applied)
		if *applied {
			c.Rev = rev
		}
	}
	h.add(ret, c)
}

func (h *lockHist) read(p int, inv, ret int64, value string, rev int64) {
	h.add(inv, history.Event{Type: history.Invoke, Process: p, F: FRead, Key: "r"})
	c := history.Event{Type: history.OK, Process: p, F: FRead, Key: "r", Rev: rev}
	if value != "" {
		c.Value = history.Str(value)
	}
	h.add(ret, c)
}

func TestCheckLock(t *testing.T) {
	yes, no := history.Bool(true), history.Bool(false)
	tests := []struct {
		name  string
		build func(h *lockHist)
		want  string
		// problem is a word the problems must contain when invalid.
		problem string
	}{
		{"holders one after the other, increasing tokens", func(h *lockHist) {
			h.cycle(0, 0, 10, 20, 2000, 30, 5, 6, "a", yes)
			h.read(2, 35, 40, FencedValue(5, "a"), 6)
			h.cycle(1, 5, 40, 50, 2000, 60, 7, 8, "b", yes)
			h.read(2, 70, 80, FencedValue(7, "b"), 8)
		}, Valid, ""},
		{"a stale holder refused by the guard", func(h *lockHist) {
			// p0's lease ran out at 100 ms (its deadline), p1 took the
			// lock after that; p0's late write was refused.
			h.cycle(1, 0, 150, 160, 3000, 170, 9, 10, "b", yes)
			h.cycle(0, 0, 10, 200, 100, 210, 5, 0, "a", no)
			h.read(2, 220, 230, FencedValue(9, "b"), 10)
		}, Valid, ""},
		{"an unknown write that a read found", func(h *lockHist) {
			h.cycle(0, 0, 10, 20, 2000, 30, 5, 0, "a", nil)
			h.read(2, 40, 50, FencedValue(5, "a"), 6)
			h.cycle(1, 60, 70, 80, 2000, 90, 7, 8, "b", yes)
		}, Valid, ""},
		{"the same token applied twice", func(h *lockHist) {
			h.cycle(0, 0, 10, 20, 2000, 30, 5, 6, "a", yes)
			h.cycle(1, 40, 50, 60, 2000, 70, 5, 8, "b", yes)
		}, Invalid, "token order"},
		{"a decreasing token applied", func(h *lockHist) {
			h.cycle(0, 0, 10, 20, 2000, 30, 9, 10, "a", yes)
			h.cycle(1, 40, 50, 60, 2000, 70, 7, 12, "b", yes)
		}, Invalid, "token order"},
		{"a decreasing token found by a read", func(h *lockHist) {
			h.cycle(0, 0, 10, 20, 2000, 30, 9, 10, "a", yes)
			h.cycle(1, 40, 50, 60, 2000, 70, 7, 0, "b", nil)
			h.read(2, 80, 90, FencedValue(7, "b"), 12)
		}, Invalid, "token order"},
		{"two tokens at one revision", func(h *lockHist) {
			h.cycle(0, 0, 10, 20, 2000, 30, 5, 6, "a", yes)
			h.read(2, 40, 50, FencedValue(7, "x"), 6)
		}, Invalid, ""},
		{"overlapping tenures within the lease", func(h *lockHist) {
			// p1 acquired at 50 while p0 held it until 100 and its lease
			// was guaranteed until 2000.
			h.cycle(0, 0, 10, 100, 2000, 110, 5, 6, "a", yes)
			h.cycle(1, 20, 50, 60, 2000, 70, 7, 0, "b", no)
			h.read(2, 120, 130, FencedValue(5, "a"), 6)
		}, Invalid, "overlapping tenures"},
		{"tenures that overlap only after the first lease's deadline", func(h *lockHist) {
			h.cycle(0, 0, 10, 100, 40, 110, 5, 0, "a", no)
			h.cycle(1, 20, 50, 60, 2000, 70, 7, 8, "b", yes)
		}, Valid, ""},
		{"a read of a value never written", func(h *lockHist) {
			h.cycle(0, 0, 10, 20, 2000, 30, 5, 6, "a", yes)
			h.read(2, 40, 50, FencedValue(6, "zz"), 7)
		}, Invalid, "linearizable"},
		{"a read that goes back to the older value", func(h *lockHist) {
			h.cycle(0, 0, 10, 20, 2000, 30, 5, 6, "a", yes)
			h.cycle(1, 40, 50, 60, 2000, 70, 7, 8, "b", yes)
			h.read(2, 80, 90, FencedValue(5, "a"), 6)
		}, Invalid, "linearizable"},
		{"a refused write that a read found", func(h *lockHist) {
			h.cycle(0, 0, 10, 20, 2000, 30, 5, 0, "a", no)
			h.read(2, 40, 50, FencedValue(5, "a"), 6)
		}, Invalid, "linearizable"},
		{"nothing applied", func(h *lockHist) {
			h.cycle(0, 0, 10, 20, 2000, 30, 5, 0, "a", no)
		}, Unknown, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h lockHist
			tt.build(&h)
			res, err := CheckLock(h.events, 10*time.Second, "")
			if err != nil {
				t.Fatal(err)
			}
			if res.Verdict != tt.want {
				t.Fatalf("verdict %s, want %s; problems %v", res.Verdict, tt.want, res.Problems)
			}
			if tt.problem != "" && !strings.Contains(strings.Join(res.Problems, "; "), tt.problem) {
				t.Fatalf("problems %v do not mention %q", res.Problems, tt.problem)
			}
		})
	}
}

func TestCheckLockRefusesMalformed(t *testing.T) {
	var h lockHist
	h.add(0, history.Event{Type: history.Invoke, Process: 0, F: FFencedWrite, Key: "r", Value: history.Str("a")})
	h.add(10, history.Event{Type: history.OK, Process: 0, F: FFencedWrite, Key: "r", Token: 5, Matched: history.Bool(true)})
	if _, err := CheckLock(h.events, time.Second, ""); err == nil {
		t.Fatal("an applied write without its value and revision was accepted")
	}
	var r lockHist
	r.read(0, 0, 10, "no-token", 3)
	if _, err := CheckLock(r.events, time.Second, ""); err == nil {
		t.Fatal("a register value without a token was accepted")
	}
}

func TestFencedValueOrdersLikeTokens(t *testing.T) {
	if !(FencedValue(9, "zzz") < FencedToken(10)) || FencedValue(10, "a") < FencedToken(10) {
		t.Fatal("a stored value does not compare below exactly the larger tokens")
	}
	if tok, err := ParseFencedValue(FencedValue(42, "7")); err != nil || tok != 42 {
		t.Fatalf("ParseFencedValue = %d, %v", tok, err)
	}
}
