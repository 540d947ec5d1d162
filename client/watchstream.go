package client

import (
	"context"
	"errors"
	"io"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// requireLeaderKey is the stream metadata with which the client asks a
// member to end a watch stream (Unavailable) once it has lost its leader,
// so that its watchers move to a member that has one.
const requireLeaderKey = "kvd-require-leader"

// progressWatchID is the watch id of the answer to a progress request: it
// is for every watcher of the stream.
const progressWatchID = -1

// watchCloseTimeout bounds how long an idle stream waits for the answer to
// the cancellation of its last watcher before it is closed anyway.
const watchCloseTimeout = time.Second

// errStreamGone is returned by watchStream.create when the stream broke or
// is closing: another stream must be opened.
var errStreamGone = errors.New("watch stream gone")

// watchHub holds a client's watch streams, at most one per endpoint, and
// its watchers. One mutex, mu, guards the streams' and the watchers' state;
// no call to the network is made while it is held. Sends on a stream are
// serialized by the stream's sendMu, which is taken before mu, never after.
type watchHub struct {
	c    *Client
	done chan struct{} // closed by close

	mu       sync.Mutex
	streams  map[string]*watchStream // the stream new watchers of an endpoint join
	opening  map[string]*sync.Mutex  // one stream opened at a time per endpoint
	watchers map[*watcher]struct{}   // every watcher that has not ended
	closed   bool
}

func newWatchHub(c *Client) *watchHub {
	return &watchHub{
		c:        c,
		done:     make(chan struct{}),
		streams:  map[string]*watchStream{},
		opening:  map[string]*sync.Mutex{},
		watchers: map[*watcher]struct{}{},
	}
}

// watchStream is one WatchService.Watch stream and the watchers it carries,
// by the ids the client gave them.
type watchStream struct {
	h        *watchHub
	endpoint string
	cs       kvv1.WatchService_WatchClient
	cancel   context.CancelFunc

	sendMu sync.Mutex // gRPC allows one sender at a time

	// Guarded by h.mu.
	watchers   map[int64]*watcher
	nextID     int64
	broken     bool  // it failed: it takes no new watcher
	closing    bool  // it has no watcher left and is being closed
	lastCancel int64 // when closing, the id whose cancellation ends it
}

// watcher is one Watch call: what to ask members for, where it is, what it
// has received and what its reader has yet to read.
type watcher struct {
	h             *watchHub
	ctx           context.Context
	req           *kvv1.WatchCreateRequest // without start revision and id
	createdNotify bool
	out           chan WatchResponse
	wake          chan struct{} // capacity 1: run has something to do
	created       chan struct{} // closed at the first creation, or at the end

	// Guarded by h.mu.
	stream      *watchStream // nil while it moves between streams
	id          int64        // its id on stream
	established bool         // stream answered its create request
	createdOnce bool         // a member created it once; created is closed
	// nextRev is the start revision of its next create request: its start
	// revision until it receives something, then the revision after the
	// last one it received whole or the last progress it received. Zero
	// (changes from now on) only until the first creation fixes "now".
	nextRev        int64
	frag           []*Event // a revision's events whose last fragment is yet to come
	ended          bool     // no more responses: the hub is done with it
	progressWanted bool     // RequestProgress was called and not yet answered here
	failures       int      // its streams that failed since it was last created

	// The queue between the hub and run has a lock of its own, so that the
	// thousands of watchers of a fan-out do not take the hub's lock for
	// each event they hand over. It is taken after h.mu, never before.
	qmu      sync.Mutex
	q        []*WatchResponse // received, not yet read (shared: see dispatch)
	qEnded   bool             // nothing more comes: run closes out after q
	qDropped bool             // the client closed: run closes out at once
}

func newWatcher(h *watchHub, ctx context.Context, op Op) *watcher {
	req := &kvv1.WatchCreateRequest{
		Key:            op.key,
		RangeEnd:       op.end,
		ProgressNotify: op.progressNotify,
		PrevKv:         op.prevKV,
		Fragment:       op.fragment,
		// One response for the watchers of a key on a stream: dispatch
		// hands it to each.
		ShareResponses: true,
	}
	if op.filterPut {
		req.Filters = append(req.Filters, kvv1.WatchFilter_WATCH_FILTER_NO_PUT)
	}
	if op.filterDelete {
		req.Filters = append(req.Filters, kvv1.WatchFilter_WATCH_FILTER_NO_DELETE)
	}
	return &watcher{
		h:             h,
		ctx:           ctx,
		req:           req,
		createdNotify: op.createdNotify,
		out:           make(chan WatchResponse),
		wake:          make(chan struct{}, 1),
		created:       make(chan struct{}),
		nextRev:       op.rev,
	}
}

// add registers w, unless the client is closed.
func (h *watchHub) add(w *watcher) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	h.watchers[w] = struct{}{}
	return nil
}

