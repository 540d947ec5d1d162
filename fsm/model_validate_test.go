package fsm

import (
	"maps"
	"slices"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// The model's validation, checked in the FSM's order so that a request with
// several faults fails with the same sentinel.

func modelCheckKeyRange(key, end []byte) error {
	switch {
	case len(key) == 0:
		return ErrEmptyKey
	case len(end) == 0, string(end) == "\x00":
		return nil
	case string(end) <= string(key):
		return ErrInvalidRange
	}
	return nil
}

func modelCheckPut(r *kvv1.PutRequest) error {
	if len(r.GetKey()) == 0 {
		return ErrEmptyKey
	}
	if r.GetLease() != 0 {
		return ErrLeaseNotFound
	}
	return nil
}

func modelCheckRange(r *kvv1.RangeRequest) error {
	if err := modelCheckKeyRange(r.GetKey(), r.GetRangeEnd()); err != nil {
		return err
	}
	if r.GetLimit() < 0 {
		return ErrInvalidRange
	}
	return nil
}

func modelCheckCompare(c *kvv1.Compare) error {
	if err := modelCheckKeyRange(c.GetKey(), c.GetRangeEnd()); err != nil {
		return err
	}
	if !slices.Contains([]kvv1.Compare_CompareResult{eq, ne, gt, lt}, c.GetResult()) {
		return ErrInvalidCompare
	}
	var has bool
	switch c.GetTarget() {
	case kvv1.Compare_COMPARE_TARGET_VALUE:
		_, has = c.GetTargetUnion().(*kvv1.Compare_Value)
	case kvv1.Compare_COMPARE_TARGET_VERSION:
		_, has = c.GetTargetUnion().(*kvv1.Compare_Version)
	case kvv1.Compare_COMPARE_TARGET_CREATE:
		_, has = c.GetTargetUnion().(*kvv1.Compare_CreateRevision)
	case kvv1.Compare_COMPARE_TARGET_MOD:
		_, has = c.GetTargetUnion().(*kvv1.Compare_ModRevision)
	case kvv1.Compare_COMPARE_TARGET_LEASE:
		_, has = c.GetTargetUnion().(*kvv1.Compare_Lease)
	}
	if !has {
		return ErrInvalidCompare
	}
	return nil
}

func modelCheckOp(op *kvv1.RequestOp) error {
	switch {
	case op.GetRequestRange() != nil:
		return modelCheckRange(op.GetRequestRange())
	case op.GetRequestPut() != nil:
		return modelCheckPut(op.GetRequestPut())
	case op.GetRequestDeleteRange() != nil:
		d := op.GetRequestDeleteRange()
		return modelCheckKeyRange(d.GetKey(), d.GetRangeEnd())
	case op.GetRequestTxn() != nil:
		return modelCheckTxn(op.GetRequestTxn())
	}
	return ErrEmptyRequest
}

func modelCheckTxn(r *kvv1.TxnRequest) error {
	if max(len(r.GetCompare()), len(r.GetSuccess()), len(r.GetFailure())) > MaxTxnOpsLimit {
		return ErrTooManyOps
	}
	for _, c := range r.GetCompare() {
		if err := modelCheckCompare(c); err != nil {
			return err
		}
	}
	for _, branch := range [][]*kvv1.RequestOp{r.GetSuccess(), r.GetFailure()} {
		for _, op := range branch {
			if err := modelCheckOp(op); err != nil {
				return err
			}
		}
		if modelHasDuplicate(branch) {
			return ErrDuplicateKey
		}
	}
	return nil
}

// modelWrite is one write in a txn branch: the keys [lo, hi) it may change
// (hi empty: no bound), and the branch each enclosing nested txn must take
// for it to run.
type modelWrite struct {
	put    bool
	lo, hi string
	path   map[int]int // nested txn number -> 0 (success) or 1 (failure)
}

func flattenWrites(ops []*kvv1.RequestOp, path map[int]int, next *int, out *[]modelWrite) {
	for _, op := range ops {
		switch {
		case op.GetRequestPut() != nil:
			k := string(op.GetRequestPut().GetKey())
			*out = append(*out, modelWrite{put: true, lo: k, hi: k + "\x00", path: path})
		case op.GetRequestDeleteRange() != nil:
			d := op.GetRequestDeleteRange()
			w := modelWrite{lo: string(d.GetKey()), hi: string(d.GetRangeEnd()), path: path}
			switch w.hi {
			case "":
				w.hi = w.lo + "\x00"
			case "\x00":
				w.hi = ""
			}
			*out = append(*out, w)
		case op.GetRequestTxn() != nil:
			id := *next
			*next++
			for b, branch := range [][]*kvv1.RequestOp{op.GetRequestTxn().GetSuccess(), op.GetRequestTxn().GetFailure()} {
				p := maps.Clone(path)
				p[id] = b
				flattenWrites(branch, p, next, out)
			}
		}
	}
}

// modelHasDuplicate reports whether two writes of a branch that can both run
// (they are not in different branches of one nested txn) touch a common key,
// at least one of them being a put. Overlapping deletes are allowed, as in
// etcd: the later one finds nothing the earlier one deleted.
func modelHasDuplicate(branch []*kvv1.RequestOp) bool {
	var ws []modelWrite
	next := 0
	flattenWrites(branch, map[int]int{}, &next, &ws)
	below := func(k, hi string) bool { return hi == "" || k < hi }
	for i, a := range ws {
		for _, b := range ws[i+1:] {
			together := true
			for id, br := range a.path {
				if bb, ok := b.path[id]; ok && bb != br {
					together = false
				}
			}
			if together && (a.put || b.put) && below(a.lo, b.hi) && below(b.lo, a.hi) {
				return true
			}
		}
	}
	return false
}
