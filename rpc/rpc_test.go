package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/auth"
	"github.com/kvd-io/kvd/internal/watch"
	"github.com/kvd-io/kvd/internal/workers"
	"github.com/kvd-io/kvd/member"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	peerv1 "github.com/kvd-io/kvd/proto/peer/v1"
)

// fakeNode is a member the test scripts: each call answers with what the
// test set, and is counted.
type fakeNode struct {
	name   string
	leader bool

	proposeErr   error                     // Propose and ProposeAsync fail with it
	linearizeErr error                     // Linearize and LinearizeAsync fail with it
	leaderAddr   string                    // LeaderAddr's answer when not leader
	kv           map[string]int            // key -> value length, what Range finds
	records      map[string]*kvv1.KeyValue // whole records Range finds, before kv
	removedErr   error                     // Err

	mu            sync.Mutex
	hub           *watch.Hub
	leaderless    time.Duration
	drain         chan struct{}
	proposed      []string // decoded command types
	linearizeWait int      // LinearizeAsync calls
	lastMD        metadata.MD
	added         []string
	lease         *fakeLeases
	lacksFeatures bool  // a member of the cluster cannot apply new commands
	quotaErr      error // CheckQuota's answer
	auth          *auth.State
	// whileLinearizing, if set, is the auth state a linearize wait
	// applies: it replaces auth before Linearize and LinearizeAsync
	// answer, as a member that catches up with an auth change does.
	whileLinearizing *auth.State
}

func (f *fakeNode) AuthState() *auth.State {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.auth == nil {
		return auth.Empty
	}
	return f.auth
}

func (f *fakeNode) ProposeAuth(_ context.Context, c *fsmv1.AuthCommand) (*fsmv1.AuthResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.proposed = append(f.proposed, fsmv1.CommandType_COMMAND_TYPE_AUTH.String())
	return &fsmv1.AuthResult{}, nil
}

func (f *fakeNode) Propose(ctx context.Context, cmd []byte) (any, error) {
	return f.apply(cmd)
}

func (f *fakeNode) ProposeAsync(cmd []byte, _ time.Time, fn func(any, error)) {
	go func() { fn(f.apply(cmd)) }()
}

func (f *fakeNode) ProposeLocal(cmd []byte, _ time.Time, fn func(any, error)) {
	if !f.leader {
		fn(nil, fmt.Errorf("%w: %s is not the leader", member.ErrNotApplied, f.name))
		return
	}
	go func() { fn(f.apply(cmd)) }()
}

// apply answers a command as the state machine would, header included.
func (f *fakeNode) apply(cmd []byte) (any, error) {
	c := &fsmv1.Command{}
	if err := proto.Unmarshal(cmd, c); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.proposed = append(f.proposed, c.GetType().String())
	f.mu.Unlock()
	if f.proposeErr != nil {
		return nil, f.proposeErr
	}
	h := &kvv1.ResponseHeader{Revision: 7}
	switch c.GetType() {
	case fsmv1.CommandType_COMMAND_TYPE_PUT:
		return &kvv1.PutResponse{Header: h}, nil
	case fsmv1.CommandType_COMMAND_TYPE_DELETE_RANGE:
		return &kvv1.DeleteRangeResponse{Header: h, Deleted: 1}, nil
	case fsmv1.CommandType_COMMAND_TYPE_TXN:
		// Every compare holds; the success branch's results are what the
		// fake's Range finds, and writes that succeed.
		txn := &kvv1.TxnRequest{}
		if err := proto.Unmarshal(c.GetPayload(), txn); err != nil {
			return nil, err
		}
		resp := &kvv1.TxnResponse{Header: h, Succeeded: true}
		for _, op := range txn.GetSuccess() {
			var r *kvv1.ResponseOp
			switch o := op.GetRequest().(type) {
			case *kvv1.RequestOp_RequestRange:
				rr, _ := f.Range(o.RequestRange)
				r = &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseRange{ResponseRange: rr}}
			case *kvv1.RequestOp_RequestPut:
				r = &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponsePut{ResponsePut: &kvv1.PutResponse{Header: h}}}
			case *kvv1.RequestOp_RequestDeleteRange:
				r = &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &kvv1.DeleteRangeResponse{Header: h, Deleted: 1}}}
			default:
				r = &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseTxn{ResponseTxn: &kvv1.TxnResponse{Header: h, Succeeded: true}}}
			}
			resp.Responses = append(resp.Responses, r)
		}
		return resp, nil
	default:
		return &kvv1.TxnResponse{Header: h, Succeeded: true}, nil
	}
}

