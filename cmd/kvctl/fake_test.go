package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// fakeKVD is a single in-memory kvd member, enough to run kvctl's commands
// in-process: keys with revisions and versions, ranges, transactions with
// value, version, create and mod compares, members and status.
type fakeKVD struct {
	kvv1.UnimplementedKVServiceServer
	kvv1.UnimplementedClusterServiceServer
	kvv1.UnimplementedMaintenanceServiceServer
	kvv1.UnimplementedWatchServiceServer

	name string
	id   uint64

	mu        sync.Mutex
	rev       int64
	kvs       map[string]*kvv1.KeyValue
	lastRange *kvv1.RangeRequest

	members  []*kvv1.Member
	hash     uint32               // what HashKV answers
	hashRevs []int64              // revisions HashKV was asked for
	snapshot []byte               // the database Snapshot streams
	tamper   func([]*snapMessage) // changes the stream before it is sent
	failWith error                // when set, every membership change fails with it

	// The history the WatchService serves: each revision's events, the
	// compacted revision, and a channel closed and replaced at each write.
	events    map[int64][]*kvv1.Event
	compacted int64
	changed   chan struct{}
	// What Watch and Compact received; defragErr fails Defragment.
	watchCreates []*kvv1.WatchCreateRequest
	compactions  []*kvv1.CompactRequest
	defragErr    error
	alarms       []*kvv1.AlarmMember // what Alarm lists
}

// snapMessage is one message of a snapshot stream.
type snapMessage = kvv1.SnapshotResponse

func newFakeKVD(name string, id uint64) *fakeKVD {
	return &fakeKVD{name: name, id: id, rev: 1, kvs: map[string]*kvv1.KeyValue{}, events: map[int64][]*kvv1.Event{}, changed: make(chan struct{}), members: []*kvv1.Member{
		{Id: id, Name: name, RaftAddr: "127.0.0.1:7380", ClientAddr: "127.0.0.1:7379", IsLeader: true, Healthy: true},
		{Id: 0xbeef, Name: "n2", RaftAddr: "127.0.0.1:7390", IsLearner: true},
	}}
}

// setMembers replaces the member list.
func (f *fakeKVD) setMembers(members ...*kvv1.Member) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.members = members
}

