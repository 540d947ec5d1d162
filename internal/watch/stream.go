package watch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"

	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// ErrStreamClosed is returned by Next once the stream is closed.
var ErrStreamClosed = errors.New("watch stream closed")

// ProgressWatchID is the watch id of the answer to a progress request: it
// is for the whole stream.
const ProgressWatchID = -1

// Stream is one client stream of watchers: what the hub queues for them,
// in order, for one sender. Its methods are safe for concurrent use; Next
// is for one goroutine, the sender.
type Stream struct {
	h *Hub
	// watchers and nextID are guarded by the hub's mutex.
	watchers map[int64]*watcher
	nextID   int64
	// user is the user whose permissions the watchers need, if checked
	// (Authorize); guarded by the hub's mutex.
	user    string
	checked bool
	// reason words an authorization refusal as a cancel reason.
	reason func(error) string

	mu    sync.Mutex
	queue []*kvv1.WatchResponse
	// lent is what Next returned last, which the sender is done with when
	// it calls Next again: its array becomes the next queue's, so that a
	// busy stream does not allocate a queue for each batch.
	lent   []*kvv1.WatchResponse
	events int // events in queue
	bytes  int // their encoded size
	closed bool
	wake   chan struct{} // capacity 1: the sender has something to do
}

// NewStream returns an empty stream of watchers.
func (h *Hub) NewStream() *Stream {
	return &Stream{h: h, watchers: map[int64]*watcher{}, wake: make(chan struct{}, 1)}
}

// Refuse answers a watch creation the caller may not make: created and
// canceled at once, with why, as etcd answers a watch outside the user's
// permissions. No watcher is created.
func (s *Stream) Refuse(req *kvv1.WatchCreateRequest, why string) {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	id := req.GetWatchId()
	if id == 0 {
		for {
			s.nextID++
			if s.watchers[s.nextID] == nil {
				break
			}
		}
		id = s.nextID
	}
	s.push([]*kvv1.WatchResponse{{Header: &kvv1.ResponseHeader{Revision: h.current}, WatchId: id, Created: true, Canceled: true, CancelReason: why}}, true)
}

// Watch creates a watcher. Its answer (created, then perhaps canceled when
// its start revision is compacted, or refused when the request is invalid)
// is queued before any of its events.
func (s *Stream) Watch(req *kvv1.WatchCreateRequest) {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	refuse := func(id int64, why string) {
		s.push([]*kvv1.WatchResponse{{Header: &kvv1.ResponseHeader{Revision: h.current}, WatchId: id, Created: true, Canceled: true, CancelReason: why}}, true)
	}
	id := req.GetWatchId()
	switch {
	case id < 0:
		refuse(id, fmt.Sprintf("watch id %d is negative", id))
		return
	case id > 0 && s.watchers[id] != nil:
		refuse(id, fmt.Sprintf("watch id %d is already in use on this stream", id))
		return
	case id == 0:
		for {
			s.nextID++
			if s.watchers[s.nextID] == nil {
				break
			}
		}
		id = s.nextID
	}
	if err := checkRange(req.GetKey(), req.GetRangeEnd()); err != nil {
		refuse(id, err.Error())
		return
	}
	if err := s.authorizeLocked(req.GetKey(), req.GetRangeEnd()); err != nil {
		refuse(id, s.reason(err))
		return
	}
	w := &watcher{id: id, stream: s, key: bytes.Clone(req.GetKey()), end: bytes.Clone(req.GetRangeEnd()),
		prevKV: req.GetPrevKv(), fragment: req.GetFragment(), progress: req.GetProgressNotify(), share: req.GetShareResponses()}
	for _, f := range req.GetFilters() {
		switch f {
		case kvv1.WatchFilter_WATCH_FILTER_NO_PUT:
			w.noPut = true
		case kvv1.WatchFilter_WATCH_FILTER_NO_DELETE:
			w.noDelete = true
		}
	}
	s.push([]*kvv1.WatchResponse{{Header: &kvv1.ResponseHeader{Revision: h.current}, WatchId: id, Created: true}}, true)
	start := req.GetStartRevision()
	if compact := h.cfg.History.CompactRevision(); start > 0 && start < compact {
		s.push([]*kvv1.WatchResponse{{Header: &kvv1.ResponseHeader{Revision: h.current}, WatchId: id, Canceled: true, CompactRevision: compact,
			CancelReason: fmt.Sprintf("start revision %d has been compacted (compact revision %d)", start, compact)}}, true)
		return
	}
	s.watchers[id] = w
	switch {
	case start <= 0:
		w.nextRev = h.current + 1
		h.addSynced(w)
	case start > h.current:
		w.nextRev = start // waits for it
		h.addSynced(w)
	default:
		w.nextRev = start
		h.unsynced[w] = struct{}{}
		h.wake()
	}
}

// checkRange refuses a watcher's range that selects nothing.
func checkRange(key, end []byte) error {
	if len(key) == 0 {
		return errors.New("key is empty")
	}
	if len(end) > 0 && !(len(end) == 1 && end[0] == 0) && bytes.Compare(end, key) <= 0 {
		return fmt.Errorf("range end %q is not after key %q", end, key)
	}
	return nil
}

