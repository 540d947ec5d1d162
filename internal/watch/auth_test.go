package watch

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvd-io/kvd/internal/auth"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// authState is an enabled auth state at rev in which alice reads the
// prefix "a" if canRead, and holds no permission otherwise.
func authState(rev uint64, canRead bool) *auth.State {
	s := &auth.State{Enabled: true, Revision: rev,
		Users: map[string]*fsmv1.AuthUser{"alice": {Name: "alice", Roles: []string{"reader"}}},
		Roles: map[string]*fsmv1.AuthRole{"reader": {Name: "reader"}}}
	if canRead {
		s.Roles["reader"].Perms = []*kvv1.Permission{{PermType: kvv1.PermissionType_PERMISSION_TYPE_READ, Key: []byte("a"), RangeEnd: []byte("b")}}
	}
	return s
}

// waitFor polls the reader until ok holds of what it received.
func waitFor(t *testing.T, r *reader, what string, ok func([]*kvv1.WatchResponse) bool) []*kvv1.WatchResponse {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		rs := r.responses()
		if ok(rs) {
			return rs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 20s; received %v", what, rs)
		}
		time.Sleep(5 * time.Millisecond) // polling the reader
	}
}

func cancelOf(rs []*kvv1.WatchResponse, id int64) *kvv1.WatchResponse {
	for _, r := range rs {
		if r.GetWatchId() == id && r.GetCanceled() {
			return r
		}
	}
	return nil
}

