package client

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
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
	kvv1.UnimplementedWatchServiceServer
	kvv1.UnimplementedLeaseServiceServer

	name string
	id   uint64

	// watch is the history the fake's WatchService serves (see Watch);
	// nil makes Watch answer Unimplemented.
	watch *watchHistory
	// watchFailAfter, when positive, makes the next watch stream end with
	// watchFailErr (Unavailable when nil) once it has sent that many
	// responses with events.
	watchFailAfter int
	watchFailErr   error
	// shareWatch makes the fake send one response to the watchers of a
	// stream that asked to share them, have the same request and are due
	// the same revision, as a member does.
	shareWatch bool
	sharedSent int // responses the fake sent to several watchers
	// fragmentSize is how many events go in one fragment to a watcher that
	// asked for fragments; zero means 1.
	fragmentSize int
	// watchKills holds a channel per watch stream that ends it with the
	// error sent; watchIdle makes a stream send idle progress notifications.
	watchKills []watchKill
	watchIdle  chan struct{}
	// What the watch streams received, in order.
	watchCreates  []*kvv1.WatchCreateRequest
	watchCancels  []int64
	watchProgress int
	watchMD       []metadata.MD

	// hook, when set, runs first on every RPC with the method name and the
	// 1-based count of calls to that method; a non-nil error is the answer.
	hook func(ctx context.Context, method string, n int) error

	// noStream makes Stream answer Unimplemented, as a member from before
	// streams would.
	noStream bool
	// streamOpen, when set, may refuse the n-th KV stream as it opens, as
	// a member's interceptor refuses a stream's credentials.
	streamOpen func(ctx context.Context, n int) error
	// drainAfter, when positive, makes Stream send a draining notice after
	// that many ops, answer what it got until the client half-closes, and
	// end the stream.
	drainAfter int
	// noStreamRenew makes Stream refuse lease renewals as a member from
	// before them does: it sees an op without a request.
	noStreamRenew bool

	// snapshot is what Snapshot sends, then snapshotErr ends the stream.
	snapshot    []*kvv1.SnapshotResponse
	snapshotErr error

	mu    sync.Mutex
	calls map[string][]time.Time
	last  map[string]any // last request per method
}

