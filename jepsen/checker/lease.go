package checker

import (
	"fmt"
	"sort"
	"time"

	"github.com/kvd-io/kvd/jepsen/history"
)

// Lease workload operation names (history.Event.F). FReadAll is the final
// read of every lease's keys on one member.
const (
	// FGrant grants a lease. The invocation's Value is "keep" (the client
	// keeps it alive until a stop) or "abandon" (never renewed); the
	// completion has Lease, Deadline (the grant's send time plus TTL) and
	// in Value the mode the lease got (a lease whose keep-alive could not
	// start is abandoned).
	FGrant = "grant"
	// FAttach puts the lease's keys (Values), attached to it, in one
	// transaction.
	FAttach = "attach"
	// FLeaseRead reads the lease's keys linearizably, in one range read:
	// Values are the keys present, Rev the read's revision.
	FLeaseRead = "lease-read"
	// FStop stops keeping the lease alive; the completion's Deadline is the
	// lease's deadline after its last acknowledged renewal, and its Value
	// says whether the keep-alive was still running ("keep") or had ended
	// before, the lease given up by the SDK ("lost").
	FStop = "stop"
)

// Lease modes (the Value of a grant's invocation).
const (
	LeaseKeep    = "keep"
	LeaseAbandon = "abandon"
	LeaseLost    = "lost"
)

// LeaseBounds are the timings the lease checker holds kvd to.
type LeaseBounds struct {
	// TTL is the leases' TTL.
	TTL time.Duration
	// Expiry is how long after a lease's TTL ran out (counted from its last
	// possible renewal) its keys may remain: kvd states the election
	// timeout; this adds slack for the leader's tick, the revocation's
	// commit and a loaded machine.
	Expiry time.Duration
	// InFlight bounds how long after a client stopped renewing a renewal it
	// had sent may still reach the leader (kvd's request timeout).
	InFlight time.Duration
	// Recovery is how long after a fault heals the cluster may take to
	// elect a leader that times the leases again; a fault during a lease's
	// expiry window restarts the window at the heal plus this.
	Recovery time.Duration
}

// LeaseResult is the lease checker's verdict.
type LeaseResult struct {
	// Verdict is "valid", "invalid" (an anomaly below) or "unknown" (no
	// read, or a member never answered its final read).
	Verdict string `json:"verdict"`

	Leases    int `json:"leases"`    // granted (ok) with keys attached (ok or unknown)
	Kept      int `json:"kept"`      // of which kept alive until a stop
	Abandoned int `json:"abandoned"` // of which never renewed
	// Lost counts the kept leases whose keep-alive ended before the
	// client stopped it during the run (not those stopped after it): the SDK found no renewal answered before the
	// deadline, or the cluster said the lease was gone. Not an anomaly by
	// itself (the deadline still bounds the early-loss check), but a sign
	// that keep-alives did not survive the faults.
	Lost  int `json:"lost"`
	Reads int `json:"reads"` // ok reads of a lease's keys during the run
	// Expired counts the leases whose keys were gone in every final read
	// and whose expiry bound had passed by then; Pending those whose bound
	// had not passed (not judged at the end).
	Expired int `json:"expired"`
	Pending int `json:"pending"`
	// FinalReads maps each member to the keys its final read found, or -1
	// when it never answered.
	FinalReads map[string]int `json:"final_reads"`

	// EarlyLoss: a read, after the keys were attached and before the
	// lease's deadline, that missed some of them.
	EarlyLoss []string `json:"early_loss,omitempty"`
	// Outlived: keys present after their lease's expiry bound.
	Outlived []string `json:"outlived,omitempty"`
	// Partial: a read that found some of a lease's keys but not all, which
	// were attached in one transaction and must go in one revocation.
	Partial []string `json:"partial,omitempty"`
	// Unexpected: keys whose attach certainly failed, or of no lease.
	Unexpected []string `json:"unexpected,omitempty"`
	// Problems explains the verdict in words.
	Problems []string `json:"problems,omitempty"`
}

type leaseInfo struct {
	id       int64
	mode     string
	grantEnd int64 // grant completion
	deadline int64 // the latest deadline known
	keys     []string
	attach   history.Type
	attached int64 // attach completion
	stopped  int64 // stop completion; 0: never stopped
	lost     bool  // the keep-alive had ended before the stop
	expireBy int64
}

