package etcdapi_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/kvd-io/kvd/server"
	"github.com/kvd-io/kvd/server/servertest"
)

func keysOf(resp *clientv3.GetResponse) string {
	var ks []string
	for _, kv := range resp.Kvs {
		ks = append(ks, string(kv.Key))
	}
	return strings.Join(ks, ",")
}

// TestKV drives Range, Put and DeleteRange with every option through
// clientv3, on a follower (whose writes the leader applies).
func TestKV(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	f := follower(t, c)
	cli := newClient(t, c, f)
	ctx := ctxT(t)

	first, err := cli.Put(ctx, "kv/b", "2")
	if err != nil {
		t.Fatal(err)
	}
	h := first.Header
	if h.ClusterId == 0 || h.MemberId != c.Member(f).Server.ID() || h.Revision < 2 || h.RaftTerm == 0 {
		t.Fatalf("put header %+v: want the cluster id, member %x's id, the put's revision and a raft term", h, c.Member(f).Server.ID())
	}
	for _, kv := range [][2]string{{"kv/a", "3"}, {"kv/c", "1"}, {"kv/b", "22"}, {"kx", "0"}} {
		if _, err := cli.Put(ctx, kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}

	get := func(key string, opts ...clientv3.OpOption) *clientv3.GetResponse {
		t.Helper()
		resp, err := cli.Get(ctx, key, opts...)
		if err != nil {
			t.Fatalf("get %q: %v", key, err)
		}
		return resp
	}
	cases := []struct {
		name  string
		resp  *clientv3.GetResponse
		keys  string
		count int64
		more  bool
	}{
		{"one key", get("kv/a"), "kv/a", 1, false},
		{"prefix", get("kv/", clientv3.WithPrefix()), "kv/a,kv/b,kv/c", 3, false},
		{"from key", get("kv/b", clientv3.WithFromKey()), "kv/b,kv/c,kx", 3, false},
		{"range", get("kv/a", clientv3.WithRange("kv/c")), "kv/a,kv/b", 2, false},
		{"limit", get("kv/", clientv3.WithPrefix(), clientv3.WithLimit(2)), "kv/a,kv/b", 3, true},
		{"descending by key", get("kv/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend)), "kv/c,kv/b,kv/a", 3, false},
		{"by value", get("kv/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortAscend)), "kv/c,kv/b,kv/a", 3, false},
		{"by version descending", get("kv/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByVersion, clientv3.SortDescend), clientv3.WithLimit(1)), "kv/b", 3, true},
		{"by create revision", get("kv/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByCreateRevision, clientv3.SortAscend)), "kv/b,kv/a,kv/c", 3, false},
		{"by mod revision", get("kv/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend)), "kv/b,kv/c,kv/a", 3, false},
		{"keys only", get("kv/", clientv3.WithPrefix(), clientv3.WithKeysOnly()), "kv/a,kv/b,kv/c", 3, false},
		{"count only", get("kv/", clientv3.WithPrefix(), clientv3.WithCountOnly()), "", 3, false},
		{"serializable", get("kv/a", clientv3.WithSerializable()), "kv/a", 1, false},
		{"at the first put's revision", get("kv/", clientv3.WithPrefix(), clientv3.WithRev(h.Revision)), "kv/b", 1, false},
		{"min mod revision", get("kv/", clientv3.WithPrefix(), clientv3.WithMinModRev(h.Revision+2)), "kv/b,kv/c", 3, false},
		{"max mod revision", get("kv/", clientv3.WithPrefix(), clientv3.WithMaxModRev(h.Revision+1)), "kv/a", 3, false},
		{"min create revision", get("kv/", clientv3.WithPrefix(), clientv3.WithMinCreateRev(h.Revision+1)), "kv/a,kv/c", 3, false},
		{"max create revision", get("kv/", clientv3.WithPrefix(), clientv3.WithMaxCreateRev(h.Revision)), "kv/b", 3, false},
		{"absent", get("kv/zzz"), "", 0, false},
	}
	for _, tc := range cases {
		if got := keysOf(tc.resp); got != tc.keys || tc.resp.Count != tc.count || tc.resp.More != tc.more {
			t.Errorf("%s: keys %q count %d more %v; want %q %d %v", tc.name, got, tc.resp.Count, tc.resp.More, tc.keys, tc.count, tc.more)
		}
	}
	if kv := get("kv/", clientv3.WithPrefix(), clientv3.WithKeysOnly()).Kvs[0]; len(kv.Value) != 0 || kv.Version != 1 {
		t.Errorf("keys only: %+v, want no value and the version", kv)
	}
	b := get("kv/b").Kvs[0]
	if string(b.Value) != "22" || b.Version != 2 || b.CreateRevision != h.Revision || b.ModRevision != h.Revision+3 {
		t.Errorf("kv/b: %+v, want value 22, version 2, created at %d, modified at %d", b, h.Revision, h.Revision+3)
	}

	// Put's options.
	put, err := cli.Put(ctx, "kv/a", "4", clientv3.WithPrevKV())
	if err != nil || put.PrevKv == nil || string(put.PrevKv.Value) != "3" {
		t.Fatalf("put with prev kv: %+v, %v", put, err)
	}
	lease, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "kv/a", "", clientv3.WithIgnoreValue(), clientv3.WithLease(lease.ID)); err != nil {
		t.Fatalf("put ignoring the value: %v", err)
	}
	if _, err := cli.Put(ctx, "kv/a", "5", clientv3.WithIgnoreLease()); err != nil {
		t.Fatalf("put ignoring the lease: %v", err)
	}
	if a := get("kv/a").Kvs[0]; string(a.Value) != "5" || a.Lease != int64(lease.ID) {
		t.Errorf("kv/a after the ignoring puts: %+v, want value 5 and lease %x", a, lease.ID)
	}

	// DeleteRange.
	del, err := cli.Delete(ctx, "kv/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	if err != nil || del.Deleted != 3 || len(del.PrevKvs) != 3 || string(del.PrevKvs[0].Key) != "kv/a" {
		t.Fatalf("delete prefix: %+v, %v; want 3 deleted with their pairs", del, err)
	}
	if resp := get("kv/", clientv3.WithPrefix()); resp.Count != 0 {
		t.Fatalf("after delete: %d keys", resp.Count)
	}
	if del, err := cli.Delete(ctx, "kv/none"); err != nil || del.Deleted != 0 {
		t.Fatalf("delete absent: %+v, %v", del, err)
	}
	// Every key, as etcdctl get "" --prefix asks: key "\0", range end "\0".
	if resp := get("", clientv3.WithPrefix()); keysOf(resp) != "kx" {
		t.Errorf("every key: %q, want kx", keysOf(resp))
	}
}

// TestTxn: every compare target and operator, compares over a range,
// nested txns, both branches.
func TestTxn(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 1)
	cli := newClient(t, c)
	ctx := ctxT(t)
	lease, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	p1, err := cli.Put(ctx, "t/a", "1", clientv3.WithLease(lease.ID))
	if err != nil {
		t.Fatal(err)
	}
	p2, err := cli.Put(ctx, "t/b", "2")
	if err != nil {
		t.Fatal(err)
	}
	rev1, rev2 := p1.Header.Revision, p2.Header.Revision
	cases := []struct {
		name string
		cmp  clientv3.Cmp
		want bool
	}{
		{"version =", clientv3.Compare(clientv3.Version("t/a"), "=", 1), true},
		{"version >", clientv3.Compare(clientv3.Version("t/a"), ">", 1), false},
		{"version of absent key", clientv3.Compare(clientv3.Version("t/zz"), "=", 0), true},
		{"create <", clientv3.Compare(clientv3.CreateRevision("t/a"), "<", rev2), true},
		{"mod !=", clientv3.Compare(clientv3.ModRevision("t/b"), "!=", rev2), false},
		{"mod =", clientv3.Compare(clientv3.ModRevision("t/b"), "=", rev2), true},
		{"value =", clientv3.Compare(clientv3.Value("t/a"), "=", "1"), true},
		{"value >", clientv3.Compare(clientv3.Value("t/a"), ">", "0"), true},
		{"value <", clientv3.Compare(clientv3.Value("t/a"), "<", "0"), false},
		{"lease =", clientv3.Compare(clientv3.LeaseValue("t/a"), "=", lease.ID), true},
		{"lease of a key without", clientv3.Compare(clientv3.LeaseValue("t/b"), "=", 0), true},
		{"range: every version > 0", clientv3.Compare(clientv3.Version("t/").WithPrefix(), ">", 0), true},
		{"range: every mod < rev2", clientv3.Compare(clientv3.ModRevision("t/").WithPrefix(), "<", rev2), false},
		{"range end", clientv3.Compare(clientv3.CreateRevision("t/a").WithRange("t/b"), "=", rev1), true},
	}
	for _, tc := range cases {
		resp, err := cli.Txn(ctx).If(tc.cmp).Then(clientv3.OpGet("t/a")).Else(clientv3.OpGet("t/b")).Commit()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		want := "t/b"
		if tc.want {
			want = "t/a"
		}
		if resp.Succeeded != tc.want || len(resp.Responses) != 1 || string(resp.Responses[0].GetResponseRange().Kvs[0].Key) != want {
			t.Errorf("%s: succeeded %v, responses %v; want %v", tc.name, resp.Succeeded, resp.Responses, tc.want)
		}
	}

	// A write txn with a nested txn: the inner one's compare sees the
	// state before the outer txn.
	resp, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Value("t/a"), "=", "1")).Then(
		clientv3.OpPut("t/c", "3", clientv3.WithPrevKV()),
		clientv3.OpTxn([]clientv3.Cmp{clientv3.Compare(clientv3.Version("t/c"), "=", 0)},
			[]clientv3.Op{clientv3.OpDelete("t/b", clientv3.WithPrevKV())},
			[]clientv3.Op{clientv3.OpPut("t/d", "4")}),
	).Commit()
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Succeeded || len(resp.Responses) != 2 {
		t.Fatalf("outer txn: %+v", resp)
	}
	inner := resp.Responses[1].GetResponseTxn()
	if inner == nil || !inner.Succeeded || inner.Responses[0].GetResponseDeleteRange().Deleted != 1 {
		t.Fatalf("nested txn: %+v, want succeeded with t/b deleted", inner)
	}
	if resp.Header.Revision != rev2+1 {
		t.Errorf("txn revision %d, want %d: one revision per txn", resp.Header.Revision, rev2+1)
	}
	got, err := cli.Get(ctx, "t/", clientv3.WithPrefix())
	if err != nil || keysOf(got) != "t/a,t/c" {
		t.Fatalf("after txn: %q, %v", keysOf(got), err)
	}
}

// TestKVErrors: each of kvd's refusals reaches clientv3 as etcd's error
// (rpctypes), through a follower, whose writes the leader applies and
// refuses in kvd's words.
func TestKVErrors(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3, servertest.WithConfig(func(cfg *server.Config) { cfg.MaxRequestBytes = 64 << 10 }))
	cli := newClient(t, c, follower(t, c))
	ctx := ctxT(t)
	if _, err := cli.Put(ctx, "e/a", "1"); err != nil {
		t.Fatal(err)
	}
	ops := make([]clientv3.Op, 200)
	for i := range ops {
		ops[i] = clientv3.OpPut(fmt.Sprintf("e/%d", i), "")
	}
	_, futureErr := cli.Get(ctx, "e/a", clientv3.WithRev(1<<40))
	_, emptyErr := cli.Put(ctx, "", "x")
	_, dupErr := cli.Txn(ctx).Then(clientv3.OpPut("e/x", "1"), clientv3.OpPut("e/x", "2")).Commit()
	_, manyErr := cli.Txn(ctx).Then(ops...).Commit()
	_, leaseErr := cli.Put(ctx, "e/l", "1", clientv3.WithLease(0x1234))
	_, keyErr := cli.Put(ctx, "e/absent", "", clientv3.WithIgnoreValue())
	_, valueErr := cli.Put(ctx, "e/a", "v", clientv3.WithIgnoreValue())
	_, bigErr := cli.Put(ctx, "e/big", strings.Repeat("x", 100<<10))
	_, revokeErr := cli.Revoke(ctx, 0x4321)
	cases := []struct {
		name      string
		err, want error
	}{
		{"future revision", futureErr, rpctypes.ErrFutureRev},
		{"empty key", emptyErr, rpctypes.ErrEmptyKey},
		{"duplicate key in txn", dupErr, rpctypes.ErrDuplicateKey},
		{"too many ops", manyErr, rpctypes.ErrTooManyOps},
		{"put with a lease not found", leaseErr, rpctypes.ErrLeaseNotFound},
		{"ignore value of an absent key", keyErr, rpctypes.ErrKeyNotFound},
		{"ignore value with a value", valueErr, rpctypes.ErrValueProvided},
		{"request too large", bigErr, rpctypes.ErrRequestTooLarge},
		{"revoke a lease not found", revokeErr, rpctypes.ErrLeaseNotFound},
	}
	for _, tc := range cases {
		if !errors.Is(tc.err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, tc.err, tc.want)
		}
	}
}

// TestCompaction: a read at a compacted revision is etcd's ErrCompacted;
// at the compaction revision itself it still works.
func TestCompaction(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 1)
	cli := newClient(t, c)
	ctx := ctxT(t)
	var revs []int64
	for i := range 3 {
		resp, err := cli.Put(ctx, "c/a", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		revs = append(revs, resp.Header.Revision)
	}
	if _, err := cli.Compact(ctx, revs[1], clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Get(ctx, "c/a", clientv3.WithRev(revs[0])); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("get below the compaction: %v, want %v", err, rpctypes.ErrCompacted)
	}
	if resp, err := cli.Get(ctx, "c/a", clientv3.WithRev(revs[1])); err != nil || string(resp.Kvs[0].Value) != "1" {
		t.Fatalf("get at the compaction revision: %+v, %v", resp, err)
	}
	if _, err := cli.Compact(ctx, revs[0]); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Fatalf("compact again below: %v, want %v", err, rpctypes.ErrCompacted)
	}
	if _, err := cli.Compact(ctx, 1<<40); !errors.Is(err, rpctypes.ErrFutureRev) {
		t.Fatalf("compact in the future: %v, want %v", err, rpctypes.ErrFutureRev)
	}
}