// run hands w's responses to its reader, in order, until the watch ends.
//
// It learns that w's context ended through context.AfterFunc and its own
// wake channel, not by selecting on ctx.Done(): the watchers of a program
// often share one context, and thousands of goroutines selecting on one
// channel all take that channel's lock for each event they hand over (a
// fifth of the client's CPU in a fan-out benchmark).
func (w *watcher) run() {
	defer close(w.out)
	var ctxDone atomic.Bool
	stop := context.AfterFunc(w.ctx, func() {
		ctxDone.Store(true)
		w.signal()
	})
	defer stop()
	// The head of the queue is taken out before it is handed over, so
	// that a watcher whose reader keeps up finds its queue empty at the
	// next event and queues it without allocating.
	var next *WatchResponse
	for {
		if ctxDone.Load() {
			w.h.stop(w)
			return
		}
		if next == nil {
			w.qmu.Lock()
			if w.qDropped {
				w.qmu.Unlock()
				return
			}
			if len(w.q) == 0 {
				ended := w.qEnded
				w.qmu.Unlock()
				if ended {
					return
				}
				<-w.wake
				continue
			}
			next = w.q[0]
			w.q[0] = nil
			if len(w.q) == 1 {
				w.q = w.q[:0] // keep the array
			} else {
				w.q = w.q[1:]
			}
			w.qmu.Unlock()
		}
		select {
		case w.out <- *next:
			next = nil
		case <-w.wake: // perhaps dropped, or its context ended: look again
			w.qmu.Lock()
			dropped := w.qDropped
			w.qmu.Unlock()
			if dropped {
				return
			}
		}
	}
}

func (w *watcher) signal() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// pushLocked queues r for the reader. The caller holds h.mu.
func (w *watcher) pushLocked(r *WatchResponse) {
	if w.ended {
		return
	}
	w.qmu.Lock()
	w.q = append(w.q, r)
	w.qmu.Unlock()
	w.signal()
}

// endLocked queues r as w's last response and forgets w; it must already
// be detached from its stream. The caller holds h.mu.
func (w *watcher) endLocked(r *WatchResponse) {
	if w.ended {
		return
	}
	w.qmu.Lock()
	w.q = append(w.q, r)
	w.qEnded = true
	w.qmu.Unlock()
	w.ended = true
	delete(w.h.watchers, w)
	w.createdLocked()
	w.signal()
}

// createdLocked lets Watch return. The caller holds h.mu.
func (w *watcher) createdLocked() {
	if !w.createdOnce {
		w.createdOnce = true
		close(w.created)
	}
}

// progressLocked delivers a progress notification at hdr's revision. The
// caller holds h.mu.
func (w *watcher) progressLocked(hdr *kvv1.ResponseHeader) {
	if len(w.frag) > 0 {
		return // cannot be: a revision is sent whole before anything else
	}
	w.progressWanted = false
	w.nextRev = max(w.nextRev, hdr.GetRevision()+1)
	w.pushLocked(&WatchResponse{Header: hdr})
}

// detachLocked takes w off its stream and reports whether that left the
// stream idle, to be closed. The caller holds h.mu.
func (h *watchHub) detachLocked(w *watcher) (idle *watchStream) {
	s := w.stream
	if s == nil {
		return nil
	}
	delete(s.watchers, w.id)
	w.stream, w.id, w.established, w.frag = nil, 0, false, nil
	if len(s.watchers) > 0 || s.broken || s.closing {
		return nil
	}
	s.closing = true
	if h.streams[s.endpoint] == s {
		delete(h.streams, s.endpoint)
	}
	return s
}