func (f *fakeNode) Linearize(context.Context) error {
	f.catchUp()
	return f.linearizeErr
}

func (f *fakeNode) LinearizeAsync(_, _ time.Time, fn func(error)) {
	f.mu.Lock()
	f.linearizeWait++
	f.mu.Unlock()
	go func() {
		f.catchUp()
		fn(f.linearizeErr)
	}()
}

// catchUp applies whileLinearizing, if set.
func (f *fakeNode) catchUp() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.whileLinearizing != nil {
		f.auth = f.whileLinearizing
	}
}

// ReadTxn answers the ranges of a read-only txn's success branch from the
// fake's keys, as if its compares held.
func (f *fakeNode) ReadTxn(req *kvv1.TxnRequest) (*kvv1.TxnResponse, error) {
	resp := &kvv1.TxnResponse{Header: &kvv1.ResponseHeader{Revision: 7}, Succeeded: true}
	for _, op := range req.GetSuccess() {
		rr, err := f.Range(op.GetRequestRange())
		if err != nil {
			return nil, err
		}
		rr.Header = nil
		resp.Responses = append(resp.Responses, rangeOp(rr))
	}
	return resp, nil
}

func (f *fakeNode) Range(req *kvv1.RangeRequest) (*kvv1.RangeResponse, error) {
	resp := &kvv1.RangeResponse{Header: &kvv1.ResponseHeader{Revision: 7}}
	if rec, ok := f.records[string(req.GetKey())]; ok {
		resp.Kvs, resp.Count = []*kvv1.KeyValue{rec}, 1
		return resp, nil
	}
	if n, ok := f.kv[string(req.GetKey())]; ok {
		resp.Kvs = []*kvv1.KeyValue{{Key: req.GetKey(), Value: make([]byte, n)}}
		resp.Count = 1
	}
	return resp, nil
}

func (f *fakeNode) Header(rev int64) *kvv1.ResponseHeader {
	return &kvv1.ResponseHeader{ClusterId: 1, MemberId: 2, Revision: rev, RaftTerm: 3}
}
func (f *fakeNode) RequestTimeout() time.Duration { return 5 * time.Second }
func (f *fakeNode) Draining() <-chan struct{}     { return f.drain }
func (f *fakeNode) Err() error                    { return f.removedErr }
func (f *fakeNode) CheckQuota(int) error          { return f.quotaErr }

func (f *fakeNode) Alarm(context.Context, *kvv1.AlarmRequest) (*kvv1.AlarmResponse, error) {
	return &kvv1.AlarmResponse{}, nil
}

func (f *fakeNode) RequireFeature(string) error {
	if f.lacksFeatures {
		return member.ErrLeasesUnsupported
	}
	return nil
}
func (f *fakeNode) Name() string   { return f.name }
func (f *fakeNode) IsLeader() bool { return f.leader }
func (f *fakeNode) Members() ([]*kvv1.Member, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*kvv1.Member
	for _, n := range f.added {
		out = append(out, &kvv1.Member{Name: n})
	}
	return out, nil
}

func (f *fakeNode) AddMember(ctx context.Context, req *kvv1.MemberAddRequest) error {
	md, _ := metadata.FromIncomingContext(ctx)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastMD = md
	f.added = append(f.added, req.GetName())
	return nil
}
func (f *fakeNode) PromoteMember(context.Context, string) error { return member.ErrLearnerLagging }
func (f *fakeNode) RemoveMember(context.Context, string) error  { return member.ErrMemberNotFound }
func (f *fakeNode) TransferLeadership(context.Context, string) (string, error) {
	return "", member.ErrNotApplied
}
func (f *fakeNode) LeaderAddr(context.Context) (string, string, error) {
	if f.leader {
		return "", f.name, member.ErrSelfIsLeader
	}
	return f.leaderAddr, "leader", nil
}
func (f *fakeNode) Revision() int64                { return 7 }
func (f *fakeNode) Status() (member.Status, error) { return member.Status{Name: f.name}, nil }
func (f *fakeNode) Backup(w io.Writer, size func(int64)) (int64, error) {
	size(4)
	n, err := w.Write([]byte("data"))
	return int64(n), err
}
func (f *fakeNode) HashKV(int64) (uint32, int64, int64, error)       { return 0, 0, 0, fsm.ErrCompacted }
func (f *fakeNode) Defragment(context.Context) (int64, int64, error) { return 10, 5, nil }
func (f *fakeNode) ReadIndex(context.Context) (uint64, error) {
	if !f.leader {
		return 0, member.ErrNoLeader
	}
	return 42, nil
}
func (f *fakeNode) RemovedNotice(string) {}

