package peer

import (
	"context"
	"errors"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/internal/opstream"
	peerv1 "github.com/kvd-io/kvd/proto/peer/v1"
)

// oldLeader serves Propose but not ProposeStream, as a leader from before
// the proposal stream does.
type oldLeader struct {
	peerv1.UnimplementedPeerServiceServer
	proposes atomic.Int64
	renews   atomic.Int64
}

func (o *oldLeader) Propose(_ context.Context, req *peerv1.ProposeRequest) (*peerv1.ProposeResponse, error) {
	o.proposes.Add(1)
	return &peerv1.ProposeResponse{Result: append([]byte("result of "), req.GetCommand()...)}, nil
}

// LeaseRenew answers as a leader does: NotFound for a lease that does not
// exist (a negative id here), else the id as the TTL.
func (o *oldLeader) LeaseRenew(_ context.Context, req *peerv1.LeaseRenewRequest) (*peerv1.LeaseRenewResponse, error) {
	o.renews.Add(1)
	if req.GetId() < 0 {
		return nil, status.Errorf(codes.NotFound, "lease %d not found", req.GetId())
	}
	return &peerv1.LeaseRenewResponse{Ttl: req.GetId()}, nil
}

// serveOldLeader serves o on loopback and returns its address.
func serveOldLeader(t *testing.T, o *oldLeader) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	peerv1.RegisterPeerServiceServer(gs, o)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	return lis.Addr().String()
}

// A leader that does not serve LeaseRenewBatch is asked one lease at a
// time, and a lease it does not know is reported with TTL 0.
func TestRenewBatchFallsBackToRenewForAnOldLeader(t *testing.T) {
	leader := &oldLeader{}
	addr := serveOldLeader(t, leader)
	p, err := New(Config{DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	ttls, err := p.LeaseRenewBatch(ctx, addr, []int64{5, -6, 7})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ttls, []int64{5, 0, 7}) {
		t.Fatalf("ttls %v, want [5 0 7]", ttls)
	}
	if n := leader.renews.Load(); n != 3 {
		t.Errorf("old leader got %d LeaseRenew calls, want 3", n)
	}
}

func TestForwardFallsBackToProposeForAnOldLeader(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	leader := &oldLeader{}
	gs := grpc.NewServer()
	peerv1.RegisterPeerServiceServer(gs, leader)
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)

	p, err := New(Config{DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	addr := lis.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for i, cmd := range []string{"first", "second"} {
		got, err := p.Propose(ctx, addr, []byte(cmd))
		if err != nil {
			t.Fatalf("forward %d: %v", i, err)
		}
		if string(got) != "result of "+cmd {
			t.Fatalf("forward %d: result %q", i, got)
		}
	}
	if n := leader.proposes.Load(); n != 2 {
		t.Errorf("old leader got %d Propose calls, want 2 (each command once)", n)
	}
	if _, err := p.pool.Stream(addr); !errors.Is(err, opstream.ErrNotServed) {
		t.Error("the pool did not record that the leader serves no proposal stream")
	}
}
