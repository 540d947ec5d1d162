package fsm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
)

func TestSameLogSameHash(t *testing.T) {
	l := newTestLog(t)
	entries := workload(t, l, 11, 500)

	a, b := newFSM(t), newFSM(t)
	applyInBatches(a, entries, 1)
	applyInBatches(b, entries, 37)
	sameState(t, a, b)
	for rev := int64(1); rev <= a.Revision(); rev++ {
		ra, rb := mustRange(t, a, rangeAll(rev)), mustRange(t, b, rangeAll(rev))
		if !proto.Equal(ra, rb) {
			t.Fatalf("full range at revision %d differs:\n %s\n %s", rev, show(ra), show(rb))
		}
	}

	// The applied index and term are not part of the hash: the same
	// commands at other indexes and terms give the same state.
	shifted := newTestLog(t)
	shifted.term = 3
	shifted.raw(raft.LogConfiguration, nil)
	for _, e := range entries {
		shifted.raw(e.Type, e.Data)
	}
	c := newFSM(t)
	applyInBatches(c, shifted.entries, 64)
	if ha, hc := mustHash(t, a), mustHash(t, c); ha != hc {
		t.Fatalf("the same commands at other indexes hash to %08x, want %08x", hc, ha)
	}
	if c.AppliedIndex() != a.AppliedIndex()+1 {
		t.Fatalf("applied index %d, want %d", c.AppliedIndex(), a.AppliedIndex()+1)
	}

	// The hash does see one more command.
	hash := mustHash(t, a)
	l.applyOne(a, put("one-more", "1"))
	if mustHash(t, a) == hash {
		t.Fatal("Hash did not change with a put")
	}
}

// TestHashCoversState checks that states that differ in one respect only
// hash differently, and that equal states hash the same.
func TestHashCoversState(t *testing.T) {
	leader := func(id uint64, addr string) *fsmv1.LeaderStart {
		return &fsmv1.LeaderStart{ClusterId: id, Leader: &fsmv1.MemberAttributes{Name: "m1", ClientAddr: addr}}
	}
	tests := []struct {
		name     string
		a, b     []proto.Message
		sameHash bool
	}{
		{name: "same commands", a: []proto.Message{put("a", "1"), leader(1, "x")}, b: []proto.Message{put("a", "1"), leader(1, "x")}, sameHash: true},
		{name: "value", a: []proto.Message{put("a", "1")}, b: []proto.Message{put("a", "2")}},
		{name: "key", a: []proto.Message{put("a", "1")}, b: []proto.Message{put("b", "1")}},
		{name: "history only", a: []proto.Message{put("a", "1"), put("a", "2")}, b: []proto.Message{put("a", "0"), put("a", "2")}},
		{name: "cluster id", a: []proto.Message{leader(1, "x")}, b: []proto.Message{leader(2, "x")}},
		{name: "member address", a: []proto.Message{leader(1, "x")}, b: []proto.Message{leader(1, "y")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hash := func(msgs []proto.Message) uint32 {
				f, l := newFSM(t), newTestLog(t)
				for _, m := range msgs {
					l.applyOne(f, m)
				}
				return mustHash(t, f)
			}
			if ha, hb := hash(tt.a), hash(tt.b); (ha == hb) != tt.sameHash {
				t.Fatalf("hashes %08x and %08x; want equal: %v", ha, hb, tt.sameHash)
			}
		})
	}
}

func TestReplayAfterReopen(t *testing.T) {
	dir := t.TempDir()
	l := newTestLog(t)
	// The last entry is a put, which is not idempotent: applying the entry
	// at the applied index again would show.
	entries := append(workload(t, l, 12, 300), l.command(put("last", "1")))
	last := entries[len(entries)-1]

	f := openFSM(t, dir)
	applyInBatches(f, entries, 16)
	hash, stats := mustHash(t, f), mustStats(t, f)
	if stats.AppliedIndex != last.Index || stats.AppliedTerm != last.Term {
		t.Fatalf("stats %+v, want applied index %d term %d", stats, last.Index, last.Term)
	}
	if err := f.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	f = openFSM(t, dir)
	if got := f.AppliedIndex(); got != last.Index {
		t.Fatalf("applied index after reopen = %d, want %d", got, last.Index)
	}
	if h, s := mustHash(t, f), mustStats(t, f); h != hash || s.Revision != stats.Revision || s.AppliedIndex != stats.AppliedIndex || s.AppliedTerm != stats.AppliedTerm {
		t.Fatalf("reopen changed the state: hash %08x -> %08x, stats %+v -> %+v", hash, h, stats, s)
	}

	// raft replays its log from the start after a restart; the state
	// already holds every entry, so each is skipped.
	for i, res := range f.ApplyBatch(entries) {
		if res != nil {
			t.Fatalf("replayed entry %d returned %s, want nil", entries[i].Index, show(res))
		}
	}
	if h, s := mustHash(t, f), mustStats(t, f); h != hash || s.Revision != stats.Revision || s.AppliedIndex != last.Index || s.AppliedTerm != last.Term {
		t.Fatalf("replay changed the state: hash %08x -> %08x, stats %+v -> %+v", hash, h, stats, s)
	}

	// A batch that straddles the applied index applies only the new part.
	rev := f.Revision()
	overlap := slices.Concat(entries[len(entries)-3:], []*raft.Log{l.command(put("new", "1"))})
	res := f.ApplyBatch(overlap)
	for i, r := range res[:3] {
		if r != nil {
			t.Fatalf("replayed entry %d returned %s, want nil", overlap[i].Index, show(r))
		}
	}
	if want := putResp(rev+1, nil); !sameResult(res[3], want) {
		t.Fatalf("new entry returned %s, want %s", show(res[3]), show(want))
	}
	if f.AppliedIndex() != overlap[3].Index {
		t.Fatalf("applied index %d, want %d", f.AppliedIndex(), overlap[3].Index)
	}
}

