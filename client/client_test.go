package client

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/internal/opstream"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// TestRequestPaths runs the tests of requests and their retries twice: over
// the endpoints' streams (the default) and as unary calls (UnaryCalls), which
// must behave the same.
func TestRequestPaths(t *testing.T) {
	tests := []struct {
		name string
		fn   func(*testing.T)
	}{
		{"GetSendsOptions", testGetSendsOptions},
		{"TxnSendsRequest", testTxnSendsRequest},
		{"TxnBuildErrorsAreReturnedNotSent", testTxnBuildErrorsAreReturnedNotSent},
		{"FailoverFromDownEndpoint", testFailoverFromDownEndpoint},
		{"FailoverFromEndpointThatNeverGetsReady", testFailoverFromEndpointThatNeverGetsReady},
		{"StickToEndpointThatWorked", testStickToEndpointThatWorked},
		{"WriteRetriedAfterNotApplied", testWriteRetriedAfterNotApplied},
		{"WriteNotRetriedAfterAmbiguousError", testWriteNotRetriedAfterAmbiguousError},
		{"WriteNotRetriedAfterConnectionBreaks", testWriteNotRetriedAfterConnectionBreaks},
		{"ReadRetriedAfterUnavailable", testReadRetriedAfterUnavailable},
		{"RequestErrorsNeverRetried", testRequestErrorsNeverRetried},
		{"WriteWaitsForLeaderWithBackoff", testWriteWaitsForLeaderWithBackoff},
		{"RetryEndsWithContext", testRetryEndsWithContext},
		{"ContextEndsWhileWriteInFlight", testContextEndsWhileWriteInFlight},
		{"AllEndpointsDown", testAllEndpointsDown},
	}
	for _, mode := range []string{"stream", "unary"} {
		t.Run(mode, func(t *testing.T) {
			for _, tt := range tests {
				t.Run(tt.name, tt.fn)
			}
		})
	}
}

func failWith(err error) func(context.Context, string, int) error {
	return func(context.Context, string, int) error { return err }
}

func testGetSendsOptions(t *testing.T) {
	f := newFake("a", 1)
	addr, _ := serve(t, f)
	c := newTestClient(t, addr)
	ctx := testContext(t, 10*time.Second)

	resp, err := c.Get(ctx, "foo", WithPrefix(), WithLimit(2), WithRev(5), WithSerializable(), WithKeysOnly())
	if err != nil {
		t.Fatal(err)
	}
	want := &kvv1.RangeRequest{Key: []byte("foo"), RangeEnd: []byte("fop"), Limit: 2, Revision: 5, Serializable: true, KeysOnly: true}
	if got := f.lastRequest("Range").(*kvv1.RangeRequest); !proto.Equal(got, want) {
		t.Errorf("server got %v, want %v", got, want)
	}
	if resp.Header.Revision != 7 || resp.Count != 1 || string(resp.Kvs[0].Value) != "a" {
		t.Errorf("response = %v", resp.RangeResponse)
	}
}

func testTxnSendsRequest(t *testing.T) {
	f := newFake("a", 1)
	addr, _ := serve(t, f)
	c := newTestClient(t, addr)
	ctx := testContext(t, 10*time.Second)

	resp, err := c.Txn(ctx).
		If(Compare(Value("k"), "=", "old"), Compare(Version("n"), ">", 2)).
		Then(OpPut("k", "new", WithPrevKV())).
		Else(OpGet("k"), OpDelete("d", WithPrefix())).
		Commit()
	if err != nil {
		t.Fatal(err)
	}
	if !resp.Succeeded {
		t.Error("Succeeded = false")
	}
	want := &kvv1.TxnRequest{
		Compare: []*kvv1.Compare{
			{Result: kvv1.Compare_COMPARE_RESULT_EQUAL, Target: kvv1.Compare_COMPARE_TARGET_VALUE, Key: []byte("k"),
				TargetUnion: &kvv1.Compare_Value{Value: []byte("old")}},
			{Result: kvv1.Compare_COMPARE_RESULT_GREATER, Target: kvv1.Compare_COMPARE_TARGET_VERSION, Key: []byte("n"),
				TargetUnion: &kvv1.Compare_Version{Version: 2}},
		},
		Success: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestPut{RequestPut: &kvv1.PutRequest{Key: []byte("k"), Value: []byte("new"), PrevKv: true}}}},
		Failure: []*kvv1.RequestOp{
			{Request: &kvv1.RequestOp_RequestRange{RequestRange: &kvv1.RangeRequest{Key: []byte("k")}}},
			{Request: &kvv1.RequestOp_RequestDeleteRange{RequestDeleteRange: &kvv1.DeleteRangeRequest{Key: []byte("d"), RangeEnd: []byte("e")}}},
		},
	}
	if got := f.lastRequest("Txn").(*kvv1.TxnRequest); !proto.Equal(got, want) {
		t.Errorf("server got %v\nwant %v", got, want)
	}
}

