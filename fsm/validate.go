package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/internal/mvcc"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Sentinel errors. The server maps them to gRPC codes in one table; callers
// branch on them with errors.Is.
var (
	// ErrEmptyKey: a request named no key.
	ErrEmptyKey = errors.New("key is empty")
	// ErrInvalidRange: a range end that does not come after its key.
	ErrInvalidRange = errors.New("range end must be greater than the key")
	// ErrDuplicateKey: a transaction writes one key more than once.
	ErrDuplicateKey = errors.New("duplicate key given in txn request")
	// ErrTooManyOps: a transaction is larger than MaxTxnOps.
	ErrTooManyOps = errors.New("too many operations in txn request")
	// ErrInvalidCompare: a compare whose operator, target or value is missing
	// or does not match.
	ErrInvalidCompare = errors.New("invalid compare")
	// ErrLeaseNotFound: a lease that does not exist (never granted,
	// expired or revoked), named by a put, a revoke or a keep-alive.
	ErrLeaseNotFound = mvcc.ErrLeaseNotFound
	// ErrLeaseExists: a grant of a lease id in use.
	ErrLeaseExists = mvcc.ErrLeaseExists
	// ErrKeyNotFound: a put with ignore_value or ignore_lease of a key that
	// does not exist.
	ErrKeyNotFound = mvcc.ErrKeyNotFound
	// ErrValueProvided: a put with ignore_value and a value.
	ErrValueProvided = errors.New("value is provided")
	// ErrLeaseProvided: a put with ignore_lease and a lease.
	ErrLeaseProvided = errors.New("lease is provided")
	// ErrFutureRevision: a read at a revision the store has not reached.
	ErrFutureRevision = mvcc.ErrFutureRevision
	// ErrCompacted: a read at a revision that compaction has removed.
	ErrCompacted = mvcc.ErrCompacted
	// ErrOvertaken: a read that compactions kept overtaking (see
	// mvcc.ErrOvertaken), still so after the FSM read it again: safe to
	// retry.
	ErrOvertaken = mvcc.ErrOvertaken
	// ErrEmptyRequest: a request op or command with nothing in it.
	ErrEmptyRequest = mvcc.ErrEmptyRequest
)

// MaxTxnOps is the default bound on the compares, and on the operations of
// each branch, of one transaction (nested ones each count alone), as etcd's
// --max-txn-ops: a member refuses a larger one before proposing it
// (CheckTxnOps, with its configured bound).
const MaxTxnOps = 128

// MaxTxnOpsLimit is the largest bound a member may be configured with; the
// state machine refuses a larger transaction when it applies it. A member
// of an older version applies at most MaxTxnOps, so a larger transaction
// needs FeatureLargeTxns on every member.
const MaxTxnOpsLimit = 10000

