package rpc

import (
	"context"
	"errors"
	"io"
	"net"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/internal/auth"
	"github.com/kvd-io/kvd/internal/workers"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

var testTokenKey = []byte(strings.Repeat("k", 32))

// authState is an enabled auth state with root, a user "reader" allowed
// every key (readwrite on everything) and a user "nobody" allowed only the
// key "zzz", issued at revision 5.
func testAuthState() *auth.State {
	return &auth.State{
		Enabled:  true,
		Revision: 5,
		Secret:   []byte(strings.Repeat("s", 32)),
		Users: map[string]*fsmv1.AuthUser{
			"root":   {Name: "root", Roles: []string{"root"}, Revision: 1},
			"reader": {Name: "reader", Roles: []string{"all"}, Revision: 2},
			"nobody": {Name: "nobody", Roles: []string{"z"}, Revision: 3},
		},
		Roles: map[string]*fsmv1.AuthRole{
			"all": {Name: "all", Perms: []*kvv1.Permission{{PermType: kvv1.PermissionType_PERMISSION_TYPE_READWRITE, Key: []byte{}, RangeEnd: []byte{0}}}},
			"z":   {Name: "z", Perms: []*kvv1.Permission{{PermType: kvv1.PermissionType_PERMISSION_TYPE_READWRITE, Key: []byte("zzz")}}},
		},
	}
}

func tokenFor(t *testing.T, user string, rev uint64, ttl time.Duration) string {
	t.Helper()
	now := time.Now()
	tok, err := auth.Sign(testTokenKey, auth.Claims{User: user, Revision: rev, IssuedAt: now.Unix(), Expiry: now.Add(ttl).Unix()})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// serveAuth serves node's API with its health service, as a member does,
// and returns the server (for its registered services) and a connection.
func serveAuth(t *testing.T, node Node) (*grpc.Server, *grpc.ClientConn) {
	t.Helper()
	api, err := New(Config{MaxRequestBytes: 1 << 20, Version: "test", Workers: workers.New(), TokenKey: testTokenKey}, node, dialer{})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer(api.ServerOptions()...)
	api.Register(gs)
	healthpb.RegisterHealthServer(gs, health.NewServer())
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	return gs, cc
}

// rawCodec sends and receives encoded messages as they are: an empty
// request decodes as the zero request of any method.
type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error)      { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error { *(v.(*[]byte)) = data; return nil }
func (rawCodec) Name() string                       { return "proto" }

// sampleRequests are the requests sent to methods whose zero request
// would touch no key; every other method gets its zero request.
var sampleRequests = map[string]proto.Message{
	kvv1.KVService_Txn_FullMethodName: &kvv1.TxnRequest{Success: []*kvv1.RequestOp{
		{Request: &kvv1.RequestOp_RequestPut{RequestPut: &kvv1.PutRequest{Key: []byte("a")}}}}},
	kvv1.WatchService_Watch_FullMethodName: &kvv1.WatchRequest{Request: &kvv1.WatchRequest_CreateRequest{
		CreateRequest: &kvv1.WatchCreateRequest{Key: []byte("a")}}},
}

// call calls method with its sample request and returns its status: for a
// stream, nil once it answers anything, else the status it ends with after
// the client half-closes (DeadlineExceeded if it stays open and silent,
// which only a call let in can do).
func call(ctx context.Context, cc *grpc.ClientConn, method string, stream bool) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, resp := []byte{}, []byte{}
	if m, ok := sampleRequests[method]; ok {
		var err error
		if req, err = proto.Marshal(m); err != nil {
			return err
		}
	}
	if !stream {
		return cc.Invoke(ctx, method, &req, &resp, grpc.ForceCodec(rawCodec{}))
	}
	st, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, method, grpc.ForceCodec(rawCodec{}))
	if err != nil {
		return err
	}
	if err := st.SendMsg(&req); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	_ = st.CloseSend()
	if err := st.RecvMsg(&resp); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

func denied(err error) codes.Code {
	switch c := status.Code(err); c {
	case codes.Unauthenticated, codes.PermissionDenied:
		return c
	}
	return codes.OK // let in: whatever the handler answered
}

// TestEveryMethodHasARule calls every method of every registered service as
// (a) nobody, (b) a user without permission, (c) a user with permission on
// every key, (d) root and (e) a member, with auth enabled, and checks each
// answer against the method's rule. A method registered without a rule
// fails here (and is refused by the interceptor).
func TestEveryMethodHasARule(t *testing.T) {
	node := &fakeNode{name: "m1", leader: true, kv: map[string]int{}, drain: make(chan struct{}), auth: testAuthState()}
	gs, cc := serveAuth(t, node)
	ctx := context.Background() // each call has its own deadline

	type method struct {
		name   string
		stream bool
	}
	var methods []method
	for svc, info := range gs.GetServiceInfo() {
		for _, m := range info.Methods {
			methods = append(methods, method{"/" + svc + "/" + m.Name, m.IsClientStream || m.IsServerStream})
		}
	}
	sort.Slice(methods, func(i, j int) bool { return methods[i].name < methods[j].name })
	if len(methods) < 40 {
		t.Fatalf("found %d methods; the services are not all registered", len(methods))
	}

	callers := []struct {
		name string
		md   metadata.MD
	}{
		{"nobody", nil},
		{"without permission", metadata.Pairs(TokenMetadataKey, tokenFor(t, "nobody", 5, time.Minute))},
		{"with permission", metadata.Pairs(TokenMetadataKey, tokenFor(t, "reader", 5, time.Minute))},
		{"root", metadata.Pairs(TokenMetadataKey, tokenFor(t, "root", 5, time.Minute))},
		{"member", metadata.Pairs(MemberTokenMetadataKey, auth.MemberToken(node.auth.Secret))},
	}
	// want is the expected refusal of each rule for each caller, in the
	// callers' order.
	U, P, OK := codes.Unauthenticated, codes.PermissionDenied, codes.OK
	want := map[rule][]codes.Code{
		rulePublic: {OK, OK, OK, OK, OK},
		ruleUser:   {U, OK, OK, OK, OK},
		ruleOps:    {U, OK, OK, OK, OK},
		ruleKeys:   {U, P, OK, OK, OK},
		ruleRoot:   {U, P, P, OK, OK},
		ruleMember: {P, P, P, P, OK},
	}
	for _, m := range methods {
		r, ok := methodRules[m.name]
		if !ok {
			t.Errorf("%s has no authorization rule: add it to methodRules", m.name)
			continue
		}
		for i, c := range callers {
			t.Run(strings.TrimPrefix(m.name, "/")+"/"+c.name, func(t *testing.T) {
				err := call(metadata.NewOutgoingContext(ctx, c.md), cc, m.name, m.stream)
				if got := denied(err); got != want[r][i] {
					t.Fatalf("%s rule %v as %s: %v, want %v", m.name, r, c.name, err, want[r][i])
				}
			})
		}
	}
	for name, r := range methodRules {
		if r == ruleDelegated {
			// Another package serves these (etcdapi); its test
			// TestEveryMethodAuthorizedAsKvd checks them the same way.
			continue
		}
		if !func() bool {
			for _, m := range methods {
				if m.name == name {
					return true
				}
			}
			return false
		}() {
			t.Errorf("methodRules has %s, which is not registered", name)
		}
	}
}

// TestTokens: an expired token, a token of a deleted user, one issued
// before its user changed, a forged one: each refused with its reason.
func TestTokens(t *testing.T) {
	node := &fakeNode{name: "m1", leader: true, kv: map[string]int{"a": 1}, drain: make(chan struct{}), auth: testAuthState()}
	_, cc := serveAuth(t, node)
	kv := kvv1.NewKVServiceClient(cc)
	forged, _ := auth.Sign([]byte(strings.Repeat("x", 32)), auth.Claims{User: "root", Revision: 5, Expiry: time.Now().Add(time.Minute).Unix()})
	cases := []struct {
		name, token string
		code        codes.Code
		msg         string
	}{
		{"valid", tokenFor(t, "reader", 5, time.Minute), codes.OK, ""},
		{"expired", tokenFor(t, "reader", 5, -time.Second), codes.Unauthenticated, "auth: token expired"},
		{"unknown user", tokenFor(t, "ghost", 5, time.Minute), codes.Unauthenticated, "auth: invalid token"},
		{"issued before the user changed", tokenFor(t, "nobody", 2, time.Minute), codes.Unauthenticated, "auth: invalid token"},
		{"forged", forged, codes.Unauthenticated, "auth: invalid token"},
		{"garbage", "abc", codes.Unauthenticated, "auth: invalid token"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ctx := metadata.AppendToOutgoingContext(ctxT(t), TokenMetadataKey, c.token)
			_, err := kv.Range(ctx, &kvv1.RangeRequest{Key: []byte("a"), Serializable: true})
			if status.Code(err) != c.code || !strings.Contains(status.Convert(err).Message(), c.msg) {
				t.Fatalf("Range: %v, want %v %q", err, c.code, c.msg)
			}
		})
	}
}

