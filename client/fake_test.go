package client

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// fakeServer is an in-process kvd member that records what it receives and
// answers with canned responses, or with the error its hook returns.
type fakeServer struct {
	kvv1.UnimplementedKVServiceServer
	kvv1.UnimplementedClusterServiceServer
	kvv1.UnimplementedMaintenanceServiceServer

	name string
	id   uint64

	// hook, when set, runs first on every RPC with the method name and the
	// 1-based count of calls to that method; a non-nil error is the answer.
	hook func(ctx context.Context, method string, n int) error

	// noStream makes Stream answer Unimplemented, as a member from before
	// streams would.
	noStream bool
	// drainAfter, when positive, makes Stream send a draining notice after
	// that many ops, answer what it got until the client half-closes, and
	// end the stream.
	drainAfter int

	// snapshot is what Snapshot sends, then snapshotErr ends the stream.
	snapshot    []*kvv1.SnapshotResponse
	snapshotErr error

	mu    sync.Mutex
	calls map[string][]time.Time
	last  map[string]any // last request per method
}

func newFake(name string, id uint64) *fakeServer {
	return &fakeServer{name: name, id: id, calls: map[string][]time.Time{}, last: map[string]any{}}
}

func (f *fakeServer) record(ctx context.Context, method string, req any) error {
	f.mu.Lock()
	f.calls[method] = append(f.calls[method], time.Now())
	f.last[method] = req
	n := len(f.calls[method])
	hook := f.hook
	f.mu.Unlock()
	if hook != nil {
		return hook(ctx, method, n)
	}
	return nil
}

func (f *fakeServer) count(method string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls[method])
}

func (f *fakeServer) times(method string) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.calls[method]...)
}

func (f *fakeServer) lastRequest(method string) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last[method]
}

func (f *fakeServer) header() *kvv1.ResponseHeader {
	return &kvv1.ResponseHeader{ClusterId: 1, MemberId: f.id, Revision: 7, RaftTerm: 2}
}

func (f *fakeServer) Put(ctx context.Context, r *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	if err := f.record(ctx, "Put", r); err != nil {
		return nil, err
	}
	return &kvv1.PutResponse{Header: f.header()}, nil
}

func (f *fakeServer) Range(ctx context.Context, r *kvv1.RangeRequest) (*kvv1.RangeResponse, error) {
	if err := f.record(ctx, "Range", r); err != nil {
		return nil, err
	}
	kv := &kvv1.KeyValue{Key: r.GetKey(), Value: []byte(f.name), CreateRevision: 1, ModRevision: 1, Version: 1}
	return &kvv1.RangeResponse{Header: f.header(), Kvs: []*kvv1.KeyValue{kv}, Count: 1}, nil
}

func (f *fakeServer) DeleteRange(ctx context.Context, r *kvv1.DeleteRangeRequest) (*kvv1.DeleteRangeResponse, error) {
	if err := f.record(ctx, "DeleteRange", r); err != nil {
		return nil, err
	}
	return &kvv1.DeleteRangeResponse{Header: f.header(), Deleted: 1}, nil
}

func (f *fakeServer) Txn(ctx context.Context, r *kvv1.TxnRequest) (*kvv1.TxnResponse, error) {
	if err := f.record(ctx, "Txn", r); err != nil {
		return nil, err
	}
	return &kvv1.TxnResponse{Header: f.header(), Succeeded: true}, nil
}

