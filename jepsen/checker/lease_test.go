package checker

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/kvd-io/kvd/jepsen/history"
)

// leaseHist builds lease workload histories; times in ms.
type leaseHist struct {
	events []history.Event
	proc   int
}

func (h *leaseHist) add(ms int64, e history.Event) {
	e.Index = len(h.events)
	e.Time = ms * 1e6
	h.events = append(h.events, e)
}

func (h *leaseHist) op(inv, ret int64, typ history.Type, invoke, done history.Event) {
	h.proc++
	invoke.Type, invoke.Process = history.Invoke, h.proc
	done.Type, done.Process, done.F = typ, h.proc, invoke.F
	h.add(inv, invoke)
	h.add(ret, done)
}

func leaseKeys(id int64) []string {
	return []string{fmt.Sprintf("l/%d/0", id), fmt.Sprintf("l/%d/1", id)}
}

func testKeyLease(k string) (int64, bool) {
	parts := strings.Split(k, "/")
	if len(parts) != 3 || parts[0] != "l" {
		return 0, false
	}
	id, err := strconv.ParseInt(parts[1], 10, 64)
	return id, err == nil
}

// grant and attach lease id at t (ms): granted t..t+10 with a 3 s TTL,
// attached t+20..t+30.
func (h *leaseHist) lease(id, t int64, mode string, attach history.Type) {
	h.op(t, t+10, history.OK, history.Event{F: FGrant, Value: history.Str(mode)},
		history.Event{Lease: id, Deadline: (t + 3000) * 1e6, Value: history.Str(mode)})
	h.op(t+20, t+30, attach, history.Event{F: FAttach, Lease: id, Values: leaseKeys(id)}, history.Event{Lease: id})
}

func (h *leaseHist) stop(id, t, deadline int64) {
	h.op(t, t+5, history.OK, history.Event{F: FStop, Lease: id}, history.Event{Lease: id, Deadline: deadline * 1e6})
}

func (h *leaseHist) read(id, inv, ret int64, keys ...string) {
	h.op(inv, ret, history.OK, history.Event{F: FLeaseRead, Lease: id}, history.Event{Lease: id, Values: keys})
}

func (h *leaseHist) final(node string, t int64, keys ...string) {
	h.op(t, t+10, history.OK, history.Event{F: FReadAll, Node: node}, history.Event{Values: keys})
}

func (h *leaseHist) fault(from, to int64) {
	h.add(from, history.Event{Type: history.Info, Process: history.ControlProcess, F: history.FStart, Nemesis: "pause-leader"})
	h.add(to, history.Event{Type: history.Info, Process: history.ControlProcess, F: history.FStop, Nemesis: "pause-leader"})
}

var testBounds = LeaseBounds{TTL: 3 * time.Second, Expiry: 2 * time.Second, InFlight: 5 * time.Second, Recovery: 5 * time.Second}

