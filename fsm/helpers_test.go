package fsm

import (
	"errors"
	"log/slog"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/proto"

	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// openFSM opens an FSM in dir and closes it when the test ends.
func openFSM(tb testing.TB, dir string) *FSM {
	tb.Helper()
	f, err := New(Config{Dir: dir, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		tb.Fatalf("New(%s): %v", dir, err)
	}
	tb.Cleanup(func() { _ = f.Close() })
	return f
}

// newFSM opens an FSM in a fresh temporary directory.
func newFSM(tb testing.TB) *FSM {
	tb.Helper()
	return openFSM(tb, tb.TempDir())
}

// commandType returns the command type that carries msg.
func commandType(tb testing.TB, msg proto.Message) fsmv1.CommandType {
	tb.Helper()
	switch msg.(type) {
	case *kvv1.PutRequest:
		return fsmv1.CommandType_COMMAND_TYPE_PUT
	case *kvv1.DeleteRangeRequest:
		return fsmv1.CommandType_COMMAND_TYPE_DELETE_RANGE
	case *kvv1.TxnRequest:
		return fsmv1.CommandType_COMMAND_TYPE_TXN
	case *fsmv1.LeaderStart:
		return fsmv1.CommandType_COMMAND_TYPE_LEADER_START
	case *fsmv1.MemberAttributes:
		return fsmv1.CommandType_COMMAND_TYPE_PUBLISH_MEMBER
	case *kvv1.CompactRequest:
		return fsmv1.CommandType_COMMAND_TYPE_COMPACT
	case *fsmv1.LeaseGrant:
		return fsmv1.CommandType_COMMAND_TYPE_LEASE_GRANT
	case *fsmv1.LeaseRevoke:
		return fsmv1.CommandType_COMMAND_TYPE_LEASE_REVOKE
	case *fsmv1.LeaseCheckpoint:
		return fsmv1.CommandType_COMMAND_TYPE_LEASE_CHECKPOINT
	case *fsmv1.AuthCommand:
		return fsmv1.CommandType_COMMAND_TYPE_AUTH
	}
	tb.Fatalf("no command type carries %T", msg)
	return 0
}

// testLog builds raft log entries with consecutive indexes, as a leader does.
type testLog struct {
	tb      testing.TB
	term    uint64
	entries []*raft.Log
}

func newTestLog(tb testing.TB) *testLog { return &testLog{tb: tb, term: 1} }

func (l *testLog) nextIndex() uint64 { return uint64(len(l.entries)) + 1 }

// command appends a command entry carrying msg and returns it.
func (l *testLog) command(msg proto.Message) *raft.Log {
	l.tb.Helper()
	data, err := EncodeCommand(commandType(l.tb, msg), msg)
	if err != nil {
		l.tb.Fatalf("EncodeCommand(%T): %v", msg, err)
	}
	return l.raw(raft.LogCommand, data)
}

// raw appends an entry of any type with the given data.
func (l *testLog) raw(typ raft.LogType, data []byte) *raft.Log {
	e := &raft.Log{Index: l.nextIndex(), Term: l.term, Type: typ, Data: data}
	l.entries = append(l.entries, e)
	return e
}

// applyOne appends msg to the log and applies it alone.
func (l *testLog) applyOne(f *FSM, msg proto.Message) any {
	l.tb.Helper()
	return f.ApplyBatch([]*raft.Log{l.command(msg)})[0]
}

// mustRange reads r from f and fails the test on an error.
func mustRange(tb testing.TB, f *FSM, r *kvv1.RangeRequest) *kvv1.RangeResponse {
	tb.Helper()
	resp, err := f.Range(r)
	if err != nil {
		tb.Fatalf("Range(%s): %v", show(r), err)
	}
	return resp
}

// rangeAll selects every key.
func rangeAll(rev int64) *kvv1.RangeRequest {
	return &kvv1.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev}
}

func mustHash(tb testing.TB, f *FSM) uint32 {
	tb.Helper()
	h, err := f.Hash()
	if err != nil {
		tb.Fatalf("Hash: %v", err)
	}
	return h
}

func mustStats(tb testing.TB, f *FSM) Stats {
	tb.Helper()
	s, err := f.Stats()
	if err != nil {
		tb.Fatalf("Stats: %v", err)
	}
	return s
}

// show formats a result of ApplyBatch or Range for a failure message.
func show(v any) string {
	switch r := v.(type) {
	case nil:
		return "<nil>"
	case error:
		return "error: " + r.Error()
	case proto.Message:
		return "{" + prototext.MarshalOptions{}.Format(r) + "}"
	}
	return "?"
}

// sameResult reports whether got (from the FSM) matches want: equal protos,
// or errors that match the same sentinel.
func sameResult(got, want any) bool {
	if wantErr, ok := want.(error); ok {
		gotErr, ok := got.(error)
		return ok && errors.Is(gotErr, wantErr)
	}
	if want == nil || got == nil {
		return want == nil && got == nil
	}
	gm, ok1 := got.(proto.Message)
	wm, ok2 := want.(proto.Message)
	return ok1 && ok2 && proto.Equal(gm, wm)
}

// Builders for requests, to keep the tables readable.

func put(k, v string) *kvv1.PutRequest {
	return &kvv1.PutRequest{Key: []byte(k), Value: []byte(v)}
}

func putPrev(k, v string) *kvv1.PutRequest {
	return &kvv1.PutRequest{Key: []byte(k), Value: []byte(v), PrevKv: true}
}

func del(k, end string) *kvv1.DeleteRangeRequest {
	return &kvv1.DeleteRangeRequest{Key: []byte(k), RangeEnd: []byte(end)}
}

func delPrev(k, end string) *kvv1.DeleteRangeRequest {
	return &kvv1.DeleteRangeRequest{Key: []byte(k), RangeEnd: []byte(end), PrevKv: true}
}

func get(k, end string) *kvv1.RangeRequest {
	return &kvv1.RangeRequest{Key: []byte(k), RangeEnd: []byte(end)}
}

func getAt(k, end string, rev int64) *kvv1.RangeRequest {
	return &kvv1.RangeRequest{Key: []byte(k), RangeEnd: []byte(end), Revision: rev}
}

func opPut(r *kvv1.PutRequest) *kvv1.RequestOp {
	return &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestPut{RequestPut: r}}
}