// serveFake starts f on a loopback port until the test ends.
func serveFake(t *testing.T, f *fakeKVD) string {
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
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// deadAddr returns a loopback address where connections are refused.
func deadAddr(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	_ = lis.Close()
	return addr
}

func (f *fakeKVD) header() *kvv1.ResponseHeader {
	return &kvv1.ResponseHeader{ClusterId: 100, MemberId: f.id, Revision: f.rev, RaftTerm: 3}
}

func inRange(k string, key, end []byte) bool {
	if len(end) == 0 {
		return k == string(key)
	}
	if k < string(key) {
		return false
	}
	return bytes.Equal(end, []byte{0}) || k < string(end)
}

func (f *fakeKVD) keysIn(key, end []byte) []string {
	var ks []string
	for k := range f.kvs {
		if inRange(k, key, end) {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	return ks
}

func (f *fakeKVD) put(r *kvv1.PutRequest) *kvv1.PutResponse {
	resp := &kvv1.PutResponse{}
	old := f.kvs[string(r.Key)]
	if old != nil && r.PrevKv {
		resp.PrevKv = proto.Clone(old).(*kvv1.KeyValue)
	}
	kv := &kvv1.KeyValue{Key: r.Key, Value: r.Value, CreateRevision: f.rev, ModRevision: f.rev, Version: 1}
	if old != nil {
		kv.CreateRevision, kv.Version = old.CreateRevision, old.Version+1
	}
	f.kvs[string(r.Key)] = kv
	f.record(&kvv1.Event{Type: kvv1.EventType_EVENT_TYPE_PUT, Kv: proto.Clone(kv).(*kvv1.KeyValue), PrevKv: old})
	return resp
}

// record adds e to the current revision's events and wakes the watchers.
func (f *fakeKVD) record(e *kvv1.Event) {
	f.events[f.rev] = append(f.events[f.rev], e)
	close(f.changed)
	f.changed = make(chan struct{})
}

func (f *fakeKVD) rangeLocked(r *kvv1.RangeRequest) *kvv1.RangeResponse {
	resp := &kvv1.RangeResponse{Header: f.header()}
	ks := f.keysIn(r.Key, r.RangeEnd)
	resp.Count = int64(len(ks))
	if r.CountOnly {
		return resp
	}
	if r.Limit > 0 && int64(len(ks)) > r.Limit {
		ks, resp.More = ks[:r.Limit], true
	}
	for _, k := range ks {
		kv := proto.Clone(f.kvs[k]).(*kvv1.KeyValue)
		if r.KeysOnly {
			kv.Value = nil
		}
		resp.Kvs = append(resp.Kvs, kv)
	}
	return resp
}

func (f *fakeKVD) del(r *kvv1.DeleteRangeRequest) *kvv1.DeleteRangeResponse {
	resp := &kvv1.DeleteRangeResponse{}
	for _, k := range f.keysIn(r.Key, r.RangeEnd) {
		if r.PrevKv {
			resp.PrevKvs = append(resp.PrevKvs, f.kvs[k])
		}
		f.record(&kvv1.Event{Type: kvv1.EventType_EVENT_TYPE_DELETE, Kv: &kvv1.KeyValue{Key: []byte(k), ModRevision: f.rev}, PrevKv: f.kvs[k]})
		delete(f.kvs, k)
		resp.Deleted++
	}
	return resp
}

func (f *fakeKVD) Put(_ context.Context, r *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	resp := f.put(r)
	resp.Header = f.header()
	return resp, nil
}

func (f *fakeKVD) Range(_ context.Context, r *kvv1.RangeRequest) (*kvv1.RangeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastRange = r
	return f.rangeLocked(r), nil
}

func (f *fakeKVD) DeleteRange(_ context.Context, r *kvv1.DeleteRangeRequest) (*kvv1.DeleteRangeResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rev++
	resp := f.del(r)
	resp.Header = f.header()
	return resp, nil
}

func (f *fakeKVD) holds(c *kvv1.Compare) bool {
	kv := f.kvs[string(c.Key)]
	var got, want int64
	switch c.Target {
	case kvv1.Compare_COMPARE_TARGET_VALUE:
		if kv == nil {
			return false
		}
		cmp := strings.Compare(string(kv.Value), string(c.GetValue()))
		got, want = int64(cmp), 0
	case kvv1.Compare_COMPARE_TARGET_VERSION:
		got, want = kv.GetVersion(), c.GetVersion()
	case kvv1.Compare_COMPARE_TARGET_CREATE:
		got, want = kv.GetCreateRevision(), c.GetCreateRevision()
	case kvv1.Compare_COMPARE_TARGET_MOD:
		got, want = kv.GetModRevision(), c.GetModRevision()
	case kvv1.Compare_COMPARE_TARGET_LEASE:
		got, want = kv.GetLease(), c.GetLease()
	}
	switch c.Result {
	case kvv1.Compare_COMPARE_RESULT_EQUAL:
		return got == want
	case kvv1.Compare_COMPARE_RESULT_NOT_EQUAL:
		return got != want
	case kvv1.Compare_COMPARE_RESULT_LESS:
		return got < want
	default:
		return got > want
	}
}

func (f *fakeKVD) Txn(_ context.Context, r *kvv1.TxnRequest) (*kvv1.TxnResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	resp := &kvv1.TxnResponse{Succeeded: true}
	for _, c := range r.Compare {
		if !f.holds(c) {
			resp.Succeeded = false
		}
	}
	ops := r.Success
	if !resp.Succeeded {
		ops = r.Failure
	}
	for _, op := range ops {
		if op.GetRequestRange() == nil {
			f.rev++
			break
		}
	}
	for _, op := range ops {
		switch {
		case op.GetRequestPut() != nil:
			pr := f.put(op.GetRequestPut())
			pr.Header = f.header()
			resp.Responses = append(resp.Responses, &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponsePut{ResponsePut: pr}})
		case op.GetRequestRange() != nil:
			resp.Responses = append(resp.Responses, &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseRange{ResponseRange: f.rangeLocked(op.GetRequestRange())}})
		case op.GetRequestDeleteRange() != nil:
			dr := f.del(op.GetRequestDeleteRange())
			dr.Header = f.header()
			resp.Responses = append(resp.Responses, &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: dr}})
		}
	}
	resp.Header = f.header()
	return resp, nil
}

func (f *fakeKVD) MemberList(context.Context, *kvv1.MemberListRequest) (*kvv1.MemberListResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &kvv1.MemberListResponse{Header: f.header(), Members: f.membersLocked()}, nil
}

