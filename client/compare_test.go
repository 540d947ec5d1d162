package client

import (
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

func TestCompare(t *testing.T) {
	const (
		eq  = kvv1.Compare_COMPARE_RESULT_EQUAL
		ne  = kvv1.Compare_COMPARE_RESULT_NOT_EQUAL
		lt  = kvv1.Compare_COMPARE_RESULT_LESS
		gt  = kvv1.Compare_COMPARE_RESULT_GREATER
		val = kvv1.Compare_COMPARE_TARGET_VALUE
	)
	tests := []struct {
		name string
		cmp  Cmp
		want *kvv1.Compare
	}{
		{"value equal", Compare(Value("k"), "=", "v"),
			&kvv1.Compare{Result: eq, Target: val, Key: []byte("k"), TargetUnion: &kvv1.Compare_Value{Value: []byte("v")}}},
		{"value double equal bytes", Compare(Value("k"), "==", []byte("v")),
			&kvv1.Compare{Result: eq, Target: val, Key: []byte("k"), TargetUnion: &kvv1.Compare_Value{Value: []byte("v")}}},
		{"value not equal", Compare(Value("k"), "!=", ""),
			&kvv1.Compare{Result: ne, Target: val, Key: []byte("k"), TargetUnion: &kvv1.Compare_Value{Value: []byte{}}}},
		{"version greater", Compare(Version("k"), ">", 0),
			&kvv1.Compare{Result: gt, Target: kvv1.Compare_COMPARE_TARGET_VERSION, Key: []byte("k"), TargetUnion: &kvv1.Compare_Version{Version: 0}}},
		{"create less", Compare(CreateRevision("k"), "<", int64(5)),
			&kvv1.Compare{Result: lt, Target: kvv1.Compare_COMPARE_TARGET_CREATE, Key: []byte("k"), TargetUnion: &kvv1.Compare_CreateRevision{CreateRevision: 5}}},
		{"mod equal uint32", Compare(ModRevision("k"), "=", uint32(9)),
			&kvv1.Compare{Result: eq, Target: kvv1.Compare_COMPARE_TARGET_MOD, Key: []byte("k"), TargetUnion: &kvv1.Compare_ModRevision{ModRevision: 9}}},
		{"lease", Compare(LeaseValue("k"), "=", 0),
			&kvv1.Compare{Result: eq, Target: kvv1.Compare_COMPARE_TARGET_LEASE, Key: []byte("k"), TargetUnion: &kvv1.Compare_Lease{Lease: 0}}},
		{"prefix", Compare(Version("a"), ">", 0).WithPrefix(),
			&kvv1.Compare{Result: gt, Target: kvv1.Compare_COMPARE_TARGET_VERSION, Key: []byte("a"), RangeEnd: []byte("b"), TargetUnion: &kvv1.Compare_Version{}}},
		{"range", Compare(Value("a"), "=", "x").WithRange("c"),
			&kvv1.Compare{Result: eq, Target: val, Key: []byte("a"), RangeEnd: []byte("c"), TargetUnion: &kvv1.Compare_Value{Value: []byte("x")}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.cmp.proto()
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestCompareErrors(t *testing.T) {
	tests := []struct {
		name    string
		cmp     Cmp
		wantErr string
	}{
		{"unknown operator", Compare(Value("k"), "<=", "v"), `invalid operator "<="`},
		{"empty operator", Compare(Version("k"), "", 1), `invalid operator ""`},
		{"value with int", Compare(Value("k"), "=", 1), "want a string or []byte, got int"},
		{"version with string", Compare(Version("k"), "=", "1"), "want an integer, got string"},
		{"uint64 overflow", Compare(ModRevision("k"), "=", uint64(1)<<63), "overflows int64"},
		{"no operator", Value("k"), "has no operator"},
		{"zero cmp", Compare(Cmp{}, "=", 1), "has no target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cmp.Err()
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Err() = %v, want an error containing %q", err, tt.wantErr)
			}
			if _, err := tt.cmp.proto(); err == nil {
				t.Fatal("proto() succeeded")
			}
		})
	}
}
