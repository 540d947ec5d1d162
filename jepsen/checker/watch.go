package checker

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/kvd-io/kvd/jepsen/history"
)

// Watch workload operation names (history.Event.F). A write is FWrite with
// its keys in Values (one key: a put; more: one transaction putting the
// value to each) and its unique value in Value; its ok completion carries
// the write's revision. The final read is FReadAll with the pairs in Values
// (FormatPair) and the read's revision.
const (
	// FWatch is one watcher, from its creation to the end of the run: its
	// completion holds every event it received, in order (FormatWatchEvent),
	// and in Revision the highest revision through which it was told it had
	// received every event. Node is the member it started on.
	FWatch = "watch"
)

// IsLoad reports whether an operation named f is client load, counted in
// availability: final reads and watchers are not.
func IsLoad(f string) bool { return f != FReadAll && f != FWatch }

// WatchEvent is one event a watcher received.
type WatchEvent struct {
	Revision int64
	Type     string // "put" or "delete"
	Key      string
	Value    string
	// Member is the id (hex) of the member that sent it.
	Member string
}

// FormatWatchEvent encodes e for history.Event.Values. Keys and values must
// not contain spaces (the workload's never do).
func FormatWatchEvent(e WatchEvent) string {
	return fmt.Sprintf("%d %s %s %s %s", e.Revision, e.Type, e.Key, orDash(e.Value), e.Member)
}

// ParseWatchEvent is the inverse of FormatWatchEvent.
func ParseWatchEvent(s string) (WatchEvent, error) {
	f := strings.Split(s, " ")
	if len(f) != 5 {
		return WatchEvent{}, fmt.Errorf("watch event %q: want 5 fields", s)
	}
	rev, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil || rev <= 0 {
		return WatchEvent{}, fmt.Errorf("watch event %q: bad revision", s)
	}
	if f[1] != "put" && f[1] != "delete" {
		return WatchEvent{}, fmt.Errorf("watch event %q: bad type", s)
	}
	return WatchEvent{Revision: rev, Type: f[1], Key: f[2], Value: fromDash(f[3]), Member: f[4]}, nil
}

// FormatPair encodes one key of a final read: key, mod revision, value.
func FormatPair(key string, modRev int64, value string) string {
	return fmt.Sprintf("%s %d %s", key, modRev, orDash(value))
}

func parsePair(s string) (key string, modRev int64, value string, err error) {
	f := strings.Split(s, " ")
	if len(f) != 3 {
		return "", 0, "", fmt.Errorf("final pair %q: want 3 fields", s)
	}
	modRev, err = strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return "", 0, "", fmt.Errorf("final pair %q: bad mod revision", s)
	}
	return f[0], modRev, fromDash(f[2]), nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func fromDash(s string) string {
	if s == "-" {
		return ""
	}
	return s
}

// WatchResult is the watch checker's verdict.
type WatchResult struct {
	// Verdict is "valid", "invalid" (an anomaly below) or "unknown" (no
	// final read, or a watcher that did not catch up with it).
	Verdict string `json:"verdict"`

	Attempted int `json:"attempted"` // writes invoked
	Acked     int `json:"acknowledged"`
	Failed    int `json:"failed"`
	Unknown   int `json:"unknown"`
	// UnknownSeen counts the writes of unknown outcome that watchers or the
	// final read show took effect.
	UnknownSeen int `json:"unknown_seen"`
	// Committed counts the writes known to have taken effect, and
	// CommittedEvents their events (a transaction has one per key).
	Committed       int `json:"committed"`
	CommittedEvents int `json:"committed_events"`
	// FinalRevision is the final read's revision, 0 without one.
	FinalRevision int64 `json:"final_revision"`
	// EventsChecked counts the events of every watcher.
	EventsChecked int             `json:"events_checked"`
	Watchers      []WatcherResult `json:"watchers"`
	// EmptyRevisions counts the revisions up to the final one at which no
	// committed write of the workload is known: writes of unknown outcome
	// that nobody saw, or writes outside the watched range.
	EmptyRevisions int `json:"empty_revisions"`

	// Anomalies lists each violation, at most a few dozen.
	Anomalies []string `json:"anomalies,omitempty"`
	// Problems explains the verdict in words.
	Problems []string `json:"problems,omitempty"`
}