// membersLocked returns a copy of the members; the healthy ones were last
// heard from 400ms ago.
func (f *fakeKVD) membersLocked() []*kvv1.Member {
	out := make([]*kvv1.Member, len(f.members))
	for i, m := range f.members {
		out[i] = proto.Clone(m).(*kvv1.Member)
		if m.Healthy {
			out[i].LastContact = timestamppb.New(time.Now().Add(-400 * time.Millisecond))
		}
	}
	return out
}

func (f *fakeKVD) findLocked(name string) int {
	return slices.IndexFunc(f.members, func(m *kvv1.Member) bool { return m.Name == name })
}

func (f *fakeKVD) MemberAdd(_ context.Context, r *kvv1.MemberAddRequest) (*kvv1.MemberAddResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return nil, f.failWith
	}
	if f.findLocked(r.Name) >= 0 {
		return nil, status.Errorf(codes.AlreadyExists, "member already exists: %s", r.Name)
	}
	m := &kvv1.Member{Id: 0x4444, Name: r.Name, RaftAddr: r.RaftAddr, ClientAddr: r.ClientAddr, IsLearner: r.IsLearner}
	f.members = append(f.members, m)
	return &kvv1.MemberAddResponse{Header: f.header(), Member: proto.Clone(m).(*kvv1.Member), Members: f.membersLocked()}, nil
}

func (f *fakeKVD) MemberPromote(_ context.Context, r *kvv1.MemberPromoteRequest) (*kvv1.MemberPromoteResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return nil, f.failWith
	}
	i := f.findLocked(r.Name)
	switch {
	case i < 0:
		return nil, status.Errorf(codes.NotFound, "member not found: %q", r.Name)
	case !f.members[i].IsLearner:
		return nil, status.Errorf(codes.FailedPrecondition, "member is not a learner: %q already votes", r.Name)
	}
	f.members[i].IsLearner = false
	return &kvv1.MemberPromoteResponse{Header: f.header(), Members: f.membersLocked()}, nil
}

func (f *fakeKVD) MemberRemove(_ context.Context, r *kvv1.MemberRemoveRequest) (*kvv1.MemberRemoveResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return nil, f.failWith
	}
	i := f.findLocked(r.Name)
	if i < 0 {
		return nil, status.Errorf(codes.NotFound, "member not found: %q", r.Name)
	}
	f.members = slices.Delete(f.members, i, i+1)
	return &kvv1.MemberRemoveResponse{Header: f.header(), Members: f.membersLocked()}, nil
}

func (f *fakeKVD) LeaderTransfer(_ context.Context, r *kvv1.LeaderTransferRequest) (*kvv1.LeaderTransferResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failWith != nil {
		return nil, f.failWith
	}
	to := r.To
	if to == "" {
		to = "n2"
	}
	i := f.findLocked(to)
	if i < 0 {
		return nil, status.Errorf(codes.NotFound, "member not found: %q", to)
	}
	for _, m := range f.members {
		m.IsLeader = m.Name == to
	}
	return &kvv1.LeaderTransferResponse{Header: f.header(), Leader: to}, nil
}

func (f *fakeKVD) HashKV(_ context.Context, r *kvv1.HashKVRequest) (*kvv1.HashKVResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hashRevs = append(f.hashRevs, r.Revision)
	rev := r.Revision
	if rev == 0 {
		rev = f.rev
	}
	return &kvv1.HashKVResponse{Header: f.header(), Hash: f.hash, HashRevision: rev, CompactRevision: 1}, nil
}

