package opstream

// Both halves of the protocol over real gRPC on loopback: a member's Server
// (behind KVService.Stream) and clients' Muxes from a Pool, as the SDK uses
// them.

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// member serves KVService.Stream with a Server. Each op is a put whose key
// says what to do: "hold" ops wait until release is closed, "big" ops answer
// with a value of bigValue bytes, anything else answers at once.
type member struct {
	kvv1.UnimplementedKVServiceServer
	draining chan struct{} // closed to drain the first stream (later ones never drain)
	release  chan struct{}
	bigValue int

	held     atomic.Int64 // ops waiting on release
	replied  atomic.Int64 // held ops whose Reply returned
	messages atomic.Int64 // messages of results sent
	// sendGate, when set, holds the first Send of results until it is
	// closed, so that results completing meanwhile queue up behind it.
	sendGate chan struct{}
	gated    atomic.Bool
	breakNow chan struct{} // closed to end every stream with an error
	streams  atomic.Int64
}

func (m *member) Stream(st kvv1.KVService_StreamServer) error {
	draining := m.draining
	if m.streams.Add(1) > 1 {
		draining = nil
	}
	o := &Server[*kvv1.StreamRequest, *kvv1.StreamResult]{
		Recv: st.Recv,
		Send: func(results []*kvv1.StreamResult, draining bool) error {
			if m.sendGate != nil && m.gated.CompareAndSwap(false, true) {
				<-m.sendGate
			}
			m.messages.Add(1)
			return st.Send(&kvv1.StreamResponse{Results: results, Draining: draining})
		},
		Draining: draining,
		Go:       func(f func()) { go f() },
	}
	broken := make(chan error, 1)
	go func() {
		select {
		case <-m.breakNow:
			broken <- status.Error(codes.Unavailable, "member went away")
		case <-st.Context().Done():
		}
	}()
	done := make(chan error, 1)
	go func() {
		done <- o.Serve(func(req *kvv1.StreamRequest) {
			for _, op := range req.GetOps() {
				key := string(op.GetRequest().GetRequestPut().GetKey())
				switch {
				case strings.HasPrefix(key, "hold"):
					m.held.Add(1)
					o.Begin()
					go func() {
						defer o.Done()
						<-m.release
						o.Reply(answer(op.GetId(), key, 0))
						m.replied.Add(1)
					}()
				case strings.HasPrefix(key, "big"):
					o.Reply(answer(op.GetId(), key, m.bigValue))
				default:
					o.Reply(answer(op.GetId(), key, 0))
				}
			}
		})
	}()
	select {
	case err := <-done:
		return err
	case err := <-broken:
		return err // the stream ends with ops still in flight
	}
}

func answer(id uint64, key string, size int) *kvv1.StreamResult {
	kv := &kvv1.KeyValue{Key: []byte(key), Value: make([]byte, size)}
	return &kvv1.StreamResult{Id: id, Response: &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseRange{
		ResponseRange: &kvv1.RangeResponse{Kvs: []*kvv1.KeyValue{kv}}}}}
}

var kvCodec = Codec[*kvv1.StreamOp, *kvv1.StreamResult]{
	SetID: func(op *kvv1.StreamOp, id uint64, timeoutMs int64) { op.Id, op.TimeoutMs = id, timeoutMs },
	ID:    (*kvv1.StreamResult).GetId,
	Size:  func(op *kvv1.StreamOp) int { return len(op.GetRequest().GetRequestPut().GetValue()) + 16 },
}

type kvWire struct{ cs kvv1.KVService_StreamClient }

func (w kvWire) Send(ops []*kvv1.StreamOp) error { return w.cs.Send(&kvv1.StreamRequest{Ops: ops}) }
func (w kvWire) CloseSend() error                { return w.cs.CloseSend() }
func (w kvWire) Recv() ([]*kvv1.StreamResult, bool, error) {
	resp, err := w.cs.Recv()
	if err != nil {
		return nil, false, err
	}
	return resp.GetResults(), resp.GetDraining(), nil
}