func newFake(name string, id uint64) *fakeServer {
	return &fakeServer{name: name, id: id, calls: map[string][]time.Time{}, last: map[string]any{}, watchIdle: make(chan struct{})}
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
	nth, open := len(f.calls["Stream"]), f.streamOpen
	f.mu.Unlock()
	if open != nil {
		if err := open(st.Context(), nth); err != nil {
			return err
		}
	}
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

// fakeLeaseTTL is the TTL the fake renews a lease for; a lease whose id is
// not positive does not exist.
const fakeLeaseTTL = 30

func (f *fakeServer) renewTTL(id int64) int64 {
	if id <= 0 {
		return 0
	}
	return fakeLeaseTTL
}

// LeaseKeepAlive answers each renewal in turn (see renewTTL).
func (f *fakeServer) LeaseKeepAlive(st kvv1.LeaseService_LeaseKeepAliveServer) error {
	for {
		req, err := st.Recv()
		if err != nil {
			return nil
		}
		if err := f.record(st.Context(), "LeaseKeepAlive", req); err != nil {
			return err
		}
		if err := st.Send(&kvv1.LeaseKeepAliveResponse{Header: f.header(), Id: req.GetId(), Ttl: f.renewTTL(req.GetId())}); err != nil {
			return err
		}
	}
}

func (f *fakeServer) runOp(ctx context.Context, op *kvv1.StreamOp) *kvv1.StreamResult {
	if r := op.GetLeaseRenew(); r != nil {
		if f.noStreamRenew {
			_ = f.record(ctx, "StreamLeaseRenewRefused", r)
			return &kvv1.StreamResult{Id: op.GetId(), Error: apierr.ToStream(status.Error(codes.InvalidArgument, "empty request: stream op has no request"))}
		}
		if err := f.record(ctx, "StreamLeaseRenew", r); err != nil {
			return &kvv1.StreamResult{Id: op.GetId(), Error: apierr.ToStream(err)}
		}
		return &kvv1.StreamResult{Id: op.GetId(), LeaseRenewed: &kvv1.StreamLeaseRenewed{Header: f.header(), Ttl: f.renewTTL(r.GetId())}}
	}
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

func (f *fakeServer) Compact(ctx context.Context, r *kvv1.CompactRequest) (*kvv1.CompactResponse, error) {
	if err := f.record(ctx, "Compact", r); err != nil {
		return nil, err
	}
	return &kvv1.CompactResponse{Header: f.header()}, nil
}

func (f *fakeServer) Defragment(ctx context.Context, r *kvv1.DefragmentRequest) (*kvv1.DefragmentResponse, error) {
	if err := f.record(ctx, "Defragment", r); err != nil {
		return nil, err
	}
	return &kvv1.DefragmentResponse{Header: f.header(), DbSizeBefore: 1 << 20, DbSize: 64 << 10}, nil
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
	kvv1.RegisterWatchServiceServer(s, f)
	kvv1.RegisterLeaseServiceServer(s, f)
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

// watchHistory is a store's history as a fake member's WatchService serves
// it: the events of every revision, from revision 2 (revision 1 is the empty
// store), and the revision below which it is compacted. Fake members that
// share one history behave as members of one cluster.
type watchHistory struct {
	mu      sync.Mutex
	revs    [][]*kvv1.Event // revs[r] are revision r's events
	kvs     map[string]*kvv1.KeyValue
	compact int64
	changed chan struct{} // closed and replaced at every change
}

func newWatchHistory() *watchHistory {
	return &watchHistory{revs: make([][]*kvv1.Event, 2), kvs: map[string]*kvv1.KeyValue{}, changed: make(chan struct{})}
}

// current returns the current revision.
func (h *watchHistory) current() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return int64(len(h.revs) - 1)
}

// txn writes one revision: puts of the key-value pairs kvs (key, value,
// key, value...), or a delete where the value is "<del>". It returns the
// revision.
func (h *watchHistory) txn(kvs ...string) int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	rev := int64(len(h.revs))
	var events []*kvv1.Event
	for i := 0; i+1 < len(kvs); i += 2 {
		key, val := kvs[i], kvs[i+1]
		old := h.kvs[key]
		e := &kvv1.Event{PrevKv: old}
		if val == "<del>" {
			e.Type = kvv1.EventType_EVENT_TYPE_DELETE
			e.Kv = &kvv1.KeyValue{Key: []byte(key), ModRevision: rev}
			delete(h.kvs, key)
		} else {
			kv := &kvv1.KeyValue{Key: []byte(key), Value: []byte(val), CreateRevision: rev, ModRevision: rev, Version: 1}
			if old != nil {
				kv.CreateRevision, kv.Version = old.CreateRevision, old.Version+1
			}
			e.Type, e.Kv = kvv1.EventType_EVENT_TYPE_PUT, kv
			h.kvs[key] = kv
		}
		events = append(events, e)
	}
	sort.Slice(events, func(i, j int) bool { return string(events[i].Kv.Key) < string(events[j].Kv.Key) })
	h.revs = append(h.revs, events)
	close(h.changed)
	h.changed = make(chan struct{})
	return rev
}

// put writes key=val in a revision of its own.
func (h *watchHistory) put(key, val string) int64 { return h.txn(key, val) }

// del deletes key in a revision of its own.
func (h *watchHistory) del(key string) int64 { return h.txn(key, "<del>") }

func (h *watchHistory) setCompact(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.compact = rev
}

// at returns the current revision, the events of revision rev (nil beyond
// the current one), the compacted revision and the channel closed at the
// next change.
func (h *watchHistory) at(rev int64) (cur int64, events []*kvv1.Event, compact int64, changed chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cur = int64(len(h.revs) - 1)
	if rev <= cur {
		events = h.revs[rev]
	}
	return cur, events, h.compact, h.changed
}

// sameWatch reports whether two create requests ask for the same events.
func sameWatch(a, b *kvv1.WatchCreateRequest) bool {
	return string(a.GetKey()) == string(b.GetKey()) && string(a.GetRangeEnd()) == string(b.GetRangeEnd()) &&
		a.GetPrevKv() == b.GetPrevKv() && slices.Equal(a.GetFilters(), b.GetFilters()) && !a.GetFragment() && !b.GetFragment()
}

// fakeWatcher is one watcher of a fake watch stream.
type fakeWatcher struct {
	id   int64
	req  *kvv1.WatchCreateRequest
	next int64
}

// wants reports whether e goes to w.
func (w *fakeWatcher) wants(e *kvv1.Event) bool {
	key, end := string(w.req.GetKey()), w.req.GetRangeEnd()
	k := string(e.GetKv().GetKey())
	switch {
	case len(end) == 0 && k != key:
		return false
	case len(end) > 0 && (k < key || !(len(end) == 1 && end[0] == 0) && k >= string(end)):
		return false
	}
	for _, f := range w.req.GetFilters() {
		if f == kvv1.WatchFilter_WATCH_FILTER_NO_PUT && e.GetType() == kvv1.EventType_EVENT_TYPE_PUT ||
			f == kvv1.WatchFilter_WATCH_FILTER_NO_DELETE && e.GetType() == kvv1.EventType_EVENT_TYPE_DELETE {
			return false
		}
	}
	return true
}

// Watch serves the fake's history as a member would: each watcher gets
// every event of its range from its start revision on, once and in order,
// a revision in one response or, when it asked, in fragments of
// fragmentSize events. A start revision below the compacted one is answered
// created, then canceled with the compact revision. A progress request is
// answered (watch id -1) with the lowest revision every watcher was sent
// everything through. The stream ends with watchFailErr after
// watchFailAfter event responses, or with what is sent on its kill channel;
// the hook, when it fails, ends it at once.
func (f *fakeServer) Watch(st kvv1.WatchService_WatchServer) error {
	if err := f.record(st.Context(), "Watch", nil); err != nil {
		return err
	}
	md, _ := metadata.FromIncomingContext(st.Context())
	kill := make(chan error, 1)
	ended := make(chan struct{})
	defer close(ended)
	f.mu.Lock()
	f.watchMD = append(f.watchMD, md)
	f.watchKills = append(f.watchKills, watchKill{kill, ended})
	hist, failAfter, failErr, fragSize, share := f.watch, f.watchFailAfter, f.watchFailErr, max(f.fragmentSize, 1), f.shareWatch
	f.watchFailAfter = 0
	f.mu.Unlock()
	if hist == nil {
		return status.Error(codes.Unimplemented, "unknown service kv.v1.WatchService")
	}
	if failErr == nil {
		failErr = status.Error(codes.Unavailable, "member is shutting down")
	}
	ctx := st.Context()
	reqs := make(chan *kvv1.WatchRequest)
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				return
			}
			select {
			case reqs <- r:
			case <-ctx.Done():
				return
			}
		}
	}()
	header := func(rev int64) *kvv1.ResponseHeader {
		return &kvv1.ResponseHeader{ClusterId: 1, MemberId: f.id, Revision: rev, RaftTerm: 2}
	}
	var (
		watchers []*fakeWatcher
		nextID   int64
		sent     int
	)
	// catchUp sends every watcher what it is due, up to the current
	// revision, which it returns.
	catchUp := func() (int64, error) {
		cur, _, _, _ := hist.at(0)
		eventsFor := func(w *fakeWatcher) []*kvv1.Event {
			_, events, _, _ := hist.at(w.next)
			var out []*kvv1.Event
			for _, e := range events {
				if !w.wants(e) {
					continue
				}
				if !w.req.GetPrevKv() {
					e = &kvv1.Event{Type: e.Type, Kv: e.Kv}
				}
				out = append(out, e)
			}
			return out
		}
		if share {
			for _, w := range watchers {
				if !w.req.GetShareResponses() || w.req.GetFragment() {
					continue
				}
				for ; w.next <= cur; w.next++ {
					out := eventsFor(w)
					if len(out) == 0 {
						continue
					}
					r := &kvv1.WatchResponse{Header: header(w.next), WatchId: w.id, Events: out}
					for _, o := range watchers {
						if o != w && o.next == w.next && o.req.GetShareResponses() && sameWatch(o.req, w.req) {
							r.SharedWatchIds = append(r.SharedWatchIds, o.id)
							o.next++
						}
					}
					if len(r.SharedWatchIds) > 0 {
						f.mu.Lock()
						f.sharedSent++
						f.mu.Unlock()
					}
					if err := st.Send(r); err != nil {
						return 0, err
					}
				}
			}
		}
		for _, w := range watchers {
			for ; w.next <= cur; w.next++ {
				out := eventsFor(w)
				for len(out) > 0 {
					n := len(out)
					if w.req.GetFragment() {
						n = min(n, fragSize)
					}
					r := &kvv1.WatchResponse{Header: header(w.next), WatchId: w.id, Events: out[:n], Fragment: n < len(out)}
					out = out[n:]
					if err := st.Send(r); err != nil {
						return 0, err
					}
					if sent++; sent == failAfter {
						return 0, failErr
					}
				}
			}
		}
		return cur, nil
	}
	for {
		// A kill comes first: select chooses at random among ready cases.
		select {
		case err := <-kill:
			return endWith(err)
		default:
		}
		_, _, _, changed := hist.at(0)
		cur, err := catchUp()
		if err != nil {
			return endWith(err)
		}
		select {
		case r := <-reqs:
			switch r := r.GetRequest().(type) {
			case *kvv1.WatchRequest_CreateRequest:
				req := r.CreateRequest
				f.mu.Lock()
				f.watchCreates = append(f.watchCreates, req)
				f.mu.Unlock()
				id := req.GetWatchId()
				if id == 0 {
					nextID++
					id = nextID
				}
				_, _, compact, _ := hist.at(0)
				created := &kvv1.WatchResponse{Header: header(cur), WatchId: id, Created: true}
				if end := req.GetRangeEnd(); len(end) > 0 && !(len(end) == 1 && end[0] == 0) && string(end) <= string(req.GetKey()) {
					created.Canceled, created.CancelReason = true, fmt.Sprintf("range end %q is not after key %q", end, req.GetKey())
					if err := st.Send(created); err != nil {
						return err
					}
					continue
				}
				if err := st.Send(created); err != nil {
					return err
				}
				start := req.GetStartRevision()
				if start > 0 && start < compact {
					err := st.Send(&kvv1.WatchResponse{Header: header(cur), WatchId: id, Canceled: true, CompactRevision: compact,
						CancelReason: fmt.Sprintf("start revision %d has been compacted", start)})
					if err != nil {
						return err
					}
					continue
				}
				if start <= 0 {
					start = cur + 1
				}
				watchers = append(watchers, &fakeWatcher{id: id, req: req, next: start})
			case *kvv1.WatchRequest_CancelRequest:
				id := r.CancelRequest.GetWatchId()
				f.mu.Lock()
				f.watchCancels = append(f.watchCancels, id)
				f.mu.Unlock()
				watchers = slices.DeleteFunc(watchers, func(w *fakeWatcher) bool { return w.id == id })
				if err := st.Send(&kvv1.WatchResponse{Header: header(hist.current()), WatchId: id, Canceled: true, CancelReason: "cancelled by the client"}); err != nil {
					return err
				}
			case *kvv1.WatchRequest_ProgressRequest:
				f.mu.Lock()
				f.watchProgress++
				f.mu.Unlock()
				rev, err := catchUp()
				if err != nil {
					return endWith(err)
				}
				for _, w := range watchers {
					rev = min(rev, w.next-1)
				}
				if err := st.Send(&kvv1.WatchResponse{Header: header(rev), WatchId: -1}); err != nil {
					return err
				}
			}
		case <-f.watchIdle:
			cur, err := catchUp()
			if err != nil {
				return endWith(err)
			}
			for _, w := range watchers {
				if w.req.GetProgressNotify() && w.next > cur {
					if err := st.Send(&kvv1.WatchResponse{Header: header(cur), WatchId: w.id}); err != nil {
						return err
					}
				}
			}
		case err := <-kill:
			return endWith(err)
		case <-changed:
		case <-ctx.Done():
			return nil
		}
	}
}