func (f *fakeNode) Compact(_ context.Context, rev int64, _ bool) (*kvv1.CompactResponse, error) {
	if rev <= 0 {
		return nil, fsm.ErrInvalidCompaction
	}
	return &kvv1.CompactResponse{Header: &kvv1.ResponseHeader{Revision: 7}}, nil
}

// The watch side: a real hub over an empty history.
func (f *fakeNode) NewWatchStream() *watch.Stream { return f.watchHub().NewStream() }
func (f *fakeNode) LeaderlessFor() time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leaderless
}
func (f *fakeNode) ElectionTimeout() time.Duration       { return 50 * time.Millisecond }
func (f *fakeNode) WatchProgressInterval() time.Duration { return time.Hour }

func (f *fakeNode) watchHub() *watch.Hub {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hub == nil {
		// The hub authorizes watchers against the node's auth state, as
		// the member's does (its state machine reports every change).
		f.hub, _ = watch.New(watch.Config{History: noHistory{}, Auth: f.auth})
	}
	return f.hub
}

type noHistory struct{}

func (noHistory) Changes([]byte, []byte, int64, int64) ([]watch.Change, error) { return nil, nil }
func (noHistory) CompactRevision() int64                                       { return 0 }

// dialer is LeaderConns over plain connections.
type dialer struct{}

func (dialer) Conn(_ context.Context, addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
}

// serve serves node's API on loopback and returns a connection to it.
func serve(t *testing.T, node Node, maxBytes int) (*grpc.ClientConn, string) {
	t.Helper()
	return serveAt(t, node, Config{MaxRequestBytes: maxBytes})
}

// serveConfig serves node's API with cfg (Version and Workers filled in).
func serveConfig(t *testing.T, node Node, cfg Config) *grpc.ClientConn {
	t.Helper()
	cc, _ := serveAt(t, node, cfg)
	return cc
}

