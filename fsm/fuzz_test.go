package fsm

import (
	"errors"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// FuzzValidatedRequestsApply checks the rule that keeps a bad request from
// poisoning the log: whatever a client sends, if it passes the validation a
// member runs before proposing it, every member applies it without an
// internal error. An internal error at apply stops the member (see the
// package doc), and since every member applies the same entry, it would
// stop them all.
//
// kind picks the request type; data is decoded as it.
func FuzzValidatedRequestsApply(f *testing.F) {
	seed := func(kind byte, m proto.Message) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(kind, b)
	}
	seed(0, put("a", "1"))
	seed(0, &kvv1.PutRequest{Key: []byte("a"), IgnoreValue: true})
	seed(0, &kvv1.PutRequest{Key: []byte("a"), Lease: 1})
	seed(1, del("a", "\x00"))
	seed(2, &kvv1.TxnRequest{
		Compare: []*kvv1.Compare{{Key: []byte("a"), Target: kvv1.Compare_COMPARE_TARGET_VALUE, Result: kvv1.Compare_COMPARE_RESULT_EQUAL, TargetUnion: &kvv1.Compare_Value{Value: []byte("1")}}},
		Success: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestPut{RequestPut: put("b", "2")}}},
		Failure: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestRange{RequestRange: &kvv1.RangeRequest{Key: []byte("a"), SortOrder: kvv1.RangeRequest_SORT_ORDER_DESCEND}}}},
	})
	seed(3, &kvv1.CompactRequest{Revision: 2})
	seed(4, &fsmv1.LeaseGrant{Id: 1, Ttl: 5})
	seed(5, &fsmv1.LeaseRevoke{Id: 1})
	seed(6, &fsmv1.LeaseCheckpoint{Leases: []*fsmv1.LeaseRemaining{{Id: 1, RemainingTtl: 3}}})

	fs := newFSM(f)
	var index uint64
	f.Fuzz(func(t *testing.T, kind byte, data []byte) {
		var (
			typ   fsmv1.CommandType
			msg   proto.Message
			valid error
		)
		switch kind % 7 {
		case 0:
			m := &kvv1.PutRequest{}
			typ, msg, valid = fsmv1.CommandType_COMMAND_TYPE_PUT, m, unmarshalThen(data, m, func() error { return ValidatePut(m) })
		case 1:
			m := &kvv1.DeleteRangeRequest{}
			typ, msg, valid = fsmv1.CommandType_COMMAND_TYPE_DELETE_RANGE, m, unmarshalThen(data, m, func() error { return ValidateDeleteRange(m) })
		case 2:
			m := &kvv1.TxnRequest{}
			typ, msg, valid = fsmv1.CommandType_COMMAND_TYPE_TXN, m, unmarshalThen(data, m, func() error { return ValidateTxn(m) })
		case 3:
			m := &kvv1.CompactRequest{}
			typ, msg, valid = fsmv1.CommandType_COMMAND_TYPE_COMPACT, m, unmarshalThen(data, m, func() error { return ValidateCompact(m) })
		case 4:
			// The member checks the TTL and id before proposing; the
			// state machine checks them again.
			m := &fsmv1.LeaseGrant{}
			typ, msg, valid = fsmv1.CommandType_COMMAND_TYPE_LEASE_GRANT, m, unmarshalThen(data, m, func() error { return nil })
		case 5:
			m := &fsmv1.LeaseRevoke{}
			typ, msg, valid = fsmv1.CommandType_COMMAND_TYPE_LEASE_REVOKE, m, unmarshalThen(data, m, func() error { return nil })
		default:
			m := &fsmv1.LeaseCheckpoint{}
			typ, msg, valid = fsmv1.CommandType_COMMAND_TYPE_LEASE_CHECKPOINT, m, unmarshalThen(data, m, func() error { return nil })
		}
		if valid != nil {
			return // refused before it reaches the log
		}
		cmd, err := EncodeCommand(typ, msg)
		if err != nil {
			t.Fatalf("encode a validated %T: %v", msg, err)
		}
		index++
		var res any
		// An apply that hangs is as bad as one that fails: crash the
		// worker so that the fuzzer reports the input.
		slow := time.AfterFunc(20*time.Second, func() {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			panic(fmt.Sprintf("applying %T %v took over 20s\n%s", msg, msg, buf[:n]))
		})
		defer slow.Stop()
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("POISON: applying a validated %T panicked: %v\nrequest: %v", msg, p, msg)
				}
			}()
			res = fs.ApplyBatch([]*raft.Log{{Index: index, Term: 1, Type: raft.LogCommand, Data: cmd}})[0]
		}()
		// A domain error is an answer; anything else is a bug.
		if err, ok := res.(error); ok && !isDomainError(err) {
			t.Fatalf("applying a validated %T answered %v", msg, err)
		}
	})
}

func unmarshalThen(data []byte, m proto.Message, validate func() error) error {
	if err := proto.Unmarshal(data, m); err != nil {
		return err
	}
	return validate()
}

// isDomainError reports whether err is one of the answers the state machine
// gives to a request (rather than a failure).
func isDomainError(err error) bool {
	for _, d := range []error{ErrEmptyKey, ErrInvalidRange, ErrDuplicateKey, ErrTooManyOps, ErrInvalidCompare,
		ErrEmptyRequest, ErrLeaseNotFound, ErrLeaseExists, ErrKeyNotFound, ErrValueProvided, ErrLeaseProvided,
		ErrFutureRevision, ErrCompacted, ErrInvalidCompaction, ErrInvalidLease, ErrNoSpace} {
		if errors.Is(err, d) {
			return true
		}
	}
	return false
}

// FuzzDecodeResult: a follower decodes what the leader answered a forwarded
// write; whatever the bytes, decoding must not panic, and what decodes must
// encode again.
func FuzzDecodeResult(f *testing.F) {
	for _, r := range []*fsmv1.Result{
		{Result: &fsmv1.Result_Put{Put: &kvv1.PutResponse{}}},
		{Result: &fsmv1.Result_LeaseGrant{LeaseGrant: &kvv1.LeaseGrantResponse{Id: 1, Ttl: 5}}},
		{Result: &fsmv1.Result_Txn{Txn: &kvv1.TxnResponse{Succeeded: true}}},
	} {
		b, err := proto.Marshal(r)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r := &fsmv1.Result{}
		if proto.Unmarshal(data, r) != nil {
			return
		}
		res := DecodeResult(r)
		if res == nil {
			return
		}
		if _, isErr := res.(error); isErr {
			return
		}
		if _, err := EncodeResult(res); err != nil {
			t.Fatalf("decoded %s to %T, which does not encode again: %v", fmt.Sprint(r), res, err)
		}
	})
}