// errEndStream makes a fake watch stream end without an error, as a
// member's handler that returns nil does.
var errEndStream = errors.New("end the stream cleanly")

// endWith is what a fake watch stream's handler returns to end with err.
func endWith(err error) error {
	if errors.Is(err, errEndStream) {
		return nil
	}
	return err
}

// killWatches ends every watch stream of f that is open with err.
func (f *fakeServer) killWatches(err error) {
	f.mu.Lock()
	kills := f.watchKills
	f.watchKills = nil
	f.mu.Unlock()
	for _, k := range kills {
		select {
		case k.kill <- err:
		default:
		}
	}
	// Wait for the handlers to end: a test kills a stream and then
	// writes, expecting the writes to reach its watchers through another
	// stream, never through the killed one.
	for _, k := range kills {
		<-k.ended
	}
}

// watchKill ends one fake watch stream: send on kill, then wait for ended.
type watchKill struct {
	kill  chan error
	ended chan struct{}
}

// creates returns the create requests f's watch streams received.
func (f *fakeServer) creates() []*kvv1.WatchCreateRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.watchCreates)
}

// cancels returns the watch ids that f's watch streams were asked to
// cancel.
func (f *fakeServer) cancels() []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.watchCancels)
}

// progressRequests returns how many progress requests f received.
func (f *fakeServer) progressRequests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.watchProgress
}
