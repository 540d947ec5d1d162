package opstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
)

type op struct {
	id      uint64
	timeout int64
	body    string
}

type res struct {
	id   uint64
	body string
}

// pipe is an in-memory wire. Sent messages go to sent; the test answers
// through answer, ends the stream with fail, and sees half-closes on closed.
type pipe struct {
	sent    chan []*op
	answers chan msg
	closed  chan struct{}

	mu      sync.Mutex
	sendErr error
	half    bool
	// beforeSend, when set, runs at the start of each Send, outside mu.
	beforeSend func()
}

type msg struct {
	results  []*res
	draining bool
	err      error
}

func newPipe() *pipe {
	return &pipe{sent: make(chan []*op, 100), answers: make(chan msg, 100), closed: make(chan struct{})}
}

func (p *pipe) Send(ops []*op) error {
	if p.beforeSend != nil {
		p.beforeSend()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sendErr != nil {
		return p.sendErr
	}
	if p.half {
		return errors.New("send after CloseSend")
	}
	p.sent <- ops
	return nil
}

func (p *pipe) Recv() ([]*res, bool, error) {
	select {
	case m := <-p.answers:
		return m.results, m.draining, m.err
	case <-p.closed:
		return nil, false, status.Error(codes.Canceled, "context canceled")
	}
}

func (p *pipe) CloseSend() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.half = true
	return nil
}

var codec = Codec[*op, *res]{
	SetID: func(o *op, id uint64, timeoutMs int64) { o.id, o.timeout = id, timeoutMs },
	ID:    func(r *res) uint64 { return r.id },
	Size:  func(o *op) int { return len(o.body) },
}

