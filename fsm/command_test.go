package fsm

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

func TestEncodeDecodeResult(t *testing.T) {
	tests := []struct {
		name    string
		res     any
		wantErr bool
	}{
		{name: "nil", res: nil},
		{name: "put", res: putResp(2, kv("a", "1", 1, 1, 1))},
		{name: "delete", res: delResp(3, 1, kv("a", "1", 2, 2, 1))},
		{name: "txn", res: txnResp(4, true, rPut(nil), rGet(kv("a", "1", 2, 2, 1)))},
		{name: "domain error", res: ErrEmptyKey, wantErr: true},
		{name: "unknown type", res: "a string", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := EncodeResult(tt.res)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("EncodeResult(%v) = %v, want an error", tt.res, r)
				}
				if e, ok := tt.res.(error); ok && !errors.Is(err, e) {
					t.Fatalf("EncodeResult(%v) error %v, want the domain error itself", tt.res, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("EncodeResult: %v", err)
			}
			// The result crosses the wire between members.
			b, err := proto.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			back := &fsmv1.Result{}
			if err := proto.Unmarshal(b, back); err != nil {
				t.Fatal(err)
			}
			if got := DecodeResult(back); !sameResult(got, tt.res) {
				t.Fatalf("DecodeResult(EncodeResult(%s)) = %s", show(tt.res), show(got))
			}
		})
	}
}

func TestApplyOneEntry(t *testing.T) {
	f, l := newFSM(t), newTestLog(t)
	if res := f.Apply(l.command(put("a", "1"))); !sameResult(res, putResp(2, nil)) {
		t.Fatalf("Apply = %s", show(res))
	}
	if res := f.Apply(l.command(put("", "1"))); !sameResult(res, ErrEmptyKey) {
		t.Fatalf("Apply of an empty key = %s", show(res))
	}
	if f.AppliedIndex() != 2 {
		t.Fatalf("applied index %d, want 2", f.AppliedIndex())
	}
	e := l.command(del("a", ""))
	data := e.Data
	var decoded fsmv1.Command
	if err := proto.Unmarshal(data, &decoded); err != nil {
		t.Fatal(err)
	}
	if decoded.GetType() != fsmv1.CommandType_COMMAND_TYPE_DELETE_RANGE || decoded.GetIgnorable() {
		t.Fatalf("EncodeCommand wrote %v", &decoded)
	}
	var r kvv1.DeleteRangeRequest
	if err := proto.Unmarshal(decoded.GetPayload(), &r); err != nil || string(r.GetKey()) != "a" {
		t.Fatalf("payload decodes to %v, %v", &r, err)
	}
	if res := f.ApplyBatch([]*raft.Log{e})[0]; !sameResult(res, delResp(3, 1)) {
		t.Fatalf("delete = %s", show(res))
	}
}
