package fsm

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand"
	"slices"
	"testing"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/internal/auth"
	"github.com/kvd-io/kvd/internal/mvcc"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// recordingFeed keeps everything the FSM reports, and checks on each call
// that what it reports is already visible to reads.
type recordingFeed struct {
	tb       testing.TB
	f        *FSM // set once the FSM is open
	calls    int
	changes  []Change
	restored []int64
	// auth holds, for each AuthChanged, the auth revision reported and
	// the last revision Applied had reported before it.
	auth []authReport
}

type authReport struct {
	authRevision uint64
	after        int64
	restored     int // Restored calls before it
}

func (r *recordingFeed) AuthChanged(s *auth.State) {
	var after int64
	if len(r.changes) > 0 {
		after = r.changes[len(r.changes)-1].Revision
	}
	r.auth = append(r.auth, authReport{authRevision: s.Revision, after: after, restored: len(r.restored)})
}

func (r *recordingFeed) Applied(changes []Change) {
	r.calls++
	if len(changes) == 0 {
		r.tb.Errorf("Applied called with no changes")
		return
	}
	if r.f != nil {
		last := changes[len(changes)-1].Revision
		if rev := r.f.Revision(); rev < last {
			r.tb.Errorf("Applied reported revision %d, but a read sees revision %d", last, rev)
		}
	}
	r.changes = append(r.changes, changes...)
}

func (r *recordingFeed) Restored(revision int64) { r.restored = append(r.restored, revision) }

// openWithFeed opens an FSM in dir that reports to a new recordingFeed.
func openWithFeed(tb testing.TB, dir string) (*FSM, *recordingFeed) {
	tb.Helper()
	feed := &recordingFeed{tb: tb}
	f, err := New(Config{Dir: dir, Logger: slog.New(slog.DiscardHandler), Feed: feed})
	if err != nil {
		tb.Fatalf("New(%s): %v", dir, err)
	}
	tb.Cleanup(func() { _ = f.Close() })
	feed.f = f
	return f, feed
}

// TestFeedReportsNothingForNoChange checks that commands that change no
// key report nothing, and that a batch reports the writes of the entries
// that wrote.
func TestFeedReportsNothingForNoChange(t *testing.T) {
	f, feed := openWithFeed(t, t.TempDir())
	l := newTestLog(t)
	l.applyOne(f, put("a", "1"))
	feed.changes, feed.calls = nil, 0
	noChange := []proto.Message{
		&fsmv1.LeaderStart{Term: 1, ClusterId: 7, Leader: &fsmv1.MemberAttributes{Name: "m1"}},
		&fsmv1.MemberAttributes{Name: "m2", ClientAddr: "x"},
		txn(cmps(cmpValue("a", eq, "1")), ops(opGet(get("a", ""))), ops(opPut(put("b", "1")))),
		txn(cmps(cmpValue("a", eq, "2")), ops(opPut(put("b", "1"))), nil),
		del("zzz", ""),
		del("b", "c"),
		put("", "invalid"),
	}
	for _, msg := range noChange {
		l.applyOne(f, msg)
	}
	f.ApplyBatch([]*raft.Log{l.raw(raft.LogConfiguration, nil), l.raw(raft.LogNoop, nil)})
	if feed.calls != 0 {
		t.Fatalf("commands that change nothing reported %d calls: %v", feed.calls, feed.changes)
	}
	if rev := f.Revision(); rev != 2 {
		t.Fatalf("revision %d, want 2", rev)
	}

	// One batch of entries, some writing, some not: one call, one Change
	// per revision.
	f.ApplyBatch([]*raft.Log{
		l.command(put("b", "1")),
		l.command(del("nothing", "")),
		l.command(txn(nil, ops(opPut(put("c", "1")), opDel(delPrev("a", ""))), nil)),
		l.command(&fsmv1.MemberAttributes{Name: "m3"}),
	})
	if feed.calls != 1 || len(feed.changes) != 2 {
		t.Fatalf("one batch: %d calls, changes %v; want 1 call, 2 changes", feed.calls, feed.changes)
	}
	want := []Change{
		{Revision: 3, Events: []mvcc.Event{{Type: mvcc.Put, KV: kv("b", "1", 3, 3, 1)}}},
		{Revision: 4, Events: []mvcc.Event{
			{Type: mvcc.Put, KV: kv("c", "1", 4, 4, 1)},
			{Type: mvcc.Delete, KV: &kvv1.KeyValue{Key: []byte("a"), ModRevision: 4}, PrevKV: kv("a", "1", 2, 2, 1)},
		}},
	}
	if !sameChanges(feed.changes, want) {
		t.Fatalf("changes %s, want %s", showChanges(feed.changes), showChanges(want))
	}
}

