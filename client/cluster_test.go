package client

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/apierr"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// membershipCalls are the membership changes, each with the RPC it sends.
var membershipCalls = []struct {
	name string
	rpc  string
	call func(context.Context, *Client) error
}{
	{"member add", "MemberAdd", func(ctx context.Context, c *Client) error {
		_, err := c.MemberAdd(ctx, "n4", "10.0.0.4:7380")
		return err
	}},
	{"member promote", "MemberPromote", func(ctx context.Context, c *Client) error {
		_, err := c.MemberPromote(ctx, "n4")
		return err
	}},
	{"member remove", "MemberRemove", func(ctx context.Context, c *Client) error {
		_, err := c.MemberRemove(ctx, "n4")
		return err
	}},
	{"leader transfer", "LeaderTransfer", func(ctx context.Context, c *Client) error {
		_, err := c.LeaderTransfer(ctx, "n2")
		return err
	}},
}

func TestMembershipRequestsAndResponses(t *testing.T) {
	f := newFake("a", 1)
	addr, _ := serve(t, f)
	c := newTestClient(t, addr)
	ctx := testContext(t, 10*time.Second)

	add, err := c.MemberAdd(ctx, "n4", "10.0.0.4:7380", WithLearner(), WithClientAddr("10.0.0.4:7379"))
	if err != nil {
		t.Fatal(err)
	}
	wantAdd := &kvv1.MemberAddRequest{Name: "n4", RaftAddr: "10.0.0.4:7380", ClientAddr: "10.0.0.4:7379", IsLearner: true}
	if got := f.lastRequest("MemberAdd").(*kvv1.MemberAddRequest); !proto.Equal(got, wantAdd) {
		t.Errorf("server got %v, want %v", got, wantAdd)
	}
	if add.Member.GetName() != "n4" || !add.Member.GetIsLearner() || len(add.Members) != 2 || add.Header.GetClusterId() != 1 {
		t.Errorf("MemberAdd response = %v", add.MemberAddResponse)
	}

	if _, err := c.MemberAdd(ctx, "n5", "10.0.0.5:7380"); err != nil {
		t.Fatal(err)
	}
	wantVoter := &kvv1.MemberAddRequest{Name: "n5", RaftAddr: "10.0.0.5:7380"}
	if got := f.lastRequest("MemberAdd").(*kvv1.MemberAddRequest); !proto.Equal(got, wantVoter) {
		t.Errorf("server got %v, want %v", got, wantVoter)
	}

	promote, err := c.MemberPromote(ctx, "n4")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.lastRequest("MemberPromote").(*kvv1.MemberPromoteRequest); got.GetName() != "n4" {
		t.Errorf("promote request = %v", got)
	}
	if len(promote.Members) != 2 {
		t.Errorf("MemberPromote response = %v", promote.MemberPromoteResponse)
	}

	remove, err := c.MemberRemove(ctx, "new")
	if err != nil {
		t.Fatal(err)
	}
	if got := f.lastRequest("MemberRemove").(*kvv1.MemberRemoveRequest); got.GetName() != "new" {
		t.Errorf("remove request = %v", got)
	}
	if len(remove.Members) != 1 {
		t.Errorf("MemberRemove response = %v", remove.MemberRemoveResponse)
	}

	for _, to := range []string{"n2", ""} {
		tr, err := c.LeaderTransfer(ctx, to)
		if err != nil {
			t.Fatal(err)
		}
		if got := f.lastRequest("LeaderTransfer").(*kvv1.LeaderTransferRequest); got.GetTo() != to {
			t.Errorf("transfer request = %v, want to %q", got, to)
		}
		if want := map[string]string{"n2": "n2", "": "picked"}[to]; tr.Leader != want {
			t.Errorf("LeaderTransfer(%q) leader = %q, want %q", to, tr.Leader, want)
		}
	}
}