// CheckTxnOps refuses a transaction with more than max compares or
// operations in one list, nested transactions included.
func CheckTxnOps(r *kvv1.TxnRequest, max int) error {
	if len(r.GetCompare()) > max || len(r.GetSuccess()) > max || len(r.GetFailure()) > max {
		return fmt.Errorf("%w: at most %d per list (--max-txn-ops)", ErrTooManyOps, max)
	}
	for _, branch := range [][]*kvv1.RequestOp{r.GetSuccess(), r.GetFailure()} {
		for _, op := range branch {
			if t := op.GetRequestTxn(); t != nil {
				if err := CheckTxnOps(t, max); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// ValidatePut checks a put before it is proposed and again when it is applied.
func ValidatePut(r *kvv1.PutRequest) error {
	if len(r.GetKey()) == 0 {
		return ErrEmptyKey
	}
	if r.GetIgnoreValue() && len(r.GetValue()) != 0 {
		return ErrValueProvided
	}
	if r.GetIgnoreLease() && r.GetLease() != 0 {
		return ErrLeaseProvided
	}
	if r.GetLease() < 0 {
		return fmt.Errorf("%w: %d", ErrLeaseNotFound, r.GetLease())
	}
	return nil
}

// ValidateRange checks a range read.
func ValidateRange(r *kvv1.RangeRequest) error {
	if err := validateKeyRange(r.GetKey(), r.GetRangeEnd()); err != nil {
		return err
	}
	if r.GetLimit() < 0 {
		return fmt.Errorf("%w: limit %d is negative", ErrInvalidRange, r.GetLimit())
	}
	if _, ok := kvv1.RangeRequest_SortOrder_name[int32(r.GetSortOrder())]; !ok {
		return fmt.Errorf("%w: unknown sort order %d", ErrInvalidRange, r.GetSortOrder())
	}
	if _, ok := kvv1.RangeRequest_SortTarget_name[int32(r.GetSortTarget())]; !ok {
		return fmt.Errorf("%w: unknown sort target %d", ErrInvalidRange, r.GetSortTarget())
	}
	for _, v := range []int64{r.GetMinModRevision(), r.GetMaxModRevision(), r.GetMinCreateRevision(), r.GetMaxCreateRevision()} {
		if v < 0 {
			return fmt.Errorf("%w: a revision filter is negative (%d)", ErrInvalidRange, v)
		}
	}
	return nil
}

// ValidateDeleteRange checks a delete.
func ValidateDeleteRange(r *kvv1.DeleteRangeRequest) error {
	return validateKeyRange(r.GetKey(), r.GetRangeEnd())
}

func validateKeyRange(key, end []byte) error {
	if len(key) == 0 {
		return ErrEmptyKey
	}
	if len(end) == 0 || bytes.Equal(end, rangeEndAll) {
		return nil
	}
	if bytes.Compare(end, key) <= 0 {
		return fmt.Errorf("%w: key %q, range end %q", ErrInvalidRange, key, end)
	}
	return nil
}

// ValidateTxn checks a transaction: every compare and op, the size of each
// branch, and that no branch writes a key twice.
func ValidateTxn(r *kvv1.TxnRequest) error {
	if len(r.GetCompare()) > MaxTxnOpsLimit || len(r.GetSuccess()) > MaxTxnOpsLimit || len(r.GetFailure()) > MaxTxnOpsLimit {
		return fmt.Errorf("%w: at most %d per list", ErrTooManyOps, MaxTxnOpsLimit)
	}
	for i, c := range r.GetCompare() {
		if err := validateCompare(c); err != nil {
			return fmt.Errorf("compare %d: %w", i, err)
		}
	}
	for _, branch := range [][]*kvv1.RequestOp{r.GetSuccess(), r.GetFailure()} {
		for i, op := range branch {
			if err := validateOp(op); err != nil {
				return fmt.Errorf("op %d: %w", i, err)
			}
		}
		if err := checkDuplicateWrites(branch, &writeSet{}); err != nil {
			return err
		}
	}
	return nil
}

func validateOp(op *kvv1.RequestOp) error {
	switch o := op.GetRequest().(type) {
	case *kvv1.RequestOp_RequestRange:
		return ValidateRange(o.RequestRange)
	case *kvv1.RequestOp_RequestPut:
		return ValidatePut(o.RequestPut)
	case *kvv1.RequestOp_RequestDeleteRange:
		return ValidateDeleteRange(o.RequestDeleteRange)
	case *kvv1.RequestOp_RequestTxn:
		return ValidateTxn(o.RequestTxn)
	default:
		return ErrEmptyRequest
	}
}

func validateCompare(c *kvv1.Compare) error {
	if err := validateKeyRange(c.GetKey(), c.GetRangeEnd()); err != nil {
		return err
	}
	if c.GetResult() == kvv1.Compare_COMPARE_RESULT_UNSPECIFIED {
		return fmt.Errorf("%w: no operator", ErrInvalidCompare)
	}
	if _, ok := kvv1.Compare_CompareResult_name[int32(c.GetResult())]; !ok {
		return fmt.Errorf("%w: unknown operator %d", ErrInvalidCompare, c.GetResult())
	}
	var ok bool
	switch c.GetTarget() {
	case kvv1.Compare_COMPARE_TARGET_VERSION:
		_, ok = c.GetTargetUnion().(*kvv1.Compare_Version)
	case kvv1.Compare_COMPARE_TARGET_CREATE:
		_, ok = c.GetTargetUnion().(*kvv1.Compare_CreateRevision)
	case kvv1.Compare_COMPARE_TARGET_MOD:
		_, ok = c.GetTargetUnion().(*kvv1.Compare_ModRevision)
	case kvv1.Compare_COMPARE_TARGET_VALUE:
		_, ok = c.GetTargetUnion().(*kvv1.Compare_Value)
	case kvv1.Compare_COMPARE_TARGET_LEASE:
		_, ok = c.GetTargetUnion().(*kvv1.Compare_Lease)
	default:
		return fmt.Errorf("%w: unknown target %d", ErrInvalidCompare, c.GetTarget())
	}
	if !ok {
		return fmt.Errorf("%w: target %s needs a matching value", ErrInvalidCompare, c.GetTarget())
	}
	return nil
}

// writeSet records what one branch writes: single keys put, and ranges deleted.
type writeSet struct {
	puts    [][]byte
	deletes [][2][]byte
}

// putsIn reports whether a key put so far lies in [key, end).
func (w *writeSet) putsIn(key, end []byte) bool {
	for _, p := range w.puts {
		if inRange(p, key, end) {
			return true
		}
	}
	return false
}

// overlaps reports whether anything written so far lies in [key, end).
func (w *writeSet) overlaps(key, end []byte) bool {
	if w.putsIn(key, end) {
		return true
	}
	for _, d := range w.deletes {
		if rangesOverlap(d[0], d[1], key, end) {
			return true
		}
	}
	return false
}

// checkDuplicateWrites rejects a branch (nested transactions included) that
// puts a key more than once, or puts and deletes it: every key changes at most
// once per revision, so that its history entry at that revision is unique.
// Deletes may overlap, as in etcd: a later delete finds nothing that an
// earlier one removed, so it writes no second entry.
func checkDuplicateWrites(ops []*kvv1.RequestOp, seen *writeSet) error {
	for _, op := range ops {
		switch o := op.GetRequest().(type) {
		case *kvv1.RequestOp_RequestPut:
			k := o.RequestPut.GetKey()
			if seen.overlaps(k, nil) {
				return fmt.Errorf("%w: %q", ErrDuplicateKey, k)
			}
			seen.puts = append(seen.puts, k)
		case *kvv1.RequestOp_RequestDeleteRange:
			d := o.RequestDeleteRange
			if seen.putsIn(d.GetKey(), d.GetRangeEnd()) {
				return fmt.Errorf("%w: %q", ErrDuplicateKey, d.GetKey())
			}
			seen.deletes = append(seen.deletes, [2][]byte{d.GetKey(), d.GetRangeEnd()})
		case *kvv1.RequestOp_RequestTxn:
			// Only one branch of a nested transaction runs, so each branch is
			// checked against what came before, not against the other.
			for _, branch := range [][]*kvv1.RequestOp{o.RequestTxn.GetSuccess(), o.RequestTxn.GetFailure()} {
				inner := &writeSet{puts: slices.Clip(seen.puts), deletes: slices.Clip(seen.deletes)}
				if err := checkDuplicateWrites(branch, inner); err != nil {
					return err
				}
			}
			// Either branch may have run: later ops must avoid both.
			for _, branch := range [][]*kvv1.RequestOp{o.RequestTxn.GetSuccess(), o.RequestTxn.GetFailure()} {
				collectWrites(branch, seen)
			}
		}
	}
	return nil
}

func collectWrites(ops []*kvv1.RequestOp, into *writeSet) {
	for _, op := range ops {
		switch o := op.GetRequest().(type) {
		case *kvv1.RequestOp_RequestPut:
			into.puts = append(into.puts, o.RequestPut.GetKey())
		case *kvv1.RequestOp_RequestDeleteRange:
			into.deletes = append(into.deletes, [2][]byte{o.RequestDeleteRange.GetKey(), o.RequestDeleteRange.GetRangeEnd()})
		case *kvv1.RequestOp_RequestTxn:
			collectWrites(o.RequestTxn.GetSuccess(), into)
			collectWrites(o.RequestTxn.GetFailure(), into)
		}
	}
}

// rangesOverlap reports whether [k1, e1) and [k2, e2) share a key, with the
// request conventions for empty and unbounded ends.
func rangesOverlap(k1, e1, k2, e2 []byte) bool {
	end := func(k, e []byte) []byte {
		if len(e) == 0 {
			return append(bytes.Clone(k), 0) // the single key k
		}
		return e
	}
	unbounded := func(e []byte) bool { return bytes.Equal(e, rangeEndAll) }
	a, b := end(k1, e1), end(k2, e2)
	// Overlap when each range starts before the other ends.
	startsBefore := func(k, e []byte, unb bool) bool { return unb || bytes.Compare(k, e) < 0 }
	return startsBefore(k1, b, unbounded(e2)) && startsBefore(k2, a, unbounded(e1))
}

// UsesLeases reports whether a put or txn needs every member to apply
// leases (FeatureLeases): it names a lease, or keeps a key's value or lease
// (ignore_value, ignore_lease). A member of an older version would ignore
// those fields or refuse the put, and its state would part from the others'.
func UsesLeases(msg proto.Message) bool {
	switch r := msg.(type) {
	case *kvv1.PutRequest:
		return r.GetLease() != 0 || r.GetIgnoreValue() || r.GetIgnoreLease()
	case *kvv1.TxnRequest:
		for _, branch := range [][]*kvv1.RequestOp{r.GetSuccess(), r.GetFailure()} {
			for _, op := range branch {
				if p := op.GetRequestPut(); p != nil && UsesLeases(p) {
					return true
				}
				if t := op.GetRequestTxn(); t != nil && UsesLeases(t) {
					return true
				}
			}
		}
	}
	return false
}