// Stream serves ops with the fake's unary methods, each on a goroutine of its
// own, as the member does; hooks and recorded requests work as for calls.
func (f *fakeServer) Stream(st kvv1.KVService_StreamServer) error {
	if f.noStream {
		return status.Error(codes.Unimplemented, "method Stream not implemented")
	}
	f.mu.Lock()
	f.calls["Stream"] = append(f.calls["Stream"], time.Now())
	f.mu.Unlock()
	var (
		sendMu sync.Mutex
		wg     sync.WaitGroup
		n      int
	)
	send := func(m *kvv1.StreamResponse) {
		sendMu.Lock()
		defer sendMu.Unlock()
		_ = st.Send(m)
	}
	for {
		req, err := st.Recv()
		if err != nil {
			wg.Wait()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		for _, op := range req.GetOps() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				send(&kvv1.StreamResponse{Results: []*kvv1.StreamResult{f.runOp(st.Context(), op)}})
			}()
			if n++; n == f.drainAfter {
				send(&kvv1.StreamResponse{Draining: true})
			}
		}
	}
}

func (f *fakeServer) runOp(ctx context.Context, op *kvv1.StreamOp) *kvv1.StreamResult {
	var (
		resp = &kvv1.ResponseOp{}
		err  error
	)
	switch r := op.GetRequest().GetRequest().(type) {
	case *kvv1.RequestOp_RequestRange:
		var out *kvv1.RangeResponse
		out, err = f.Range(ctx, r.RequestRange)
		resp.Response = &kvv1.ResponseOp_ResponseRange{ResponseRange: out}
	case *kvv1.RequestOp_RequestPut:
		var out *kvv1.PutResponse
		out, err = f.Put(ctx, r.RequestPut)
		resp.Response = &kvv1.ResponseOp_ResponsePut{ResponsePut: out}
	case *kvv1.RequestOp_RequestDeleteRange:
		var out *kvv1.DeleteRangeResponse
		out, err = f.DeleteRange(ctx, r.RequestDeleteRange)
		resp.Response = &kvv1.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: out}
	case *kvv1.RequestOp_RequestTxn:
		var out *kvv1.TxnResponse
		out, err = f.Txn(ctx, r.RequestTxn)
		resp.Response = &kvv1.ResponseOp_ResponseTxn{ResponseTxn: out}
	default:
		err = status.Error(codes.InvalidArgument, "no request")
	}
	if err != nil {
		return &kvv1.StreamResult{Id: op.GetId(), Error: apierr.ToStream(err)}
	}
	return &kvv1.StreamResult{Id: op.GetId(), Response: resp}
}

func (f *fakeServer) MemberList(ctx context.Context, r *kvv1.MemberListRequest) (*kvv1.MemberListResponse, error) {
	if err := f.record(ctx, "MemberList", r); err != nil {
		return nil, err
	}
	return &kvv1.MemberListResponse{Header: f.header(), Members: []*kvv1.Member{{Id: f.id, Name: f.name}}}, nil
}

func (f *fakeServer) Status(ctx context.Context, r *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	if err := f.record(ctx, "Status", r); err != nil {
		return nil, err
	}
	return &kvv1.StatusResponse{Header: f.header(), Name: f.name, LeaderId: f.id, RaftState: "Leader"}, nil
}

func (f *fakeServer) members() []*kvv1.Member {
	return []*kvv1.Member{{Id: f.id, Name: f.name, IsLeader: true}, {Id: 99, Name: "new", IsLearner: true}}
}

func (f *fakeServer) MemberAdd(ctx context.Context, r *kvv1.MemberAddRequest) (*kvv1.MemberAddResponse, error) {
	if err := f.record(ctx, "MemberAdd", r); err != nil {
		return nil, err
	}
	m := &kvv1.Member{Id: 99, Name: r.GetName(), RaftAddr: r.GetRaftAddr(), ClientAddr: r.GetClientAddr(), IsLearner: r.GetIsLearner()}
	return &kvv1.MemberAddResponse{Header: f.header(), Member: m, Members: f.members()}, nil
}

func (f *fakeServer) MemberPromote(ctx context.Context, r *kvv1.MemberPromoteRequest) (*kvv1.MemberPromoteResponse, error) {
	if err := f.record(ctx, "MemberPromote", r); err != nil {
		return nil, err
	}
	return &kvv1.MemberPromoteResponse{Header: f.header(), Members: f.members()}, nil
}

