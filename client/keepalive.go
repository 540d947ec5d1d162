package client

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// LeaseKeepAliveResponse is one renewal of a lease: TTL is what it was
// renewed for. Deadline is when the lease expires at the earliest if it is
// not renewed again, by this machine's clock: the time the renewal was sent
// plus TTL. The cluster may keep the lease longer, never shorter.
type LeaseKeepAliveResponse struct {
	*kvv1.LeaseKeepAliveResponse
	Deadline time.Time
}

func newKeepAliveResponse(r *kvv1.LeaseKeepAliveResponse, sent time.Time) *LeaseKeepAliveResponse {
	return &LeaseKeepAliveResponse{LeaseKeepAliveResponse: r, Deadline: sent.Add(time.Duration(r.GetTtl()) * time.Second)}
}

// now is the clock of renewals.
var now = time.Now

const (
	// keepAliveTick is how often the keep-alive loop looks for renewals
	// due and deadlines passed.
	keepAliveTick = 100 * time.Millisecond
	// keepAliveFirstDeadline is how long a lease registered with KeepAlive
	// counts as alive before its first renewal is answered (etcd's
	// heuristic): KeepAlive does not know the lease's TTL until then.
	keepAliveFirstDeadline = 5 * time.Second
	// keepAliveRetry is how long the loop waits for the answer to a
	// renewal before it sends another, if renewals sent after it were
	// answered meanwhile (the member lost or holds it). One that waits
	// behind the others is not sent again: the member answers a stream's
	// renewals in turn, and duplicates would only lengthen the queue of a
	// member slow to work through it (a new leader renewing a thousand
	// leases at once).
	keepAliveRetry = time.Second
	// keepAliveStall is how long a stream may go without answering
	// anything while a renewal sent on it waits, before the loop gives it
	// up and opens one on another endpoint: a member that is stopped
	// (SIGSTOP, a VM pause) or cut off keeps the stream open without ever
	// answering or failing it. A short lease moves sooner: after half the
	// time its deadline had left when the renewal was sent, so that the
	// renewal on the new stream is answered in time. A member that answers,
	// however slowly, is not stalled: under load a thousand renewals take
	// longer than this to answer, and moving them would only send them all
	// again to a member as loaded, where the same would happen.
	keepAliveStall = time.Second
	// keepAliveBuffer is each KeepAlive channel's buffer: an answer that
	// finds it full is dropped, as clientv3 does, so that a reader that
	// does not keep up never holds renewals back.
	keepAliveBuffer = 16
)

// KeepAlive renews the lease every third of its TTL, in the background,
// until ctx ends or the lease is lost, and sends each renewal's answer on
// the returned channel. The channel is closed when ctx ends, when the
// client closes, when the cluster says the lease no longer exists, or when
// its Deadline passes without a renewal (every endpoint failed for that
// long): from then on, treat the lease as lost. A reader that falls behind
// misses answers (the buffer holds 16) but never delays renewals.
//
// Every lease the client keeps alive shares one LeaseKeepAlive stream,
// moved to another endpoint when its member fails.
func (c *Client) KeepAlive(ctx context.Context, id LeaseID) (<-chan *LeaseKeepAliveResponse, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ch := make(chan *LeaseKeepAliveResponse, keepAliveBuffer)
	c.keepAlives.add(ctx, id, ch)
	return ch, nil
}

// keepAlives renews a client's kept-alive leases on one stream at a time.
// Its loop runs while there is a lease to keep alive; Close stops it.
type keepAlives struct {
	c    *Client
	wake chan struct{} // a lease was added
	done chan struct{} // closed by close

	mu      sync.Mutex
	leases  map[LeaseID]*keepAlive
	running bool // the loop runs
	closed  bool
	// heard is when the current stream last answered anything (or
	// opened): see stalled.
	heard time.Time
	// answeredSent is the latest send time of a renewal the current
	// stream answered: see due.
	answeredSent time.Time
	// stream numbers the streams, so that the answers of one given up
	// are not taken for the current one's.
	stream uint64
	wg     sync.WaitGroup
}

// keepAlive is one kept-alive lease and the channels of its KeepAlive calls.
type keepAlive struct {
	chs      map[chan *LeaseKeepAliveResponse]struct{}
	deadline time.Time   // the lease's earliest expiry as the client knows it
	next     time.Time   // when to send the next renewal
	sent     []time.Time // send times of the renewals not yet answered, oldest first
}