func TestCheckLease(t *testing.T) {
	k1, k2 := leaseKeys(1), leaseKeys(2)
	tests := []struct {
		name    string
		build   func(h *leaseHist)
		want    string
		problem string
	}{
		{"kept alive, stopped, gone; abandoned, gone", func(h *leaseHist) {
			h.lease(1, 0, LeaseKeep, history.OK)
			h.lease(2, 0, LeaseAbandon, history.OK)
			h.read(1, 100, 110, k1...)
			h.read(2, 100, 110, k2...)
			h.read(1, 9000, 9010, k1...)
			h.read(2, 9000, 9010) // gone: expiry bound 5.01 s
			h.stop(1, 10000, 12900)
			h.read(1, 12000, 12010, k1...)
			h.final("n1", 30000)
			h.final("n2", 30000)
		}, Valid, ""},
		{"an abandoned lease may keep its keys until its bound", func(h *leaseHist) {
			h.lease(2, 0, LeaseAbandon, history.OK)
			h.read(2, 4900, 4910, k2...)
			h.final("n1", 30000)
		}, Valid, ""},
		{"a kept-alive key lost before the lease's deadline", func(h *leaseHist) {
			h.lease(1, 0, LeaseKeep, history.OK)
			h.read(1, 5000, 5010)
			h.stop(1, 10000, 12900)
			h.final("n1", 30000)
		}, Invalid, "before its deadline"},
		{"an abandoned lease's key lost before its TTL", func(h *leaseHist) {
			h.lease(2, 0, LeaseAbandon, history.OK)
			h.read(2, 1000, 1010)
			h.final("n1", 30000)
		}, Invalid, "before its deadline"},
		{"an abandoned lease outliving its bound", func(h *leaseHist) {
			h.lease(2, 0, LeaseAbandon, history.OK)
			h.read(2, 6000, 6010, k2...)
			h.final("n1", 30000)
		}, Invalid, "after its expiry bound"},
		{"a fault moves the bound", func(h *leaseHist) {
			h.lease(2, 0, LeaseAbandon, history.OK)
			h.fault(2000, 8000)
			h.read(2, 12000, 12010, k2...) // bound: 8 + 5 + 5 = 18 s
			h.read(2, 19000, 19010)
			h.final("n1", 30000)
		}, Valid, ""},
		{"a final read finds keys of an expired lease", func(h *leaseHist) {
			h.lease(1, 0, LeaseKeep, history.OK)
			h.stop(1, 10000, 12900)
			h.final("n1", 30000)
			h.final("n2", 30000, k1...)
		}, Invalid, "after its expiry bound"},
		{"a lease's keys gone at two revisions", func(h *leaseHist) {
			h.lease(2, 0, LeaseAbandon, history.OK)
			h.read(2, 4000, 4010, k2[0])
			h.final("n1", 30000)
		}, Invalid, "some of a lease's keys"},
		{"keys of a failed attach appear", func(h *leaseHist) {
			h.lease(2, 0, LeaseAbandon, history.Fail)
			h.read(2, 100, 110, k2...)
			h.final("n1", 30000)
		}, Invalid, "unexpected"},
		{"an unknown attach may or may not have happened", func(h *leaseHist) {
			h.lease(1, 0, LeaseAbandon, history.Info)
			h.lease(2, 0, LeaseAbandon, history.Info)
			h.read(1, 100, 110, k1...)
			h.read(2, 100, 110)
			h.final("n1", 30000)
		}, Valid, ""},
		{"a member without a final read", func(h *leaseHist) {
			h.lease(2, 0, LeaseAbandon, history.OK)
			h.read(2, 100, 110, k2...)
			h.final("n1", 30000)
		}, Unknown, "no final read"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h leaseHist
			tt.build(&h)
			members := []string{"n1"}
			if tt.want == Unknown {
				members = append(members, "n2")
			}
			for _, e := range h.events {
				if e.Node == "n2" && e.Type == history.Invoke {
					members = []string{"n1", "n2"}
				}
			}
			res, err := CheckLease(h.events, members, testBounds, testKeyLease)
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

func TestCheckLeaseCounts(t *testing.T) {
	var h leaseHist
	h.lease(1, 0, LeaseKeep, history.OK)
	h.lease(2, 0, LeaseAbandon, history.OK)
	h.read(1, 100, 110, leaseKeys(1)...)
	h.stop(1, 10000, 12900)
	h.final("n1", 20000) // lease 1's bound: 10.005 + 5 + 3 + 2 = 20.005 s
	res, err := CheckLease(h.events, []string{"n1"}, testBounds, testKeyLease)
	if err != nil {
		t.Fatal(err)
	}
	if res.Leases != 2 || res.Kept != 1 || res.Abandoned != 1 || res.Expired != 1 || res.Pending != 1 || res.Reads != 1 {
		t.Fatalf("counts %+v", res)
	}
}

func TestCheckLeaseRefusesMalformed(t *testing.T) {
	var h leaseHist
	h.op(0, 10, history.OK, history.Event{F: FGrant, Value: history.Str(LeaseKeep)}, history.Event{Lease: 1})
	if _, err := CheckLease(h.events, nil, testBounds, testKeyLease); err == nil {
		t.Fatal("a grant without its deadline was accepted")
	}
	var a leaseHist
	a.op(0, 10, history.OK, history.Event{F: FAttach, Lease: 9, Values: leaseKeys(9)}, history.Event{Lease: 9})
	if _, err := CheckLease(a.events, nil, testBounds, testKeyLease); err == nil {
		t.Fatal("an attach to a lease never granted was accepted")
	}
}
