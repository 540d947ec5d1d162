package member

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/kvd-io/kvd/internal/poll"
)

// fakeFlush records the batches renewBatcher flushes and answers them: a
// lease exists when its id is positive, and its TTL is its id. While hold
// is open, a flush waits for it.
type fakeFlush struct {
	mu      sync.Mutex
	batches [][]int64
	started chan struct{} // one value per flush started
	hold    chan struct{}
	err     error
}

func (f *fakeFlush) flush(ids []int64) ([]int64, error) {
	f.mu.Lock()
	f.batches = append(f.batches, append([]int64(nil), ids...))
	f.mu.Unlock()
	f.started <- struct{}{}
	<-f.hold
	if f.err != nil {
		return nil, f.err
	}
	ttls := make([]int64, len(ids))
	for i, id := range ids {
		ttls[i] = max(id, 0)
	}
	return ttls, nil
}

// The renewals that arrive while a batch is in flight go out together in
// the next one, each answered with its own lease's outcome.
func TestRenewBatcherGathersWhileInFlight(t *testing.T) {
	f := &fakeFlush{started: make(chan struct{}, 10), hold: make(chan struct{})}
	b := newRenewBatcher(f.flush)
	ctx, cancel := context.WithCancel(context.Background())
	var loop sync.WaitGroup
	loop.Go(func() { b.run(ctx) })
	defer func() { cancel(); loop.Wait() }()

	type answer struct {
		id, ttl int64
		err     error
	}
	answers := make(chan answer, 100)
	renew := func(id int64) {
		ttl, err := b.renew(context.Background(), ctx.Done(), id)
		answers <- answer{id, ttl, err}
	}
	go renew(1)
	<-f.started // the first batch, of lease 1, is in flight
	// 50 renewals arrive meanwhile, of existing leases and of missing ones
	// (negative ids).
	for i := 2; i <= 51; i++ {
		id := int64(i)
		if i%5 == 0 {
			id = -id
		}
		go renew(id)
	}
	poll.Eventually(t, 10*time.Second, func() error {
		if n := len(b.queue); n < 50 {
			return fmt.Errorf("%d renewals queued of 50", n)
		}
		return nil
	})
	close(f.hold)
	for range 51 {
		a := <-answers
		switch {
		case a.id > 0 && (a.err != nil || a.ttl != a.id):
			t.Errorf("renewal of lease %d: ttl %d, %v; want ttl %d", a.id, a.ttl, a.err, a.id)
		case a.id < 0 && !errors.Is(a.err, ErrLeaseNotFound):
			t.Errorf("renewal of missing lease %d: ttl %d, %v; want ErrLeaseNotFound", a.id, a.ttl, a.err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.batches) != 2 || len(f.batches[0]) != 1 || len(f.batches[1]) != 50 {
		sizes := make([]int, len(f.batches))
		for i, bt := range f.batches {
			sizes[i] = len(bt)
		}
		t.Fatalf("batch sizes %v, want [1 50]", sizes)
	}
}

// A failed batch fails each of its renewals with the batch's error.
func TestRenewBatcherFailsTheBatch(t *testing.T) {
	errNoLeader := errors.New("no leader")
	f := &fakeFlush{started: make(chan struct{}, 10), hold: make(chan struct{}), err: errNoLeader}
	close(f.hold)
	b := newRenewBatcher(f.flush)
	ctx, cancel := context.WithCancel(context.Background())
	var loop sync.WaitGroup
	loop.Go(func() { b.run(ctx) })
	defer func() { cancel(); loop.Wait() }()
	if _, err := b.renew(context.Background(), ctx.Done(), 7); !errors.Is(err, errNoLeader) {
		t.Fatalf("renew: %v, want %v", err, errNoLeader)
	}
}

// Renewals still queued when the batcher stops are answered with
// ErrStopped, and later ones are refused, so that no caller waits forever.
func TestRenewBatcherStops(t *testing.T) {
	f := &fakeFlush{started: make(chan struct{}, 10), hold: make(chan struct{})}
	b := newRenewBatcher(f.flush)
	ctx, cancel := context.WithCancel(context.Background())
	var loop sync.WaitGroup
	loop.Go(func() { b.run(ctx) })

	first := make(chan error, 1)
	go func() {
		_, err := b.renew(context.Background(), ctx.Done(), 1)
		first <- err
	}()
	<-f.started
	queued := make(chan error, 1)
	go func() {
		_, err := b.renew(context.Background(), ctx.Done(), 2)
		queued <- err
	}()
	poll.Eventually(t, 10*time.Second, func() error {
		if len(b.queue) < 1 {
			return errors.New("the second renewal is not queued")
		}
		return nil
	})
	cancel()
	close(f.hold) // the batch in flight completes; the queued one does not go out
	loop.Wait()
	// The renewal in flight was renewed, but its caller may hear of the
	// stop first, as a reply lost on its way.
	if err := <-first; err != nil && !errors.Is(err, ErrStopped) {
		t.Fatalf("the renewal in flight: %v", err)
	}
	if err := <-queued; !errors.Is(err, ErrStopped) {
		t.Fatalf("the queued renewal: %v, want ErrStopped", err)
	}
	if _, err := b.renew(context.Background(), ctx.Done(), 3); !errors.Is(err, ErrStopped) {
		t.Fatalf("a renewal after the stop: %v, want ErrStopped", err)
	}
}

// Renewals queued with a callback (renewAsync, for stream ops) are batched
// with the waiting kind and each answered exactly once: with its outcome,
// with ErrStopped when the batcher stops first, or at once, not applied,
// when the queue is full (renewAsync never waits).
func TestRenewBatcherAnswersCallbacks(t *testing.T) {
	f := &fakeFlush{started: make(chan struct{}, 10), hold: make(chan struct{})}
	b := newRenewBatcher(f.flush)
	ctx, cancel := context.WithCancel(context.Background())
	var loop sync.WaitGroup
	loop.Go(func() { b.run(ctx) })

	type answer struct {
		id, ttl int64
		err     error
	}
	answers := make(chan answer, 2*maxRenewBatch+10)
	async := func(id int64) {
		var calls int
		b.renewAsync(id, func(ttl int64, err error) {
			if calls++; calls > 1 {
				t.Errorf("lease %d answered twice", id)
			}
			answers <- answer{id, ttl, err}
		})
	}
	async(1)
	<-f.started // lease 1's batch is in flight
	async(2)
	async(-3)
	close(f.hold)
	got := map[int64]answer{}
	for range 3 {
		a := <-answers
		got[a.id] = a
	}
	if a := got[1]; a.err != nil || a.ttl != 1 {
		t.Errorf("lease 1: %+v", a)
	}
	if a := got[2]; a.err != nil || a.ttl != 2 {
		t.Errorf("lease 2: %+v", a)
	}
	if a := got[-3]; !errors.Is(a.err, ErrLeaseNotFound) {
		t.Errorf("missing lease -3: %+v, want ErrLeaseNotFound", a)
	}
	if f.mu.Lock(); len(f.batches) != 2 || len(f.batches[1]) != 2 {
		t.Errorf("batches %v, want [[1] [2 -3]]", f.batches)
	}
	f.mu.Unlock()
	<-f.started // the second batch's

	// Hold a batch in flight and fill the queue: one more renewal is
	// refused at once, as not applied.
	f.hold = make(chan struct{})
	async(10)
	<-f.started
	for i := range maxRenewBatch {
		async(int64(100 + i))
	}
	async(99)
	if a := <-answers; a.id != 99 || !errors.Is(a.err, ErrNotApplied) {
		t.Fatalf("renewal of a full queue: %+v, want lease 99 refused as not applied", a)
	}

	// Stop: the batch in flight is answered, whatever is queued fails
	// with ErrStopped, and later renewals are refused at once.
	cancel()
	close(f.hold)
	loop.Wait()
	for range maxRenewBatch + 1 {
		a := <-answers
		switch {
		case a.id == 10 && a.err != nil && !errors.Is(a.err, ErrStopped):
			t.Errorf("the renewal in flight: %+v", a)
		case a.id >= 100 && !errors.Is(a.err, ErrStopped):
			t.Errorf("queued renewal of %d: %+v, want ErrStopped", a.id, a)
		}
	}
	async(5)
	if a := <-answers; a.id != 5 || !errors.Is(a.err, ErrStopped) {
		t.Fatalf("a renewal after the stop: %+v, want ErrStopped", a)
	}
	select {
	case a := <-answers:
		t.Fatalf("an extra answer: %+v", a)
	default:
	}
}