// TestFeedReconstructsStore applies random commands, batch commands among
// them, in batches of random sizes that often overlap what was applied
// (as raft's replay does), across a clean restart; and checks that the
// events reported rebuild exactly the store's history and final state, each
// revision reported once, in order.
func TestFeedReconstructsStore(t *testing.T) {
	for _, seed := range []int64{1, 2, 3, 4} {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			rng := rand.New(rand.NewSource(seed))
			entries := feedWorkload(t, rng, 600)
			dir := t.TempDir()
			f, feed := openWithFeed(t, dir)
			var changes []Change
			half := len(entries) / 2
			applyOverlapping(f, rng, entries[:half])
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			changes = append(changes, feed.changes...)

			// raft replays its log after a restart: the reopened FSM skips
			// what it holds and reports only what is new.
			f, feed = openWithFeed(t, dir)
			applyOverlapping(f, rng, entries)
			changes = append(changes, feed.changes...)
			if f.Revision() < 300 {
				t.Fatalf("the workload reached revision %d only", f.Revision())
			}
			if len(feed.restored) != 0 {
				t.Fatalf("Restored called without a restore: %v", feed.restored)
			}
			checkFeedRebuildsStore(t, f, changes, 1)
		})
	}
}

// TestFeedAcrossRestore checks that a restore reports Restored with the
// snapshot's revision, and that nothing is reported twice around it.
func TestFeedAcrossRestore(t *testing.T) {
	rng := rand.New(rand.NewSource(5))
	entries := feedWorkload(t, rng, 400)
	third := len(entries) / 3

	// The source applies two thirds, and is snapshotted.
	src := newFSM(t)
	applyInBatches(src, entries[:2*third], 17)
	snap := snapshotBytes(t, src)
	snapRev, snapIndex := src.Revision(), src.AppliedIndex()

	// The follower applied a third, then installs the snapshot.
	f, feed := openWithFeed(t, t.TempDir())
	applyOverlapping(f, rng, entries[:third])
	before := slices.Clone(feed.changes)
	mustRestore(t, f, snap)
	if !slices.Equal(feed.restored, []int64{snapRev}) {
		t.Fatalf("Restored calls %v, want [%d]", feed.restored, snapRev)
	}
	if len(feed.changes) != len(before) {
		t.Fatalf("Restore reported changes: %s", showChanges(feed.changes[len(before):]))
	}
	// raft then sends what follows the snapshot; entries at or below its
	// index (here: all of them again) are skipped.
	feed.changes = nil
	applyOverlapping(f, rng, entries)
	for i, c := range feed.changes {
		if c.Revision != snapRev+1+int64(i) {
			t.Fatalf("after the restore, change %d has revision %d, want %d", i, c.Revision, snapRev+1+int64(i))
		}
	}
	if f.AppliedIndex() != entries[len(entries)-1].Index || f.AppliedIndex() <= snapIndex {
		t.Fatalf("applied index %d", f.AppliedIndex())
	}
	// What was reported after the restore, replayed over the snapshot's
	// state, gives the final state.
	checkFeedRebuildsStore(t, f, feed.changes, snapRev)

	// The whole history agrees with a member that applied everything.
	all := newFSM(t)
	applyInBatches(all, entries, 64)
	sameState(t, f, all)
}