func opDel(r *kvv1.DeleteRangeRequest) *kvv1.RequestOp {
	return &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestDeleteRange{RequestDeleteRange: r}}
}

func opGet(r *kvv1.RangeRequest) *kvv1.RequestOp {
	return &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestRange{RequestRange: r}}
}

func opTxn(r *kvv1.TxnRequest) *kvv1.RequestOp {
	return &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestTxn{RequestTxn: r}}
}

func txn(cmps []*kvv1.Compare, success, failure []*kvv1.RequestOp) *kvv1.TxnRequest {
	return &kvv1.TxnRequest{Compare: cmps, Success: success, Failure: failure}
}

func ops(o ...*kvv1.RequestOp) []*kvv1.RequestOp { return o }

func cmps(c ...*kvv1.Compare) []*kvv1.Compare { return c }

// Compare builders: cmpValue("k", EQUAL, "v") reads "value of k = v".

func cmpValue(k string, res kvv1.Compare_CompareResult, v string) *kvv1.Compare {
	return &kvv1.Compare{Key: []byte(k), Result: res, Target: kvv1.Compare_COMPARE_TARGET_VALUE,
		TargetUnion: &kvv1.Compare_Value{Value: []byte(v)}}
}

func cmpVersion(k string, res kvv1.Compare_CompareResult, v int64) *kvv1.Compare {
	return &kvv1.Compare{Key: []byte(k), Result: res, Target: kvv1.Compare_COMPARE_TARGET_VERSION,
		TargetUnion: &kvv1.Compare_Version{Version: v}}
}

