package commitpush

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// fakeTransport records the calls sent through it and answers them as
// answer says.
type fakeTransport struct {
	raft.Transport
	mu     sync.Mutex
	calls  []raft.AppendEntriesRequest
	answer func(*raft.AppendEntriesRequest) raft.AppendEntriesResponse
	got    chan struct{}
}

func (f *fakeTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	f.mu.Lock()
	f.calls = append(f.calls, *args)
	f.mu.Unlock()
	*resp = f.answer(args)
	f.got <- struct{}{}
	return nil
}

func (f *fakeTransport) pushes() []raft.AppendEntriesRequest {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []raft.AppendEntriesRequest
	for _, c := range f.calls {
		if len(c.Entries) == 0 && c.PrevLogEntry > 0 {
			out = append(out, c)
		}
	}
	return out
}

func accept(term uint64) func(*raft.AppendEntriesRequest) raft.AppendEntriesResponse {
	return func(*raft.AppendEntriesRequest) raft.AppendEntriesResponse {
		return raft.AppendEntriesResponse{Term: term, Success: true}
	}
}

func waitCall(t *testing.T, f *fakeTransport) {
	t.Helper()
	select {
	case <-f.got:
	case <-time.After(30 * time.Second):
		t.Fatal("no call within 30s")
	}
}

func appendCall(term, prev, prevTerm, commit uint64, entries ...uint64) *raft.AppendEntriesRequest {
	req := &raft.AppendEntriesRequest{Term: term, PrevLogEntry: prev, PrevLogTerm: prevTerm, LeaderCommitIndex: commit}
	for _, e := range entries {
		req.Entries = append(req.Entries, &raft.Log{Index: e, Term: term})
	}
	return req
}

func TestPushesCommitUpToConfirmedEntry(t *testing.T) {
	ft := &fakeTransport{answer: accept(3), got: make(chan struct{}, 16)}
	var leading atomic.Bool
	leading.Store(true)
	p := New(leading.Load)
	tr := p.Transport(ft)

	// Raft replicates entries 5..7 in term 3 with commit 4; the follower
	// accepts.
	var resp raft.AppendEntriesResponse
	if err := tr.AppendEntries("f1", "addr1", appendCall(3, 4, 3, 4, 5, 6, 7), &resp); err != nil {
		t.Fatal(err)
	}
	waitCall(t, ft)

	// Commit reaches 6: the follower is told 6, with entry 7 as the
	// previous one it must have.
	p.Committed(6)
	waitCall(t, ft)
	got := ft.pushes()
	if len(got) != 1 {
		t.Fatalf("pushes = %+v, want one", got)
	}
	if g := got[0]; g.Term != 3 || g.PrevLogEntry != 7 || g.PrevLogTerm != 3 || g.LeaderCommitIndex != 6 {
		t.Fatalf("push = %+v, want term 3, prev 7/3, commit 6", g)
	}

	// Commit reaches 9, beyond what the follower confirmed: it is told
	// no more than 7, its confirmed entry.
	p.Committed(9)
	waitCall(t, ft)
	got = ft.pushes()
	if len(got) != 2 || got[1].LeaderCommitIndex != 7 || got[1].PrevLogEntry != 7 {
		t.Fatalf("pushes = %+v, want a second with commit 7 after prev 7", got)
	}

	// Once it confirms 9, it learns the commit index 9 at once.
	if err := tr.AppendEntries("f1", "addr1", appendCall(3, 7, 3, 7, 8, 9), &resp); err != nil {
		t.Fatal(err)
	}
	waitCall(t, ft) // raft's call
	waitCall(t, ft) // the push it triggers
	got = ft.pushes()
	if len(got) != 3 || got[2].LeaderCommitIndex != 9 || got[2].PrevLogEntry != 9 || got[2].PrevLogTerm != 3 {
		t.Fatalf("pushes = %+v, want a third with commit 9 after prev 9", got)
	}

	// Nothing new: no push.
	p.Committed(9)
	time.Sleep(50 * time.Millisecond)
	if n := len(ft.pushes()); n != 3 {
		t.Fatalf("%d pushes after a commit already told, want 3", n)
	}
}

func TestNoPushWithoutConfirmationOrLeadership(t *testing.T) {
	// A follower that refuses (log mismatch) has confirmed nothing.
	ft := &fakeTransport{got: make(chan struct{}, 16), answer: func(*raft.AppendEntriesRequest) raft.AppendEntriesResponse {
		return raft.AppendEntriesResponse{Term: 3, Success: false}
	}}
	var leading atomic.Bool
	leading.Store(true)
	p := New(leading.Load)
	tr := p.Transport(ft)
	var resp raft.AppendEntriesResponse
	_ = tr.AppendEntries("f1", "addr1", appendCall(3, 4, 3, 4, 5), &resp)
	waitCall(t, ft)
	p.Committed(5)

	// A follower that answers in a newer term has confirmed nothing either.
	ft2 := &fakeTransport{answer: accept(4), got: make(chan struct{}, 16)}
	p2 := New(leading.Load)
	tr2 := p2.Transport(ft2)
	_ = tr2.AppendEntries("f1", "addr1", appendCall(3, 4, 3, 4, 5), &resp)
	waitCall(t, ft2)
	p2.Committed(5)

	// Confirmed, but no longer leading.
	ft3 := &fakeTransport{answer: accept(3), got: make(chan struct{}, 16)}
	var leading3 atomic.Bool
	leading3.Store(true)
	p3 := New(leading3.Load)
	tr3 := p3.Transport(ft3)
	_ = tr3.AppendEntries("f1", "addr1", appendCall(3, 4, 3, 4, 5), &resp)
	waitCall(t, ft3)
	leading3.Store(false)
	p3.Committed(5)

	// A heartbeat (no previous entry) confirms nothing to build on.
	ft4 := &fakeTransport{answer: accept(3), got: make(chan struct{}, 16)}
	p4 := New(leading.Load)
	tr4 := p4.Transport(ft4)
	_ = tr4.AppendEntries("f1", "addr1", &raft.AppendEntriesRequest{Term: 3}, &resp)
	waitCall(t, ft4)
	p4.Committed(5)

	time.Sleep(50 * time.Millisecond)
	for i, f := range []*fakeTransport{ft, ft2, ft3, ft4} {
		if got := f.pushes(); len(got) != 0 {
			t.Errorf("case %d: pushes %+v, want none", i, got)
		}
	}
}

func TestNewTermForgetsConfirmations(t *testing.T) {
	ft := &fakeTransport{answer: accept(3), got: make(chan struct{}, 16)}
	var leading atomic.Bool
	leading.Store(true)
	p := New(leading.Load)
	tr := p.Transport(ft)
	var resp raft.AppendEntriesResponse
	_ = tr.AppendEntries("f1", "addr1", appendCall(3, 4, 3, 4, 5, 6), &resp)
	waitCall(t, ft)
	// The member leads again in term 5; its first call there is refused.
	ft.answer = func(*raft.AppendEntriesRequest) raft.AppendEntriesResponse {
		return raft.AppendEntriesResponse{Term: 5, Success: false}
	}
	_ = tr.AppendEntries("f1", "addr1", appendCall(5, 6, 3, 6, 7), &resp)
	waitCall(t, ft)
	p.Committed(7)
	time.Sleep(50 * time.Millisecond)
	if got := ft.pushes(); len(got) != 0 {
		t.Fatalf("pushes %+v built on the old term's confirmation, want none", got)
	}
}
