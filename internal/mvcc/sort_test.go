package mvcc

import (
	"fmt"
	"strings"
	"testing"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Sorting and revision filters, as etcd applies them: filters drop keys
// from what is returned but not from count; the limit applies after both.
func TestRangeSortAndFilter(t *testing.T) {
	db := openDB(t)
	// Revisions: a=2, b=3, c=4, then a again at 5 (version 2), d=6.
	for _, kv := range [][2]string{{"a", "z"}, {"b", "y"}, {"c", "x"}, {"a", "w"}, {"d", "v"}} {
		apply(t, db, false, func(txn *TxnWrite) error {
			_, err := txn.Put(putReq(kv[0], kv[1]))
			return err
		})
	}
	const (
		asc  = kvv1.RangeRequest_SORT_ORDER_ASCEND
		desc = kvv1.RangeRequest_SORT_ORDER_DESCEND
	)
	tests := []struct {
		name string
		req  *kvv1.RangeRequest
		want string // keys returned, then count and more
	}{
		{"key order", &kvv1.RangeRequest{}, "a b c d|4 false"},
		{"key descending", &kvv1.RangeRequest{SortOrder: desc}, "d c b a|4 false"},
		{"key descending limited", &kvv1.RangeRequest{SortOrder: desc, Limit: 2}, "d c|4 true"},
		{"create ascending by default", &kvv1.RangeRequest{SortTarget: kvv1.RangeRequest_SORT_TARGET_CREATE}, "a b c d|4 false"},
		{"mod ascending", &kvv1.RangeRequest{SortTarget: kvv1.RangeRequest_SORT_TARGET_MOD}, "b c a d|4 false"},
		{"mod descending limited", &kvv1.RangeRequest{SortTarget: kvv1.RangeRequest_SORT_TARGET_MOD, SortOrder: desc, Limit: 1}, "d|4 true"},
		{"value ascending", &kvv1.RangeRequest{SortTarget: kvv1.RangeRequest_SORT_TARGET_VALUE, SortOrder: asc}, "d a c b|4 false"},
		{"version descending, ties in key order", &kvv1.RangeRequest{SortTarget: kvv1.RangeRequest_SORT_TARGET_VERSION, SortOrder: desc}, "a b c d|4 false"},
		{"max create", &kvv1.RangeRequest{MaxCreateRevision: 3}, "a b|4 false"},
		{"last created below", &kvv1.RangeRequest{MaxCreateRevision: 4, SortTarget: kvv1.RangeRequest_SORT_TARGET_CREATE, SortOrder: desc, Limit: 1}, "c|4 true"},
		{"min mod", &kvv1.RangeRequest{MinModRevision: 5}, "a d|4 false"},
		{"mod window", &kvv1.RangeRequest{MinModRevision: 3, MaxModRevision: 4}, "b c|4 false"},
		{"filtered then limited", &kvv1.RangeRequest{MinCreateRevision: 3, Limit: 1}, "b|4 true"},
		{"keys only sorted by value", &kvv1.RangeRequest{SortTarget: kvv1.RangeRequest_SORT_TARGET_VALUE, KeysOnly: true}, "d a c b|4 false"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Key, tt.req.RangeEnd = []byte("a"), []byte("z")
			read(t, db, func(r ReadView) {
				resp, err := r.Range(tt.req)
				if err != nil {
					t.Fatal(err)
				}
				var keys []string
				for _, kv := range resp.GetKvs() {
					keys = append(keys, string(kv.GetKey()))
					if tt.req.GetKeysOnly() && kv.GetValue() != nil {
						t.Errorf("keys only returned the value of %s", kv.GetKey())
					}
				}
				got := fmt.Sprintf("%s|%d %v", strings.Join(keys, " "), resp.GetCount(), resp.GetMore())
				if got != tt.want {
					t.Errorf("got %s, want %s", got, tt.want)
				}
			})
		})
	}
}
