package client

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// slowLessor is a member that answers renewals one at a time, each after
// delay: a loaded member, slow but working.
type slowLessor struct {
	kvv1.UnimplementedLeaseServiceServer
	ttl      int64
	delay    time.Duration
	streams  atomic.Int32 // keep-alive streams opened
	requests atomic.Int32 // renewals received
}

func (s *slowLessor) LeaseKeepAlive(st kvv1.LeaseService_LeaseKeepAliveServer) error {
	s.streams.Add(1)
	for {
		req, err := st.Recv()
		if err != nil {
			return nil
		}
		s.requests.Add(1)
		select {
		case <-st.Context().Done():
			return nil
		case <-time.After(s.delay):
		}
		if err := st.Send(&kvv1.LeaseKeepAliveResponse{Id: req.GetId(), Ttl: s.ttl}); err != nil {
			return nil
		}
	}
}

func serveLessor(t *testing.T, l *slowLessor) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	kvv1.RegisterLeaseServiceServer(s, l)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return lis.Addr().String()
}

// A member that answers a burst of renewals slowly, but keeps answering,
// is not stalled: the keep-alive stays on it and every lease is renewed.
// Moving the renewals to another member as loaded (and sending them all
// again there) would never get the last ones of the burst answered. Nor
// are the renewals that wait their turn sent again: that would only
// lengthen the queue.
func TestKeepAliveStaysOnASlowMember(t *testing.T) {
	t.Parallel()
	// 40 renewals of 40 ms each: the last is answered 1.6 s after it was
	// sent, beyond keepAliveStall, yet well within the 5 s the client
	// gives a lease before its first answer.
	const n = 40
	slow := &slowLessor{ttl: 10, delay: 40 * time.Millisecond}
	other := &slowLessor{ttl: 10, delay: 40 * time.Millisecond}
	cli, err := New(Config{Endpoints: []string{serveLessor(t, slow), serveLessor(t, other)}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	chans := make([]<-chan *LeaseKeepAliveResponse, n)
	for i := range chans {
		if chans[i], err = cli.KeepAlive(ctx, LeaseID(i+1)); err != nil {
			t.Fatal(err)
		}
	}
	for i, ch := range chans {
		select {
		case r, ok := <-ch:
			if !ok {
				t.Fatalf("lease %d given up before its first renewal was answered (streams opened: %d, %d)",
					i+1, slow.streams.Load(), other.streams.Load())
			}
			if r.GetTtl() != 10 {
				t.Fatalf("lease %d renewed for %d s, want 10", i+1, r.GetTtl())
			}
		case <-ctx.Done():
			t.Fatalf("lease %d: no renewal answered", i+1)
		}
	}
	if got := slow.streams.Load() + other.streams.Load(); got != 1 {
		t.Errorf("%d keep-alive streams opened, want 1: the client left a member that was answering", got)
	}
	// The first answers came 1.6 s ago at most: no lease was due for its
	// next renewal (a third of 10 s after its answer) yet.
	if got := slow.requests.Load() + other.requests.Load(); got != n {
		t.Errorf("%d renewals sent for %d leases before each was answered once: queued renewals were sent again", got, n)
	}
}