// serveMember starts m on loopback and returns its address and a pool of
// client connections to it.
func serveMember(t *testing.T, m *member, register bool) (string, *Pool[*kvv1.StreamOp, *kvv1.StreamResult]) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	if register {
		kvv1.RegisterKVServiceServer(gs, m)
	}
	go func() { _ = gs.Serve(lis) }()
	t.Cleanup(gs.Stop)
	pool := NewPool(PoolConfig[*kvv1.StreamOp, *kvv1.StreamResult]{
		DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		DialTimeout: 5 * time.Second,
		RetireGrace: testRetireGrace,
		Open: func(cc *grpc.ClientConn, target string) (*Mux[*kvv1.StreamOp, *kvv1.StreamResult], error) {
			ctx, cancel := context.WithCancel(context.Background())
			cs, err := kvv1.NewKVServiceClient(cc).Stream(ctx, grpc.MaxCallRecvMsgSize(64<<20))
			if err != nil {
				cancel()
				return nil, err
			}
			return New(target, kvWire{cs}, cancel, kvCodec), nil
		},
	})
	t.Cleanup(func() { _ = pool.Close() })
	return lis.Addr().String(), pool
}

func newMember() *member {
	return &member{draining: make(chan struct{}), release: make(chan struct{}), breakNow: make(chan struct{})}
}

func call(ctx context.Context, t *testing.T, pool *Pool[*kvv1.StreamOp, *kvv1.StreamResult], addr, key string) (*kvv1.StreamResult, error) {
	t.Helper()
	if _, err := pool.Ready(ctx, addr); err != nil {
		t.Fatalf("connect: %v", err)
	}
	s, err := pool.Stream(addr)
	if err != nil {
		return nil, err
	}
	put := &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestPut{RequestPut: &kvv1.PutRequest{Key: []byte(key)}}}
	return s.Call(ctx, &kvv1.StreamOp{Request: put})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling a counter, not synchronising
	}
}

// Results that complete while a message is being sent share the next one;
// a message stays under MaxResultBytes unless one result alone is larger.
func TestResultsArePackedIntoFewMessages(t *testing.T) {
	m := newMember()
	m.bigValue = MaxResultBytes / 3
	m.sendGate = make(chan struct{})
	addr, pool := serveMember(t, m, true)
	ctx := ctxT(t)

	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := call(ctx, t, pool, addr, "hold"+string(rune('a'+i%26)))
			if err == nil && r.GetError() != nil {
				err = apierr.FromStream(r.GetError())
			}
			errs <- err
		}()
	}
	waitFor(t, "every op to be held", func() bool { return m.held.Load() == n })
	before := m.messages.Load()
	close(m.release)
	// The first result's Send is held at the gate; the other results queue
	// behind it, and their Replies return at once.
	waitFor(t, "the other results to queue", func() bool { return m.replied.Load() == n-1 })
	close(m.sendGate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if sent := m.messages.Load() - before; sent != 2 {
		t.Errorf("%d results, %d of them queued behind a send, took %d messages; want 2", n, n-1, sent)
	}

	// Four results of a third of the cap each: at least two messages.
	before = m.messages.Load()
	var wg2 sync.WaitGroup
	for range 4 {
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			r, err := call(ctx, t, pool, addr, "big")
			if err != nil || len(r.GetResponse().GetResponseRange().GetKvs()[0].GetValue()) != m.bigValue {
				t.Errorf("big result: %v", err)
			}
		}()
	}
	wg2.Wait()
	if sent := m.messages.Load() - before; sent < 2 {
		t.Errorf("results of %d bytes in all went in %d message(s), over the cap of %d", 4*m.bigValue, sent, MaxResultBytes)
	}
}

// A draining member answers what it received; the client sends nothing more
// on that stream and moves new calls to a new one.
func TestDrainingAnswersInFlightOpsAndMovesOnToANewStream(t *testing.T) {
	m := newMember()
	addr, pool := serveMember(t, m, true)
	ctx := ctxT(t)

	held := make(chan error, 1)
	go func() {
		r, err := call(ctx, t, pool, addr, "hold")
		if err == nil && r.GetResponse() == nil {
			err = errors.New("no response")
		}
		held <- err
	}()
	waitFor(t, "the op to be held", func() bool { return m.held.Load() == 1 })
	old, _ := pool.Stream(addr)
	close(m.draining)
	waitFor(t, "the client to see the draining notice", func() bool { return !old.Usable() })

	close(m.release)
	if err := <-held; err != nil {
		t.Fatalf("an op sent before the draining notice was not answered: %v", err)
	}
	// The old stream ends once its op is answered; a new call opens a new
	// stream (the member here keeps serving, as another member would).
	waitFor(t, "the old stream to end", old.Ended)
	if _, err := call(ctx, t, pool, addr, "after"); err != nil {
		t.Fatalf("call after draining: %v", err)
	}
	if got := m.streams.Load(); got != 2 {
		t.Errorf("member served %d streams, want 2 (the drained one and its replacement)", got)
	}
}