func testTxnBuildErrorsAreReturnedNotSent(t *testing.T) {
	f := newFake("a", 1)
	addr, _ := serve(t, f)
	c := newTestClient(t, addr)
	ctx := testContext(t, 10*time.Second)

	tests := []struct {
		name string
		txn  Txn
	}{
		{"invalid operator", c.Txn(ctx).If(Compare(Value("k"), "=>", "v")).Then(OpPut("k", "v"))},
		{"wrong value type", c.Txn(ctx).If(Compare(Version("k"), "=", "1"))},
		{"If after Then", c.Txn(ctx).Then(OpPut("k", "v")).If(Compare(Value("k"), "=", "v"))},
		{"If twice", c.Txn(ctx).If().If()},
		{"Then after Else", c.Txn(ctx).Else().Then()},
		{"Else twice", c.Txn(ctx).Else().Else()},
		{"bad op", c.Txn(ctx).Then(OpGet("k", WithPrevKV()))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := tt.txn.Commit()
			if err == nil {
				t.Fatalf("Commit() = %v, want an error", resp)
			}
		})
	}
	if n := f.count("Txn"); n != 0 {
		t.Errorf("server got %d Txn calls, want 0", n)
	}
}

func testFailoverFromDownEndpoint(t *testing.T) {
	f := newFake("b", 2)
	live, _ := serve(t, f)
	c := newTestClient(t, deadAddr(t), live)
	ctx := testContext(t, 10*time.Second)

	if _, err := c.Get(ctx, "k"); err != nil {
		t.Fatalf("Get: %v", err)
	}
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if _, err := c.MemberList(ctx); err != nil {
		t.Fatalf("MemberList: %v", err)
	}
	if f.count("Range") != 1 || f.count("Put") != 1 || f.count("MemberList") != 1 {
		t.Errorf("live endpoint calls: %v", f.calls)
	}
}

func testFailoverFromEndpointThatNeverGetsReady(t *testing.T) {
	f := newFake("b", 2)
	live, _ := serve(t, f)
	c, err := New(Config{Endpoints: []string{blackholeAddr(t), live}, DialTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx := testContext(t, 10*time.Second)

	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("Put: %v", err)
	}
	if f.count("Put") != 1 {
		t.Errorf("live endpoint got %d puts, want 1", f.count("Put"))
	}
}

func testStickToEndpointThatWorked(t *testing.T) {
	a, b := newFake("a", 1), newFake("b", 2)
	a.hook = failWith(apierr.NotApplied(codes.Unavailable, "no leader"))
	addrA, _ := serve(t, a)
	addrB, _ := serve(t, b)
	c := newTestClient(t, addrA, addrB)
	ctx := testContext(t, 10*time.Second)

	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		resp, err := c.Get(ctx, "k")
		if err != nil {
			t.Fatal(err)
		}
		if got := string(resp.Kvs[0].Value); got != "b" {
			t.Errorf("served by %q, want b", got)
		}
	}
	if a.count("Put") != 1 || a.count("Range") != 0 {
		t.Errorf("first endpoint calls: Put %d Range %d, want 1 and 0", a.count("Put"), a.count("Range"))
	}
}

func testWriteRetriedAfterNotApplied(t *testing.T) {
	tests := []struct {
		name  string
		write func(context.Context, *Client) error
		rpc   string
	}{
		{"put", func(ctx context.Context, c *Client) error { _, err := c.Put(ctx, "k", "v"); return err }, "Put"},
		{"delete", func(ctx context.Context, c *Client) error { _, err := c.Delete(ctx, "k"); return err }, "DeleteRange"},
		{"txn", func(ctx context.Context, c *Client) error {
			_, err := c.Txn(ctx).Then(OpPut("k", "v")).Commit()
			return err
		}, "Txn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newFake("a", 1), newFake("b", 2)
			a.hook = failWith(apierr.NotApplied(codes.Unavailable, "no leader"))
			addrA, _ := serve(t, a)
			addrB, _ := serve(t, b)
			c := newTestClient(t, addrA, addrB)
			if err := tt.write(testContext(t, 10*time.Second), c); err != nil {
				t.Fatal(err)
			}
			if a.count(tt.rpc) != 1 || b.count(tt.rpc) != 1 {
				t.Errorf("calls: a %d, b %d; want 1 and 1", a.count(tt.rpc), b.count(tt.rpc))
			}
		})
	}
}