// stop ends w because its context ended: it is cancelled on its member, and
// its stream closed if no other watcher uses it.
func (h *watchHub) stop(w *watcher) {
	h.mu.Lock()
	s, id := w.stream, w.id
	idle := h.detachLocked(w)
	w.qmu.Lock()
	w.q, w.qEnded = nil, true
	w.qmu.Unlock()
	w.ended = true
	delete(h.watchers, w)
	w.createdLocked()
	if idle != nil {
		idle.lastCancel = id
	}
	h.mu.Unlock()
	if s == nil {
		return
	}
	s.send(&kvv1.WatchRequest{Request: &kvv1.WatchRequest_CancelRequest{CancelRequest: &kvv1.WatchCancelRequest{WatchId: id}}})
	if idle != nil {
		// Closed when the member answers the cancellation, or after a while.
		time.AfterFunc(watchCloseTimeout, idle.cancel)
	}
}

// connect puts w on a stream: on the endpoints in turn as a read is retried,
// trying avoid (where its last stream failed) last, until a stream takes it
// or ctx ends. A watcher whose streams keep failing before it is created
// waits between attempts.
func (h *watchHub) connect(w *watcher, avoid string) {
	h.mu.Lock()
	failures := w.failures
	h.mu.Unlock()
	if failures > 1 {
		wait := h.c.cfg.RetryBackoff << min(failures-2, 16)
		t := time.NewTimer(min(wait, h.c.cfg.MaxRetryBackoff))
		select {
		case <-t.C:
		case <-w.ctx.Done():
			t.Stop()
			return
		case <-h.done:
			t.Stop()
			return
		}
	}
	err := h.c.retryAvoiding(w.ctx, kindRead, avoid, func(ctx context.Context, endpoint string) error {
		for {
			s, err := h.stream(ctx, endpoint)
			if err != nil {
				return err
			}
			if err := s.create(w); !errors.Is(err, errStreamGone) {
				return err
			}
		}
	})
	if err == nil || w.ctx.Err() != nil {
		return // on a stream, or run ends it
	}
	h.mu.Lock()
	w.endLocked(&WatchResponse{Header: &ResponseHeader{}, Canceled: true, err: err})
	h.mu.Unlock()
}

// stream returns endpoint's stream, opening it when there is none.
func (h *watchHub) stream(ctx context.Context, endpoint string) (*watchStream, error) {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil, ErrClosed
	}
	if s := h.streams[endpoint]; s != nil {
		h.mu.Unlock()
		return s, nil
	}
	om := h.opening[endpoint]
	if om == nil {
		om = new(sync.Mutex)
		h.opening[endpoint] = om
	}
	h.mu.Unlock()

	om.Lock()
	defer om.Unlock()
	h.mu.Lock()
	s := h.streams[endpoint]
	h.mu.Unlock()
	if s != nil {
		return s, nil // opened while this one waited
	}
	cc, err := h.c.ready(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(metadata.AppendToOutgoingContext(context.Background(), requireLeaderKey, "true"))
	cs, err := kvv1.NewWatchServiceClient(cc).Watch(sctx, grpc.MaxCallRecvMsgSize(math.MaxInt32))
	if err != nil {
		cancel()
		return nil, err
	}
	s = &watchStream{h: h, endpoint: endpoint, cs: cs, cancel: cancel, watchers: map[int64]*watcher{}}
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		cancel()
		return nil, ErrClosed
	}
	h.streams[endpoint] = s
	h.mu.Unlock()
	go s.receive()
	return s, nil
}

