package rpc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/member"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// fakeLeases is the fake node's lease part: leases by id with their TTL.
type fakeLeases struct {
	mu       sync.Mutex
	ttls     map[int64]int64
	renewErr error         // every renewal fails with it
	hold     chan struct{} // renewals of lease 1 wait for it to close
	renewing int           // renewals under way
	maxConc  int           // the most renewals under way at once
}

func (f *fakeNode) leases() *fakeLeases {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.lease == nil {
		f.lease = &fakeLeases{ttls: map[int64]int64{}}
	}
	return f.lease
}

func (f *fakeNode) LeaseGrant(_ context.Context, id, ttl int64) (*kvv1.LeaseGrantResponse, error) {
	l := f.leases()
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.ttls[id]; ok {
		return nil, fmt.Errorf("%w: %d", fsm.ErrLeaseExists, id)
	}
	if ttl < 2 {
		return nil, fmt.Errorf("%w: %d", member.ErrLeaseTTLTooShort, ttl)
	}
	l.ttls[id] = ttl
	return &kvv1.LeaseGrantResponse{Header: &kvv1.ResponseHeader{Revision: 1}, Id: id, Ttl: ttl}, nil
}

func (f *fakeNode) LeaseRevoke(_ context.Context, id int64) (*kvv1.LeaseRevokeResponse, error) {
	l := f.leases()
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.ttls[id]; !ok {
		return nil, fmt.Errorf("%w: %d", fsm.ErrLeaseNotFound, id)
	}
	delete(l.ttls, id)
	return &kvv1.LeaseRevokeResponse{Header: &kvv1.ResponseHeader{Revision: 2}}, nil
}

func (f *fakeNode) LeaseRenewAsync(id int64, fn func(int64, error)) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), f.RequestTimeout())
		defer cancel()
		fn(f.LeaseRenew(ctx, id))
	}()
}

