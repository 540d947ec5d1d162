package watch

import (
	"github.com/kvd-io/kvd/internal/auth"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Authorization of watchers. A stream told its user (Stream.Authorize)
// has every watcher checked against the hub's auth state: a creation the
// user may not make is refused, and a watcher whose range the user may no
// longer read is ended when the state changes (AuthChanged), with the
// reason as its cancel reason, etcd's way of ending a watcher. The state
// machine reports changes of the auth state in order with the revisions
// it applies, so a watcher is sent no event of a revision applied after
// the change that took its permission away. Streams never told a user
// (the member's own watchers, other members') are not checked.

// readReq is what a watcher of [key, end) needs.
func readReq(key, end []byte) []auth.Requirement {
	return []auth.Requirement{{Key: key, RangeEnd: end}}
}

// Authorize makes the stream's watchers, those it has and those it will
// have, the watchers of user ("" for a caller without credentials): each
// is refused or ended when user may not read its range under the hub's
// auth state. reason words the refusal as the cancel reason (nil: the
// error's text). Call it before the stream's first Watch.
func (s *Stream) Authorize(user string, reason func(error) string) {
	if reason == nil {
		reason = func(err error) string { return err.Error() }
	}
	h := s.h
	h.mu.Lock()
	defer h.mu.Unlock()
	s.user, s.checked, s.reason = user, true, reason
	for id, w := range s.watchers {
		h.checkWatcher(w, id)
	}
}

// authorizeLocked returns why the stream's user may not watch [key, end),
// or nil. The caller holds the hub's mutex.
func (s *Stream) authorizeLocked(key, end []byte) error {
	if !s.checked {
		return nil
	}
	return s.h.auth.Check(s.user, readReq(key, end))
}

// AuthChanged is told, on the state machine's goroutine, the auth state
// after a change, in order with Applied: the events of the revisions
// applied before the change have been reported, none after. It ends the
// watchers whose user may no longer read their range (a role or a
// permission revoked, the user deleted, auth enabled for a caller without
// credentials).
func (h *Hub) AuthChanged(s *auth.State) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.auth = s
	if !s.Enabled {
		return // everybody may watch everything
	}
	var ws []*watcher
	for _, set := range h.single {
		for w := range set {
			ws = append(ws, w)
		}
	}
	for w := range h.ranges {
		ws = append(ws, w)
	}
	for w := range h.unsynced {
		ws = append(ws, w)
	}
	// Watchers of one user often share a range (a prefix many clients
	// watch): check each user and range once. This runs on the state
	// machine's goroutine, which applies nothing meanwhile.
	type check struct{ user, key, end string }
	seen := map[check]error{}
	for _, w := range ws {
		if !w.stream.checked {
			continue
		}
		k := check{w.stream.user, string(w.key), string(w.end)}
		err, ok := seen[k]
		if !ok {
			err = w.stream.authorizeLocked(w.key, w.end)
			seen[k] = err
		}
		if err != nil {
			h.endUnauthorized(w, w.id, err)
		}
	}
}

// checkWatcher ends w if its stream's user may not read its range. The
// caller holds h.mu.
func (h *Hub) checkWatcher(w *watcher, id int64) {
	if err := w.stream.authorizeLocked(w.key, w.end); err != nil {
		h.endUnauthorized(w, id, err)
	}
}

// endUnauthorized ends w, canceled with err as the reason. The caller
// holds h.mu.
func (h *Hub) endUnauthorized(w *watcher, id int64, err error) {
	h.remove(w)
	w.stream.endWatcher(id)
	w.stream.push([]*kvv1.WatchResponse{{
		Header: &kvv1.ResponseHeader{Revision: h.current}, WatchId: id, Canceled: true, CancelReason: w.stream.reason(err),
	}}, true)
}