func newKeepAlives(c *Client) *keepAlives {
	return &keepAlives{c: c, wake: make(chan struct{}, 1), done: make(chan struct{}), leases: map[LeaseID]*keepAlive{}}
}

func (k *keepAlives) add(ctx context.Context, id LeaseID, ch chan *LeaseKeepAliveResponse) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		close(ch)
		return
	}
	ka, ok := k.leases[id]
	if !ok {
		t := now()
		ka = &keepAlive{chs: map[chan *LeaseKeepAliveResponse]struct{}{}, deadline: t.Add(keepAliveFirstDeadline), next: t}
		k.leases[id] = ka
	}
	ka.chs[ch] = struct{}{}
	context.AfterFunc(ctx, func() { k.remove(id, ch) })
	if !k.running {
		k.running = true
		k.wg.Add(1)
		go k.run()
	}
	select {
	case k.wake <- struct{}{}:
	default:
	}
}

// remove closes one KeepAlive channel, and stops renewing the lease when it
// was its last.
func (k *keepAlives) remove(id LeaseID, ch chan *LeaseKeepAliveResponse) {
	k.mu.Lock()
	defer k.mu.Unlock()
	ka, ok := k.leases[id]
	if !ok {
		return
	}
	if _, ok := ka.chs[ch]; !ok {
		return
	}
	delete(ka.chs, ch)
	close(ch)
	if len(ka.chs) == 0 {
		delete(k.leases, id)
	}
}

// forget stops renewing a lease (revoked by this client) and closes its
// channels.
func (k *keepAlives) forget(id LeaseID) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.dropLocked(id)
}

func (k *keepAlives) dropLocked(id LeaseID) {
	ka, ok := k.leases[id]
	if !ok {
		return
	}
	for ch := range ka.chs {
		close(ch)
	}
	delete(k.leases, id)
}

// close stops the loop and closes every channel.
func (k *keepAlives) close() {
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return
	}
	k.closed = true
	close(k.done)
	for id := range k.leases {
		k.dropLocked(id)
	}
	k.mu.Unlock()
	k.wg.Wait()
}

// run keeps a stream open while there are leases to renew, and renews them
// on it. A stream that fails is replaced on another endpoint.
func (k *keepAlives) run() {
	defer k.wg.Done()
	avoid := ""
	for {
		k.mu.Lock()
		if k.closed || len(k.leases) == 0 {
			k.running = false
			k.mu.Unlock()
			return
		}
		k.mu.Unlock()
		endpoint, err := k.serve(avoid)
		if err == nil {
			continue // no lease left: the check above ends the loop
		}
		avoid = endpoint
		select {
		case <-k.done:
			return
		case <-time.After(k.c.cfg.RetryBackoff):
		}
	}
}

// serve opens a stream on an endpoint (trying avoid last) and renews the
// leases on it until it fails (returning the error and its endpoint), the
// client closes, or no lease is left (nil).
func (k *keepAlives) serve(avoid string) (string, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-k.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	var (
		st       kvv1.LeaseService_LeaseKeepAliveClient
		endpoint string
	)
	err := k.c.retryAvoiding(ctx, kindRead, avoid, func(ctx context.Context, ep string) error {
		return k.c.try(ctx, ep, func(_ context.Context, cc grpc.ClientConnInterface) (err error) {
			// The stream lives beyond this attempt: it takes the loop's
			// context, not the attempt's.
			st, err = kvv1.NewLeaseServiceClient(cc).LeaseKeepAlive(ctx)
			endpoint = ep
			return err
		})
	})
	if err != nil {
		k.expire(now())
		return endpoint, err
	}
	stream := k.opened()
	failed := make(chan error, 1)
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				failed <- err
				return
			}
			k.answer(stream, r)
		}
	}()
	tick := time.NewTicker(keepAliveTick)
	defer tick.Stop()
	for {
		t := now()
		k.expire(t)
		if k.stalled(t) {
			k.lostAnswers()
			return endpoint, errKeepAliveStalled
		}
		due, left := k.due(t)
		if !left {
			_ = st.CloseSend()
			return endpoint, nil
		}
		for _, id := range due {
			if err := st.Send(&kvv1.LeaseKeepAliveRequest{Id: id}); err != nil {
				return endpoint, err
			}
		}
		select {
		case <-k.done:
			return endpoint, nil
		case err := <-failed:
			k.lostAnswers()
			return endpoint, err
		case <-tick.C:
		case <-k.wake:
		}
	}
}