func testWriteNotRetriedAfterAmbiguousError(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"unavailable without mark", status.Error(codes.Unavailable, "transport is closing")},
		{"unknown", status.Error(codes.Unknown, "proposal dropped")},
		{"deadline exceeded", status.Error(codes.DeadlineExceeded, "apply timed out")},
		{"internal", status.Error(codes.Internal, "boom")},
		{"aborted", status.Error(codes.Aborted, "leadership lost")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newFake("a", 1), newFake("b", 2)
			a.hook = failWith(tt.err)
			addrA, _ := serve(t, a)
			addrB, _ := serve(t, b)
			c := newTestClient(t, addrA, addrB)
			ctx := testContext(t, 10*time.Second)

			_, err := c.Put(ctx, "k", "v")
			if got, want := status.Code(err), status.Code(tt.err); got != want {
				t.Errorf("Put error %v: code %v, want %v", err, got, want)
			}
			_, err = c.Txn(ctx).If(Compare(Version("k"), "=", 0)).Then(OpGet("k")).Else(OpDelete("k")).Commit()
			if got, want := status.Code(err), status.Code(tt.err); got != want {
				t.Errorf("Txn error %v: code %v, want %v", err, got, want)
			}
			if n := b.count("Put") + b.count("Txn"); n != 0 {
				t.Errorf("second endpoint got %d writes, want 0", n)
			}
		})
	}
}

func testWriteNotRetriedAfterConnectionBreaks(t *testing.T) {
	a, b := newFake("a", 1), newFake("b", 2)
	entered := make(chan struct{})
	var once atomic.Bool
	a.hook = func(ctx context.Context, method string, _ int) error {
		if method == "Put" && once.CompareAndSwap(false, true) {
			close(entered)
		}
		<-ctx.Done() // the request arrived; hold it until the connection dies
		return ctx.Err()
	}
	addrA, srvA := serve(t, a)
	addrB, _ := serve(t, b)
	c := newTestClient(t, addrA, addrB)
	ctx := testContext(t, 10*time.Second)

	errc := make(chan error, 1)
	go func() {
		_, err := c.Put(ctx, "k", "v")
		errc <- err
	}()
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("the put never reached the first endpoint")
	}
	srvA.Stop()

	select {
	case err := <-errc:
		if err == nil {
			t.Fatal("Put succeeded after the connection broke")
		}
		if apierr.IsNotApplied(err) {
			t.Errorf("error %v is marked not applied", err)
		}
	case <-ctx.Done():
		t.Fatal("Put did not return")
	}
	if n := b.count("Put"); n != 0 {
		t.Errorf("second endpoint got %d puts, want 0", n)
	}
}

func testReadRetriedAfterUnavailable(t *testing.T) {
	tests := []struct {
		name string
		read func(context.Context, *Client) error
		rpc  string
	}{
		{"get", func(ctx context.Context, c *Client) error { _, err := c.Get(ctx, "k"); return err }, "Range"},
		{"member list", func(ctx context.Context, c *Client) error { _, err := c.MemberList(ctx); return err }, "MemberList"},
		{"read-only txn", func(ctx context.Context, c *Client) error {
			_, err := c.Txn(ctx).If(Compare(Value("k"), "=", "v")).Then(OpGet("k")).Else(OpGet("j")).Commit()
			return err
		}, "Txn"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newFake("a", 1), newFake("b", 2)
			a.hook = failWith(status.Error(codes.Unavailable, "transport is closing"))
			addrA, _ := serve(t, a)
			addrB, _ := serve(t, b)
			c := newTestClient(t, addrA, addrB)
			if err := tt.read(testContext(t, 10*time.Second), c); err != nil {
				t.Fatal(err)
			}
			if a.count(tt.rpc) != 1 || b.count(tt.rpc) != 1 {
				t.Errorf("calls: a %d, b %d; want 1 and 1", a.count(tt.rpc), b.count(tt.rpc))
			}
		})
	}
}