// A KV stream opened while auth was off carries no user: once auth is on,
// its lease renewals are refused, as a LeaseKeepAlive call without a user
// would be.
func TestStreamRenewalNeedsAUser(t *testing.T) {
	node := &fakeNode{name: "m1", leader: true, drain: make(chan struct{})}
	node.leases().ttls[9] = 5
	_, cc := serveAuth(t, node)
	st, err := kvv1.NewKVServiceClient(cc).Stream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	renew := func(id uint64) *kvv1.StreamResult {
		t.Helper()
		if err := st.Send(&kvv1.StreamRequest{Ops: []*kvv1.StreamOp{{Id: id, LeaseRenew: &kvv1.StreamLeaseRenew{Id: 9}}}}); err != nil {
			t.Fatal(err)
		}
		resp, err := st.Recv()
		if err != nil || len(resp.GetResults()) != 1 {
			t.Fatalf("renewal %d: %v, %v", id, resp, err)
		}
		return resp.GetResults()[0]
	}
	if r := renew(1); r.GetError() != nil || r.GetLeaseRenewed().GetTtl() != 5 {
		t.Fatalf("a renewal with auth off: %v", r)
	}
	node.mu.Lock()
	node.auth = testAuthState()
	node.mu.Unlock()
	if r := renew(2); r.GetError() == nil || r.GetLeaseRenewed() != nil {
		t.Fatalf("a renewal without a user once auth is on: %v, want refused", r)
	}
}