func TestMembershipRetriedWhenNotApplied(t *testing.T) {
	for _, mc := range membershipCalls {
		t.Run(mc.name, func(t *testing.T) {
			a, b := newFake("a", 1), newFake("b", 2)
			a.hook = failWith(apierr.NotApplied(codes.Unavailable, "no leader"))
			addrA, _ := serve(t, a)
			addrB, _ := serve(t, b)
			c := newTestClient(t, addrA, addrB)
			if err := mc.call(testContext(t, 10*time.Second), c); err != nil {
				t.Fatal(err)
			}
			if a.count(mc.rpc) != 1 || b.count(mc.rpc) != 1 {
				t.Errorf("calls: a %d, b %d; want 1 and 1", a.count(mc.rpc), b.count(mc.rpc))
			}
		})
	}
}

func TestMembershipRetriedWhenNothingWasSent(t *testing.T) {
	for _, mc := range membershipCalls {
		t.Run(mc.name, func(t *testing.T) {
			b := newFake("b", 2)
			addrB, _ := serve(t, b)
			c := newTestClient(t, deadAddr(t), addrB)
			if err := mc.call(testContext(t, 10*time.Second), c); err != nil {
				t.Fatal(err)
			}
			if b.count(mc.rpc) != 1 {
				t.Errorf("live endpoint got %d calls, want 1", b.count(mc.rpc))
			}
		})
	}
}

func TestMembershipNotRetried(t *testing.T) {
	errs := []struct {
		name string
		err  error
	}{
		{"failed precondition", status.Error(codes.FailedPrecondition, "unsafe reconfiguration")},
		{"failed precondition marked not applied", apierr.NotApplied(codes.FailedPrecondition, "learner lags")},
		{"already exists", status.Error(codes.AlreadyExists, "member already exists")},
		{"not found", status.Error(codes.NotFound, "member not found")},
		{"invalid argument", status.Error(codes.InvalidArgument, "name is required")},
		{"unavailable without mark", status.Error(codes.Unavailable, "transport is closing")},
		{"unknown", status.Error(codes.Unknown, "outcome unknown")},
	}
	for _, mc := range membershipCalls {
		for _, tt := range errs {
			t.Run(mc.name+"/"+tt.name, func(t *testing.T) {
				a, b := newFake("a", 1), newFake("b", 2)
				a.hook = failWith(tt.err)
				addrA, _ := serve(t, a)
				addrB, _ := serve(t, b)
				c := newTestClient(t, addrA, addrB)
				err := mc.call(testContext(t, 10*time.Second), c)
				if got, want := status.Code(err), status.Code(tt.err); got != want {
					t.Errorf("error %v: code %v, want %v", err, got, want)
				}
				if a.count(mc.rpc) != 1 || b.count(mc.rpc) != 0 {
					t.Errorf("calls: a %d, b %d; want 1 and 0", a.count(mc.rpc), b.count(mc.rpc))
				}
			})
		}
	}
}

func TestHashKVAsksOneEndpoint(t *testing.T) {
	a, b := newFake("a", 1), newFake("b", 2)
	a.hook = failWith(apierr.NotApplied(codes.Unavailable, "no leader"))
	addrA, _ := serve(t, a)
	addrB, _ := serve(t, b)
	c := newTestClient(t, addrA, addrB)
	ctx := testContext(t, 10*time.Second)

	resp, err := c.HashKV(ctx, addrB, 5)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Hash != 2000 || resp.HashRevision != 5 || resp.CompactRevision != 1 || resp.Header.GetMemberId() != 2 {
		t.Errorf("HashKV = %v", resp.HashKVResponse)
	}
	if got := b.lastRequest("HashKV").(*kvv1.HashKVRequest); got.GetRevision() != 5 {
		t.Errorf("request = %v", got)
	}
	// An endpoint that fails is not replaced by another.
	if _, err := c.HashKV(ctx, addrA, 5); !apierr.IsNotApplied(err) {
		t.Errorf("HashKV of a failing endpoint = %v, want its error", err)
	}
	if b.count("HashKV") != 1 {
		t.Errorf("second endpoint got %d calls, want 1", b.count("HashKV"))
	}
	if _, err := c.HashKV(ctx, "127.0.0.1:1", 0); err == nil {
		t.Error("HashKV of an unknown endpoint succeeded")
	}
	if _, err := c.HashKV(ctx, addrB, -1); err == nil {
		t.Error("HashKV of a negative revision succeeded")
	}
}
