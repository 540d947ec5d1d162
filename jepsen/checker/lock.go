package checker

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/kvd-io/kvd/jepsen/history"
)

// FFencedWrite is the lock workload's write: take the lock, write the
// guarded register in a transaction that checks the fencing token, release.
// The invocation names the register (Key) and a unique value; the
// completion carries the token (Token), the value stored (Value: the token
// and the unique value, see FencedValue), whether the guard held (Matched),
// the write's revision (Rev) and the holder's tenure (Acquired, Released,
// Deadline). Reads of the guarded register are FRead, with the value's
// modification revision in Rev.
const FFencedWrite = "fenced-write"

// FencedValue is what a holder with token stores in the guarded register:
// the token, zero-padded so that byte order is numeric order (the guard
// compares it), then the unique value.
func FencedValue(token int64, unique string) string {
	return fmt.Sprintf("%s/%s", FencedToken(token), unique)
}

// FencedToken is the register value's prefix for token: a stored value
// compares below it exactly when its token is smaller.
func FencedToken(token int64) string { return fmt.Sprintf("%020d", token) }

// ParseFencedValue returns the token a register value was written with.
func ParseFencedValue(v string) (int64, error) {
	tok, _, ok := strings.Cut(v, "/")
	if !ok {
		return 0, fmt.Errorf("register value %q has no token", v)
	}
	n, err := strconv.ParseInt(tok, 10, 64)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("register value %q: bad token", v)
	}
	return n, nil
}

// LockResult is the lock checker's verdict.
type LockResult struct {
	// Verdict is "valid", "invalid" (an anomaly below) or "unknown" (the
	// linearizability check timed out, or nothing was checked).
	Verdict string `json:"verdict"`

	Cycles   int `json:"cycles"`   // fenced writes invoked
	Acquired int `json:"acquired"` // of which took the lock
	Applied  int `json:"applied"`  // acknowledged writes whose guard held
	Refused  int `json:"refused"`  // acknowledged writes whose guard did not hold
	Unknown  int `json:"unknown"`  // writes sent whose outcome is unknown

	// Register is the linearizability check of the guarded register.
	Register RegisterResult `json:"register"`
	// TokenOrder lists applied writes whose token is not larger than that
	// of the write applied before them, in revision order, or two tokens
	// seen at one revision.
	TokenOrder []string `json:"token_order,omitempty"`
	// Overlaps lists two holders whose tenures overlapped while each one's
	// lease was, by kvd's stated guarantees, still alive.
	Overlaps []string `json:"overlaps,omitempty"`
	// Problems explains the verdict in words.
	Problems []string `json:"problems,omitempty"`
}

