package client

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

func TestOpGetRangeRequest(t *testing.T) {
	tests := []struct {
		name string
		op   Op
		want *kvv1.RangeRequest
	}{
		{"single key", OpGet("foo"), &kvv1.RangeRequest{Key: []byte("foo")}},
		{"prefix", OpGet("foo", WithPrefix()), &kvv1.RangeRequest{Key: []byte("foo"), RangeEnd: []byte("fop")}},
		{"prefix ending in 0xff", OpGet("a\xff", WithPrefix()), &kvv1.RangeRequest{Key: []byte("a\xff"), RangeEnd: []byte("b")}},
		{"empty prefix is every key", OpGet("", WithPrefix()), &kvv1.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}},
		{"from key", OpGet("k", WithFromKey()), &kvv1.RangeRequest{Key: []byte("k"), RangeEnd: []byte{0}}},
		{"from empty key is every key", OpGet("", WithFromKey()), &kvv1.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}},
		{"explicit range", OpGet("a", WithRange("c")), &kvv1.RangeRequest{Key: []byte("a"), RangeEnd: []byte("c")}},
		{"rev and limit", OpGet("a", WithRev(5), WithLimit(10)), &kvv1.RangeRequest{Key: []byte("a"), Revision: 5, Limit: 10}},
		{"keys only serializable", OpGet("a", WithKeysOnly(), WithSerializable()), &kvv1.RangeRequest{Key: []byte("a"), KeysOnly: true, Serializable: true}},
		{"count only", OpGet("a", WithPrefix(), WithCountOnly()), &kvv1.RangeRequest{Key: []byte("a"), RangeEnd: []byte("b"), CountOnly: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op.check(); err != nil {
				t.Fatalf("op error: %v", err)
			}
			if got := tt.op.rangeRequest(); !proto.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestOpWriteRequests(t *testing.T) {
	tests := []struct {
		name string
		op   Op
		want proto.Message
	}{
		{"put", OpPut("k", "v"), &kvv1.PutRequest{Key: []byte("k"), Value: []byte("v")}},
		{"put prev kv lease", OpPut("k", "v", WithPrevKV(), WithLease(9)), &kvv1.PutRequest{Key: []byte("k"), Value: []byte("v"), PrevKv: true, Lease: 9}},
		{"delete", OpDelete("k"), &kvv1.DeleteRangeRequest{Key: []byte("k")}},
		{"delete prefix prev kv", OpDelete("k", WithPrefix(), WithPrevKV()), &kvv1.DeleteRangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), PrevKv: true}},
		{"delete from key", OpDelete("k", WithFromKey()), &kvv1.DeleteRangeRequest{Key: []byte("k"), RangeEnd: []byte{0}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ro, err := tt.op.requestOp()
			if err != nil {
				t.Fatal(err)
			}
			var got proto.Message
			switch r := ro.GetRequest().(type) {
			case *kvv1.RequestOp_RequestPut:
				got = r.RequestPut
			case *kvv1.RequestOp_RequestDeleteRange:
				got = r.RequestDeleteRange
			}
			if !proto.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
			if !tt.op.isWrite() {
				t.Error("isWrite() = false")
			}
		})
	}
}

func TestOpOptionErrors(t *testing.T) {
	tests := []struct {
		name    string
		op      Op
		wantErr string
	}{
		{"put with prefix", OpPut("k", "v", WithPrefix()), "WithPrefix is not valid for put"},
		{"put with rev", OpPut("k", "v", WithRev(3)), "WithRev is not valid for put"},
		{"get with prev kv", OpGet("k", WithPrevKV()), "WithPrevKV is not valid for get"},
		{"get with lease", OpGet("k", WithLease(1)), "WithLease is not valid for get"},
		{"delete with limit", OpDelete("k", WithLimit(1)), "WithLimit is not valid for delete"},
		{"prefix and range", OpGet("k", WithPrefix(), WithRange("z")), "WithRange and WithPrefix cannot be combined"},
		{"prefix and from key", OpDelete("k", WithPrefix(), WithFromKey()), "WithPrefix and WithFromKey cannot be combined"},
		{"keys only and count only", OpGet("k", WithKeysOnly(), WithCountOnly()), "cannot be combined"},
		{"negative limit", OpGet("k", WithLimit(-1)), "limit is negative"},
		{"negative rev", OpGet("k", WithRev(-2)), "revision is negative"},
		{"empty key put", OpPut("", "v"), "key is empty"},
		{"empty key get", OpGet(""), "key is empty"},
		{"empty key range", OpDelete("", WithRange("b")), "key is empty"},
		{"zero op", Op{}, "empty op"},
		{"txn with bad op", OpTxn(nil, []Op{OpPut("k", "v", WithPrefix())}, nil), "not valid for put"},
		{"txn with zero op", OpTxn(nil, nil, []Op{{}}), "empty op"},
		{"txn with bad compare", OpTxn([]Cmp{Compare(Value("k"), "~", "v")}, nil, nil), "invalid operator"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.op.check()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("check() = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestOpIsWrite(t *testing.T) {
	tests := []struct {
		name string
		op   Op
		want bool
	}{
		{"get", OpGet("k"), false},
		{"put", OpPut("k", "v"), true},
		{"delete", OpDelete("k"), true},
		{"read-only txn", OpTxn(nil, []Op{OpGet("a")}, []Op{OpGet("b")}), false},
		{"txn with put in else", OpTxn(nil, []Op{OpGet("a")}, []Op{OpPut("b", "v")}), true},
		{"nested write", OpTxn(nil, []Op{OpTxn(nil, []Op{OpDelete("a")}, nil)}, nil), true},
		{"empty txn", OpTxn(nil, nil, nil), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.op.isWrite(); got != tt.want {
				t.Errorf("isWrite() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPrefixEnd(t *testing.T) {
	tests := []struct {
		name, prefix, want string
	}{
		{"simple", "foo", "fop"},
		{"trailing 0xff", "a\xff", "b"},
		{"several 0xff", "a\xff\xff", "b"},
		{"all 0xff", "\xff\xff", "\x00"},
		{"empty", "", "\x00"},
		{"zero byte", "a\x00", "a\x01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PrefixEnd(tt.prefix); got != tt.want {
				t.Errorf("PrefixEnd(%q) = %q, want %q", tt.prefix, got, tt.want)
			}
		})
	}
}