// Cancel ends a watcher; its cancellation is queued after its last events.
// Cancelling an id the stream does not have is answered all the same.
func (s *Stream) Cancel(id int64) {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	if w := s.watchers[id]; w != nil {
		h.remove(w)
		delete(s.watchers, id)
	}
	s.push([]*kvv1.WatchResponse{{Header: &kvv1.ResponseHeader{Revision: h.current}, WatchId: id, Canceled: true, CancelReason: "cancelled by the client"}}, true)
}

// RequestProgress queues a progress answer (watch id ProgressWatchID) whose
// revision is one through which every event of every watcher of the stream
// is queued ahead of it.
func (s *Stream) RequestProgress() {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	rev := h.current
	for _, w := range s.watchers {
		if !w.synced {
			rev = min(rev, w.nextRev-1)
		}
	}
	s.push([]*kvv1.WatchResponse{{Header: &kvv1.ResponseHeader{Revision: rev}, WatchId: ProgressWatchID}}, true)
}

// NotifyIdle queues a progress notification for each synced watcher that
// asked for them and was sent no event since the last call. The owner
// calls it every progress interval.
func (s *Stream) NotifyIdle() {
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, w := range s.watchers {
		if w.progress && w.synced && !w.sentSince {
			s.push([]*kvv1.WatchResponse{{Header: &kvv1.ResponseHeader{Revision: h.current}, WatchId: w.id}}, true)
		}
		w.sentSince = false
	}
}

// Next returns what is queued, waiting for something when nothing is, until
// ctx ends or the stream is closed (ErrStreamClosed). What it returns is the
// caller's until it calls Next again.
func (s *Stream) Next(ctx context.Context) ([]*kvv1.WatchResponse, error) {
	s.mu.Lock()
	clear(s.lent) // the responses may go
	if cap(s.lent) > 2*s.h.cfg.StreamQueue {
		s.lent = nil // a burst of forced answers: do not keep its array
	}
	s.mu.Unlock()
	for {
		s.mu.Lock()
		if len(s.queue) > 0 {
			out := s.queue
			full := !s.roomLocked()
			s.queue, s.events, s.bytes = s.lent[:0], 0, 0
			s.lent = out
			s.mu.Unlock()
			if full {
				s.h.wake() // watchers waiting for room may go on
			}
			return out, nil
		}
		if s.closed {
			s.mu.Unlock()
			return nil, ErrStreamClosed
		}
		s.mu.Unlock()
		select {
		case <-s.wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Close ends every watcher of the stream; Next then returns what is still
// queued, then ErrStreamClosed.
func (s *Stream) Close() {
	h := s.h
	h.mu.Lock()
	for id, w := range s.watchers {
		h.remove(w)
		delete(s.watchers, id)
	}
	h.mu.Unlock()
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.signal()
}

// Watchers returns how many watchers the stream has.
func (s *Stream) Watchers() int {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	return len(s.watchers)
}

// endWatcher forgets a watcher the hub ended. The caller holds the hub's
// mutex.
func (s *Stream) endWatcher(id int64) { delete(s.watchers, id) }

// push queues rs, unless the queue is full (and not empty) and force is not
// set: answers to the client's requests always go, events only while there
// is room, so that a revision's events are queued whole or not at all.
func (s *Stream) push(rs []*kvv1.WatchResponse, force bool) bool {
	events, size := 0, 0
	for _, r := range rs {
		events += len(r.GetEvents())
		if len(r.GetEvents()) > 0 {
			size += proto.Size(r)
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return true // nobody will read it: as good as sent
	}
	if !force && len(s.queue) > 0 && (s.events+events > s.h.cfg.StreamQueue || s.bytes+size > s.h.cfg.StreamQueueBytes) {
		s.mu.Unlock()
		return false
	}
	s.queue = append(s.queue, rs...)
	s.events += events
	s.bytes += size
	s.mu.Unlock()
	s.signal()
	return true
}

// pushOne is push of one response of events events and about size bytes,
// which the caller computed once for many watchers; never forced.
func (s *Stream) pushOne(r *kvv1.WatchResponse, events, size int) bool {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return true // nobody will read it: as good as sent
	}
	if len(s.queue) > 0 && (s.events+events > s.h.cfg.StreamQueue || s.bytes+size > s.h.cfg.StreamQueueBytes) {
		s.mu.Unlock()
		return false
	}
	s.queue = append(s.queue, r)
	s.events += events
	s.bytes += size
	wake := len(s.queue) == 1 // the sender was told already otherwise
	s.mu.Unlock()
	if wake {
		s.signal()
	}
	return true
}

// hasRoom reports whether the stream's queue is below half its bounds, so
// that catching a watcher up is worth a read.
func (s *Stream) hasRoom() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.closed && s.roomLocked()
}

func (s *Stream) roomLocked() bool {
	return s.events < s.h.cfg.StreamQueue/2 && s.bytes < s.h.cfg.StreamQueueBytes/2
}

func (s *Stream) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// sortByKey orders the events of one revision by key.
func sortByKey(events []*kvv1.Event) {
	sort.SliceStable(events, func(i, j int) bool {
		return bytes.Compare(events[i].GetKv().GetKey(), events[j].GetKv().GetKey()) < 0
	})
}