// CheckLease checks the lease workload. keyLease maps a key to the lease
// it was written with (the workload's key layout). For each lease whose
// keys were attached:
//
//   - no read that started after the attach was acknowledged and ended
//     before the lease's deadline (the send time of its last acknowledged
//     renewal, or of its grant, plus the TTL) misses a key;
//   - no read that started after the lease's expiry bound finds a key. The
//     bound is the lease's last possible renewal (the grant for an abandoned
//     lease; the stop plus bounds.InFlight for a kept one) plus the TTL and
//     bounds.Expiry; a fault overlapping that window moves it to the fault's
//     heal plus bounds.Recovery, TTL and bounds.Expiry;
//   - no read finds some of the lease's keys but not all;
//   - the final reads, on every member, find no key whose lease's bound has
//     passed.
func CheckLease(events []history.Event, members []string, bounds LeaseBounds, keyLease func(string) (int64, bool)) (LeaseResult, error) {
	ops, err := history.Pair(events)
	if err != nil {
		return LeaseResult{}, err
	}
	res := LeaseResult{FinalReads: map[string]int{}}
	for _, m := range members {
		res.FinalReads[m] = -1
	}
	leases := map[int64]*leaseInfo{}
	var reads, finals []history.Op
	for _, op := range ops {
		inv, c := op.Invoke, op.Complete
		switch inv.F {
		case FGrant:
			if op.Type() != history.OK {
				continue
			}
			if c.Lease == 0 || c.Deadline == 0 || c.Value == nil {
				return res, fmt.Errorf("event %d: ok grant without its lease, deadline or mode", c.Index)
			}
			leases[c.Lease] = &leaseInfo{id: c.Lease, mode: *c.Value, grantEnd: c.Time, deadline: c.Deadline}
		case FAttach:
			l := leases[inv.Lease]
			if l == nil {
				return res, fmt.Errorf("event %d: attach to lease %x, never granted", inv.Index, inv.Lease)
			}
			l.keys, l.attach = inv.Values, op.Type()
			if c != nil {
				l.attached = c.Time
			}
		case FStop:
			l := leases[inv.Lease]
			if l == nil {
				return res, fmt.Errorf("event %d: stop of lease %x, never granted", inv.Index, inv.Lease)
			}
			if op.Type() == history.OK {
				l.stopped = c.Time
				l.deadline = max(l.deadline, c.Deadline)
				l.lost = c.Value != nil && *c.Value == LeaseLost
			}
		case FLeaseRead:
			if op.Type() == history.OK {
				reads = append(reads, op)
			}
		case FReadAll:
			if op.Type() == history.OK {
				finals = append(finals, op)
			}
		}
	}

	end := history.End(events)
	faults := FaultWindows(events)
	window := bounds.TTL + bounds.Expiry
	for _, l := range leases {
		if l.attach == "" {
			continue
		}
		res.Leases++
		renew := l.grantEnd
		switch {
		case l.mode == LeaseAbandon:
			res.Abandoned++
		case l.stopped > 0:
			res.Kept++
			if l.lost {
				res.Lost++
			}
			renew = l.stopped + bounds.InFlight.Nanoseconds()
		default:
			res.Kept++
			renew = end // never stopped: it may have been renewed until the end
		}
		l.expireBy = renew + window.Nanoseconds()
		for _, w := range faults {
			if w.Start < l.expireBy && w.End > renew {
				l.expireBy = max(l.expireBy, w.End+(bounds.Recovery+window).Nanoseconds())
			}
		}
	}

	judge := func(l *leaseInfo, present []string, inv, ret int64, what string) {
		have := map[string]bool{}
		for _, k := range present {
			have[k] = true
		}
		n := 0
		for _, k := range l.keys {
			if have[k] {
				n++
			}
		}
		switch {
		case l.attach == history.Fail && len(present) > 0:
			res.Unexpected = append(res.Unexpected, fmt.Sprintf("%s found %v of lease %x, whose attach failed", what, present, l.id))
			return
		case n != len(present):
			res.Unexpected = append(res.Unexpected, fmt.Sprintf("%s found %v under lease %x, which attached %v", what, present, l.id, l.keys))
		}
		if n > 0 && n < len(l.keys) {
			res.Partial = append(res.Partial, fmt.Sprintf("%s found %d of the %d keys of lease %x", what, n, len(l.keys), l.id))
		}
		if l.attach == history.OK && inv >= l.attached && ret <= l.deadline && n < len(l.keys) {
			res.EarlyLoss = append(res.EarlyLoss, fmt.Sprintf("%s (%.3fs..%.3fs) missed %d keys of %s lease %x, attached at %.3fs, alive until at least %.3fs",
				what, sec(inv), sec(ret), len(l.keys)-n, l.mode, l.id, sec(l.attached), sec(l.deadline)))
		}
		if inv > l.expireBy && n > 0 {
			res.Outlived = append(res.Outlived, fmt.Sprintf("%s at %.3fs found %d keys of %s lease %x, which had to be gone by %.3fs",
				what, sec(inv), n, l.mode, l.id, sec(l.expireBy)))
		}
	}
	for _, op := range reads {
		l := leases[op.Invoke.Lease]
		if l == nil || l.attach == "" {
			return res, fmt.Errorf("event %d: read of lease %x, never attached", op.Invoke.Index, op.Invoke.Lease)
		}
		res.Reads++
		judge(l, op.Complete.Values, op.Invoke.Time, op.Complete.Time, fmt.Sprintf("read by p%d (event %d)", op.Invoke.Process, op.Invoke.Index))
	}
	pending := map[int64]bool{}
	for _, op := range finals {
		node := op.Invoke.Node
		res.FinalReads[node] = len(op.Complete.Values)
		byLease := map[int64][]string{}
		for _, k := range op.Complete.Values {
			id, ok := keyLease(k)
			if !ok || leases[id] == nil || leases[id].attach == "" {
				res.Unexpected = append(res.Unexpected, fmt.Sprintf("final read on %s found %s, of no lease with keys", node, k))
				continue
			}
			byLease[id] = append(byLease[id], k)
		}
		for id, l := range leases {
			if l.attach == "" {
				continue
			}
			if op.Invoke.Time <= l.expireBy {
				pending[id] = true
				continue
			}
			if ks := byLease[id]; len(ks) > 0 {
				judge(l, ks, op.Invoke.Time, op.Complete.Time, "final read on "+node)
			}
		}
	}
	if len(finals) > 0 {
		res.Pending = len(pending)
		res.Expired = res.Leases - res.Pending
	}

	for _, a := range []struct {
		what string
		list []string
	}{
		{"reads missed keys of a lease before its deadline", res.EarlyLoss},
		{"reads found keys of a lease after its expiry bound", res.Outlived},
		{"reads found some of a lease's keys but not all", res.Partial},
		{"unexpected keys", res.Unexpected},
	} {
		if len(a.list) > 0 {
			sort.Strings(a.list)
			res.Problems = append(res.Problems, fmt.Sprintf("%d %s: %s", len(a.list), a.what, abbreviate(a.list, 5)))
		}
	}
	// results.json keeps the first ones; Problems has the counts.
	res.EarlyLoss, res.Outlived = firstN(res.EarlyLoss, maxListed), firstN(res.Outlived, maxListed)
	res.Partial, res.Unexpected = firstN(res.Partial, maxListed), firstN(res.Unexpected, maxListed)
	invalid := len(res.Problems) > 0
	var missing []string
	for _, m := range members {
		if res.FinalReads[m] < 0 {
			missing = append(missing, m)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("no final read from %v", missing))
	}
	switch {
	case invalid:
		res.Verdict = Invalid
	case res.Reads == 0 || len(missing) > 0:
		if res.Reads == 0 {
			res.Problems = append(res.Problems, "no read of a lease's keys succeeded: nothing was checked")
		}
		res.Verdict = Unknown
	default:
		res.Verdict = Valid
	}
	return res, nil
}

// maxListed bounds each list of anomalies a result keeps.
const maxListed = 100

func firstN(s []string, n int) []string {
	if len(s) > n {
		return s[:n]
	}
	return s
}
