package peer

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/kvd-io/kvd/internal/opstream"
	peerv1 "github.com/kvd-io/kvd/proto/peer/v1"
)

// oldLeader serves Propose but not ProposeStream, as a leader from before
// the proposal stream does.
type oldLeader struct {
	peerv1.UnimplementedPeerServiceServer
	proposes atomic.Int64
}

func (o *oldLeader) Propose(_ context.Context, req *peerv1.ProposeRequest) (*peerv1.ProposeResponse, error) {
	o.proposes.Add(1)
	return &peerv1.ProposeResponse{Result: append([]byte("result of "), req.GetCommand()...)}, nil
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