// create adds w to s and sends its create request, from w.nextRev. Once w
// is on s, s owns it: if the request cannot be sent, s is broken, and its
// failure moves w on. It returns errStreamGone when s takes no watcher.
func (s *watchStream) create(w *watcher) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	h := s.h
	h.mu.Lock()
	if w.ended {
		// Its context ended meanwhile; a stream opened for it alone goes.
		idle := len(s.watchers) == 0 && !s.broken && !s.closing
		if idle {
			s.closing = true
			if h.streams[s.endpoint] == s {
				delete(h.streams, s.endpoint)
			}
		}
		h.mu.Unlock()
		if idle {
			s.cancel()
		}
		return nil
	}
	if s.broken || s.closing {
		h.mu.Unlock()
		return errStreamGone
	}
	s.nextID++
	w.stream, w.id = s, s.nextID
	s.watchers[w.id] = w
	req := proto.CloneOf(w.req)
	req.WatchId, req.StartRevision = w.id, w.nextRev
	progress := w.progressWanted
	h.mu.Unlock()

	err := s.cs.Send(&kvv1.WatchRequest{Request: &kvv1.WatchRequest_CreateRequest{CreateRequest: req}})
	if err == nil && progress {
		err = s.cs.Send(&kvv1.WatchRequest{Request: &kvv1.WatchRequest_ProgressRequest{ProgressRequest: &kvv1.WatchProgressRequest{}}})
	}
	if err != nil {
		s.cancel() // the receiver sees the failure and moves the watchers on
	}
	return nil
}

// send sends req. A failure breaks the stream, whose receiver moves its
// watchers on.
func (s *watchStream) send(req *kvv1.WatchRequest) {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	if err := s.cs.Send(req); err != nil {
		s.cancel()
	}
}

// receive hands what the member sends to the watchers until the stream
// fails.
func (s *watchStream) receive() {
	for {
		resp, err := s.cs.Recv()
		if err != nil {
			s.h.streamFailed(s, err)
			return
		}
		s.h.dispatch(s, resp)
	}
}

// dispatch applies one response of s to its watchers.
func (h *watchHub) dispatch(s *watchStream, resp *kvv1.WatchResponse) {
	var idle *watchStream
	h.mu.Lock()
	defer func() {
		h.mu.Unlock()
		if idle != nil {
			idle.cancel() // its member has forgotten its last watcher
		}
	}()
	if resp.GetWatchId() == progressWatchID {
		for _, w := range s.watchers {
			if w.established {
				w.progressLocked(resp.GetHeader())
			}
		}
		return
	}
	if ids := resp.GetSharedWatchIds(); len(ids) > 0 {
		// Events for several watchers, never a fragment: each takes the
		// events as its own response.
		hdr := resp.GetHeader()
		if hdr == nil {
			hdr = &ResponseHeader{}
		}
		// One response value for all of them: their queues hold pointers
		// to it, and each reader receives a copy.
		shared := &WatchResponse{Header: hdr, Events: resp.GetEvents()}
		if w := s.watchers[resp.GetWatchId()]; w != nil {
			w.eventsLocked(hdr, resp.GetEvents(), shared)
		}
		for _, id := range ids {
			if w := s.watchers[id]; w != nil {
				w.eventsLocked(hdr, resp.GetEvents(), shared)
			}
		}
		return
	}
	w := s.watchers[resp.GetWatchId()]
	if w == nil {
		// A watcher cancelled by the client; its cancellation may end s.
		if s.closing && resp.GetCanceled() && resp.GetWatchId() == s.lastCancel {
			idle = s
		}
		return
	}
	hdr := resp.GetHeader()
	if hdr == nil {
		hdr = &ResponseHeader{}
	}
	switch {
	case resp.GetCreated() && !resp.GetCanceled():
		w.established = true
		w.failures = 0
		if !w.createdOnce {
			if w.nextRev == 0 {
				// Watching from now: now is the member's revision at
				// creation, and a resumed watch starts after it.
				w.nextRev = hdr.GetRevision() + 1
			}
			if w.createdNotify {
				w.pushLocked(&WatchResponse{Header: hdr, Created: true})
			}
			w.createdLocked()
		}
	case resp.GetCanceled():
		// Refused, compacted, or ended by the member.
		idle = h.detachLocked(w)
		w.endLocked(&WatchResponse{
			Header:          hdr,
			CompactRevision: resp.GetCompactRevision(),
			Canceled:        true,
			CancelReason:    resp.GetCancelReason(),
		})
	case resp.GetFragment():
		w.frag = append(w.frag, resp.GetEvents()...)
	case len(resp.GetEvents()) == 0 && len(w.frag) == 0:
		w.progressLocked(hdr)
	default:
		w.eventsLocked(hdr, resp.GetEvents(), nil)
	}
}