// errKeepAliveStalled: the stream's member did not answer a renewal within
// keepAliveStall.
var errKeepAliveStalled = errors.New("client: keep-alive stream stalled: no renewal answered")

// opened notes that a new stream opened, and returns its number: nothing
// was sent or answered on it yet, and renewals sent on earlier streams
// will not be answered on it.
func (k *keepAlives) opened() uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stream++
	k.heard = now()
	k.answeredSent = time.Time{}
	for _, ka := range k.leases {
		ka.sent = nil
		ka.next = now()
	}
	return k.stream
}

// stalled reports whether, at t, a renewal sent on the current stream has
// waited too long (see keepAliveStall) while the stream answered nothing:
// the wait counts from the renewal's send or the stream's last answer,
// whichever is later.
func (k *keepAlives) stalled(t time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, ka := range k.leases {
		if len(ka.sent) == 0 {
			continue
		}
		limit := min(keepAliveStall, ka.deadline.Sub(ka.sent[0])/2)
		since := ka.sent[0]
		if k.heard.After(since) {
			since = k.heard
		}
		if t.Sub(since) > limit {
			return true
		}
	}
	return false
}

// due returns the leases whose renewal is due at t, the earliest deadline
// first (a member answers a burst of renewals roughly in turn: after a
// failover, those with the least time left go first), noting that they are
// sent now; left is false when no lease is left. A lease whose last renewal
// waits unanswered is due again only once a renewal sent after it was
// answered (see keepAliveRetry).
func (k *keepAlives) due(t time.Time) (ids []LeaseID, left bool) {
	k.mu.Lock()
	defer k.mu.Unlock()
	type dueLease struct {
		id LeaseID
		ka *keepAlive
	}
	var due []dueLease
	for id, ka := range k.leases {
		if ka.next.After(t) {
			continue
		}
		if n := len(ka.sent); n > 0 && !k.answeredSent.After(ka.sent[n-1]) {
			continue // queued behind others, not lost
		}
		due = append(due, dueLease{id, ka})
	}
	slices.SortFunc(due, func(a, b dueLease) int { return a.ka.deadline.Compare(b.ka.deadline) })
	for _, d := range due {
		ids = append(ids, d.id)
		d.ka.sent = append(d.ka.sent, t)
		d.ka.next = t.Add(keepAliveRetry)
	}
	return ids, len(k.leases) > 0
}

// answer delivers a renewal's answer: the lease's new deadline counts from
// when its oldest unanswered renewal was sent, which is when the answered
// one was sent or earlier.
func (k *keepAlives) answer(stream uint64, r *kvv1.LeaseKeepAliveResponse) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if stream != k.stream {
		// A late answer on a stream given up: the renewals it answered
		// are forgotten, and its send time is not known.
		return
	}
	k.heard = now()
	ka, ok := k.leases[r.GetId()]
	if !ok {
		return
	}
	sent := now()
	if len(ka.sent) > 0 {
		sent, ka.sent = ka.sent[0], ka.sent[1:]
		if sent.After(k.answeredSent) {
			k.answeredSent = sent
		}
	}
	if r.GetTtl() <= 0 {
		k.dropLocked(r.GetId()) // the lease is gone
		return
	}
	resp := newKeepAliveResponse(r, sent)
	if resp.Deadline.After(ka.deadline) {
		ka.deadline = resp.Deadline
	}
	ka.next = now().Add(max(time.Duration(r.GetTtl())*time.Second/3, keepAliveTick))
	for ch := range ka.chs {
		select {
		case ch <- resp:
		default: // the reader is behind; it gets the next one
		}
	}
}

// lostAnswers forgets the renewals sent on a stream that broke: they will
// not be answered.
func (k *keepAlives) lostAnswers() {
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, ka := range k.leases {
		ka.sent = nil
		ka.next = now()
	}
}

// expire closes the channels of every lease whose deadline has passed.
func (k *keepAlives) expire(t time.Time) {
	k.mu.Lock()
	defer k.mu.Unlock()
	for id, ka := range k.leases {
		if !ka.deadline.After(t) {
			k.dropLocked(id)
		}
	}
}