// An op that was sent and not answered when the stream broke may have been
// applied: BrokenError, not marked not applied. An op that never left is:
// UnsentError, Unavailable, marked not applied. A member that does not serve
// the stream is ErrNotServed.
func TestUnsentAndBrokenOpsAreTold(t *testing.T) {
	m := newMember()
	addr, pool := serveMember(t, m, true)
	ctx := ctxT(t)

	held := make(chan error, 1)
	go func() {
		_, err := call(ctx, t, pool, addr, "hold")
		held <- err
	}()
	waitFor(t, "the op to be held", func() bool { return m.held.Load() == 1 })
	s, err := pool.Stream(addr)
	if err != nil {
		t.Fatal(err)
	}
	close(m.breakNow)
	err = <-held
	var broken *BrokenError
	if !errors.As(err, &broken) || apierr.IsNotApplied(err) || status.Code(err) != codes.Unavailable {
		t.Fatalf("op in flight when the stream broke: %v (%T), want a BrokenError, Unavailable, not marked not applied", err, err)
	}
	waitFor(t, "the stream to end", s.Ended)
	put := &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestPut{RequestPut: &kvv1.PutRequest{Key: []byte("late")}}}
	_, err = s.Call(ctx, &kvv1.StreamOp{Request: put})
	var unsent *UnsentError
	if !errors.As(err, &unsent) || !apierr.IsNotApplied(err) || status.Code(err) != codes.Unavailable {
		t.Fatalf("op on an ended stream: %v (%T), want an UnsentError, Unavailable, marked not applied", err, err)
	}
	close(m.release)

	// A member without the stream: ErrNotServed, and the pool remembers.
	old := newMember()
	oldAddr, oldPool := serveMember(t, old, false)
	if _, err := call(ctx, t, oldPool, oldAddr, "k"); !errors.Is(err, ErrNotServed) {
		t.Fatalf("call to a member without the stream: %v, want ErrNotServed", err)
	}
	oldPool.NotServed(oldAddr)
	if _, err := oldPool.Stream(oldAddr); !errors.Is(err, ErrNotServed) {
		t.Fatalf("stream after NotServed: %v, want ErrNotServed", err)
	}
}

// testRetireGrace is the tests' PoolConfig.RetireGrace.
const testRetireGrace = 2 * time.Second

// Reset moves new calls to a new connection at once, while the call already
// on the old one still gets its answer; the old connection closes after the
// grace.
func TestResetLetsCallsInFlightFinish(t *testing.T) {
	m := newMember()
	addr, pool := serveMember(t, m, true)
	ctx := ctxT(t)

	held := make(chan error, 1)
	go func() {
		r, err := call(ctx, t, pool, addr, "hold")
		if err == nil && r.GetResponse() == nil {
			err = errors.New("no response")
		}
		held <- err
	}()
	waitFor(t, "the op to be held", func() bool { return m.held.Load() == 1 })
	old, err := pool.Stream(addr)
	if err != nil {
		t.Fatal(err)
	}
	pool.Reset(addr)
	if _, err := call(ctx, t, pool, addr, "after"); err != nil {
		t.Fatalf("call after Reset: %v", err)
	}
	if got := m.streams.Load(); got != 2 {
		t.Errorf("member served %d streams, want 2 (the old one and the new connection's)", got)
	}
	close(m.release)
	if err := <-held; err != nil {
		t.Fatalf("the op in flight when the connection was replaced: %v, want its answer", err)
	}
	start := time.Now()
	waitFor(t, "the replaced connection's stream to end", old.Ended)
	if took := time.Since(start); took > testRetireGrace+5*time.Second {
		t.Errorf("the replaced stream ended %s after its op was answered; want within the grace of %s", took, testRetireGrace)
	}
}

// A pool that is closed refuses new calls.
func TestClosedPoolRefuses(t *testing.T) {
	m := newMember()
	addr, pool := serveMember(t, m, true)
	if _, err := call(ctxT(t), t, pool, addr, "k"); err != nil {
		t.Fatal(err)
	}
	if err := pool.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Ready(ctxT(t), addr); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ready after Close: %v, want ErrClosed", err)
	}
	if _, err := pool.Stream(addr); !errors.Is(err, ErrClosed) {
		t.Fatalf("Stream after Close: %v, want ErrClosed", err)
	}
}
