package server

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

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

	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{peers: newPeerPool(time.Second)}
	t.Cleanup(s.peers.close)
	s.peers.conns[lis.Addr().String()] = conn
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	for i, cmd := range []string{"first", "second"} {
		got, err := s.forwardOnStream(ctx, conn, "old", []byte(cmd))
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
	s.peers.mu.Lock()
	noStream := s.peers.noStream[conn]
	s.peers.mu.Unlock()
	if !noStream {
		t.Error("the pool did not record that the leader serves no proposal stream")
	}
}
