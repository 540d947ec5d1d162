package client

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// fakeRecipes is a member's lock and election services, scripted: each
// call answers with the function the test set.
type fakeRecipes struct {
	kvv1.UnimplementedLockServiceServer
	kvv1.UnimplementedElectionServiceServer

	lock     func() (*kvv1.LockResponse, error)
	proclaim func() error
	leader   func() (*kvv1.LeaderResponse, error)
	// observe sends these leaders, then ends the stream with observeEnd.
	observe    []*kvv1.ObserveResponse
	observeEnd error
}

func (f *fakeRecipes) Lock(context.Context, *kvv1.LockRequest) (*kvv1.LockResponse, error) {
	return f.lock()
}

func (f *fakeRecipes) Proclaim(context.Context, *kvv1.ProclaimRequest) (*kvv1.ProclaimResponse, error) {
	return &kvv1.ProclaimResponse{}, f.proclaim()
}

func (f *fakeRecipes) Leader(context.Context, *kvv1.LeaderRequest) (*kvv1.LeaderResponse, error) {
	return f.leader()
}

func (f *fakeRecipes) Observe(_ *kvv1.ObserveRequest, st kvv1.ElectionService_ObserveServer) error {
	for _, r := range f.observe {
		if err := st.Send(r); err != nil {
			return err
		}
	}
	if f.observeEnd == nil {
		<-st.Context().Done()
		return nil
	}
	return f.observeEnd
}

func serveRecipes(t *testing.T, f *fakeRecipes) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	kvv1.RegisterLockServiceServer(s, f)
	kvv1.RegisterElectionServiceServer(s, f)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

func observed(key string, mod, rev int64) *kvv1.ObserveResponse {
	return &kvv1.ObserveResponse{Header: &kvv1.ResponseHeader{Revision: rev}, Kv: &kvv1.KeyValue{Key: []byte(key), ModRevision: mod}}
}

// Observe moves to another member when its stream fails, does not send a
// leader twice, and ends with the error a member refuses it with.
func TestObserveMovesOnAndSkipsWhatItSent(t *testing.T) {
	a := serveRecipes(t, &fakeRecipes{
		observe:    []*kvv1.ObserveResponse{observed("e/1", 5, 5)},
		observeEnd: status.Error(codes.Unavailable, "member shutting down"),
	})
	b := serveRecipes(t, &fakeRecipes{
		observe:    []*kvv1.ObserveResponse{observed("e/1", 5, 7), observed("e/2", 8, 8)},
		observeEnd: status.Error(codes.InvalidArgument, "refused"),
	})
	c := newTestClient(t, a, b)
	var got []string
	var last error
	for ev := range c.Observe(testContext(t, 20*time.Second), "e") {
		if ev.Err() != nil {
			last = ev.Err()
			continue
		}
		got = append(got, string(ev.GetKv().GetKey()))
	}
	if len(got) != 2 || got[0] != "e/1" || got[1] != "e/2" {
		t.Fatalf("observed %q, want e/1 then e/2", got)
	}
	if status.Code(last) != codes.InvalidArgument {
		t.Fatalf("observe ended with %v, want the refusal", last)
	}
}

// The recipes' answers map to the SDK's errors; Lock is retried on another
// member when one fails, like a read.
func TestLockAndElectionErrors(t *testing.T) {
	calls := 0
	down := serveRecipes(t, &fakeRecipes{lock: func() (*kvv1.LockResponse, error) {
		calls++
		return nil, status.Error(codes.Unavailable, "connection reset")
	}})
	up := serveRecipes(t, &fakeRecipes{
		lock: func() (*kvv1.LockResponse, error) {
			return &kvv1.LockResponse{Key: []byte("l/5"), CreateRevision: 9}, nil
		},
		proclaim: func() error { return status.Error(codes.FailedPrecondition, "election: not leader") },
		leader:   func() (*kvv1.LeaderResponse, error) { return nil, status.Error(codes.NotFound, "election: no leader") },
	})
	c := newTestClient(t, down, up)
	ctx := testContext(t, 20*time.Second)
	resp, err := c.Lock(ctx, "l", 5)
	if err != nil || resp.GetCreateRevision() != 9 || calls == 0 {
		t.Fatalf("lock through a failing member then a working one: %v, %v (calls to the failing one: %d)", resp, err, calls)
	}
	if _, err := c.Proclaim(ctx, &LeaderKey{Name: []byte("e"), Key: []byte("e/5"), Rev: 3, Lease: 5}, "v"); !errors.Is(err, ErrElectionNotLeader) {
		t.Fatalf("proclaim by a non-leader: %v, want ErrElectionNotLeader", err)
	}
	if _, err := c.Leader(ctx, "e"); !errors.Is(err, ErrElectionNoLeader) {
		t.Fatalf("leader of an empty election: %v, want ErrElectionNoLeader", err)
	}

	gone := serveRecipes(t, &fakeRecipes{lock: func() (*kvv1.LockResponse, error) {
		return nil, status.Error(codes.NotFound, "lease not found")
	}})
	if _, err := newTestClient(t, gone).Lock(ctx, "l", 5); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("lock with a lease that ended: %v, want ErrLeaseNotFound", err)
	}
}