func cmpCreate(k string, res kvv1.Compare_CompareResult, v int64) *kvv1.Compare {
	return &kvv1.Compare{Key: []byte(k), Result: res, Target: kvv1.Compare_COMPARE_TARGET_CREATE,
		TargetUnion: &kvv1.Compare_CreateRevision{CreateRevision: v}}
}

func cmpMod(k string, res kvv1.Compare_CompareResult, v int64) *kvv1.Compare {
	return &kvv1.Compare{Key: []byte(k), Result: res, Target: kvv1.Compare_COMPARE_TARGET_MOD,
		TargetUnion: &kvv1.Compare_ModRevision{ModRevision: v}}
}

func cmpLease(k string, res kvv1.Compare_CompareResult, v int64) *kvv1.Compare {
	return &kvv1.Compare{Key: []byte(k), Result: res, Target: kvv1.Compare_COMPARE_TARGET_LEASE,
		TargetUnion: &kvv1.Compare_Lease{Lease: v}}
}

// withEnd applies a compare to the range [key, end).
func withEnd(c *kvv1.Compare, end string) *kvv1.Compare {
	c.RangeEnd = []byte(end)
	return c
}

const (
	eq   = kvv1.Compare_COMPARE_RESULT_EQUAL
	ne   = kvv1.Compare_COMPARE_RESULT_NOT_EQUAL
	gt   = kvv1.Compare_COMPARE_RESULT_GREATER
	lt   = kvv1.Compare_COMPARE_RESULT_LESS
	none = kvv1.Compare_COMPARE_RESULT_UNSPECIFIED
)

// Builders for expected responses.

func kv(k, v string, create, mod, version int64) *kvv1.KeyValue {
	return &kvv1.KeyValue{Key: []byte(k), Value: []byte(v), CreateRevision: create, ModRevision: mod, Version: version}
}

func hdr(rev int64) *kvv1.ResponseHeader { return &kvv1.ResponseHeader{Revision: rev} }

func putResp(rev int64, prev *kvv1.KeyValue) *kvv1.PutResponse {
	return &kvv1.PutResponse{Header: hdr(rev), PrevKv: prev}
}

func delResp(rev, deleted int64, prev ...*kvv1.KeyValue) *kvv1.DeleteRangeResponse {
	return &kvv1.DeleteRangeResponse{Header: hdr(rev), Deleted: deleted, PrevKvs: prev}
}

func rangeResp(rev int64, kvs ...*kvv1.KeyValue) *kvv1.RangeResponse {
	return &kvv1.RangeResponse{Header: hdr(rev), Kvs: kvs, Count: int64(len(kvs))}
}

func txnResp(rev int64, succeeded bool, rs ...*kvv1.ResponseOp) *kvv1.TxnResponse {
	return &kvv1.TxnResponse{Header: hdr(rev), Succeeded: succeeded, Responses: rs}
}

// Responses inside a txn carry no header.

func rPut(prev *kvv1.KeyValue) *kvv1.ResponseOp {
	return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponsePut{ResponsePut: &kvv1.PutResponse{PrevKv: prev}}}
}

func rDel(deleted int64, prev ...*kvv1.KeyValue) *kvv1.ResponseOp {
	return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseDeleteRange{
		ResponseDeleteRange: &kvv1.DeleteRangeResponse{Deleted: deleted, PrevKvs: prev}}}
}

func rGet(kvs ...*kvv1.KeyValue) *kvv1.ResponseOp {
	return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseRange{
		ResponseRange: &kvv1.RangeResponse{Kvs: kvs, Count: int64(len(kvs))}}}
}

func rTxn(succeeded bool, rs ...*kvv1.ResponseOp) *kvv1.ResponseOp {
	return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseTxn{
		ResponseTxn: &kvv1.TxnResponse{Succeeded: succeeded, Responses: rs}}}
}