// WatcherResult summarizes one watcher.
type WatcherResult struct {
	Node    string `json:"node"`
	Process int    `json:"process"`
	Outcome string `json:"outcome"` // ok, info (ended early), open (never completed)
	Error   string `json:"error,omitempty"`
	Events  int    `json:"events"`
	// Through is the revision through which it was told it had every
	// event; the checker holds it to every committed write up to there.
	Through int64 `json:"through"`
	// Members counts the members that sent it events, and Moves how
	// often the sender changed: the SDK resuming it elsewhere.
	Members int `json:"members"`
	Moves   int `json:"moves"`
	// Missing, Duplicate, OutOfOrder and Phantom count its anomalies.
	Missing    int `json:"missing,omitempty"`
	Duplicate  int `json:"duplicate,omitempty"`
	OutOfOrder int `json:"out_of_order,omitempty"`
	Phantom    int `json:"phantom,omitempty"`
}

// maxAnomalies bounds the anomalies listed in a result.
const maxAnomalies = 50

type watchWrite struct {
	value string
	keys  []string
	typ   history.Type
	rev   int64 // known revision: acknowledged, or seen; 0 if unknown
	seen  bool  // some watcher or the final read shows it
}

type watchEntry struct {
	rev   int64
	key   string
	value string
}

// CheckWatch checks the watch workload. Every watcher must have received
// exactly the committed writes of its range, each once, in revision order
// (the events of a revision in key order), at the revisions the writes were
// acknowledged at, through the revision it was told it was complete to;
// nothing that was never written, or whose write certainly failed; and the
// last event of each key must agree with the final read. A write of unknown
// outcome may be missing everywhere, but once any watcher or the final read
// shows it, it is committed, at that revision, and every watcher must show
// it.
func CheckWatch(events []history.Event) (WatchResult, error) {
	ops, err := history.Pair(events)
	if err != nil {
		return WatchResult{}, err
	}
	res := WatchResult{Watchers: []WatcherResult{}}
	writes := map[string]*watchWrite{}
	var watchOps []history.Op
	var final *history.Op
	for i, op := range ops {
		switch op.Invoke.F {
		case FWrite:
			v := op.Invoke.Value
			if v == nil || len(op.Invoke.Values) == 0 {
				return res, fmt.Errorf("event %d: write without a value or keys", op.Invoke.Index)
			}
			if writes[*v] != nil {
				return res, fmt.Errorf("event %d: value %s written twice; values must be unique", op.Invoke.Index, *v)
			}
			w := &watchWrite{value: *v, keys: append([]string(nil), op.Invoke.Values...), typ: op.Type()}
			sort.Strings(w.keys)
			if w.typ == history.OK {
				if op.Complete.Revision <= 0 {
					return res, fmt.Errorf("event %d: acknowledged write without a revision", op.Complete.Index)
				}
				w.rev = op.Complete.Revision
			}
			writes[*v] = w
		case FWatch:
			watchOps = append(watchOps, op)
		case FReadAll:
			if op.Type() == history.OK {
				final = &ops[i] // the last successful one
			}
		}
	}
	for _, w := range writes {
		res.Attempted++
		switch w.typ {
		case history.OK:
			res.Acked++
		case history.Fail:
			res.Failed++
		default:
			res.Unknown++
		}
	}
	anomaly := func(format string, args ...any) {
		if len(res.Anomalies) < maxAnomalies {
			res.Anomalies = append(res.Anomalies, fmt.Sprintf(format, args...))
		} else if len(res.Anomalies) == maxAnomalies {
			res.Anomalies = append(res.Anomalies, "... (more anomalies left out)")
		}
	}
	invalid := false

	// seenAt records that a committed write's event for key is at rev, and
	// reports whether that agrees with what is known of the write.
	seenAt := func(who string, w *watchWrite, rev int64) bool {
		w.seen = true
		if w.rev == 0 {
			w.rev = rev
			return true
		}
		if w.rev != rev {
			anomaly("%s: value %s at revision %d, but its write is at revision %d", who, w.value, rev, w.rev)
			return false
		}
		return true
	}

	// The final read: each key's value is a committed write, at its revision.
	finalKeys := map[string]watchEntry{}
	if final != nil {
		res.FinalRevision = final.Complete.Revision
		for _, p := range final.Complete.Values {
			key, modRev, value, err := parsePair(p)
			if err != nil {
				return res, fmt.Errorf("event %d: %w", final.Complete.Index, err)
			}
			finalKeys[key] = watchEntry{rev: modRev, key: key, value: value}
			w := writes[value]
			switch {
			case w == nil || !contains(w.keys, key):
				anomaly("final read: %s=%s was never written", key, value)
				invalid = true
			case w.typ == history.Fail:
				anomaly("final read: %s=%s, whose write certainly failed", key, value)
				invalid = true
			default:
				if !seenAt("final read", w, modRev) {
					invalid = true
				}
			}
		}
	}

	// First pass over the watchers: order, duplicates, phantoms, and the
	// revisions of writes of unknown outcome.
	type parsed struct {
		res    *WatcherResult
		events []WatchEvent
		have   map[string]bool // value+" "+key
	}
	var all []parsed
	for _, op := range watchOps {
		wr := WatcherResult{Node: op.Invoke.Node, Process: op.Invoke.Process, Outcome: "open"}
		p := parsed{have: map[string]bool{}}
		if op.Complete != nil {
			wr.Outcome, wr.Error, wr.Through = string(op.Complete.Type), op.Complete.Error, op.Complete.Revision
			for _, s := range op.Complete.Values {
				e, err := ParseWatchEvent(s)
				if err != nil {
					return res, fmt.Errorf("event %d: %w", op.Complete.Index, err)
				}
				p.events = append(p.events, e)
			}
		}
		who := fmt.Sprintf("watcher %d on %s", wr.Process, wr.Node)
		members := map[string]bool{}
		var prev *WatchEvent
		for i := range p.events {
			e := &p.events[i]
			members[e.Member] = true
			if prev != nil && prev.Member != e.Member {
				wr.Moves++
			}
			if prev != nil && (e.Revision < prev.Revision || e.Revision == prev.Revision && e.Key <= prev.Key) {
				if e.Revision == prev.Revision && e.Key == prev.Key {
					wr.Duplicate++
					anomaly("%s: %s=%s twice at revision %d", who, e.Key, e.Value, e.Revision)
				} else {
					wr.OutOfOrder++
					anomaly("%s: revision %d %s=%s after revision %d %s=%s", who, e.Revision, e.Key, e.Value, prev.Revision, prev.Key, prev.Value)
				}
			}
			prev = e
			id := e.Value + " " + e.Key
			if p.have[id] {
				if !(i > 0 && p.events[i-1].Revision == e.Revision && p.events[i-1].Key == e.Key) {
					wr.Duplicate++
					anomaly("%s: %s=%s again at revision %d", who, e.Key, e.Value, e.Revision)
				}
				continue
			}
			p.have[id] = true
			w := writes[e.Value]
			switch {
			case e.Type != "put" || w == nil || !contains(w.keys, e.Key):
				wr.Phantom++
				anomaly("%s: %s %s=%s at revision %d was never written", who, e.Type, e.Key, e.Value, e.Revision)
			case w.typ == history.Fail:
				wr.Phantom++
				anomaly("%s: %s=%s at revision %d, whose write certainly failed", who, e.Key, e.Value, e.Revision)
			case !seenAt(who, w, e.Revision):
				wr.OutOfOrder++
			}
		}
		wr.Events, wr.Members = len(p.events), len(members)
		res.EventsChecked += len(p.events)
		if wr.Duplicate+wr.OutOfOrder+wr.Phantom > 0 {
			invalid = true
		}
		res.Watchers = append(res.Watchers, wr)
		all = append(all, p)
	}
	for i := range all { // after the appends, which may move the slice
		all[i].res = &res.Watchers[i]
	}

	// The committed writes, by revision.
	var committed []watchEntry
	revs := map[int64]bool{}
	for _, w := range writes {
		if w.typ == history.OK || w.seen {
			res.Committed++
			if w.typ != history.OK {
				res.UnknownSeen++
			}
			for _, k := range w.keys {
				committed = append(committed, watchEntry{rev: w.rev, key: k, value: w.value})
			}
			revs[w.rev] = true
		}
	}
	res.CommittedEvents = len(committed)
	sort.Slice(committed, func(i, j int) bool {
		if committed[i].rev != committed[j].rev {
			return committed[i].rev < committed[j].rev
		}
		return committed[i].key < committed[j].key
	})
	for i := 1; i < len(committed); i++ {
		if a, b := committed[i-1], committed[i]; a.rev == b.rev && a.value != b.value {
			anomaly("two writes at revision %d: %s=%s and %s=%s", a.rev, a.key, a.value, b.key, b.value)
			invalid = true
		}
	}
	if res.FinalRevision > 0 {
		for r := int64(2); r <= res.FinalRevision; r++ {
			if !revs[r] {
				res.EmptyRevisions++
			}
		}
	}

	// Second pass: every committed event up to where a watcher was told it
	// was complete is in it (no gap), and its last event of each key
	// agrees with the final read.
	behind := 0
	for _, p := range all {
		wr := p.res
		who := fmt.Sprintf("watcher %d on %s", wr.Process, wr.Node)
		for _, c := range committed {
			if c.rev > wr.Through {
				break
			}
			if !p.have[c.value+" "+c.key] {
				wr.Missing++
				anomaly("%s: missing revision %d %s=%s (complete through %d)", who, c.rev, c.key, c.value, wr.Through)
			}
		}
		if wr.Missing > 0 {
			invalid = true
		}
		if final == nil {
			continue
		}
		if wr.Through < res.FinalRevision {
			behind++
			continue
		}
		last := map[string]watchEntry{}
		for _, e := range p.events {
			if e.Revision <= res.FinalRevision {
				last[e.Key] = watchEntry{rev: e.Revision, key: e.Key, value: e.Value}
			}
		}
		for k, f := range finalKeys {
			if l, ok := last[k]; !ok || l != f {
				anomaly("%s: last event of %s is %+v, the final read has %s=%s at revision %d", who, k, l, k, f.value, f.rev)
				invalid = true
			}
		}
		for k, l := range last {
			if _, ok := finalKeys[k]; !ok {
				anomaly("%s: %s=%s at revision %d, absent from the final read", who, k, l.value, l.rev)
				invalid = true
			}
		}
	}

	var n [4]int
	for _, w := range res.Watchers {
		n[0] += w.Missing
		n[1] += w.Duplicate
		n[2] += w.OutOfOrder
		n[3] += w.Phantom
	}
	for i, what := range []string{"missing events (gaps)", "duplicate events", "events out of order or at the wrong revision", "phantom events (never written, or certainly failed)"} {
		if n[i] > 0 {
			res.Problems = append(res.Problems, fmt.Sprintf("%d %s", n[i], what))
		}
	}
	if invalid && len(res.Problems) == 0 {
		res.Problems = append(res.Problems, "watchers disagree with the writes or the final read: see anomalies")
	}
	switch {
	case invalid:
		res.Verdict = Invalid
	case final == nil:
		res.Problems = append(res.Problems, "no final read: nothing to compare the watchers with")
		res.Verdict = Unknown
	case len(all) == 0:
		res.Problems = append(res.Problems, "no watcher")
		res.Verdict = Unknown
	case behind > 0:
		res.Problems = append(res.Problems, fmt.Sprintf("%d of %d watchers did not catch up with the final read's revision %d", behind, len(all), res.FinalRevision))
		res.Verdict = Unknown
	default:
		res.Verdict = Valid
	}
	return res, nil
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}
