package watch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/internal/auth"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// ErrCompacted is wrapped by a History whose caller asked for revisions
// below the compacted one.
var ErrCompacted = errors.New("required revision has been compacted")

// Change is what one revision changed: its events, each with the key's
// previous value in PrevKv when it had one.
type Change struct {
	Revision int64
	Events   []*kvv1.Event
}

// History reads past changes from the store.
type History interface {
	// Changes returns the changes of revisions from..to (inclusive) of the
	// keys in [key, end) (end as in a range read: empty for the single key,
	// a zero byte for every key from key on), in revision order, the events
	// of a revision in key order, each with PrevKv. It returns an error
	// wrapping ErrCompacted when from is below the compacted revision.
	Changes(key, end []byte, from, to int64) ([]Change, error)
	// CompactRevision returns the revision below which history is gone.
	CompactRevision() int64
}

// Config configures a Hub.
type Config struct {
	// History reads what the ring no longer holds. Required.
	History History
	// Revision is the store's revision when the hub starts, before the
	// first Applied. Required for a store that is not empty.
	Revision int64
	// RingRevisions and RingBytes bound the recent changes kept in memory,
	// from which watchers that fell a little behind catch up without
	// reading the store. Zero means 4096 revisions and 16 MiB.
	RingRevisions int
	RingBytes     int
	// StreamQueue and StreamQueueBytes bound the events queued on one stream
	// for its sender; a watcher whose events do not fit is caught up later
	// from the ring or the store. Zero means 4096 events and 4 MiB.
	StreamQueue      int
	StreamQueueBytes int
	// CatchUpRevisions is how many revisions one read of the store covers
	// for a watcher that catches up. Zero means 1000.
	CatchUpRevisions int
	// MaxResponseBytes is the size above which a watcher that asked for
	// fragments gets a revision's events in several responses. Zero means
	// 1.5 MiB.
	MaxResponseBytes int
	// Auth is the auth state when the hub starts, against which the
	// watchers of streams with a user (Stream.Authorize) are checked until
	// AuthChanged reports another. Nil means auth.Empty: auth never
	// configured.
	Auth *auth.State
	// Logger receives the hub's logs; nil means slog.Default().
	Logger *slog.Logger
	// UnsafeDropEvery, when positive, drops every Nth event handed to a
	// watcher: a deliberately broken hub for the jepsen negative control
	// (member.Config.UnsafeWatchDropEvery, refused by release builds).
	UnsafeDropEvery int
}

func (c Config) withDefaults() Config {
	if c.RingRevisions <= 0 {
		c.RingRevisions = 4096
	}
	if c.RingBytes <= 0 {
		c.RingBytes = 16 << 20
	}
	if c.StreamQueue <= 0 {
		c.StreamQueue = 4096
	}
	if c.StreamQueueBytes <= 0 {
		c.StreamQueueBytes = 4 << 20
	}
	if c.CatchUpRevisions <= 0 {
		c.CatchUpRevisions = 1000
	}
	if c.MaxResponseBytes <= 0 {
		c.MaxResponseBytes = 1536 << 10
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Auth == nil {
		c.Auth = auth.Empty
	}
	return c
}

// Hub hands the changes of a member's store to its watchers. Applied and
// Restored are called by the state machine, one at a time; everything else
// may be called from any goroutine. Run catches unsynced watchers up; its
// owner starts it and stops it with a context.
type Hub struct {
	cfg  Config
	kick chan struct{} // capacity 1: Run has unsynced watchers to look at

	mu      sync.Mutex
	current int64 // the newest revision applied
	ring    []Change
	ringN   int // bytes of events in ring
	// single holds the synced watchers of one key, by key; ranges the synced
	// watchers of a range; unsynced those catching up.
	single   map[string]map[*watcher]struct{}
	ranges   map[*watcher]struct{}
	unsynced map[*watcher]struct{}
	stopped  bool
	handed   int // events handed to watchers, counted for UnsafeDropEvery
	// auth is the auth state last reported (see auth.go).
	auth *auth.State
}

// New returns a hub at cfg.Revision; start Run.
func New(cfg Config) (*Hub, error) {
	if cfg.History == nil {
		return nil, errors.New("watch: History is required")
	}
	cfg = cfg.withDefaults()
	return &Hub{
		cfg:      cfg,
		auth:     cfg.Auth,
		kick:     make(chan struct{}, 1),
		current:  cfg.Revision,
		single:   map[string]map[*watcher]struct{}{},
		ranges:   map[*watcher]struct{}{},
		unsynced: map[*watcher]struct{}{},
	}, nil
}

// Revision returns the newest revision the hub has been told of.
func (h *Hub) Revision() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.current
}

