package etcdapi_test

import (
	"fmt"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/server"
	"github.com/kvd-io/kvd/server/servertest"
)

// TestWire drives what clientv3 does not let a caller send: options etcd
// does not define, watch ids chosen by the client.
func TestWire(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 1)
	ctx := ctxT(t)
	cc := c.Member("m1").Conn()
	kv := pb.NewKVClient(cc)

	_, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), SortOrder: 7})
	if rpctypes.Error(err) != rpctypes.ErrInvalidSortOption {
		t.Errorf("unknown sort order: %v, want %v", err, rpctypes.ErrInvalidSortOption)
	}
	if _, err := kv.Range(ctx, &pb.RangeRequest{Key: []byte("a"), SortTarget: 9}); rpctypes.Error(err) != rpctypes.ErrInvalidSortOption {
		t.Errorf("unknown sort target: %v, want %v", err, rpctypes.ErrInvalidSortOption)
	}
	_, err = kv.Txn(ctx, &pb.TxnRequest{Compare: []*pb.Compare{{Target: 9, Key: []byte("a")}}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(status.Convert(err).Message(), "invalid compare") {
		t.Errorf("unknown compare target: %v, want InvalidArgument, invalid compare", err)
	}
	st, err := kv.RangeStream(ctx, &pb.RangeRequest{Key: []byte("a")})
	if err == nil {
		_, err = st.Recv()
	}
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("RangeStream: %v, want Unimplemented", err)
	}

	// Watch ids: the client's choice is kept; one in use is refused
	// without ending the stream.
	ws, err := pb.NewWatchClient(cc).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	create := func(id int64) *pb.WatchResponse {
		t.Helper()
		if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("w"), WatchId: id}}}); err != nil {
			t.Fatal(err)
		}
		resp, err := ws.Recv()
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if resp := create(7); !resp.Created || resp.Canceled || resp.WatchId != 7 {
		t.Fatalf("watch with id 7: %+v", resp)
	}
	if resp := create(7); !resp.Created || !resp.Canceled || resp.WatchId != 7 || resp.CancelReason == "" {
		t.Fatalf("second watch with id 7: %+v, want refused with a reason", resp)
	}
	if resp := create(0); !resp.Created || resp.Canceled || resp.WatchId == 7 || resp.WatchId < 0 {
		t.Fatalf("watch with an id chosen by the member: %+v", resp)
	}
	if err := ws.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 7}}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := ws.Recv(); err != nil || !resp.Canceled || resp.WatchId != 7 || resp.CancelReason != "" {
		t.Fatalf("cancel: %+v, %v; want canceled without a reason, as etcd", resp, err)
	}
}

// TestWatchFragments: a revision larger than a response comes in
// fragments to a watcher that asked for them, which clientv3 joins; the
// others get it whole.
func TestWatchFragments(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 1, servertest.WithConfig(func(cfg *server.Config) { cfg.MaxRequestBytes = 4 << 20 }))
	cli := newClientWith(t, c, clientv3.Config{MaxCallSendMsgSize: 4 << 20})
	ctx := ctxT(t)
	frag := cli.Watch(ctx, "f/", clientv3.WithPrefix(), clientv3.WithFragment())
	whole := cli.Watch(ctx, "f/", clientv3.WithPrefix())
	// On the wire: several responses, all but the last marked.
	raw, err := pb.NewWatchClient(c.Member("m1").Conn()).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{
		Key: []byte("f/"), RangeEnd: []byte("f0"), Fragment: true}}}); err != nil {
		t.Fatal(err)
	}
	if resp, err := raw.Recv(); err != nil || !resp.Created {
		t.Fatalf("raw watch: %+v, %v", resp, err)
	}
	const n = 20
	ops := make([]clientv3.Op, n)
	for i := range ops {
		ops[i] = clientv3.OpPut(fmt.Sprintf("f/%02d", i), strings.Repeat("x", 100<<10))
	}
	if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
		t.Fatal(err)
	}
	responses, events := 0, 0
	for {
		resp, err := raw.Recv()
		if err != nil {
			t.Fatal(err)
		}
		responses++
		events += len(resp.Events)
		if !resp.Fragment {
			break
		}
	}
	if responses < 2 || events != n {
		t.Errorf("raw fragments: %d responses with %d events; want several with %d", responses, events, n)
	}
	for name, wch := range map[string]clientv3.WatchChan{"fragments": frag, "whole": whole} {
		resp := next(t, wch)
		if err := resp.Err(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(resp.Events) != n {
			t.Errorf("%s: %d events in the first response, want the revision's %d joined", name, len(resp.Events), n)
		}
	}
}