func (f *fakeServer) MemberRemove(ctx context.Context, r *kvv1.MemberRemoveRequest) (*kvv1.MemberRemoveResponse, error) {
	if err := f.record(ctx, "MemberRemove", r); err != nil {
		return nil, err
	}
	return &kvv1.MemberRemoveResponse{Header: f.header(), Members: f.members()[:1]}, nil
}

func (f *fakeServer) LeaderTransfer(ctx context.Context, r *kvv1.LeaderTransferRequest) (*kvv1.LeaderTransferResponse, error) {
	if err := f.record(ctx, "LeaderTransfer", r); err != nil {
		return nil, err
	}
	leader := r.GetTo()
	if leader == "" {
		leader = "picked"
	}
	return &kvv1.LeaderTransferResponse{Header: f.header(), Leader: leader}, nil
}

func (f *fakeServer) HashKV(ctx context.Context, r *kvv1.HashKVRequest) (*kvv1.HashKVResponse, error) {
	if err := f.record(ctx, "HashKV", r); err != nil {
		return nil, err
	}
	rev := r.GetRevision()
	if rev == 0 {
		rev = 7
	}
	return &kvv1.HashKVResponse{Header: f.header(), Hash: uint32(f.id) * 1000, HashRevision: rev, CompactRevision: 1}, nil
}

func (f *fakeServer) Snapshot(r *kvv1.SnapshotRequest, stream kvv1.MaintenanceService_SnapshotServer) error {
	if err := f.record(stream.Context(), "Snapshot", r); err != nil {
		return err
	}
	for _, msg := range f.snapshot {
		if err := stream.Send(msg); err != nil {
			return err
		}
	}
	return f.snapshotErr
}

// snapshotStream cuts data into messages of at most chunk bytes, as a member
// streams its database: the size on the first, the SHA-256 on the last.
func snapshotStream(data []byte, chunk int) []*kvv1.SnapshotResponse {
	var msgs []*kvv1.SnapshotResponse
	remaining := len(data)
	for first := true; first || remaining > 0; first = false {
		n := min(chunk, remaining)
		off := len(data) - remaining
		remaining -= n
		msg := &kvv1.SnapshotResponse{Blob: data[off : off+n], RemainingBytes: uint64(remaining)}
		if first {
			msg.Header = &kvv1.ResponseHeader{ClusterId: 1, MemberId: 2, Revision: 7, RaftTerm: 2}
			msg.TotalBytes = uint64(len(data))
		}
		msgs = append(msgs, msg)
	}
	sum := sha256.Sum256(data)
	msgs[len(msgs)-1].Sha256 = sum[:]
	return msgs
}

// serve starts f on a loopback port and returns its address and server; the
// server stops when the test ends.
func serve(t *testing.T, f *fakeServer) (string, *grpc.Server) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	kvv1.RegisterKVServiceServer(s, f)
	kvv1.RegisterClusterServiceServer(s, f)
	kvv1.RegisterMaintenanceServiceServer(s, f)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String(), s
}

// deadAddr returns a loopback address nothing listens on: connecting to it is
// refused.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// blackholeAddr returns a loopback address that accepts TCP connections and
// never answers, so a gRPC connection to it never becomes ready.
func blackholeAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		_ = lis.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			_ = c.Close()
		}
	})
	return lis.Addr().String()
}

// newTestClient returns a client for endpoints with short timeouts, closed
// when the test ends. Under a "unary" subtest (see TestRequestPaths) it sends
// unary calls, and otherwise uses streams.
func newTestClient(t *testing.T, endpoints ...string) *Client {
	t.Helper()
	c, err := New(Config{
		Endpoints:       endpoints,
		DialTimeout:     time.Second,
		RetryBackoff:    10 * time.Millisecond,
		MaxRetryBackoff: 40 * time.Millisecond,
		UnaryCalls:      strings.Contains(t.Name(), "/unary/"),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// testContext returns a context that ends well before the test's deadline.
func testContext(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