// TestAuthChangeEndsWatchers: a stream's watchers are checked against the
// auth state: refused at creation outside the user's permission, and ended
// by the change that takes it away, synced or catching up, with the reason;
// they are sent every event before the change and none after. Watchers of
// streams without a user go on. A user deleted, and a caller without
// credentials when auth is enabled, lose their watchers too.
func TestAuthChangeEndsWatchers(t *testing.T) {
	s := &store{}
	h := newHub(t, s, Config{Auth: authState(1, true)})
	w := newWriter(s, h, 3)
	w.step(10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	open := func(user string, checked bool) (*Stream, *reader) {
		st := h.NewStream()
		if checked {
			st.Authorize(user, nil)
		}
		r := &reader{}
		go r.run(ctx, st)
		return st, r
	}
	alice, ra := open("alice", true)
	member, rm := open("", false)
	prefixA := &kvv1.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("b"), WatchId: 1}
	keyA1 := &kvv1.WatchCreateRequest{Key: []byte("a/1"), WatchId: 2}
	history := &kvv1.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte("b"), WatchId: 3, StartRevision: 1}
	for _, req := range []*kvv1.WatchCreateRequest{prefixA, keyA1, history} {
		alice.Watch(req)
	}
	alice.Watch(&kvv1.WatchCreateRequest{Key: []byte("c"), WatchId: 4})
	member.Watch(&kvv1.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte{0}, WatchId: 1})
	if r := cancelOf(waitFor(t, ra, "the refusal of c", func(rs []*kvv1.WatchResponse) bool { return cancelOf(rs, 4) != nil }), 4); !r.GetCreated() ||
		!strings.Contains(r.GetCancelReason(), `auth: permission denied: user "alice" may not read key "c"`) {
		t.Fatalf("alice's watch of c: %v, want created and canceled for permission", r)
	}
	for _, req := range []*kvv1.WatchCreateRequest{prefixA, keyA1, history} {
		req.StartRevision = 11 // what the synced ones see; history from 1
	}
	history.StartRevision = 1

	w.step(20)
	changedAt := w.rev
	h.AuthChanged(authState(2, false)) // alice's permission revoked
	w.step(20)

	rs := waitFor(t, ra, "alice's watchers ended", func(rs []*kvv1.WatchResponse) bool {
		return cancelOf(rs, 1) != nil && cancelOf(rs, 2) != nil && cancelOf(rs, 3) != nil
	})
	for _, req := range []*kvv1.WatchCreateRequest{prefixA, keyA1, history} {
		id := req.GetWatchId()
		if r := cancelOf(rs, id); !strings.Contains(r.GetCancelReason(), `auth: permission denied: user "alice" may not read`) || r.GetHeader().GetRevision() != changedAt {
			t.Fatalf("watcher %d ended with %v, want a permission denial at revision %d", id, r, changedAt)
		}
		got, want := eventsOf(t, rs, id, false), expected(s, req, changedAt)
		if id == 3 {
			// Catching up, it may have been ended before it got every
			// event before the change; never one after.
			if len(got) > len(want) || !slices.Equal(got, want[:len(got)]) {
				t.Fatalf("watcher 3: %s", diff(got, want))
			}
			continue
		}
		if !slices.Equal(got, want) {
			t.Fatalf("watcher %d: %s", id, diff(got, want))
		}
	}
	if n := alice.Watchers(); n != 0 {
		t.Fatalf("alice's stream keeps %d watchers", n)
	}
	// The member's stream is not checked: it goes on to the end.
	memberReq := &kvv1.WatchCreateRequest{Key: []byte("a"), RangeEnd: []byte{0}, StartRevision: 11}
	want := expected(s, memberReq, w.rev)
	waitFor(t, rm, "the member's watcher to the end", func(rs []*kvv1.WatchResponse) bool { return len(eventsOf(t, rs, 1, false)) == len(want) })
	if got := eventsOf(t, rm.responses(), 1, false); !slices.Equal(got, want) || cancelOf(rm.responses(), 1) != nil {
		t.Fatalf("the member's watcher: %s", diff(got, want))
	}

	// A new watch on the old stream is checked against the new state;
	// granted again, it is let in.
	alice.Watch(&kvv1.WatchCreateRequest{Key: []byte("a"), WatchId: 5})
	waitFor(t, ra, "the refusal of watcher 5", func(rs []*kvv1.WatchResponse) bool { return cancelOf(rs, 5) != nil })
	h.AuthChanged(authState(3, true))
	alice.Watch(&kvv1.WatchCreateRequest{Key: []byte("a"), WatchId: 6})
	if alice.Watchers() != 1 {
		t.Fatal("alice's watch after the grant was refused")
	}

	// The user deleted: her watchers end.
	gone := authState(4, true)
	delete(gone.Users, "alice")
	h.AuthChanged(gone)
	if r := cancelOf(waitFor(t, ra, "watcher 6 ended", func(rs []*kvv1.WatchResponse) bool { return cancelOf(rs, 6) != nil }), 6); !strings.Contains(r.GetCancelReason(), `user "alice" does not exist`) {
		t.Fatalf("watcher 6 of a deleted user: %v", r)
	}

	// Auth disabled: anybody watches; enabled again, a stream without
	// credentials loses its watchers.
	h.AuthChanged(&auth.State{Revision: 5, Users: gone.Users, Roles: gone.Roles})
	anon, rn := open("", true)
	anon.Watch(&kvv1.WatchCreateRequest{Key: []byte("c"), WatchId: 1})
	if anon.Watchers() != 1 {
		t.Fatal("a watch without credentials was refused while auth is disabled")
	}
	h.AuthChanged(authState(6, true))
	if r := cancelOf(waitFor(t, rn, "the anonymous watcher ended", func(rs []*kvv1.WatchResponse) bool { return cancelOf(rs, 1) != nil }), 1); !strings.Contains(r.GetCancelReason(), "auth: no credentials") {
		t.Fatalf("the anonymous watcher once auth was enabled: %v", r)
	}
}

// BenchmarkAuthChanged: what an auth change costs the state machine's
// goroutine with 10,000 watchers of 100 users on 10 ranges each, none of
// which loses its permission.
func BenchmarkAuthChanged(b *testing.B) {
	st := authState(1, true)
	for u := range 100 {
		name := fmt.Sprintf("u%d", u)
		st.Users[name] = &fsmv1.AuthUser{Name: name, Roles: []string{"reader"}}
	}
	h, err := New(Config{History: &store{}, Auth: st})
	if err != nil {
		b.Fatal(err)
	}
	for u := range 100 {
		s := h.NewStream()
		s.Authorize(fmt.Sprintf("u%d", u), nil)
		for i := range 100 {
			s.Watch(&kvv1.WatchCreateRequest{Key: []byte(fmt.Sprintf("a/%d", i%10)), RangeEnd: []byte(fmt.Sprintf("a/%d0", i%10))})
		}
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		next := *st
		next.Revision = uint64(i + 2)
		h.AuthChanged(&next)
	}
}