func serveAt(t *testing.T, node Node, cfg Config) (*grpc.ClientConn, string) {
	t.Helper()
	cfg.Version, cfg.Workers = "test", workers.New()
	api, err := New(cfg, node, dialer{})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(api.ServerOptions()...)
	api.Register(gs)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return cc, lis.Addr().String()
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// The one table: every error a member returns has its code, and a status
// relayed from another member passes through as it is.
func TestErrorTable(t *testing.T) {
	relayed := status.Error(codes.ResourceExhausted, "from the leader")
	tests := []struct {
		err        error
		code       codes.Code
		notApplied bool
	}{
		{fsm.ErrEmptyKey, codes.InvalidArgument, false},
		{fmt.Errorf("put: %w", fsm.ErrTooManyOps), codes.InvalidArgument, false},
		{ErrRequestTooLarge, codes.InvalidArgument, false},
		{member.ErrInvalidMember, codes.InvalidArgument, false},
		{fsm.ErrLeaseNotFound, codes.NotFound, false},
		{member.ErrMemberNotFound, codes.NotFound, false},
		{member.ErrMemberExists, codes.AlreadyExists, false},
		{member.ErrUnsafeReconfig, codes.FailedPrecondition, false},
		{member.ErrRemoved, codes.FailedPrecondition, false},
		{fsm.ErrCompacted, codes.OutOfRange, false},
		{fsm.ErrDefragBusy, codes.Aborted, false},
		{fsm.ErrInvalidCompaction, codes.InvalidArgument, false},
		{member.ErrCompactUnsupported, codes.FailedPrecondition, false},
		{member.ErrLeasesUnsupported, codes.FailedPrecondition, false},
		{member.ErrAlarmsUnsupported, codes.FailedPrecondition, false},
		{fmt.Errorf("put: %w", fsm.ErrNoSpace), codes.ResourceExhausted, false},
		{fsm.ErrInvalidAlarm, codes.InvalidArgument, false},
		{fsm.ErrLeaseExists, codes.FailedPrecondition, false},
		{member.ErrLeaseTTLTooShort, codes.InvalidArgument, false},
		{member.ErrLeaseTTLTooLong, codes.InvalidArgument, false},
		{fsm.ErrInvalidLease, codes.InvalidArgument, false},
		{fsm.ErrKeyNotFound, codes.InvalidArgument, false},
		{fsm.ErrValueProvided, codes.InvalidArgument, false},
		{fsm.ErrLeaseProvided, codes.InvalidArgument, false},
		{fsm.ErrFutureRevision, codes.OutOfRange, false},
		{auth.ErrInvalidToken, codes.Unauthenticated, false},
		{auth.ErrTokenExpired, codes.Unauthenticated, false},
		{auth.ErrNoCredentials, codes.Unauthenticated, false},
		{auth.ErrAuthFailed, codes.Unauthenticated, false},
		{fmt.Errorf("%w: user %q may not write", auth.ErrPermissionDenied, "u"), codes.PermissionDenied, false},
		{auth.ErrNotMember, codes.PermissionDenied, false},
		{auth.ErrInvalidName, codes.InvalidArgument, false},
		{auth.ErrInvalidPermission, codes.InvalidArgument, false},
		{auth.ErrInvalidPassword, codes.InvalidArgument, false},
		{auth.ErrPlainPassword, codes.InvalidArgument, false},
		{auth.ErrRootUserMissing, codes.FailedPrecondition, false},
		{auth.ErrRootRoleMissing, codes.FailedPrecondition, false},
		{auth.ErrInvalidAuthMgmt, codes.FailedPrecondition, false},
		{auth.ErrAuthNotEnabled, codes.FailedPrecondition, false},
		{auth.ErrRoleNotGranted, codes.FailedPrecondition, false},
		{auth.ErrPermissionNotGranted, codes.FailedPrecondition, false},
		{auth.ErrUserExists, codes.AlreadyExists, false},
		{auth.ErrRoleExists, codes.AlreadyExists, false},
		{auth.ErrUserNotFound, codes.NotFound, false},
		{auth.ErrRoleNotFound, codes.NotFound, false},
		{member.ErrNoLeader, codes.Unavailable, true},
		{member.ErrNotReady, codes.Unavailable, true},
		{member.ErrNotApplied, codes.Unavailable, true},
		{member.ErrUnreachable, codes.Unavailable, true},
		{fsm.ErrOvertaken, codes.Unavailable, true},
		{member.ErrStopped, codes.Unavailable, false},
		{member.ErrOutcomeUnknown, codes.Unknown, false},
		{context.DeadlineExceeded, codes.DeadlineExceeded, false},
		{context.Canceled, codes.Canceled, false},
		{errors.New("disk on fire"), codes.Internal, false},
		{relayed, codes.ResourceExhausted, false},
	}
	for _, tt := range tests {
		got := toStatus(tt.err)
		if status.Code(got) != tt.code || apierr.IsNotApplied(got) != tt.notApplied {
			t.Errorf("%v: %v (not applied %v), want %v (not applied %v)", tt.err, status.Code(got), apierr.IsNotApplied(got), tt.code, tt.notApplied)
		}
	}
	if toStatus(nil) != nil {
		t.Error("toStatus(nil) is not nil")
	}
}

// Handlers return the member's errors; the client sees their codes.
func TestUnaryCallsGetStatuses(t *testing.T) {
	node := &fakeNode{name: "a", leader: true, proposeErr: fmt.Errorf("%w: queue full", member.ErrNotApplied), linearizeErr: member.ErrNotReady}
	cc, _ := serve(t, node, 1024)
	kv := kvv1.NewKVServiceClient(cc)
	ctx := ctxT(t)

	_, err := kv.Put(ctx, &kvv1.PutRequest{Key: []byte("k")})
	if status.Code(err) != codes.Unavailable || !apierr.IsNotApplied(err) {
		t.Errorf("put refused as not applied: %v", err)
	}
	_, err = kv.Put(ctx, &kvv1.PutRequest{})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "key") {
		t.Errorf("put of an empty key: %v", err)
	}
	_, err = kv.Put(ctx, &kvv1.PutRequest{Key: []byte("k"), Value: make([]byte, 2048)})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "--max-request-bytes") {
		t.Errorf("put over the size limit: %v", err)
	}
	_, err = kv.Range(ctx, &kvv1.RangeRequest{Key: []byte("k")})
	if status.Code(err) != codes.Unavailable || !apierr.IsNotApplied(err) {
		t.Errorf("linearizable range on a leader not ready: %v", err)
	}
	resp, err := kv.Range(ctx, &kvv1.RangeRequest{Key: []byte("k"), Serializable: true})
	if err != nil || resp.GetHeader().GetMemberId() != 2 {
		t.Errorf("serializable range: %v, header %v", err, resp.GetHeader())
	}
	_, err = kvv1.NewMaintenanceServiceClient(cc).HashKV(ctx, &kvv1.HashKVRequest{Revision: 1})
	if status.Code(err) != codes.Unavailable {
		t.Errorf("hash kv when linearize fails: %v", err)
	}
	_, err = kvv1.NewClusterServiceClient(cc).MemberPromote(ctx, &kvv1.MemberPromoteRequest{Name: "b"})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("promote of a lagging learner: %v", err)
	}

	node.removedErr = member.ErrRemoved
	_, err = kv.Range(ctx, &kvv1.RangeRequest{Key: []byte("k"), Serializable: true})
	if status.Code(err) != codes.FailedPrecondition {
		t.Errorf("any call once removed: %v", err)
	}
}