// feedWorkload returns a log of n entries: random commands, some of them in
// batch commands, cluster commands and configuration changes.
func feedWorkload(t *testing.T, rng *rand.Rand, n int) []*raft.Log {
	t.Helper()
	g, m, l := &opGen{rng: rng}, newModel(), newTestLog(t)
	for range n {
		switch p := rng.Intn(100); {
		case p < 70:
			msg := g.write(m.rev)
			m.apply(msg)
			l.command(msg)
		case p < 90:
			var cmds [][]byte
			for range 1 + rng.Intn(6) {
				msg := g.write(m.rev)
				m.apply(msg)
				data, err := EncodeCommand(commandType(t, msg), msg)
				if err != nil {
					t.Fatal(err)
				}
				cmds = append(cmds, data)
			}
			data, err := EncodeBatch(cmds)
			if err != nil {
				t.Fatal(err)
			}
			l.raw(raft.LogCommand, data)
		case p < 95:
			l.command(&fsmv1.MemberAttributes{Name: fmt.Sprintf("m%d", rng.Intn(3)), ClientAddr: "x"})
		default:
			l.raw(raft.LogConfiguration, nil)
		}
	}
	return l.entries
}

// applyOverlapping applies entries in batches of random sizes, each of
// which often starts with entries already applied, as raft's replay does.
func applyOverlapping(f *FSM, rng *rand.Rand, entries []*raft.Log) {
	for i := 0; i < len(entries); {
		from := max(0, i-rng.Intn(4))
		to := min(len(entries), i+1+rng.Intn(20))
		f.ApplyBatch(entries[from:to])
		i = to
	}
}