// watcher is one watcher of a stream.
type watcher struct {
	id       int64
	stream   *Stream
	key, end []byte // end as in a range read; nil for a single key
	prevKV   bool
	noPut    bool
	noDelete bool
	fragment bool
	progress bool // progress_notify
	// share lets its events go in one response with other sharing
	// watchers of its stream (share_responses).
	share bool
	// nextRev is the first revision whose events are not queued yet. For a
	// synced watcher it is only a lower bound (the hub's current revision
	// plus one is the true one), kept for a start revision in the future.
	nextRev int64
	synced  bool
	// sentSince is set when events were queued since the last idle
	// progress notification.
	sentSince bool
}

func (w *watcher) matches(key []byte) bool {
	if len(w.end) == 0 {
		return bytes.Equal(key, w.key)
	}
	if bytes.Compare(key, w.key) < 0 {
		return false
	}
	return (len(w.end) == 1 && w.end[0] == 0) || bytes.Compare(key, w.end) < 0
}

// wants reports whether the watcher is sent e (its filters).
func (w *watcher) wants(e *kvv1.Event) bool {
	switch e.GetType() {
	case kvv1.EventType_EVENT_TYPE_PUT:
		return !w.noPut
	case kvv1.EventType_EVENT_TYPE_DELETE:
		return !w.noDelete
	}
	return false
}

// Applied is told, on the state machine's goroutine, the changes of the
// revisions just applied, in revision order, each revision once. It queues
// their events for the synced watchers and never waits.
func (h *Hub) Applied(changes []Change) {
	h.mu.Lock()
	defer h.mu.Unlock()
	behind := false
	for _, c := range changes {
		if c.Revision <= h.current {
			continue // reported before (cannot happen with the fsm's feed)
		}
		sortByKey(c.Events)
		h.remember(c)
		if len(c.Events) == 1 {
			behind = h.appliedOne(c) || behind
		} else {
			for w, events := range h.syncedFor(c) {
				if c.Revision < w.nextRev {
					continue // starts in the future
				}
				if !w.stream.push(h.responses(w, c.Revision, events), false) {
					h.unsync(w, c.Revision)
					behind = true
				}
			}
		}
		h.current = c.Revision
	}
	if behind {
		h.wake()
	}
}

// Restored is told that the store was replaced by a snapshot at revision:
// the changes up to it were never reported, so every watcher catches up
// from the store.
func (h *Hub) Restored(revision int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, set := range h.single {
		for w := range set {
			h.unsync(w, max(w.nextRev, h.current+1))
		}
	}
	for w := range h.ranges {
		h.unsync(w, max(w.nextRev, h.current+1))
	}
	h.ring, h.ringN = nil, 0
	h.current = max(h.current, revision)
	h.wake()
}

// remember keeps c in the ring, dropping the oldest changes past its
// bounds.
func (h *Hub) remember(c Change) {
	h.ring = append(h.ring, c)
	h.ringN += changeSize(c)
	for len(h.ring) > 1 && (len(h.ring) > h.cfg.RingRevisions || h.ringN > h.cfg.RingBytes) {
		h.ringN -= changeSize(h.ring[0])
		h.ring[0] = Change{}
		h.ring = h.ring[1:]
	}
}

func changeSize(c Change) int {
	n := 0
	for _, e := range c.Events {
		n += proto.Size(e)
	}
	return n
}