func testRequestErrorsNeverRetried(t *testing.T) {
	tests := []struct {
		name string
		err  error
	}{
		{"invalid argument", status.Error(codes.InvalidArgument, "key is empty")},
		{"not found", status.Error(codes.NotFound, "lease not found")},
		{"out of range", status.Error(codes.OutOfRange, "compacted")},
		{"failed precondition", status.Error(codes.FailedPrecondition, "learner")},
		{"failed precondition marked not applied", apierr.NotApplied(codes.FailedPrecondition, "refused")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := newFake("a", 1), newFake("b", 2)
			a.hook = failWith(tt.err)
			addrA, _ := serve(t, a)
			addrB, _ := serve(t, b)
			c := newTestClient(t, addrA, addrB)
			ctx := testContext(t, 10*time.Second)

			if _, err := c.Get(ctx, "k"); status.Code(err) != status.Code(tt.err) {
				t.Errorf("Get error = %v, want code %v", err, status.Code(tt.err))
			}
			if _, err := c.Put(ctx, "k", "v"); status.Code(err) != status.Code(tt.err) {
				t.Errorf("Put error = %v, want code %v", err, status.Code(tt.err))
			}
			if n := b.count("Range") + b.count("Put"); n != 0 {
				t.Errorf("second endpoint got %d calls, want 0", n)
			}
			if n := a.count("Range") + a.count("Put"); n != 2 {
				t.Errorf("first endpoint got %d calls, want 2", n)
			}
		})
	}
}

func testWriteWaitsForLeaderWithBackoff(t *testing.T) {
	// Both members answer "no leader" until the fifth put reaches one of them.
	var total atomic.Int64
	noLeaderUntil5 := func(_ context.Context, method string, _ int) error {
		if method == "Put" && total.Add(1) < 5 {
			return apierr.NotApplied(codes.Unavailable, "no leader")
		}
		return nil
	}
	a, b := newFake("a", 1), newFake("b", 2)
	a.hook, b.hook = noLeaderUntil5, noLeaderUntil5
	addrA, _ := serve(t, a)
	addrB, _ := serve(t, b)
	c := newTestClient(t, addrA, addrB) // backoff 10ms, 20ms, 40ms, 40ms...

	if _, err := c.Put(testContext(t, 10*time.Second), "k", "v"); err != nil {
		t.Fatal(err)
	}
	if got := total.Load(); got != 5 {
		t.Errorf("%d puts sent, want 5", got)
	}
	// Rounds: a,b - wait 10ms - a,b - wait 20ms - a succeeds.
	ts := a.times("Put")
	if len(ts) != 3 {
		t.Fatalf("first endpoint got %d puts, want 3", len(ts))
	}
	if gap := ts[1].Sub(ts[0]); gap < 10*time.Millisecond {
		t.Errorf("first backoff %v, want at least 10ms", gap)
	}
	if gap := ts[2].Sub(ts[1]); gap < 20*time.Millisecond {
		t.Errorf("second backoff %v, want at least 20ms", gap)
	}
}

func testRetryEndsWithContext(t *testing.T) {
	a := newFake("a", 1)
	a.hook = failWith(apierr.NotApplied(codes.Unavailable, "no leader"))
	addrA, _ := serve(t, a)
	// A backoff long enough that the context ends while the client waits
	// between rounds, not while a request is in flight.
	c, err := New(Config{Endpoints: []string{addrA}, RetryBackoff: 150 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })

	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	_, err = c.Put(ctx, "k", "v")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
	if !apierr.IsNotApplied(err) {
		t.Errorf("error %v is not marked not applied", err)
	}
	if a.count("Put") < 2 {
		t.Errorf("%d puts sent, want a retry after the first backoff", a.count("Put"))
	}
}

func testContextEndsWhileWriteInFlight(t *testing.T) {
	a, b := newFake("a", 1), newFake("b", 2)
	a.hook = func(ctx context.Context, _ string, _ int) error {
		<-ctx.Done()
		return ctx.Err()
	}
	addrA, _ := serve(t, a)
	addrB, _ := serve(t, b)
	c := newTestClient(t, addrA, addrB)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := c.Put(ctx, "k", "v")
	if !errors.Is(err, context.DeadlineExceeded) || status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("error %v: want it to wrap context.DeadlineExceeded with code DeadlineExceeded", err)
	}
	if apierr.IsNotApplied(err) {
		t.Errorf("error %v is marked not applied, but the write was in flight", err)
	}
	if b.count("Put") != 0 {
		t.Errorf("second endpoint got %d puts, want 0", b.count("Put"))
	}
}