// checkFeedRebuildsStore replays changes over the state at revision base,
// as read from f, and checks each revision against f's history (Range at
// that revision and mvcc's History scan) and the end against f's state.
func checkFeedRebuildsStore(t *testing.T, f *FSM, changes []Change, base int64) {
	t.Helper()
	state := map[string]*kvv1.KeyValue{}
	for _, kv := range mustRange(t, f, rangeAll(base)).GetKvs() {
		state[string(kv.GetKey())] = kv
	}
	final := f.Revision()
	if want := int(final - base); len(changes) != want {
		t.Fatalf("%d changes reported, want one per revision from %d to %d: %d", len(changes), base+1, final, want)
	}
	for i, c := range changes {
		if c.Revision != base+1+int64(i) {
			t.Fatalf("change %d has revision %d, want %d (each revision once, in order)", i, c.Revision, base+1+int64(i))
		}
		if len(c.Events) == 0 {
			t.Fatalf("revision %d reported with no events", c.Revision)
		}
		seen := map[string]bool{}
		for _, ev := range c.Events {
			k := string(ev.KV.GetKey())
			if seen[k] {
				t.Fatalf("revision %d changes key %q twice", c.Revision, k)
			}
			seen[k] = true
			if ev.KV.GetModRevision() != c.Revision {
				t.Fatalf("revision %d: event %v has mod revision %d", c.Revision, ev, ev.KV.GetModRevision())
			}
			if prev := state[k]; !proto.Equal(prev, ev.PrevKV) {
				t.Fatalf("revision %d: %s of %q has PrevKV %v, the key was %v", c.Revision, ev.Type, k, ev.PrevKV, prev)
			}
			switch ev.Type {
			case mvcc.Put:
				state[k] = ev.KV
			case mvcc.Delete:
				if ev.PrevKV == nil {
					t.Fatalf("revision %d: delete of %q, which did not exist", c.Revision, k)
				}
				if want := (&kvv1.KeyValue{Key: ev.KV.GetKey(), ModRevision: c.Revision}); !proto.Equal(ev.KV, want) {
					t.Fatalf("revision %d: delete KV %v, want %v", c.Revision, ev.KV, want)
				}
				delete(state, k)
			}
		}
		got := mustRange(t, f, rangeAll(c.Revision)).GetKvs()
		want := make([]*kvv1.KeyValue, 0, len(state))
		for _, kv := range state {
			want = append(want, kv)
		}
		slices.SortFunc(want, func(a, b *kvv1.KeyValue) int { return bytes.Compare(a.GetKey(), b.GetKey()) })
		if !slices.EqualFunc(got, want, func(a, b *kvv1.KeyValue) bool { return proto.Equal(a, b) }) {
			t.Fatalf("at revision %d the store holds %v, the feed rebuilds %v", c.Revision, got, want)
		}
	}

	// mvcc's History scan yields the same events, by key within a revision
	// where the feed has them in the order of the operations.
	fromHistory := map[int64][]mvcc.Event{}
	err := f.view(func(tx *bolt.Tx) error {
		return f.kv.Read(tx).History([]byte{0}, []byte{0}, base+1, func(rev int64, ev mvcc.Event) error {
			fromHistory[rev] = append(fromHistory[rev], ev)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(fromHistory) != len(changes) {
		t.Fatalf("History has %d revisions from %d, the feed %d", len(fromHistory), base+1, len(changes))
	}
	for _, c := range changes {
		byKey := slices.Clone(c.Events)
		slices.SortStableFunc(byKey, func(a, b mvcc.Event) int { return bytes.Compare(a.KV.GetKey(), b.KV.GetKey()) })
		if !sameEvents(fromHistory[c.Revision], byKey) {
			t.Fatalf("revision %d: History gives %v, the feed %v", c.Revision, fromHistory[c.Revision], byKey)
		}
	}
}

func sameEvents(a, b []mvcc.Event) bool {
	return slices.EqualFunc(a, b, func(x, y mvcc.Event) bool {
		return x.Type == y.Type && proto.Equal(x.KV, y.KV) && proto.Equal(x.PrevKV, y.PrevKV)
	})
}

func sameChanges(a, b []Change) bool {
	return slices.EqualFunc(a, b, func(x, y Change) bool {
		return x.Revision == y.Revision && sameEvents(x.Events, y.Events)
	})
}

func showChanges(cs []Change) string {
	var b bytes.Buffer
	for _, c := range cs {
		fmt.Fprintf(&b, "[rev %d:", c.Revision)
		for _, ev := range c.Events {
			fmt.Fprintf(&b, " %s %s prev %s;", ev.Type, show(ev.KV), show(ev.PrevKV))
		}
		b.WriteString("]")
	}
	return b.String()
}

// TestFeedReportsAuthChangesInOrder: a change of the auth state is reported
// between the revisions applied before and after it, also within one
// batch and one batch command, and after a restore, before Restored.
func TestFeedReportsAuthChangesInOrder(t *testing.T) {
	f, feed := openWithFeed(t, t.TempDir())
	l := newTestLog(t)
	inner := func(msg proto.Message) []byte {
		data, err := EncodeCommand(commandType(t, msg), msg)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	batch := &fsmv1.CommandBatch{Commands: [][]byte{inner(put("c", "v")), inner(roleAdd("r2")), inner(put("d", "v"))}}
	batchData, err := proto.Marshal(batch)
	if err != nil {
		t.Fatal(err)
	}
	cmd, err := proto.Marshal(&fsmv1.Command{Type: fsmv1.CommandType_COMMAND_TYPE_BATCH, Payload: batchData})
	if err != nil {
		t.Fatal(err)
	}
	// One ApplyBatch: put a (rev 2), role r1 (auth 1), put b (rev 3),
	// role r0 (auth 2), then a batch command: put c (rev 4), role r2
	// (auth 3), put d (rev 5).
	f.ApplyBatch([]*raft.Log{l.command(put("a", "v")), l.command(roleAdd("r1")), l.command(put("b", "v")),
		l.command(roleAdd("r0")), l.raw(raft.LogCommand, cmd)})
	want := []authReport{{authRevision: 1, after: 2}, {authRevision: 2, after: 3}, {authRevision: 3, after: 4}}
	if !slices.Equal(feed.auth, want) {
		t.Fatalf("auth reports %+v, want %+v", feed.auth, want)
	}
	if feed.calls != 4 || len(feed.changes) != 4 {
		t.Fatalf("%d Applied calls with %d changes, want 4 calls (split around the auth changes) with 4", feed.calls, len(feed.changes))
	}
	// A refused auth command (a role that exists) reports nothing.
	applyErr(t, l, f, roleAdd("r1"))
	if len(feed.auth) != 3 {
		t.Fatalf("a refused auth command was reported: %+v", feed.auth[3:])
	}

	// After a restore, the restored auth state comes before Restored.
	src := newFSM(t)
	ls := newTestLog(t)
	for _, c := range []proto.Message{put("x", "v"), roleAdd("a"), roleAdd("b")} {
		applyOK(t, ls, src, c)
	}
	feed.changes, feed.auth = nil, nil
	mustRestore(t, f, snapshotBytes(t, src))
	if len(feed.auth) != 1 || feed.auth[0].authRevision != 2 || feed.auth[0].restored != 0 || len(feed.restored) != 1 {
		t.Fatalf("after a restore: auth reports %+v, Restored %v; want auth revision 2, then Restored", feed.auth, feed.restored)
	}
}
