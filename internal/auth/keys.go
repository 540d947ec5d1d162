package auth

import (
	"bytes"
	"fmt"
	"slices"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Requirement is one permission a request needs: read or write on a key or
// a range, with etcd's range conventions (RangeEnd empty: the key alone;
// "\x00": every key from Key on).
type Requirement struct {
	Write    bool
	Key      []byte
	RangeEnd []byte
}

func (r Requirement) verb() string {
	if r.Write {
		return "write"
	}
	return "read"
}

func (r Requirement) describe() string {
	switch {
	case len(r.RangeEnd) == 0:
		return fmt.Sprintf("key %q", r.Key)
	case isFromKey(r.RangeEnd):
		return fmt.Sprintf("keys from %q on", r.Key)
	default:
		return fmt.Sprintf("range [%q, %q)", r.Key, r.RangeEnd)
	}
}

// Requirements lists what a key-value request needs: a range reads its
// range; a put writes its key (and reads it with prev_kv); a delete writes
// its range (and reads it with prev_kv); a transaction needs read on every
// compare's range and everything each operation of both branches needs,
// whichever branch runs, as etcd does; a watch reads its range. Other
// messages need nothing here (nil).
func Requirements(msg any) []Requirement {
	var out []Requirement
	add := func(write bool, key, end []byte) {
		out = append(out, Requirement{Write: write, Key: key, RangeEnd: end})
	}
	addQueue := func(write bool, name []byte) {
		key, end := queue(name)
		add(write, key, end)
	}
	var walk func(msg any)
	walk = func(msg any) {
		switch r := msg.(type) {
		case *kvv1.RangeRequest:
			add(false, r.GetKey(), r.GetRangeEnd())
		case *kvv1.PutRequest:
			add(true, r.GetKey(), nil)
			if r.GetPrevKv() {
				add(false, r.GetKey(), nil)
			}
		case *kvv1.DeleteRangeRequest:
			add(true, r.GetKey(), r.GetRangeEnd())
			if r.GetPrevKv() {
				add(false, r.GetKey(), r.GetRangeEnd())
			}
		case *kvv1.TxnRequest:
			for _, c := range r.GetCompare() {
				add(false, c.GetKey(), c.GetRangeEnd())
			}
			for _, op := range slices.Concat(r.GetSuccess(), r.GetFailure()) {
				switch {
				case op.GetRequestRange() != nil:
					walk(op.GetRequestRange())
				case op.GetRequestPut() != nil:
					walk(op.GetRequestPut())
				case op.GetRequestDeleteRange() != nil:
					walk(op.GetRequestDeleteRange())
				case op.GetRequestTxn() != nil:
					walk(op.GetRequestTxn())
				}
			}
		case *kvv1.WatchCreateRequest:
			add(false, r.GetKey(), r.GetRangeEnd())
		// The lock and election services keep their queues under NAME/
		// (one key per lease): taking a place reads and writes the queue,
		// watching it reads it, giving a place up writes the own key.
		case *kvv1.LockRequest:
			addQueue(false, r.GetName())
			addQueue(true, r.GetName())
		case *kvv1.UnlockRequest:
			add(true, r.GetKey(), nil)
		case *kvv1.CampaignRequest:
			addQueue(false, r.GetName())
			addQueue(true, r.GetName())
		case *kvv1.ProclaimRequest:
			addQueue(false, r.GetLeader().GetName())
			add(true, r.GetLeader().GetKey(), nil)
		case *kvv1.ResignRequest:
			add(true, r.GetLeader().GetKey(), nil)
		case *kvv1.LeaderRequest:
			addQueue(false, r.GetName())
		case *kvv1.ObserveRequest:
			addQueue(false, r.GetName())
		}
	}
	walk(msg)
	return out
}

// queue is the key range of a lock's or an election's queue: every key
// under NAME/ ('0' is the byte after '/').
func queue(name []byte) (key, end []byte) {
	key = append(bytes.Clone(name), '/')
	end = append(bytes.Clone(name), '0')
	return key, end
}

// interval is a half-open key interval [start, end); inf means no end.
type interval struct {
	start, end []byte
	inf        bool
}

func isFromKey(end []byte) bool { return len(end) == 1 && end[0] == 0 }

// toInterval turns etcd's key and range end into an interval.
func toInterval(key, end []byte) interval {
	switch {
	case len(end) == 0:
		return interval{start: key, end: append(slices.Clip(key), 0)}
	case isFromKey(end):
		return interval{start: key, inf: true}
	default:
		return interval{start: key, end: end}
	}
}

// endsBefore reports whether a ends before b ends.
func endsBefore(a, b interval) bool {
	if a.inf {
		return false
	}
	return b.inf || bytes.Compare(a.end, b.end) < 0
}

// covers reports whether the union of have covers want.
func covers(have []interval, want interval) bool {
	if !want.inf && bytes.Compare(want.start, want.end) >= 0 {
		return true // an empty range reads and writes nothing
	}
	slices.SortFunc(have, func(a, b interval) int { return bytes.Compare(a.start, b.start) })
	// reach is how far from want.start the intervals seen so far cover
	// without a gap.
	reach := interval{end: want.start}
	for _, h := range have {
		if !reach.inf && bytes.Compare(h.start, reach.end) > 0 {
			break // a gap before h
		}
		if endsBefore(reach, h) {
			reach = h
		}
		if !endsBefore(reach, want) {
			return true
		}
	}
	return !endsBefore(reach, want)
}