// appliedOne queues the one event of c for the synced watchers it
// concerns, and reports whether any of them fell behind. Most revisions
// change one key, and one key may have many watchers: their responses share
// the event, its size and the header, computed once, and the watchers of a
// stream that share responses (share_responses) get one response between
// them, with the same prev_kv choice. The caller holds h.mu.
func (h *Hub) appliedOne(c Change) (behind bool) {
	e := c.Events[0]
	key := e.GetKv().GetKey()
	header := &kvv1.ResponseHeader{Revision: c.Revision}
	var full, stripped sharedEvents
	// groups are the shared responses being built, by stream and by
	// whether they carry the previous value; pushed once all are known.
	type groupKey struct {
		s        *Stream
		stripped bool
	}
	var groups map[groupKey]*sharedResponse
	deliver := func(w *watcher) {
		if c.Revision < w.nextRev || !w.wants(e) {
			return // starts in the future, or filtered out
		}
		w.sentSince = true
		if h.unsafeDrop() {
			return
		}
		ev, strip := &full, !w.prevKV && e.GetPrevKv() != nil
		if strip {
			ev = &stripped
			if stripped.events == nil {
				stripped.set(&kvv1.Event{Type: e.GetType(), Kv: e.GetKv()})
			}
		} else if full.events == nil {
			full.set(e)
		}
		if w.share {
			if groups == nil {
				groups = map[groupKey]*sharedResponse{}
			}
			k := groupKey{w.stream, strip}
			g := groups[k]
			if g == nil {
				g = &sharedResponse{resp: &kvv1.WatchResponse{Header: header, WatchId: w.id, Events: ev.events}, size: ev.size}
				groups[k] = g
			} else {
				g.resp.SharedWatchIds = append(g.resp.SharedWatchIds, w.id)
			}
			g.watchers = append(g.watchers, w)
			return
		}
		r := &kvv1.WatchResponse{Header: header, WatchId: w.id, Events: ev.events}
		if !w.stream.pushOne(r, 1, ev.size) {
			h.unsync(w, c.Revision)
			behind = true
		}
	}
	for w := range h.single[string(key)] {
		deliver(w)
	}
	for w := range h.ranges {
		if w.matches(key) {
			deliver(w)
		}
	}
	for k, g := range groups {
		// Each further watcher adds its id (at most 10 bytes and a tag).
		if !k.s.pushOne(g.resp, 1, g.size+11*len(g.resp.SharedWatchIds)) {
			for _, w := range g.watchers {
				h.unsync(w, c.Revision)
			}
			behind = true
		}
	}
	return behind
}

// sharedResponse is one response for several watchers of a stream.
type sharedResponse struct {
	resp     *kvv1.WatchResponse
	size     int
	watchers []*watcher
}

// sharedEvents is one event as a slice that many watchers' responses
// share (none of them changes it), with its encoded size.
type sharedEvents struct {
	events []*kvv1.Event
	size   int
}

func (s *sharedEvents) set(e *kvv1.Event) {
	s.events = []*kvv1.Event{e}
	s.size = proto.Size(e) + responseOverhead
}

// responseOverhead is a generous bound on what a response adds to its
// events' size (header, watch id, tags), for the queue's byte bound.
const responseOverhead = 64

// syncedFor returns the synced watchers that c concerns, with their events
// of c (after their filters), in key order.
func (h *Hub) syncedFor(c Change) map[*watcher][]*kvv1.Event {
	out := map[*watcher][]*kvv1.Event{}
	for _, e := range c.Events {
		for w := range h.single[string(e.GetKv().GetKey())] {
			if w.wants(e) {
				out[w] = append(out[w], e)
			}
		}
		for w := range h.ranges {
			if w.matches(e.GetKv().GetKey()) && w.wants(e) {
				out[w] = append(out[w], e)
			}
		}
	}
	return out
}

// responses are w's responses for its events of revision rev: one, or
// fragments when w asked for them and the events do not fit in one.
func (h *Hub) responses(w *watcher, rev int64, events []*kvv1.Event) []*kvv1.WatchResponse {
	w.sentSince = true
	out := make([]*kvv1.Event, 0, len(events))
	for _, e := range events {
		if h.unsafeDrop() {
			continue
		}
		if w.prevKV || e.GetPrevKv() == nil {
			out = append(out, e)
		} else {
			out = append(out, &kvv1.Event{Type: e.GetType(), Kv: e.GetKv()})
		}
	}
	if len(out) == 0 {
		return nil
	}
	resp := func(evs []*kvv1.Event) *kvv1.WatchResponse {
		return &kvv1.WatchResponse{Header: &kvv1.ResponseHeader{Revision: rev}, WatchId: w.id, Events: evs}
	}
	if !w.fragment {
		return []*kvv1.WatchResponse{resp(out)}
	}
	var rs []*kvv1.WatchResponse
	start, size := 0, 0
	for i, e := range out {
		n := proto.Size(e)
		if i > start && size+n > h.cfg.MaxResponseBytes {
			r := resp(out[start:i:i])
			r.Fragment = true
			rs = append(rs, r)
			start, size = i, 0
		}
		size += n
	}
	return append(rs, resp(out[start:]))
}

// unsafeDrop counts an event handed to a watcher and reports whether to
// drop it: every Config.UnsafeDropEvery-th, in deliberately broken builds
// only. The caller holds h.mu.
func (h *Hub) unsafeDrop() bool {
	if h.cfg.UnsafeDropEvery <= 0 {
		return false
	}
	h.handed++
	return h.handed%h.cfg.UnsafeDropEvery == 0
}

// unsync moves a watcher to the unsynced set, to be caught up from next.
// The caller holds h.mu.
func (h *Hub) unsync(w *watcher, next int64) {
	h.removeSynced(w)
	w.synced = false
	w.nextRev = next
	h.unsynced[w] = struct{}{}
}