func (f *fakeNode) LeaseRenew(ctx context.Context, id int64) (int64, error) {
	l := f.leases()
	l.mu.Lock()
	l.renewing++
	l.maxConc = max(l.maxConc, l.renewing)
	hold, renewErr := l.hold, l.renewErr
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.renewing--
		l.mu.Unlock()
	}()
	if id == 1 && hold != nil {
		select {
		case <-hold:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	if renewErr != nil {
		return 0, renewErr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	ttl, ok := l.ttls[id]
	if !ok {
		return 0, fmt.Errorf("%w: %d", member.ErrLeaseNotFound, id)
	}
	return ttl, nil
}

func (f *fakeNode) LeaseTimeToLive(_ context.Context, id int64, keys bool) (*kvv1.LeaseTimeToLiveResponse, error) {
	l := f.leases()
	l.mu.Lock()
	defer l.mu.Unlock()
	ttl, ok := l.ttls[id]
	if !ok {
		return &kvv1.LeaseTimeToLiveResponse{Id: id, Ttl: -1}, nil
	}
	return &kvv1.LeaseTimeToLiveResponse{Id: id, Ttl: ttl, GrantedTtl: ttl}, nil
}

func (f *fakeNode) MinLeaseTTL() int64 { return 1 }

func (f *fakeNode) Leases(context.Context) (*kvv1.LeaseLeasesResponse, error) {
	return &kvv1.LeaseLeasesResponse{}, nil
}

func (f *fakeNode) LeaseRenewLocal(ctx context.Context, id int64) (int64, error) {
	return f.LeaseRenew(ctx, id)
}

func (f *fakeNode) LeaseRenewBatchLocal(ctx context.Context, ids []int64) ([]int64, error) {
	ttls := make([]int64, len(ids))
	for i, id := range ids {
		ttl, err := f.LeaseRenew(ctx, id)
		if err != nil && !errors.Is(err, member.ErrLeaseNotFound) {
			return nil, err
		}
		ttls[i] = ttl
	}
	return ttls, nil
}

func (f *fakeNode) LeaseTimeToLiveLocal(ctx context.Context, id int64, keys bool) (*kvv1.LeaseTimeToLiveResponse, error) {
	return f.LeaseTimeToLive(ctx, id, keys)
}

func TestLeaseUnaryCalls(t *testing.T) {
	node := &fakeNode{name: "a", leader: true}
	cc, _ := serve(t, node, 1024)
	ls := kvv1.NewLeaseServiceClient(cc)
	ctx := ctxT(t)
	g, err := ls.LeaseGrant(ctx, &kvv1.LeaseGrantRequest{Id: 7, Ttl: 5})
	if err != nil || g.GetId() != 7 || g.GetTtl() != 5 || g.GetHeader().GetMemberId() == 0 {
		t.Fatalf("grant: %v, %v", g, err)
	}
	if _, err := ls.LeaseGrant(ctx, &kvv1.LeaseGrantRequest{Id: 7, Ttl: 5}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("grant of an id in use: %v, want FailedPrecondition", err)
	}
	if _, err := ls.LeaseGrant(ctx, &kvv1.LeaseGrantRequest{Id: 8, Ttl: 1}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("grant below the minimum TTL: %v, want InvalidArgument", err)
	}
	if _, err := ls.LeaseRevoke(ctx, &kvv1.LeaseRevokeRequest{Id: 9}); status.Code(err) != codes.NotFound {
		t.Errorf("revoke of an unknown lease: %v, want NotFound", err)
	}
	ttl, err := ls.LeaseTimeToLive(ctx, &kvv1.LeaseTimeToLiveRequest{Id: 9})
	if err != nil || ttl.GetTtl() != -1 {
		t.Errorf("time to live of an unknown lease: %v, %v; want ttl -1", ttl, err)
	}
}

// A keep-alive stream renews several leases at once, answers a lease that
// does not exist with ttl 0, and ends on any other failure.
func TestLeaseKeepAliveStream(t *testing.T) {
	node := &fakeNode{name: "a", leader: true, drain: make(chan struct{})}
	l := node.leases()
	l.ttls[1], l.ttls[2] = 5, 6
	l.hold = make(chan struct{})
	cc, _ := serve(t, node, 1024)
	st, err := kvv1.NewLeaseServiceClient(cc).LeaseKeepAlive(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{1, 2, 3} {
		if err := st.Send(&kvv1.LeaseKeepAliveRequest{Id: id}); err != nil {
			t.Fatal(err)
		}
	}
	// Lease 1's renewal is held: 2 and 3 are answered meanwhile.
	got := map[int64]int64{}
	for range 2 {
		resp, err := st.Recv()
		if err != nil {
			t.Fatal(err)
		}
		got[resp.GetId()] = resp.GetTtl()
	}
	if got[2] != 6 || got[3] != 0 || len(got) != 2 {
		t.Fatalf("answers while lease 1 is held: %v, want 2:6 and 3:0", got)
	}
	close(l.hold)
	resp, err := st.Recv()
	if err != nil || resp.GetId() != 1 || resp.GetTtl() != 5 {
		t.Fatalf("lease 1: %v, %v", resp, err)
	}

	l.mu.Lock()
	l.renewErr = fmt.Errorf("%w: election", member.ErrNoLeader)
	l.mu.Unlock()
	if err := st.Send(&kvv1.LeaseKeepAliveRequest{Id: 2}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("a renewal that failed without a leader ends the stream Unavailable; got %v", err)
	}
}

// A KV stream renews leases among its other ops, as a keep-alive stream
// would: a held renewal does not hold up the stream's other ops, a lease
// that does not exist is answered with ttl 0, and a failed renewal fails
// alone, without ending the stream.
func TestStreamRenewsLeases(t *testing.T) {
	node := &fakeNode{name: "a", leader: true, kv: map[string]int{"k": 3}, drain: make(chan struct{})}
	l := node.leases()
	l.ttls[1], l.ttls[2] = 5, 6
	l.hold = make(chan struct{})
	cc, _ := serve(t, node, 1024)
	st, err := kvv1.NewKVServiceClient(cc).Stream(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	renew := func(op, lease int64) *kvv1.StreamOp {
		return &kvv1.StreamOp{Id: uint64(op), LeaseRenew: &kvv1.StreamLeaseRenew{Id: lease}}
	}
	get := &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestRange{RequestRange: &kvv1.RangeRequest{Key: []byte("k"), Serializable: true}}}
	both := renew(5, 2)
	both.Request = get
	ops := []*kvv1.StreamOp{renew(1, 1), renew(2, 2), renew(3, 3), {Id: 4, Request: get}, both}
	if err := st.Send(&kvv1.StreamRequest{Ops: ops}); err != nil {
		t.Fatal(err)
	}
	recv := func(n int) map[uint64]*kvv1.StreamResult {
		t.Helper()
		got := map[uint64]*kvv1.StreamResult{}
		for len(got) < n {
			resp, err := st.Recv()
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range resp.GetResults() {
				if got[r.GetId()] != nil {
					t.Fatalf("op %d answered twice", r.GetId())
				}
				got[r.GetId()] = r
			}
		}
		return got
	}
	// Lease 1's renewal is held: everything else is answered meanwhile.
	got := recv(4)
	if r := got[2]; r.GetError() != nil || r.GetLeaseRenewed().GetTtl() != 6 || r.GetLeaseRenewed().GetHeader().GetRevision() != 7 {
		t.Errorf("renewal of lease 2: %v, want ttl 6 and a header", r)
	}
	if r := got[3]; r.GetError() != nil || r.GetLeaseRenewed() == nil || r.GetLeaseRenewed().GetTtl() != 0 {
		t.Errorf("renewal of a missing lease: %v, want ttl 0", r)
	}
	if r := got[4]; r.GetError() != nil || r.GetResponse().GetResponseRange() == nil {
		t.Errorf("the range among the renewals: %v", r)
	}
	if e := got[5].GetError(); codes.Code(e.GetCode()) != codes.InvalidArgument || !strings.Contains(e.GetMessage(), "both a request and a lease renewal") {
		t.Errorf("an op with a request and a renewal: %v, want InvalidArgument", got[5])
	}
	close(l.hold)
	if r := recv(1)[1]; r.GetError() != nil || r.GetLeaseRenewed().GetTtl() != 5 {
		t.Fatalf("held renewal of lease 1: %v, want ttl 5", r)
	}

	l.mu.Lock()
	l.renewErr = fmt.Errorf("%w: election", member.ErrNoLeader)
	l.mu.Unlock()
	if err := st.Send(&kvv1.StreamRequest{Ops: []*kvv1.StreamOp{renew(6, 2), {Id: 7, Request: get}}}); err != nil {
		t.Fatal(err)
	}
	got = recv(2)
	if e := got[6].GetError(); codes.Code(e.GetCode()) != codes.Unavailable {
		t.Errorf("a renewal without a leader: %v, want Unavailable", got[6])
	}
	if got[7].GetError() != nil {
		t.Errorf("the stream's next op: %v", got[7])
	}
}

func TestLeaseKeepAliveEndsWhenDraining(t *testing.T) {
	node := &fakeNode{name: "a", leader: true, drain: make(chan struct{})}
	node.leases().ttls[1] = 5
	cc, _ := serve(t, node, 1024)
	st, err := kvv1.NewLeaseServiceClient(cc).LeaseKeepAlive(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&kvv1.LeaseKeepAliveRequest{Id: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	close(node.drain)
	_, err = st.Recv()
	if status.Code(err) != codes.Unavailable || errors.Is(err, io.EOF) {
		t.Fatalf("keep-alive on a draining member: %v, want Unavailable", err)
	}
}

// The stream stops reading once keepAliveInFlight renewals are under way.
func TestLeaseKeepAliveBoundsInFlight(t *testing.T) {
	node := &fakeNode{name: "a", leader: true, drain: make(chan struct{})}
	l := node.leases()
	l.ttls[1] = 5
	l.hold = make(chan struct{})
	cc, _ := serve(t, node, 1024)
	st, err := kvv1.NewLeaseServiceClient(cc).LeaseKeepAlive(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	const n = keepAliveInFlight + 50
	go func() {
		for range n {
			if st.Send(&kvv1.LeaseKeepAliveRequest{Id: 1}) != nil {
				return
			}
		}
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		l.mu.Lock()
		c := l.renewing
		l.mu.Unlock()
		if c == keepAliveInFlight {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d renewals under way, want %d", c, keepAliveInFlight)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(l.hold)
	for range n {
		if _, err := st.Recv(); err != nil {
			t.Fatal(err)
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxConc > keepAliveInFlight {
		t.Fatalf("%d renewals at once, more than %d", l.maxConc, keepAliveInFlight)
	}
}

// During a rolling upgrade, writes that a member of the older version would
// apply differently are refused before they reach the log.
func TestLeaseWritesWaitForEveryMember(t *testing.T) {
	node := &fakeNode{name: "a", leader: true, lacksFeatures: true}
	cc, _ := serve(t, node, 1024)
	kv := kvv1.NewKVServiceClient(cc)
	ctx := ctxT(t)
	for _, req := range []*kvv1.PutRequest{
		{Key: []byte("k"), Lease: 5},
		{Key: []byte("k"), IgnoreValue: true},
		{Key: []byte("k"), IgnoreLease: true},
	} {
		if _, err := kv.Put(ctx, req); status.Code(err) != codes.FailedPrecondition {
			t.Errorf("put %v: %v, want FailedPrecondition", req, err)
		}
	}
	nested := &kvv1.TxnRequest{Failure: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestTxn{RequestTxn: &kvv1.TxnRequest{
		Success: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestPut{RequestPut: &kvv1.PutRequest{Key: []byte("k"), Lease: 5}}}},
	}}}}}
	if _, err := kv.Txn(ctx, nested); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("txn with a nested put with a lease: %v, want FailedPrecondition", err)
	}
	if len(node.proposed) != 0 {
		t.Errorf("proposed %v", node.proposed)
	}
	if _, err := kv.Put(ctx, &kvv1.PutRequest{Key: []byte("k"), Value: []byte("v")}); err != nil {
		t.Errorf("a plain put: %v", err)
	}
}

// A transaction over --max-txn-ops is refused before it is proposed; one
// above the default bound needs every member to apply it.
func TestMaxTxnOps(t *testing.T) {
	big := func(n int) *kvv1.TxnRequest {
		r := &kvv1.TxnRequest{}
		for range n {
			r.Success = append(r.Success, &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestRange{RequestRange: &kvv1.RangeRequest{Key: []byte("k")}}})
		}
		return r
	}
	node := &fakeNode{name: "a", leader: true}
	kv := kvv1.NewKVServiceClient(serveConfig(t, node, Config{MaxRequestBytes: 1 << 20}))
	ctx := ctxT(t)
	if _, err := kv.Txn(ctx, big(fsm.MaxTxnOps+1)); status.Code(err) != codes.InvalidArgument {
		t.Errorf("txn over the default bound: %v, want InvalidArgument", err)
	}
	if _, err := kv.Txn(ctx, big(fsm.MaxTxnOps)); err != nil {
		t.Errorf("txn at the bound: %v", err)
	}
	node2 := &fakeNode{name: "b", leader: true, lacksFeatures: true}
	kv2 := kvv1.NewKVServiceClient(serveConfig(t, node2, Config{MaxRequestBytes: 1 << 20, MaxTxnOps: 500}))
	if _, err := kv2.Txn(ctx, big(300)); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("large txn while a member cannot apply it: %v, want FailedPrecondition", err)
	}
	node2.lacksFeatures = false
	if _, err := kv2.Txn(ctx, big(300)); err != nil {
		t.Errorf("large txn within --max-txn-ops 500: %v", err)
	}
	if _, err := kv2.Txn(ctx, big(501)); status.Code(err) != codes.InvalidArgument {
		t.Errorf("txn over --max-txn-ops 500: %v, want InvalidArgument", err)
	}
}

// Writes that grow the state are refused when over quota; deletes are not.
func TestQuotaRefusesGrowingWrites(t *testing.T) {
	node := &fakeNode{name: "a", leader: true, quotaErr: fmt.Errorf("%w: over quota", fsm.ErrNoSpace)}
	cc, _ := serve(t, node, 1024)
	kv := kvv1.NewKVServiceClient(cc)
	ctx := ctxT(t)
	if _, err := kv.Put(ctx, &kvv1.PutRequest{Key: []byte("k"), Value: []byte("v")}); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("put over quota: %v, want ResourceExhausted", err)
	}
	if _, err := kv.DeleteRange(ctx, &kvv1.DeleteRangeRequest{Key: []byte("k")}); err != nil {
		t.Errorf("delete over quota: %v", err)
	}
	if _, err := kv.Txn(ctx, &kvv1.TxnRequest{Success: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestRange{RequestRange: &kvv1.RangeRequest{Key: []byte("k")}}}}}); err != nil {
		t.Errorf("read-only txn over quota: %v", err)
	}
}