func TestNonCommandEntriesOnlyMoveAppliedIndex(t *testing.T) {
	tests := []struct {
		name string
		typ  raft.LogType
	}{
		{name: "configuration", typ: raft.LogConfiguration},
		{name: "noop", typ: raft.LogNoop},
		{name: "barrier", typ: raft.LogBarrier},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, l := newFSM(t), newTestLog(t)
			l.applyOne(f, put("a", "1"))
			hash, rev := mustHash(t, f), f.Revision()

			l.term = 4
			// Data that would be a put if it were read as a command.
			data, err := EncodeCommand(fsmv1.CommandType_COMMAND_TYPE_PUT, put("b", "1"))
			if err != nil {
				t.Fatal(err)
			}
			e := l.raw(tt.typ, data)
			if res := f.ApplyBatch([]*raft.Log{e})[0]; res != nil {
				t.Fatalf("result %s, want nil", show(res))
			}
			s := mustStats(t, f)
			if s.AppliedIndex != e.Index || s.AppliedTerm != 4 || f.AppliedIndex() != e.Index {
				t.Fatalf("stats %+v, AppliedIndex %d; want applied index %d term 4", s, f.AppliedIndex(), e.Index)
			}
			if h := mustHash(t, f); h != hash || s.Revision != rev {
				t.Fatalf("state changed: hash %08x -> %08x, revision %d -> %d", hash, h, rev, s.Revision)
			}
		})
	}
}

// applyRecovering applies logs and returns what ApplyBatch panicked with.
func applyRecovering(f *FSM, logs []*raft.Log) (res []any, panicked any) {
	defer func() { panicked = recover() }()
	return f.ApplyBatch(logs), nil
}