func newMux(t *testing.T) (*Mux[*op, *res], *pipe) {
	p := newPipe()
	var once sync.Once
	m := New[*op, *res]("test", p, func() { once.Do(func() { close(p.closed) }) }, codec)
	t.Cleanup(m.Close)
	return m, p
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// echo answers every op it is sent with its own body, from the last op of a
// message to the first, until the pipe closes.
func echo(p *pipe) {
	go func() {
		for {
			select {
			case ops := <-p.sent:
				var rs []*res
				for i := len(ops) - 1; i >= 0; i-- {
					rs = append(rs, &res{id: ops[i].id, body: ops[i].body})
				}
				p.answers <- msg{results: rs}
			case <-p.closed:
				return
			}
		}
	}()
}

func TestConcurrentCallsGetTheirOwnResults(t *testing.T) {
	m, p := newMux(t)
	echo(p)
	ctx := ctxT(t)
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprint("op-", i)
			r, err := m.Call(ctx, &op{body: body})
			if err != nil || r.body != body {
				errs <- fmt.Errorf("call %s: %v, %v", body, r, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestOpCarriesTimeoutRoundedUp(t *testing.T) {
	m, p := newMux(t)
	ctx, cancel := context.WithTimeout(ctxT(t), 1500*time.Microsecond)
	defer cancel()
	go func() { _, _ = m.Call(ctx, &op{body: "x"}) }()
	ops := <-p.sent
	if got := ops[0].timeout; got < 1 || got > 2 {
		t.Errorf("timeout %d ms for a deadline 1.5 ms away, want 1 or 2", got)
	}
}

// callAnswered sends one op and, once it has left, answers the stream
// with answer; it returns the op's error.
func callAnswered(ctx context.Context, m *Mux[*op, *res], p *pipe, answer msg) error {
	errc := make(chan error, 1)
	go func() {
		_, err := m.Call(ctx, &op{body: "x"})
		errc <- err
	}()
	<-p.sent // it left
	p.answers <- answer
	return <-errc
}

func TestBrokenStreamFailsSentOpsAndRefusesNew(t *testing.T) {
	m, p := newMux(t)
	ctx := ctxT(t)
	var broken *BrokenError
	err := callAnswered(ctx, m, p, msg{err: io.EOF})
	if !errors.As(err, &broken) {
		t.Fatalf("sent op on a broken stream: %v, want a BrokenError", err)
	}
	// It may have been acted on: Unavailable, not marked not applied.
	if status.Code(err) != codes.Unavailable || apierr.IsNotApplied(err) {
		t.Errorf("broken: code %v, not applied %v; want Unavailable, unmarked", status.Code(err), apierr.IsNotApplied(err))
	}
	var unsent *UnsentError
	_, err = m.Call(ctx, &op{body: "y"})
	if !errors.As(err, &unsent) {
		t.Fatalf("op on a closed stream: %v, want an UnsentError", err)
	}
	// It never left: safe to retry anywhere.
	if status.Code(err) != codes.Unavailable || !apierr.IsNotApplied(err) {
		t.Errorf("unsent: code %v, not applied %v; want Unavailable, marked", status.Code(err), apierr.IsNotApplied(err))
	}
}

func TestStreamNotServedIsReported(t *testing.T) {
	m, p := newMux(t)
	ctx := ctxT(t)
	err := callAnswered(ctx, m, p, msg{err: status.Error(codes.Unimplemented, "method Stream not implemented")})
	if !errors.Is(err, ErrNotServed) {
		t.Fatalf("op on a stream the server does not serve: %v, want ErrNotServed", err)
	}
	if _, err := m.Call(ctx, &op{body: "y"}); !errors.Is(err, ErrNotServed) {
		t.Fatalf("next op: %v, want ErrNotServed", err)
	}
}

func TestFailedSendIsUnsent(t *testing.T) {
	m, p := newMux(t)
	p.sendErr = errors.New("transport is closing")
	var unsent *UnsentError
	if _, err := m.Call(ctxT(t), &op{body: "x"}); !errors.As(err, &unsent) {
		t.Fatalf("op whose send failed: %v, want an UnsentError", err)
	}
	if m.Usable() {
		t.Error("stream still usable after a failed send")
	}
}

// A Send that meets the end of the stream (io.EOF, as gRPC reports it) did
// not send, and why the stream ended comes from the receive side: the op is
// unsent, or not served when the server answered Unimplemented.
func TestSendAtTheEndOfTheStreamTakesTheReasonFromRecv(t *testing.T) {
	for _, tt := range []struct {
		name string
		end  error
		want func(error) bool
	}{
		{"unavailable", status.Error(codes.Unavailable, "gone"), func(err error) bool {
			var u *UnsentError
			return errors.As(err, &u) && apierr.IsNotApplied(err)
		}},
		{"unimplemented", status.Error(codes.Unimplemented, "unknown method"), func(err error) bool {
			return errors.Is(err, ErrNotServed)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, p := newMux(t)
			p.sendErr = io.EOF
			done := make(chan error, 1)
			go func() {
				_, err := m.Call(ctxT(t), &op{body: "x"})
				done <- err
			}()
			p.answers <- msg{err: tt.end}
			if err := <-done; !tt.want(err) {
				t.Fatalf("op whose send met the end of the stream: %v (%T)", err, err)
			}
		})
	}
}

// The stream may end while an op is in Send. Whether the op left is the
// send's to say: io.EOF means it did not (unsent, safe to retry); a Send
// that succeeded put it on the wire (broken: its outcome is unknown).
func TestStreamEndingDuringSendIsSettledByTheSend(t *testing.T) {
	for _, tt := range []struct {
		name    string
		sendErr error
		want    func(error) bool
	}{
		{"send met the end", io.EOF, func(err error) bool {
			var u *UnsentError
			return errors.As(err, &u) && apierr.IsNotApplied(err)
		}},
		{"send left first", nil, func(err error) bool {
			var b *BrokenError
			return errors.As(err, &b) && !apierr.IsNotApplied(err)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			m, p := newMux(t)
			p.sendErr = tt.sendErr
			p.beforeSend = func() {
				p.answers <- msg{err: status.Error(codes.Unavailable, "gone")}
				<-m.done // the receive loop has ended before Send returns
			}
			_, err := m.Call(ctxT(t), &op{body: "x"})
			if !tt.want(err) {
				t.Fatalf("op in Send when the stream ended: %v (%T)", err, err)
			}
		})
	}
}

func TestDrainingHalfClosesAndStillDelivers(t *testing.T) {
	m, p := newMux(t)
	ctx := ctxT(t)
	errc := make(chan error, 1)
	go func() {
		r, err := m.Call(ctx, &op{body: "x"})
		if err == nil && r.body != "answered" {
			err = fmt.Errorf("got %q", r.body)
		}
		errc <- err
	}()
	sent := <-p.sent
	p.answers <- msg{draining: true}
	deadline := time.Now().Add(5 * time.Second)
	for m.Usable() {
		if time.Now().After(deadline) {
			t.Fatal("stream still usable after the draining notice")
		}
		time.Sleep(time.Millisecond)
	}
	for !p.halfClosed() {
		if time.Now().After(deadline) {
			t.Fatal("no half-close after the draining notice")
		}
		time.Sleep(time.Millisecond)
	}
	// The op sent before the notice is still answered.
	p.answers <- msg{results: []*res{{id: sent[0].id, body: "answered"}}}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	var unsent *UnsentError
	if _, err := m.Call(ctx, &op{body: "y"}); !errors.As(err, &unsent) {
		t.Fatalf("op after draining: %v, want an UnsentError", err)
	}
}

func (p *pipe) halfClosed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.half
}

func TestContextEndsTheWaitNotTheStream(t *testing.T) {
	m, p := newMux(t)
	ctx, cancel := context.WithCancel(ctxT(t))
	errc := make(chan error, 1)
	go func() {
		_, err := m.Call(ctx, &op{body: "x"})
		errc <- err
	}()
	sent := <-p.sent
	cancel()
	if err := <-errc; status.Code(err) != codes.Canceled {
		t.Fatalf("call whose context ended: %v, want Canceled", err)
	}
	// A late answer for it is dropped; the stream goes on.
	p.answers <- msg{results: []*res{{id: sent[0].id}}}
	echo(p)
	if r, err := m.Call(ctxT(t), &op{body: "y"}); err != nil || r.body != "y" {
		t.Fatalf("next call: %v, %v", r, err)
	}
}

func TestMessagesAreCappedInSize(t *testing.T) {
	m, p := newMux(t)
	big := string(make([]byte, MaxBatchBytes/2+1))
	// Hold the first send, so that the next three ops queue behind it.
	p.mu.Lock()
	ctx := ctxT(t)
	for range 4 {
		go func() { _, _ = m.Call(ctx, &op{body: big}) }()
	}
	deadline := time.Now().Add(5 * time.Second)
	for m.queued() < 3 {
		if time.Now().After(deadline) {
			t.Fatal("ops did not queue")
		}
		time.Sleep(time.Millisecond)
	}
	p.mu.Unlock()
	for range 4 {
		select {
		case ops := <-p.sent:
			if len(ops) != 1 {
				t.Fatalf("a message of %d ops over %d bytes", len(ops), MaxBatchBytes)
			}
		case <-ctx.Done():
			t.Fatal("ops were not sent")
		}
	}
}

func (m *Mux[Op, Res]) queued() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.queue)
}