// eventsLocked hands w the events of one response, after the fragments
// before it. shared, if not nil, is the response of those events that the
// other watchers of a shared response are given: w takes it too unless it
// drops some of the events. The caller holds h.mu.
func (w *watcher) eventsLocked(hdr *kvv1.ResponseHeader, events []*Event, shared *WatchResponse) {
	if len(w.frag) > 0 {
		events = append(w.frag, events...)
		w.frag = nil
	}
	// Members never send a revision twice; should one, the reader still
	// sees it once.
	for len(events) > 0 && events[0].GetKv().GetModRevision() < w.nextRev {
		events = events[1:]
	}
	if len(events) == 0 {
		return
	}
	w.nextRev = max(w.nextRev, events[len(events)-1].GetKv().GetModRevision()+1)
	if shared == nil || len(events) != len(shared.Events) || &events[0] != &shared.Events[0] {
		// Not the events as they came: fragments before them, or some
		// dropped.
		shared = &WatchResponse{Header: hdr, Events: events}
	}
	w.pushLocked(shared)
}

// streamFailed moves the watchers of s, which failed with err, to other
// streams, or ends them when err says that retrying cannot help.
func (h *watchHub) streamFailed(s *watchStream, err error) {
	h.mu.Lock()
	s.broken = true
	if h.streams[s.endpoint] == s {
		delete(h.streams, s.endpoint)
	}
	moved := make([]*watcher, 0, len(s.watchers))
	for _, w := range s.watchers {
		// What it received of an unfinished revision is dropped: that
		// revision is asked for again, whole.
		w.stream, w.id, w.established, w.frag = nil, 0, false, nil
		w.failures++
		moved = append(moved, w)
	}
	s.watchers = nil
	// A token the member refused (it expired while the stream was being
	// opened, or the user changed since it was issued) is renewed and the
	// watchers go on: they end only if authenticating again fails.
	resume := !h.closed && (resumable(err) || h.c.tokens.renewAfter(err))
	if !resume {
		for _, w := range moved {
			w.endLocked(&WatchResponse{Header: &ResponseHeader{}, Canceled: true, err: err})
		}
	}
	h.mu.Unlock()
	s.cancel()
	if !resume {
		return
	}
	for _, w := range moved {
		go h.connect(w, s.endpoint)
	}
}

// resumable reports whether watchers whose stream failed with err may be
// created anew elsewhere: anything but an error that says the member will
// never serve them.
func resumable(err error) bool {
	if errors.Is(err, io.EOF) {
		return true
	}
	switch status.Code(err) {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.PermissionDenied,
		codes.FailedPrecondition, codes.OutOfRange, codes.Unimplemented, codes.Unauthenticated:
		return false
	}
	return true
}

// requestProgress sends a progress request on every stream, and marks every
// watcher as wanting an answer, so that one that is between streams asks its
// next stream.
func (h *watchHub) requestProgress() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return ErrClosed
	}
	for w := range h.watchers {
		w.progressWanted = true
	}
	streams := make([]*watchStream, 0, len(h.streams))
	for _, s := range h.streams {
		streams = append(streams, s)
	}
	h.mu.Unlock()
	for _, s := range streams {
		s.send(&kvv1.WatchRequest{Request: &kvv1.WatchRequest_ProgressRequest{ProgressRequest: &kvv1.WatchProgressRequest{}}})
	}
	return nil
}

// close ends every watcher and stream: the channels close without further
// responses.
func (h *watchHub) close() {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return
	}
	h.closed = true
	close(h.done)
	streams := h.streams
	h.streams = map[string]*watchStream{}
	for w := range h.watchers {
		w.ended = true
		w.qmu.Lock()
		w.q, w.qEnded, w.qDropped = nil, true, true
		w.qmu.Unlock()
		w.createdLocked()
		w.signal()
	}
	clear(h.watchers)
	h.mu.Unlock()
	for _, s := range streams {
		s.cancel()
	}
}