func TestUnknownAndUndecodableCommands(t *testing.T) {
	envelope := func(t *testing.T, c *fsmv1.Command) []byte {
		b, err := proto.Marshal(c)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	putPayload, err := proto.Marshal(put("k", "v"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		data   func(t *testing.T) []byte
		panics bool
		// applied: the entry wrote key "k".
		applied bool
	}{
		{name: "unknown ignorable type is skipped", data: func(t *testing.T) []byte {
			return envelope(t, &fsmv1.Command{Type: 99, Ignorable: true, Payload: []byte("from a newer version")})
		}},
		{name: "known type marked ignorable is applied", applied: true, data: func(t *testing.T) []byte {
			return envelope(t, &fsmv1.Command{Type: fsmv1.CommandType_COMMAND_TYPE_PUT, Ignorable: true, Payload: putPayload})
		}},
		{name: "unknown type stops", panics: true, data: func(t *testing.T) []byte {
			return envelope(t, &fsmv1.Command{Type: 99, Payload: putPayload})
		}},
		{name: "unspecified type stops", panics: true, data: func(t *testing.T) []byte {
			return envelope(t, &fsmv1.Command{Payload: putPayload})
		}},
		{name: "undecodable envelope stops", panics: true, data: func(*testing.T) []byte {
			return []byte{0xff, 0xff, 0xff}
		}},
		{name: "undecodable payload stops", panics: true, data: func(t *testing.T) []byte {
			return envelope(t, &fsmv1.Command{Type: fsmv1.CommandType_COMMAND_TYPE_PUT, Payload: []byte{0xff, 0xff, 0xff}})
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			f, l := openFSM(t, dir), newTestLog(t)
			l.applyOne(f, put("a", "1"))
			if err := f.be.Commit(); err != nil {
				t.Fatal(err)
			}
			rev := f.Revision()
			l.applyOne(f, put("b", "1")) // applied, not yet committed

			// The entry comes after a valid put in the same batch: when it
			// stops the apply, the put must not be written either.
			batch := []*raft.Log{l.command(put("before", "1")), l.raw(raft.LogCommand, tt.data(t))}
			res, panicked := applyRecovering(f, batch)
			if tt.panics {
				if panicked == nil {
					t.Fatalf("ApplyBatch returned %v, want a panic", res)
				}
				// A member that could not apply stops serving, and what
				// it applied without committing is not kept.
				if _, err := f.Range(get("a", "")); err == nil {
					t.Fatal("a read after a failed apply succeeded")
				}
				if _, err := f.Snapshot(); err == nil {
					t.Fatal("a snapshot after a failed apply succeeded")
				}
				if err := f.Close(); err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(filepath.Join(dir, CleanMarker)); !errors.Is(err, os.ErrNotExist) {
					t.Fatalf("a failed state was marked clean: %v", err)
				}
				// The next start finds the state as of its last commit,
				// and raft would replay the log after it.
				g := openFSM(t, dir)
				if g.Rebuilt() || g.AppliedIndex() != 1 {
					t.Fatalf("reopened after a failed apply: rebuilt %v, applied index %d; want the last commit, index 1", g.Rebuilt(), g.AppliedIndex())
				}
				for key, want := range map[string]int64{"a": 1, "b": 0, "before": 0} {
					if n := mustRange(t, g, get(key, "")).GetCount(); n != want {
						t.Fatalf("after the failed apply, key %q is there %d times, want %d", key, n, want)
					}
				}
				return
			}
			rev++ // the put of b
			if panicked != nil {
				t.Fatalf("ApplyBatch panicked: %v", panicked)
			}
			if f.AppliedIndex() != batch[1].Index {
				t.Fatalf("applied index %d, want %d", f.AppliedIndex(), batch[1].Index)
			}
			wantRev := rev + 1
			if tt.applied {
				wantRev++
				if want := putResp(wantRev, nil); !sameResult(res[1], want) {
					t.Fatalf("result %s, want %s", show(res[1]), show(want))
				}
			} else if res[1] != nil {
				t.Fatalf("skipped command returned %s, want nil", show(res[1]))
			}
			if n := mustRange(t, f, get("k", "")).GetCount(); (n == 1) != tt.applied {
				t.Fatalf("key k count %d, applied %v", n, tt.applied)
			}
			if f.Revision() != wantRev {
				t.Fatalf("revision %d, want %d", f.Revision(), wantRev)
			}
		})
	}
}

func TestLeaderStartAndMembers(t *testing.T) {
	f, l := newFSM(t), newTestLog(t)
	if f.ClusterID() != 0 {
		t.Fatalf("fresh cluster id %d, want 0", f.ClusterID())
	}
	hash := mustHash(t, f)
	for i, msg := range []proto.Message{
		&fsmv1.LeaderStart{Term: 1, ClusterId: 42, Leader: &fsmv1.MemberAttributes{Name: "m1", ClientAddr: "a:1"}},
		&fsmv1.MemberAttributes{Name: "m2", ClientAddr: "b:1"},
		&fsmv1.MemberAttributes{ClientAddr: "nameless:1"},
		// A later leader does not change the cluster id, but does update
		// its own address.
		&fsmv1.LeaderStart{Term: 2, ClusterId: 7, Leader: &fsmv1.MemberAttributes{Name: "m2", ClientAddr: "b:2"}},
	} {
		if res := l.applyOne(f, msg); res != nil {
			t.Fatalf("command %d returned %s, want nil", i, show(res))
		}
	}
	if f.ClusterID() != 42 {
		t.Fatalf("cluster id %d, want 42", f.ClusterID())
	}
	members, err := f.Members()
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	want := map[string]*fsmv1.MemberAttributes{
		"m1": {Name: "m1", ClientAddr: "a:1"},
		"m2": {Name: "m2", ClientAddr: "b:2"},
	}
	if len(members) != len(want) {
		t.Fatalf("members %v, want %v", members, want)
	}
	for name, m := range want {
		if !proto.Equal(members[name], m) {
			t.Fatalf("member %s = %v, want %v", name, members[name], m)
		}
	}
	if f.Revision() != 1 {
		t.Fatalf("cluster commands moved the revision to %d", f.Revision())
	}
	if mustHash(t, f) == hash {
		t.Fatal("Hash does not cover the cluster id and members")
	}
}

func TestWaitApplied(t *testing.T) {
	f, l := newFSM(t), newTestLog(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := f.WaitApplied(ctx, 1); !errors.Is(err, context.Canceled) {
		t.Fatalf("WaitApplied with a cancelled context = %v, want context.Canceled", err)
	}

	changed := f.AppliedChanged()
	done := make(chan error, 1)
	go func() { done <- f.WaitApplied(context.Background(), 2) }()
	l.applyOne(f, put("a", "1"))
	select {
	case <-changed:
	default:
		t.Fatal("AppliedChanged was not closed when the applied index moved")
	}
	select {
	case err := <-done:
		t.Fatalf("WaitApplied(2) returned %v at applied index 1", err)
	default:
	}
	l.applyOne(f, put("b", "1"))
	if err := <-done; err != nil {
		t.Fatalf("WaitApplied(2) = %v", err)
	}
	if err := f.WaitApplied(ctx, 2); err != nil {
		t.Fatalf("WaitApplied of an applied index = %v, want nil even with a cancelled context", err)
	}
}

func TestNewRequiresDir(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New without a Dir succeeded")
	}
	if err := (Config{Dir: t.TempDir()}).Validate(); err != nil {
		t.Fatalf("Validate of a config with a Dir = %v", err)
	}
}
