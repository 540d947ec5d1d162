package raftlog

import (
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// appliedFSM records the highest index it applied.
type appliedFSM struct{ applied atomic.Uint64 }

func (f *appliedFSM) Apply(l *raft.Log) any { return f.ApplyBatch([]*raft.Log{l})[0] }

func (f *appliedFSM) ApplyBatch(logs []*raft.Log) []any {
	for _, l := range logs {
		f.applied.Store(l.Index)
	}
	return make([]any, len(logs))
}

func (f *appliedFSM) Snapshot() (raft.FSMSnapshot, error) { return nil, fmt.Errorf("not supported") }
func (f *appliedFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

// sentTransport records, per follower, the appends that actually went out
// and the highest commit index they carried.
type sentTransport struct {
	raft.Transport
	mu      sync.Mutex
	appends map[raft.ServerID]int
	commit  map[raft.ServerID]uint64
}

func (t *sentTransport) record(id raft.ServerID, args *raft.AppendEntriesRequest) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.appends[id]++
	t.commit[id] = max(t.commit[id], args.LeaderCommitIndex)
}

func (t *sentTransport) sent(id raft.ServerID) (appends int, commit uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.appends[id], t.commit[id]
}

func (t *sentTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	t.record(id, args)
	return t.Transport.AppendEntries(id, target, args, resp)
}

func (t *sentTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.Transport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return &sentPipeline{AppendPipeline: p, t: t, id: id}, nil
}

type sentPipeline struct {
	raft.AppendPipeline
	t  *sentTransport
	id raft.ServerID
}

func (p *sentPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	p.t.record(p.id, args)
	return p.AppendPipeline.AppendEntries(args, resp)
}

type testNode struct {
	id    raft.ServerID
	raft  *raft.Raft
	under *heldStore
	store *Store
	fsm   *appliedFSM
	sent  *sentTransport
}

// newTestCluster starts three raft members on in-memory transports, each
// writing its log through a Store over a heldStore.
func newTestCluster(t *testing.T) []*testNode {
	t.Helper()
	var nodes []*testNode
	var trans []*raft.InmemTransport
	var servers []raft.Server
	for i := 0; i < 3; i++ {
		id := raft.ServerID(fmt.Sprintf("m%d", i))
		addr, tr := raft.NewInmemTransport(raft.ServerAddress(id))
		trans = append(trans, tr)
		servers = append(servers, raft.Server{ID: id, Address: addr, Suffrage: raft.Voter})
		nodes = append(nodes, &testNode{id: id, under: newHeldStore(), fsm: &appliedFSM{},
			sent: &sentTransport{Transport: tr, appends: map[raft.ServerID]int{}, commit: map[raft.ServerID]uint64{}}})
	}
	for i, a := range trans {
		for j, b := range trans {
			if i != j {
				a.Connect(b.LocalAddr(), b)
			}
		}
	}
	for _, n := range nodes {
		n := n
		var ref atomic.Pointer[raft.Raft]
		store, err := New(Config{Log: n.under, Leading: func() bool { r := ref.Load(); return r != nil && r.State() == raft.Leader }})
		if err != nil {
			t.Fatal(err)
		}
		n.store = store
		rc := raft.DefaultConfig()
		rc.LocalID = n.id
		rc.HeartbeatTimeout = 50 * time.Millisecond
		rc.ElectionTimeout = 50 * time.Millisecond
		rc.LeaderLeaseTimeout = 50 * time.Millisecond
		rc.CommitTimeout = 5 * time.Millisecond
		rc.Logger = hclog.New(&hclog.LoggerOptions{Level: hclog.Error, Output: testWriter{t}})
		stable, snaps := raft.NewInmemStore(), raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(rc, store, stable, snaps, n.sent, raft.Configuration{Servers: servers}); err != nil {
			t.Fatal(err)
		}
		r, err := raft.NewRaft(rc, store.FSM(n.fsm), store, stable, snaps, store.Transport(n.sent))
		if err != nil {
			t.Fatal(err)
		}
		ref.Store(r)
		n.raft = r
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.under.release()
			_ = n.raft.Shutdown().Error()
			_ = n.store.Close()
		}
	})
	return nodes
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

func eventually(t *testing.T, what string, fn func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !fn() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// An entry that raft commits while the leader's own copy is still being
// written is neither answered nor applied anywhere until that copy is on
// disk.
func TestCommittedEntryWaitsForLeadersDisk(t *testing.T) {
	nodes := newTestCluster(t)
	var leader *testNode
	eventually(t, "a leader", func() bool {
		for _, n := range nodes {
			if n.raft.State() == raft.Leader {
				leader = n
				return true
			}
		}
		return false
	})
	if err := leader.raft.Apply([]byte("warm up"), 10*time.Second).Error(); err != nil {
		t.Fatal(err)
	}

	leader.under.hold()
	idx := leader.raft.LastIndex() + 1
	future := leader.raft.Apply([]byte("x"), 10*time.Second)
	answered := make(chan error, 1)
	go func() { answered <- future.Error() }()

	// raft counts the leader's copy at once, so a follower's acknowledgement
	// commits the entry as far as raft is concerned.
	eventually(t, "raft to commit the entry", func() bool { return leader.raft.CommitIndex() >= idx })
	// Let every follower receive a few appends after that, each of which
	// would carry the commit index if nothing capped it.
	var followers []*testNode
	seen := map[raft.ServerID]int{}
	for _, n := range nodes {
		if n != leader {
			followers = append(followers, n)
			seen[n.id], _ = leader.sent.sent(n.id)
		}
	}
	eventually(t, "more appends to the followers", func() bool {
		for _, f := range followers {
			if sent, _ := leader.sent.sent(f.id); sent < seen[f.id]+3 {
				return false
			}
		}
		return true
	})

	select {
	case err := <-answered:
		t.Fatalf("write answered (%v) while the leader's copy was not on disk", err)
	default:
	}
	for _, n := range nodes {
		if got := n.fsm.applied.Load(); got >= idx {
			t.Fatalf("%s applied index %d while the leader's copy was not on disk", n.id, got)
		}
	}
	for _, f := range followers {
		if _, commit := leader.sent.sent(f.id); commit >= idx {
			t.Fatalf("leader told %s commit index %d before its copy of %d was on disk", f.id, commit, idx)
		}
		if last, _ := f.under.LastIndex(); last < idx {
			t.Fatalf("%s has not stored index %d", f.id, idx)
		}
	}

	leader.under.release()
	select {
	case err := <-answered:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("write not answered after the leader's copy reached disk")
	}
	for _, n := range nodes {
		eventually(t, string(n.id)+" to apply the entry", func() bool { return n.fsm.applied.Load() >= idx })
	}
}