// TestStreamOpsAuthorized: the ops of a KV stream and the watches of a
// watch stream are checked one by one; a refused one does not end the
// stream.
func TestStreamOpsAuthorized(t *testing.T) {
	node := &fakeNode{name: "m1", leader: true, kv: map[string]int{"zzz": 1}, drain: make(chan struct{}), auth: testAuthState()}
	_, cc := serveAuth(t, node)
	ctx := metadata.AppendToOutgoingContext(ctxT(t), TokenMetadataKey, tokenFor(t, "nobody", 5, time.Minute))

	st, err := kvv1.NewKVServiceClient(cc).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	get := func(key string) *kvv1.RequestOp {
		return &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestRange{RequestRange: &kvv1.RangeRequest{Key: []byte(key), Serializable: true}}}
	}
	// A lease renewal needs only a user, as LeaseKeepAlive does.
	renew := &kvv1.StreamOp{Id: 3, LeaseRenew: &kvv1.StreamLeaseRenew{Id: 9}}
	if err := st.Send(&kvv1.StreamRequest{Ops: []*kvv1.StreamOp{{Id: 1, Request: get("a")}, {Id: 2, Request: get("zzz")}, renew}}); err != nil {
		t.Fatal(err)
	}
	results := map[uint64]*kvv1.StreamResult{}
	for len(results) < 3 {
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range resp.GetResults() {
			results[r.GetId()] = r
		}
	}
	if e := results[1].GetError(); codes.Code(e.GetCode()) != codes.PermissionDenied {
		t.Fatalf("op outside the permission: %v, want PermissionDenied", results[1])
	}
	if results[2].GetError() != nil {
		t.Fatalf("op inside the permission: %v", results[2].GetError())
	}
	if results[3].GetError() != nil || results[3].GetLeaseRenewed() == nil {
		t.Fatalf("a user's lease renewal: %v", results[3])
	}

	ws, err := kvv1.NewWatchServiceClient(cc).Watch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := ws.Send(&kvv1.WatchRequest{Request: &kvv1.WatchRequest_CreateRequest{CreateRequest: &kvv1.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("b")}}}); err != nil {
		t.Fatal(err)
	}
	resp, err := ws.Recv()
	if err != nil {
		t.Fatal(err)
	}
	if !resp.GetCanceled() || !strings.Contains(resp.GetCancelReason(), "auth: permission denied") {
		t.Fatalf("watch outside the permission: %v, want canceled with permission denied", resp)
	}
	if err := ws.Send(&kvv1.WatchRequest{Request: &kvv1.WatchRequest_CreateRequest{CreateRequest: &kvv1.WatchCreateRequest{Key: []byte("zzz")}}}); err != nil {
		t.Fatal(err)
	}
	resp, err = ws.Recv()
	if err != nil || !resp.GetCreated() || resp.GetCanceled() {
		t.Fatalf("watch inside the permission: %v, %v", resp, err)
	}
}