func (h *Hub) addSynced(w *watcher) {
	w.synced = true
	delete(h.unsynced, w)
	if len(w.end) == 0 {
		set := h.single[string(w.key)]
		if set == nil {
			set = map[*watcher]struct{}{}
			h.single[string(w.key)] = set
		}
		set[w] = struct{}{}
		return
	}
	h.ranges[w] = struct{}{}
}

func (h *Hub) removeSynced(w *watcher) {
	if len(w.end) == 0 {
		if set := h.single[string(w.key)]; set != nil {
			delete(set, w)
			if len(set) == 0 {
				delete(h.single, string(w.key))
			}
		}
		return
	}
	delete(h.ranges, w)
}

func (h *Hub) remove(w *watcher) {
	h.removeSynced(w)
	delete(h.unsynced, w)
}

func (h *Hub) wake() {
	select {
	case h.kick <- struct{}{}:
	default:
	}
}

// Run catches unsynced watchers up until ctx ends.
func (h *Hub) Run(ctx context.Context) {
	defer func() {
		h.mu.Lock()
		h.stopped = true
		h.mu.Unlock()
	}()
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.kick:
		}
		for h.catchUpRound() {
			if ctx.Err() != nil {
				return
			}
		}
	}
}

// catchUpRound moves every unsynced watcher whose stream has room forward
// by one read, and reports whether any of them still has work and room.
func (h *Hub) catchUpRound() bool {
	h.mu.Lock()
	var ready []*watcher
	for w := range h.unsynced {
		if w.stream.hasRoom() {
			ready = append(ready, w)
		}
	}
	h.mu.Unlock()
	more := false
	for _, w := range ready {
		if h.catchUp(w) {
			more = true
		}
	}
	return more
}

// catchUp queues what fits of w's missing events and reports whether it
// can go on at once (it is still unsynced and its stream has room).
func (h *Hub) catchUp(w *watcher) bool {
	h.mu.Lock()
	if _, ok := h.unsynced[w]; !ok {
		h.mu.Unlock()
		return false
	}
	from, to := w.nextRev, h.current
	if from > to {
		h.addSynced(w)
		h.mu.Unlock()
		return false
	}
	to = min(to, from+int64(h.cfg.CatchUpRevisions)-1)
	changes, inRing := h.fromRing(w, from, to)
	h.mu.Unlock()
	if !inRing {
		var err error
		changes, err = h.cfg.History.Changes(w.key, w.end, from, to)
		if errors.Is(err, ErrCompacted) {
			h.compacted(w)
			return false
		}
		if err != nil {
			h.cfg.Logger.Error("watch: read history to catch a watcher up; it will be tried again", "watch_id", w.id, "from", from, "to", to, "error", err)
			return false
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.unsynced[w]; !ok || w.nextRev != from {
		return false // cancelled meanwhile
	}
	for _, c := range changes {
		var events []*kvv1.Event
		for _, e := range c.Events {
			if w.matches(e.GetKv().GetKey()) && w.wants(e) {
				events = append(events, e)
			}
		}
		if len(events) > 0 && !w.stream.push(h.responses(w, c.Revision, events), false) {
			return false // the stream is full: go on once it drains
		}
		w.nextRev = c.Revision + 1
	}
	w.nextRev = max(w.nextRev, to+1) // revisions with no change of w's range
	if w.nextRev > h.current {
		h.addSynced(w)
		return false
	}
	return w.stream.hasRoom()
}

// fromRing returns the changes from..to that the ring holds, and whether
// it holds them all. The caller holds h.mu.
func (h *Hub) fromRing(w *watcher, from, to int64) ([]Change, bool) {
	if len(h.ring) == 0 || h.ring[0].Revision > from {
		return nil, false
	}
	i, _ := slices.BinarySearchFunc(h.ring, from, func(c Change, rev int64) int {
		switch {
		case c.Revision < rev:
			return -1
		case c.Revision > rev:
			return 1
		}
		return 0
	})
	var out []Change
	for ; i < len(h.ring) && h.ring[i].Revision <= to; i++ {
		out = append(out, h.ring[i])
	}
	return out, true
}

// compacted ends w: the revision it needs next is gone.
func (h *Hub) compacted(w *watcher) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.unsynced[w]; !ok {
		return
	}
	h.remove(w)
	compact := h.cfg.History.CompactRevision()
	w.stream.endWatcher(w.id)
	w.stream.push([]*kvv1.WatchResponse{{
		Header: &kvv1.ResponseHeader{Revision: h.current}, WatchId: w.id, Canceled: true, CompactRevision: compact,
		CancelReason: fmt.Sprintf("revision %d has been compacted (compact revision %d)", w.nextRev, compact),
	}}, true)
}