// CheckLock checks the lock workload:
//
//   - the guarded register is linearizable (porcupine, as CheckRegister):
//     an applied fenced write is a write, a refused one changed nothing, one
//     whose outcome is unknown may have happened;
//   - the tokens of applied writes (acknowledged ones, and those reads
//     found) strictly increase in the order of their revisions: no write
//     with a stale or reused token got through the guard;
//   - no two holders' tenures overlap: a holder's tenure runs from the
//     return of Lock to the earlier of its Unlock and its lease's deadline
//     (the last acknowledged renewal's send time plus the TTL, before which
//     kvd promises the lease does not expire). Holders are the harness's
//     goroutines, never paused, so an overlap is a lock that let a second
//     contender in while the first one's key still had to exist.
func CheckLock(events []history.Event, timeout time.Duration, htmlPath string) (LockResult, error) {
	ops, err := history.Pair(events)
	if err != nil {
		return LockResult{}, err
	}
	var res LockResult
	completion := map[int]*history.Event{} // invocation index -> completion
	type applied struct {
		rev   int64
		token int64
		what  string
	}
	var writes []applied
	type tenure struct {
		from, to int64
		token    int64
		process  int
		event    int
	}
	var tenures []tenure
	for _, op := range ops {
		if op.Complete != nil {
			completion[op.Invoke.Index] = op.Complete
		}
		switch op.Invoke.F {
		case FFencedWrite:
			res.Cycles++
			c := op.Complete
			if c == nil {
				continue
			}
			if c.Acquired > 0 {
				res.Acquired++
				end := c.Released
				if c.Deadline > 0 && (end == 0 || c.Deadline < end) {
					end = c.Deadline
				}
				if end > c.Acquired {
					tenures = append(tenures, tenure{from: c.Acquired, to: end, token: c.Token, process: c.Process, event: op.Invoke.Index})
				}
			}
			switch {
			case c.Type == history.OK && c.Matched == nil:
				return res, fmt.Errorf("event %d: ok fenced write without matched", c.Index)
			case c.Type == history.OK && *c.Matched:
				res.Applied++
				if c.Value == nil || c.Token <= 0 || c.Rev <= 0 {
					return res, fmt.Errorf("event %d: applied fenced write without its value, token or revision", c.Index)
				}
				writes = append(writes, applied{rev: c.Rev, token: c.Token, what: fmt.Sprintf("write by p%d (event %d)", c.Process, c.Index)})
			case c.Type == history.OK:
				res.Refused++
			case c.Type == history.Info && c.Value != nil:
				res.Unknown++
			}
		case FRead:
			c := op.Complete
			if c == nil || c.Type != history.OK || c.Value == nil {
				continue
			}
			tok, err := ParseFencedValue(*c.Value)
			if err != nil {
				return res, fmt.Errorf("event %d: %w", c.Index, err)
			}
			writes = append(writes, applied{rev: c.Rev, token: tok, what: fmt.Sprintf("value read by p%d (event %d)", c.Process, c.Index)})
		}
	}

	// The register, as porcupine sees it.
	var reg []history.Event
	for _, e := range events {
		if e.Process == history.ControlProcess {
			reg = append(reg, e)
			continue
		}
		switch e.F {
		case FRead:
			reg = append(reg, e)
		case FFencedWrite:
			c := completion[e.Index]
			if e.Type != history.Invoke {
				done := e
				c = &done
			}
			if c == nil || c.Value == nil || c.Type == history.Fail || (c.Matched != nil && !*c.Matched) {
				continue // never sent, certainly not applied, or refused by its guard
			}
			w := history.Event{Index: e.Index, Type: e.Type, Process: e.Process, F: FWrite, Key: e.Key, Value: c.Value, Time: e.Time, Node: e.Node}
			reg = append(reg, w)
		}
	}
	if res.Register, err = CheckRegister(reg, timeout, htmlPath); err != nil {
		return res, err
	}

	// Tokens in revision order.
	sort.SliceStable(writes, func(i, j int) bool { return writes[i].rev < writes[j].rev })
	for i := 1; i < len(writes); i++ {
		a, b := writes[i-1], writes[i]
		switch {
		case a.rev == b.rev && a.token != b.token:
			res.TokenOrder = append(res.TokenOrder, fmt.Sprintf("revision %d holds token %d (%s) and token %d (%s)", a.rev, a.token, a.what, b.token, b.what))
		case a.rev < b.rev && b.token <= a.token:
			res.TokenOrder = append(res.TokenOrder, fmt.Sprintf("token %d applied at revision %d (%s) after token %d at revision %d (%s)", b.token, b.rev, b.what, a.token, a.rev, a.what))
		}
	}

	// Tenures.
	sort.Slice(tenures, func(i, j int) bool { return tenures[i].from < tenures[j].from })
	for i := range tenures {
		for j := i + 1; j < len(tenures) && tenures[j].from < tenures[i].to; j++ {
			a, b := tenures[i], tenures[j]
			res.Overlaps = append(res.Overlaps, fmt.Sprintf(
				"p%d (token %d, event %d) held the lock %.3fs..%.3fs and p%d (token %d, event %d) acquired it at %.3fs",
				a.process, a.token, a.event, sec(a.from), sec(a.to), b.process, b.token, b.event, sec(b.from)))
		}
	}

	switch res.Register.Verdict {
	case Invalid:
		res.Problems = append(res.Problems, "the guarded register is not linearizable")
	case Unknown:
		res.Problems = append(res.Problems, fmt.Sprintf("the linearizability check did not finish within %s: inconclusive", timeout))
	}
	if n := len(res.TokenOrder); n > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d writes applied out of token order: %s", n, abbreviate(res.TokenOrder, 5)))
	}
	if n := len(res.Overlaps); n > 0 {
		res.Problems = append(res.Problems, fmt.Sprintf("%d overlapping tenures of the lock: %s", n, abbreviate(res.Overlaps, 5)))
	}
	res.TokenOrder, res.Overlaps = firstN(res.TokenOrder, maxListed), firstN(res.Overlaps, maxListed)
	switch {
	case res.Register.Verdict == Invalid || len(res.TokenOrder) > 0 || len(res.Overlaps) > 0:
		res.Verdict = Invalid
	case res.Register.Verdict == Unknown:
		res.Verdict = Unknown
	case res.Applied == 0:
		res.Verdict = Unknown
		res.Problems = append(res.Problems, "no fenced write was applied: nothing was checked")
	default:
		res.Verdict = Valid
	}
	return res, nil
}

func sec(ns int64) float64 { return float64(ns) / 1e9 }