// A linearizable read is authorized against the auth state it reads: a
// member that applies an auth change while the read waits for its read
// index (an AuthEnable, a role's permission revoked, acknowledged before
// the read began) refuses it, as etcd does; a serializable read is judged
// by the state it found. TestConsoleOverTLS caught the first case by
// chance on a member that lagged behind the AuthEnable.
func TestLinearizableReadsAuthorizedAfterTheirWait(t *testing.T) {
	off := &auth.State{Revision: 4}
	revoked := testAuthState()
	revoked.Revision = 6
	revoked.Roles["z"] = &fsmv1.AuthRole{Name: "z"}
	get := func(serializable bool) *kvv1.RangeRequest {
		return &kvv1.RangeRequest{Key: []byte("zzz"), Serializable: serializable}
	}
	readTxn := &kvv1.TxnRequest{Success: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestRange{RequestRange: get(false)}}}}
	for _, c := range []struct {
		name         string
		before, then *auth.State
		user         string // "": no token
		want         codes.Code
	}{
		{"auth enabled meanwhile", off, testAuthState(), "", codes.Unauthenticated},
		{"permission revoked meanwhile", testAuthState(), revoked, "nobody", codes.PermissionDenied},
		{"nothing changed", testAuthState(), testAuthState(), "nobody", codes.OK},
	} {
		t.Run(c.name, func(t *testing.T) {
			node := &fakeNode{name: "m1", leader: true, kv: map[string]int{"zzz": 1}, drain: make(chan struct{}), auth: c.before, whileLinearizing: c.then}
			_, cc := serveAuth(t, node)
			ctx := ctxT(t)
			if c.user != "" {
				ctx = metadata.AppendToOutgoingContext(ctx, TokenMetadataKey, tokenFor(t, c.user, uint64(c.before.Revision), time.Minute))
			}
			kv := kvv1.NewKVServiceClient(cc)
			// Each read starts under the state before the change.
			before := func() {
				node.mu.Lock()
				node.auth = c.before
				node.mu.Unlock()
			}
			if _, err := kv.Range(ctx, get(false)); status.Code(err) != c.want {
				t.Errorf("linearizable Range: %v, want %v", err, c.want)
			}
			before()
			if _, err := kv.Txn(ctx, readTxn); status.Code(err) != c.want {
				t.Errorf("read-only Txn: %v, want %v", err, c.want)
			}
			before()
			// The server authorizes the stream when its handler starts,
			// before the ops arrive, under the state before the change.
			st, err := kv.Stream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			ops := []*kvv1.StreamOp{
				{Id: 1, Request: &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestRange{RequestRange: get(false)}}},
				{Id: 2, Request: &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestTxn{RequestTxn: readTxn}}},
			}
			if err := st.Send(&kvv1.StreamRequest{Ops: ops}); err != nil {
				t.Fatal(err)
			}
			for got := 0; got < len(ops); {
				resp, err := st.Recv()
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range resp.GetResults() {
					got++
					if code := codes.Code(r.GetError().GetCode()); code != c.want {
						t.Errorf("stream op %d: %v, want %v", r.GetId(), r.GetError(), c.want)
					}
				}
			}
			// A serializable read waits for nothing: it is judged by the
			// state it finds.
			before()
			if _, err := kv.Range(ctx, get(true)); err != nil {
				t.Errorf("serializable Range: %v", err)
			}
		})
	}
}

// Root's reads of users and roles wait for a read index too, and are
// refused when the caller lost root (or auth came on) while they waited.
func TestRootReadsAuthorizedAfterTheirWait(t *testing.T) {
	node := &fakeNode{name: "m1", leader: true, drain: make(chan struct{}), auth: &auth.State{Revision: 4}, whileLinearizing: testAuthState()}
	_, cc := serveAuth(t, node)
	if _, err := kvv1.NewAuthServiceClient(cc).UserList(ctxT(t), &kvv1.UserListRequest{}); status.Code(err) == codes.OK {
		t.Fatal("UserList without a user answered after auth came on during its wait")
	}
	node.mu.Lock()
	node.auth, node.whileLinearizing = testAuthState(), nil
	node.mu.Unlock()
	ctx := metadata.AppendToOutgoingContext(ctxT(t), TokenMetadataKey, tokenFor(t, "root", 5, time.Minute))
	if _, err := kvv1.NewAuthServiceClient(cc).UserList(ctx, &kvv1.UserListRequest{}); err != nil {
		t.Fatalf("root's UserList: %v", err)
	}
}
