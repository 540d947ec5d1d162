package client

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

func TestCompact(t *testing.T) {
	f := newFake("a", 1)
	addr, _ := serve(t, f)
	c := newTestClient(t, addr)
	ctx := testContext(t, 10*time.Second)
	if _, err := c.Compact(ctx, 5); err != nil {
		t.Fatal(err)
	}
	if got := f.lastRequest("Compact").(*kvv1.CompactRequest); got.Revision != 5 || got.Physical {
		t.Errorf("member got %v", got)
	}
	resp, err := c.Compact(ctx, 6, WithCompactPhysical())
	if err != nil {
		t.Fatal(err)
	}
	if got := f.lastRequest("Compact").(*kvv1.CompactRequest); got.Revision != 6 || !got.Physical || resp.Header.MemberId != 1 {
		t.Errorf("member got %v, answered %v", got, resp)
	}
	for _, rev := range []int64{0, -1} {
		if _, err := c.Compact(ctx, rev); err == nil || !strings.Contains(err.Error(), "must be at least 1") {
			t.Errorf("Compact(%d): %v", rev, err)
		}
	}
	if n := f.count("Compact"); n != 2 {
		t.Errorf("%d compactions sent, want 2", n)
	}
}

func TestCompactRetriedOnlyWhenNotApplied(t *testing.T) {
	fa, fb := newFake("a", 1), newFake("b", 2)
	addrA, _ := serve(t, fa)
	addrB, _ := serve(t, fb)
	c := newTestClient(t, addrA, addrB)
	ctx := testContext(t, 10*time.Second)

	fa.hook = failWith(apierr.NotApplied(codes.Unavailable, "no leader"))
	if _, err := c.Compact(ctx, 3); err != nil {
		t.Fatalf("not applied on a: %v", err)
	}
	if fb.count("Compact") != 1 {
		t.Error("not retried on b")
	}
	fb.hook = failWith(status.Error(codes.Unknown, "leadership lost"))
	if _, err := c.Compact(ctx, 3); status.Code(err) != codes.Unknown {
		t.Errorf("ambiguous failure: %v", err)
	}
}

func TestDefragment(t *testing.T) {
	fa, fb := newFake("a", 1), newFake("b", 2)
	addrA, _ := serve(t, fa)
	addrB, _ := serve(t, fb)
	c := newTestClient(t, addrA, addrB)
	ctx := testContext(t, 10*time.Second)
	resp, err := c.Defragment(ctx, addrB)
	if err != nil {
		t.Fatal(err)
	}
	if resp.DbSizeBefore != 1<<20 || resp.DbSize != 64<<10 || resp.Header.MemberId != 2 {
		t.Errorf("response %v", resp)
	}
	if fa.count("Defragment") != 0 || fb.count("Defragment") != 1 {
		t.Errorf("defragmented a %d times, b %d times", fa.count("Defragment"), fb.count("Defragment"))
	}
	fb.hook = failWith(status.Error(codes.Unavailable, "down"))
	if _, err := c.Defragment(ctx, addrB); status.Code(err) != codes.Unavailable || fa.count("Defragment") != 0 {
		t.Errorf("a failed defragmentation: %v, sent to a %d times", err, fa.count("Defragment"))
	}
	if _, err := c.Defragment(ctx, "10.0.0.1:1"); err == nil || !strings.Contains(err.Error(), "is not one of the client's endpoints") {
		t.Errorf("unknown endpoint: %v", err)
	}
}