func testAllEndpointsDown(t *testing.T) {
	c := newTestClient(t, deadAddr(t), deadAddr(t))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()

	_, err := c.Put(ctx, "k", "v")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error %v does not wrap context.DeadlineExceeded", err)
	}
	if !apierr.IsNotApplied(err) || status.Code(err) != codes.Unavailable {
		t.Errorf("error %v: want Unavailable marked not applied, since nothing was sent", err)
	}
}

func TestStatusAsksOneEndpoint(t *testing.T) {
	a, b := newFake("a", 1), newFake("b", 2)
	addrA, _ := serve(t, a)
	addrB, _ := serve(t, b)
	dead := deadAddr(t)
	c := newTestClient(t, dead, addrA, addrB)
	ctx := testContext(t, 10*time.Second)

	resp, err := c.Status(ctx, addrB)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Name != "b" || !resp.IsLeader() {
		t.Errorf("Status(b) = %v", resp.StatusResponse)
	}
	if _, err := c.Status(ctx, dead); err == nil {
		t.Error("Status of a down endpoint succeeded")
	}
	if _, err := c.Status(ctx, "127.0.0.1:1"); err == nil {
		t.Error("Status of an unknown endpoint succeeded")
	}
	if a.count("Status") != 0 || b.count("Status") != 1 {
		t.Errorf("Status calls: a %d, b %d; want 0 and 1", a.count("Status"), b.count("Status"))
	}

	// An endpoint given with its scheme, as in Config.Endpoints (kvctl
	// endpoint status passes them so), names the same member.
	withScheme := newTestClient(t, "http://"+addrA, "http://"+addrB)
	for _, ep := range []string{"http://" + addrA, addrA} {
		if resp, err := withScheme.Status(ctx, ep); err != nil || resp.Name != "a" {
			t.Errorf("Status(%q) = %v, %v; want member a", ep, resp, err)
		}
	}
}

func TestClosed(t *testing.T) {
	a := newFake("a", 1)
	addrA, _ := serve(t, a)
	c := newTestClient(t, addrA)
	ctx := testContext(t, 10*time.Second)
	if _, err := c.Get(ctx, "k"); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := c.Get(ctx, "k"); !errors.Is(err, ErrClosed) {
		t.Errorf("Get after Close = %v, want ErrClosed", err)
	}
	if _, err := c.Status(ctx, addrA); !errors.Is(err, ErrClosed) {
		t.Errorf("Status after Close = %v, want ErrClosed", err)
	}
}

func TestRetryable(t *testing.T) {
	notReady := &opstream.NotReadyError{Target: "a:1", Reason: "connection failed"}
	tests := []struct {
		name        string
		err         error
		read, write bool
	}{
		{"not ready", notReady, true, true},
		{"wrapped not ready", fmt.Errorf("x: %w", notReady), true, true},
		{"not applied unavailable", apierr.NotApplied(codes.Unavailable, "no leader"), true, true},
		{"not applied resource exhausted", apierr.NotApplied(codes.ResourceExhausted, "queue full"), true, true},
		{"plain unavailable", status.Error(codes.Unavailable, "eof"), true, false},
		{"unknown", status.Error(codes.Unknown, "?"), false, false},
		{"deadline", status.Error(codes.DeadlineExceeded, "late"), false, false},
		{"invalid argument", status.Error(codes.InvalidArgument, "bad"), false, false},
		{"not applied invalid argument", apierr.NotApplied(codes.InvalidArgument, "bad"), false, false},
		{"closed", ErrClosed, false, false},
		{"plain error", errors.New("x"), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := retryable(tt.err, kindRead); got != tt.read {
				t.Errorf("retryable(read) = %v, want %v", got, tt.read)
			}
			if got := retryable(tt.err, kindWrite); got != tt.write {
				t.Errorf("retryable(write) = %v, want %v", got, tt.write)
			}
		})
	}
}

// TestUnsentWriteIsMarkedNotApplied covers a member that goes away between
// the client seeing its connection READY and the call being picked onto it:
// gRPC fails the call fast with Unavailable without sending it, and the
// client must know that a retry elsewhere cannot apply the write twice.
func TestUnsentWriteIsMarkedNotApplied(t *testing.T) {
	cc, err := grpc.NewClient(deadAddr(t),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(apierr.MarkUnsent))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })

	_, err = kvv1.NewKVServiceClient(cc).Put(testContext(t, 10*time.Second), &kvv1.PutRequest{Key: []byte("k")})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("Put to a dead address: %v, want Unavailable", err)
	}
	if !apierr.IsNotApplied(err) || !retryable(err, kindWrite) {
		t.Errorf("error %v of a request that was never sent is not retryable as a write", err)
	}
}