// Each op of a stream is answered as its unary call would be; the
// linearizable ranges of one message wait for one read index together.
func TestStreamOps(t *testing.T) {
	node := &fakeNode{name: "a", leader: true, kv: map[string]int{"k": 3}}
	cc, _ := serve(t, node, 1024)
	st, err := kvv1.NewKVServiceClient(cc).Stream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	get := func(key string, serializable bool) *kvv1.RequestOp {
		return &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestRange{RequestRange: &kvv1.RangeRequest{Key: []byte(key), Serializable: serializable}}}
	}
	ops := []*kvv1.StreamOp{
		{Id: 1, Request: get("k", false)},
		{Id: 2, Request: get("k", false)},
		{Id: 3, Request: get("k", true)},
		{Id: 4, Request: &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestPut{RequestPut: &kvv1.PutRequest{Key: []byte("k")}}}},
		{Id: 5, Request: &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestPut{RequestPut: &kvv1.PutRequest{}}}},
		{Id: 6, Request: &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestPut{RequestPut: &kvv1.PutRequest{Key: []byte("k"), Value: make([]byte, 2048)}}}},
		{Id: 7},
		{Id: 8, Request: get("", false)},
	}
	if err := st.Send(&kvv1.StreamRequest{Ops: ops}); err != nil {
		t.Fatal(err)
	}
	results := map[uint64]*kvv1.StreamResult{}
	for len(results) < len(ops) {
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.GetResults() {
			if results[r.GetId()] != nil {
				t.Fatalf("op %d answered twice", r.GetId())
			}
			results[r.GetId()] = r
		}
	}
	for _, id := range []uint64{1, 2, 3} {
		if kvs := results[id].GetResponse().GetResponseRange().GetKvs(); len(kvs) != 1 || len(kvs[0].GetValue()) != 3 {
			t.Errorf("range op %d: %v", id, results[id])
		}
	}
	if h := results[4].GetResponse().GetResponsePut().GetHeader(); h.GetRevision() != 7 || h.GetMemberId() != 2 {
		t.Errorf("put op: header %v", h)
	}
	for _, id := range []uint64{5, 6, 7, 8} {
		if e := results[id].GetError(); codes.Code(e.GetCode()) != codes.InvalidArgument {
			t.Errorf("invalid op %d: %v, want InvalidArgument", id, e)
		}
	}
	node.mu.Lock()
	defer node.mu.Unlock()
	if node.linearizeWait != 1 {
		t.Errorf("the two linearizable ranges of one message waited for %d read indexes, want 1", node.linearizeWait)
	}
}

// A follower passes a membership change on to the leader, marked so that
// the leader never passes it on again; a marked request on a member that
// does not lead is refused as not applied.
func TestMembershipChangesGoToTheLeader(t *testing.T) {
	leader := &fakeNode{name: "leader", leader: true}
	_, leaderAddr := serve(t, leader, 1<<20)
	follower := &fakeNode{name: "follower", leaderAddr: leaderAddr}
	cc, _ := serve(t, follower, 1<<20)

	resp, err := kvv1.NewClusterServiceClient(cc).MemberAdd(ctxT(t), &kvv1.MemberAddRequest{Name: "new", RaftAddr: "h:1"})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetMember().GetName() != "new" {
		t.Errorf("answer does not name the new member: %v", resp)
	}
	leader.mu.Lock()
	md := leader.lastMD
	leader.mu.Unlock()
	if len(md.Get(forwardedKey)) == 0 {
		t.Error("the leader got the request without the forwarded mark")
	}
	if len(follower.added) != 0 {
		t.Error("the follower added the member itself")
	}

	ctx := metadata.AppendToOutgoingContext(ctxT(t), forwardedKey, "1")
	_, err = kvv1.NewClusterServiceClient(cc).MemberAdd(ctx, &kvv1.MemberAddRequest{Name: "other", RaftAddr: "h:2"})
	if status.Code(err) != codes.Unavailable || !apierr.IsNotApplied(err) {
		t.Errorf("a forwarded request on a follower: %v, want Unavailable not applied", err)
	}
	_, err = kvv1.NewClusterServiceClient(cc).MemberAdd(ctxT(t), &kvv1.MemberAddRequest{Name: "bad"})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("an invalid request: %v, want InvalidArgument before it is passed on", err)
	}
}