// Snapshot streams f.snapshot in 64 KiB messages, as a member does.
func (f *fakeKVD) Snapshot(_ *kvv1.SnapshotRequest, stream kvv1.MaintenanceService_SnapshotServer) error {
	f.mu.Lock()
	data, tamper, header := f.snapshot, f.tamper, f.header()
	f.mu.Unlock()
	const chunk = 64 * 1024
	var msgs []*snapMessage
	for off := 0; off == 0 || off < len(data); off += chunk {
		end := min(off+chunk, len(data))
		msgs = append(msgs, &snapMessage{Blob: bytes.Clone(data[off:end]), RemainingBytes: uint64(len(data) - end)})
	}
	msgs[0].Header, msgs[0].TotalBytes = header, uint64(len(data))
	sum := sha256.Sum256(data)
	msgs[len(msgs)-1].Sha256 = sum[:]
	if tamper != nil {
		tamper(msgs)
	}
	for _, m := range msgs {
		if err := stream.Send(m); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeKVD) Status(context.Context, *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &kvv1.StatusResponse{
		Header: f.header(), Name: f.name, Version: "0.1.0", LeaderId: f.id, LeaderName: f.name,
		RaftState: "Leader", RaftTerm: 3, CommitIndex: 12, AppliedIndex: 11, DbSize: 20480, DbSizeInUse: 12288,
	}, nil
}

func (f *fakeKVD) Compact(_ context.Context, r *kvv1.CompactRequest) (*kvv1.CompactResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.compactions = append(f.compactions, r)
	switch {
	case r.Revision > f.rev:
		return nil, status.Error(codes.OutOfRange, "required revision is a future revision")
	case r.Revision <= f.compacted:
		return nil, status.Error(codes.OutOfRange, "required revision has been compacted")
	}
	f.compacted = r.Revision
	return &kvv1.CompactResponse{Header: f.header()}, nil
}

func (f *fakeKVD) Defragment(context.Context, *kvv1.DefragmentRequest) (*kvv1.DefragmentResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.defragErr != nil {
		return nil, f.defragErr
	}
	return &kvv1.DefragmentResponse{Header: f.header(), DbSizeBefore: 20480, DbSize: 12288}, nil
}

// creates returns the watch create requests f received.
func (f *fakeKVD) creates() []*kvv1.WatchCreateRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.watchCreates)
}

// Watch serves f's history: each watcher gets the events of its range from
// its start revision on, a revision per response; a start below the
// compacted revision is answered canceled with the compact revision, and a
// progress request with the current revision.
func (f *fakeKVD) Watch(st kvv1.WatchService_WatchServer) error {
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
	type watcher struct {
		req  *kvv1.WatchCreateRequest
		next int64
	}
	watchers := map[int64]*watcher{}
	// catchUp queues what every watcher is due and returns the current
	// revision and the channel closed at the next write.
	catchUp := func() ([]*kvv1.WatchResponse, int64, chan struct{}) {
		f.mu.Lock()
		defer f.mu.Unlock()
		var out []*kvv1.WatchResponse
		for id, w := range watchers {
			for ; w.next <= f.rev; w.next++ {
				var evs []*kvv1.Event
				for _, e := range f.events[w.next] {
					if !inRange(string(e.Kv.Key), w.req.Key, w.req.RangeEnd) {
						continue
					}
					if !w.req.PrevKv {
						e = &kvv1.Event{Type: e.Type, Kv: e.Kv}
					}
					evs = append(evs, e)
				}
				if len(evs) > 0 {
					h := f.header()
					h.Revision = w.next
					out = append(out, &kvv1.WatchResponse{Header: h, WatchId: id, Events: evs})
				}
			}
		}
		return out, f.rev, f.changed
	}
	send := func(rs ...*kvv1.WatchResponse) error {
		for _, r := range rs {
			if err := st.Send(r); err != nil {
				return err
			}
		}
		return nil
	}
	for {
		due, _, changed := catchUp()
		if err := send(due...); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-changed:
		case r := <-reqs:
			due, cur, _ := catchUp()
			if err := send(due...); err != nil {
				return err
			}
			f.mu.Lock()
			h, compacted := f.header(), f.compacted
			f.mu.Unlock()
			var resps []*kvv1.WatchResponse
			switch r := r.Request.(type) {
			case *kvv1.WatchRequest_CreateRequest:
				req := r.CreateRequest
				f.mu.Lock()
				f.watchCreates = append(f.watchCreates, req)
				f.mu.Unlock()
				resps = append(resps, &kvv1.WatchResponse{Header: h, WatchId: req.WatchId, Created: true})
				switch start := req.StartRevision; {
				case start > 0 && start < compacted:
					resps = append(resps, &kvv1.WatchResponse{Header: h, WatchId: req.WatchId, Canceled: true, CompactRevision: compacted,
						CancelReason: "required revision has been compacted"})
				case start <= 0:
					watchers[req.WatchId] = &watcher{req: req, next: cur + 1}
				default:
					watchers[req.WatchId] = &watcher{req: req, next: start}
				}
			case *kvv1.WatchRequest_CancelRequest:
				delete(watchers, r.CancelRequest.WatchId)
				resps = append(resps, &kvv1.WatchResponse{Header: h, WatchId: r.CancelRequest.WatchId, Canceled: true})
			case *kvv1.WatchRequest_ProgressRequest:
				resps = append(resps, &kvv1.WatchResponse{Header: h, WatchId: -1})
			}
			if err := send(resps...); err != nil {
				return err
			}
		}
	}
}