// A follower refuses a forwarded proposal without touching its log.
func TestPeerProposeOnlyOnTheLeader(t *testing.T) {
	follower := &fakeNode{name: "f"}
	cc, _ := serve(t, follower, 1<<20)
	cmd, err := fsm.EncodeCommand(fsmv1.CommandType_COMMAND_TYPE_PUT, &kvv1.PutRequest{Key: []byte("k")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = peerv1.NewPeerServiceClient(cc).Propose(ctxT(t), &peerv1.ProposeRequest{Command: cmd})
	if status.Code(err) != codes.Unavailable || !apierr.IsNotApplied(err) {
		t.Fatalf("propose on a follower: %v", err)
	}
	if len(follower.proposed) != 0 {
		t.Error("a follower proposed a forwarded command")
	}
}

// A watch stream carries its watchers' events; a client that requires a
// leader is told when its member has lost it, and every client when the
// member drains.
func TestWatchStream(t *testing.T) {
	node := &fakeNode{name: "a", leader: true, drain: make(chan struct{})}
	cc, _ := serve(t, node, 1<<20)
	ctx := ctxT(t)
	st, err := kvv1.NewWatchServiceClient(cc).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&kvv1.WatchRequest{Request: &kvv1.WatchRequest_CreateRequest{CreateRequest: &kvv1.WatchCreateRequest{Key: []byte("k")}}}); err != nil {
		t.Fatal(err)
	}
	created, err := st.Recv()
	if err != nil || !created.GetCreated() || created.GetHeader().GetMemberId() != 2 {
		t.Fatalf("created: %v, %v", created, err)
	}
	node.watchHub().Applied([]watch.Change{{Revision: 2, Events: []*kvv1.Event{{Type: kvv1.EventType_EVENT_TYPE_PUT, Kv: &kvv1.KeyValue{Key: []byte("k"), ModRevision: 2}}}}})
	ev, err := st.Recv()
	if err != nil || len(ev.GetEvents()) != 1 || ev.GetHeader().GetRevision() != 2 {
		t.Fatalf("event: %v, %v", ev, err)
	}
	_ = st.Send(&kvv1.WatchRequest{Request: &kvv1.WatchRequest_ProgressRequest{ProgressRequest: &kvv1.WatchProgressRequest{}}})
	if p, err := st.Recv(); err != nil || p.GetWatchId() != watch.ProgressWatchID || p.GetHeader().GetRevision() != 2 {
		t.Fatalf("progress: %v, %v", p, err)
	}

	// Leaderless: only the stream that asked is ended.
	lctx := metadata.AppendToOutgoingContext(ctxT(t), RequireLeaderKey, "true")
	needs, err := kvv1.NewWatchServiceClient(cc).Watch(lctx)
	if err != nil {
		t.Fatal(err)
	}
	node.mu.Lock()
	node.leaderless = time.Second
	node.mu.Unlock()
	if _, err := needs.Recv(); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "lost its leader") {
		t.Fatalf("a stream that requires a leader on a member without one: %v", err)
	}
	// Draining ends every stream, so that clients resume elsewhere.
	close(node.drain)
	if _, err := st.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("a stream on a draining member: %v", err)
	}
}

func TestCompact(t *testing.T) {
	cc, _ := serve(t, &fakeNode{name: "a", leader: true}, 1<<20)
	kv := kvv1.NewKVServiceClient(cc)
	if resp, err := kv.Compact(ctxT(t), &kvv1.CompactRequest{Revision: 5}); err != nil || resp.GetHeader().GetMemberId() != 2 {
		t.Fatalf("compact: %v, %v", resp, err)
	}
	if _, err := kv.Compact(ctxT(t), &kvv1.CompactRequest{}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("compact to 0: %v", err)
	}
}
