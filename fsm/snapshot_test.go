package fsm

import (
	"bytes"
	"errors"
	"io"
	"math/rand"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
)

// memSink is an in-memory raft.SnapshotSink.
type memSink struct {
	bytes.Buffer
	closed, cancelled bool
}

var _ raft.SnapshotSink = (*memSink)(nil)

func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

// failingSink fails every write, as a full disk would.
type failingSink struct{ memSink }

func (s *failingSink) Write([]byte) (int, error) { return 0, errors.New("disk full") }

// closeTracker is the ReadCloser raft hands to Restore; Restore must close it.
type closeTracker struct {
	io.Reader
	closed bool
}

func (c *closeTracker) Close() error { c.closed = true; return nil }

// snapshotBytes takes a snapshot of f as raft does (Snapshot, Persist into
// a store) and returns what opening it through the FSM's store yields: a copy
// of the state database, as raft sends it to a follower.
func snapshotBytes(t *testing.T, f *FSM) []byte {
	t.Helper()
	store := f.SnapshotStore(raft.NewInmemSnapshotStore())
	id := persistTo(t, f, store)
	meta, rc, err := store.Open(id)
	if err != nil {
		t.Fatalf("open snapshot: %v", err)
	}
	defer rc.Close()
	data, err := io.ReadAll(rc)
	if err != nil {
		t.Fatalf("read snapshot: %v", err)
	}
	if int64(len(data)) != meta.Size {
		t.Fatalf("snapshot stream has %d bytes, its meta says %d", len(data), meta.Size)
	}
	return data
}

// persistTo takes a snapshot of f and persists it into store, as raft does,
// and returns its id.
func persistTo(t *testing.T, f *FSM, store raft.SnapshotStore) string {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	sink, err := store.Create(raft.SnapshotVersionMax, f.AppliedIndex(), 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatalf("create snapshot: %v", err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	return sink.ID()
}

func mustRestore(t *testing.T, f *FSM, data []byte) {
	t.Helper()
	rc := &closeTracker{Reader: bytes.NewReader(data)}
	if err := f.Restore(rc); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if !rc.closed {
		t.Fatal("Restore did not close the snapshot reader")
	}
}

// workload appends n random commands to l, and a leader start and member
// publication so that the snapshot carries a cluster id and members too.
func workload(t *testing.T, l *testLog, seed int64, n int) []*raft.Log {
	t.Helper()
	g, m := &opGen{rng: rand.New(rand.NewSource(seed))}, newModel()
	start := len(l.entries)
	l.command(&fsmv1.LeaderStart{Term: 1, ClusterId: 42, Leader: &fsmv1.MemberAttributes{Name: "m1", ClientAddr: "10.0.0.1:2379"}})
	for range n {
		msg := g.write(m.rev)
		m.apply(msg)
		l.command(msg)
	}
	l.command(&fsmv1.MemberAttributes{Name: "m2", ClientAddr: "10.0.0.2:2379"})
	return l.entries[start:]
}

// applyInBatches applies entries in batches of size.
func applyInBatches(f *FSM, entries []*raft.Log, size int) {
	for len(entries) > 0 {
		n := min(size, len(entries))
		f.ApplyBatch(entries[:n])
		entries = entries[n:]
	}
}

// sameState fails the test unless a and b hold the same state: hash,
// stats, cluster, members, and every key at the current revision and at
// past ones.
func sameState(t *testing.T, a, b *FSM) {
	t.Helper()
	if ha, hb := mustHash(t, a), mustHash(t, b); ha != hb {
		t.Fatalf("Hash: %08x != %08x", ha, hb)
	}
	// DBSize is left out: it depends on how the file grew, not on the
	// state. Callers that expect the same file compare it themselves.
	sa, sb := mustStats(t, a), mustStats(t, b)
	sa.DBSize, sb.DBSize = 0, 0
	if sa != sb {
		t.Fatalf("Stats: %+v != %+v", sa, sb)
	}
	if a.AppliedIndex() != b.AppliedIndex() || a.ClusterID() != b.ClusterID() {
		t.Fatalf("applied index %d, cluster id %d != applied index %d, cluster id %d",
			a.AppliedIndex(), a.ClusterID(), b.AppliedIndex(), b.ClusterID())
	}
	ma, err := a.Members()
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	mb, err := b.Members()
	if err != nil {
		t.Fatalf("Members: %v", err)
	}
	if len(ma) != len(mb) {
		t.Fatalf("Members: %v != %v", ma, mb)
	}
	for name, m := range ma {
		if !proto.Equal(m, mb[name]) {
			t.Fatalf("member %s: %v != %v", name, m, mb[name])
		}
	}
	rev := sa.Revision
	for _, r := range []int64{0, 1, 2, rev / 4, rev / 2, rev - 1, rev} {
		ra, rb := mustRange(t, a, rangeAll(r)), mustRange(t, b, rangeAll(r))
		if !proto.Equal(ra, rb) {
			t.Fatalf("full range at revision %d differs:\n %s\n %s", r, show(ra), show(rb))
		}
	}
}

func TestSnapshotRestore(t *testing.T) {
	tests := []struct {
		name string
		// before is applied to the FSM that restores, which the restore
		// must replace.
		before []proto.Message
	}{
		{name: "into a fresh FSM"},
		{name: "over existing state", before: []proto.Message{
			put("zz-only-here", "1"), put("a", "other"),
			&fsmv1.LeaderStart{ClusterId: 7, Leader: &fsmv1.MemberAttributes{Name: "other"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src, l := newFSM(t), newTestLog(t)
			applyInBatches(src, workload(t, l, 1, 400), 16)
			if src.Revision() < 100 || src.ClusterID() != 42 {
				t.Fatalf("workload left revision %d and cluster id %d; want a busy store", src.Revision(), src.ClusterID())
			}
			data := snapshotBytes(t, src)

			dst, dl := newFSM(t), newTestLog(t)
			for _, msg := range tt.before {
				dl.applyOne(dst, msg)
			}
			mustRestore(t, dst, data)
			sameState(t, src, dst)
			// The restored file is a copy of the snapshot's, so even its
			// size matches.
			if a, b := mustStats(t, src), mustStats(t, dst); a != b {
				t.Fatalf("Stats after restore: %+v, original %+v", b, a)
			}
			if _, err := os.Stat(dst.path + ".restore"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("restore left its temporary file: %v", err)
			}

			// More entries on the original do not reach the restored copy.
			hash, rev := mustHash(t, dst), dst.Revision()
			more := workload(t, l, 2, 50)
			applyInBatches(src, more, 8)
			if mustHash(t, src) == hash {
				t.Fatal("applying more entries did not change the original's hash")
			}
			if h, r := mustHash(t, dst), dst.Revision(); h != hash || r != rev {
				t.Fatalf("restored copy changed with the original: hash %08x -> %08x, revision %d -> %d", hash, h, rev, r)
			}

			// The restored copy continues the log where the snapshot ends:
			// raft replays from an index at or before the snapshot's, and
			// what the snapshot holds is skipped.
			applyInBatches(dst, l.entries[len(l.entries)-len(more)-10:], 5)
			sameState(t, src, dst)
		})
	}
}

// TestSnapshotRefersToTheState checks that a snapshot is a small record,
// that opening it streams the state as it is when opened (which covers the
// snapshot's entries and those applied since), and that it refuses to
// stand for a state that holds fewer entries than it covers.
func TestSnapshotRefersToTheState(t *testing.T) {
	src, l := newFSM(t), newTestLog(t)
	applyInBatches(src, workload(t, l, 3, 300), 10)
	inner := raft.NewInmemSnapshotStore()
	store := src.SnapshotStore(inner)
	id := persistTo(t, src, store)
	_, raw, err := inner.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	record, _ := io.ReadAll(raw)
	raw.Close()
	if len(record) > 64 || !bytes.HasPrefix(record, []byte(snapshotRefMagic)) {
		t.Fatalf("persisted snapshot is %d bytes (%q...), want a short reference record", len(record), record[:min(len(record), 40)])
	}

	applyInBatches(src, workload(t, l, 4, 300), 10)
	dst := newFSM(t)
	mustRestore(t, dst, snapshotBytes(t, src))
	sameState(t, src, dst)

	// A state that lost entries the snapshot covers cannot stand for it.
	behind := newFSM(t)
	applyInBatches(behind, l.entries[:10], 5)
	if _, _, err := behind.SnapshotStore(inner).Open(id); !errors.Is(err, ErrStateBehindSnapshot) {
		t.Fatalf("opening a snapshot over an older state: %v, want ErrStateBehindSnapshot", err)
	}
}

// TestSnapshotOpensCopiesAsTheyAre checks that a snapshot holding a copy of
// a database (one a leader sent, or an older kvd wrote) opens unchanged.
func TestSnapshotOpensCopiesAsTheyAre(t *testing.T) {
	src, l := newFSM(t), newTestLog(t)
	applyInBatches(src, workload(t, l, 5, 100), 10)
	data := snapshotBytes(t, src)
	inner := raft.NewInmemSnapshotStore()
	sink, err := inner.Create(raft.SnapshotVersionMax, src.AppliedIndex(), 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	sink.Write(data)
	sink.Close()
	other := newFSM(t)
	_, rc, err := other.SnapshotStore(inner).Open(sink.ID())
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(rc)
	rc.Close()
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("a copied snapshot opened as %d bytes (err %v), want the %d it holds", len(got), err, len(data))
	}
}

func TestPersistFailureCancelsSink(t *testing.T) {
	f, l := newFSM(t), newTestLog(t)
	l.applyOne(f, put("a", "1"))
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatalf("Snapshot: %v", err)
	}
	defer snap.Release()
	sink := &failingSink{}
	if err := snap.Persist(sink); err == nil {
		t.Fatal("Persist to a failing sink succeeded")
	}
	if !sink.cancelled || sink.closed {
		t.Fatalf("after a failed Persist the sink is cancelled=%v closed=%v, want cancelled and not closed", sink.cancelled, sink.closed)
	}
}

// errReader returns some bytes and then an error, as a broken stream does.
type errReader struct{ n int }

func (r *errReader) Read(p []byte) (int, error) {
	if r.n <= 0 {
		return 0, errors.New("connection reset")
	}
	n := min(len(p), r.n)
	clear(p[:n])
	r.n -= n
	return n, nil
}

func TestRestoreRejectsDamagedSnapshot(t *testing.T) {
	good := func() []byte {
		f, l := newFSM(t), newTestLog(t)
		applyInBatches(f, workload(t, l, 5, 300), 20)
		return snapshotBytes(t, f)
	}()
	const page = 4096
	if len(good) < 8*page {
		t.Fatalf("the good snapshot has only %d bytes; the cases below need more", len(good))
	}
	noMeta := func() []byte {
		path := filepath.Join(t.TempDir(), "other.db")
		db, err := bolt.Open(path, 0o600, nil)
		if err != nil {
			t.Fatal(err)
		}
		err = db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket([]byte("unrelated"))
			if err != nil {
				return err
			}
			return b.Put([]byte("k"), []byte("v"))
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}()
	random := make([]byte, 3*page)
	rand.New(rand.NewSource(1)).Read(random)
	zeroedPages := bytes.Clone(good)
	clear(zeroedPages[2*page:]) // valid meta pages, nothing they point at

	tests := []struct {
		name string
		r    io.Reader
	}{
		{name: "empty", r: bytes.NewReader(nil)},
		{name: "text", r: bytes.NewReader([]byte("this is not a database"))},
		{name: "random pages", r: bytes.NewReader(random)},
		{name: "truncated to half", r: bytes.NewReader(good[:len(good)/2])},
		{name: "last page missing", r: bytes.NewReader(good[:len(good)-page])},
		{name: "meta pages only", r: bytes.NewReader(good[:2*page])},
		{name: "pages zeroed", r: bytes.NewReader(zeroedPages)},
		{name: "a bbolt database without a meta bucket", r: bytes.NewReader(noMeta)},
		{name: "stream breaks", r: &errReader{n: 2 * page}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, l := newFSM(t), newTestLog(t)
			applyInBatches(f, workload(t, l, 6, 50), 10)
			hash, stats := mustHash(t, f), mustStats(t, f)
			before := mustRange(t, f, rangeAll(0))

			rc := &closeTracker{Reader: tt.r}
			if err := f.Restore(rc); err == nil {
				t.Fatal("Restore succeeded")
			}
			if !rc.closed {
				t.Error("Restore did not close the snapshot reader")
			}
			if _, err := os.Stat(f.path + ".restore"); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("failed restore left its temporary file: %v", err)
			}
			if h, s := mustHash(t, f), mustStats(t, f); h != hash || s != stats {
				t.Fatalf("failed restore changed the state: hash %08x -> %08x, stats %+v -> %+v", hash, h, stats, s)
			}
			if got := mustRange(t, f, rangeAll(0)); !proto.Equal(got, before) {
				t.Fatalf("failed restore changed the keys:\n got  %s\n want %s", show(got), show(before))
			}
			// The state is still usable.
			res := l.applyOne(f, put("after", "1"))
			if want := putResp(stats.Revision+1, nil); !sameResult(res, want) {
				t.Fatalf("put after a failed restore = %s, want %s", show(res), show(want))
			}
			if got, want := mustRange(t, f, get("after", "")), rangeResp(stats.Revision+1, kv("after", "1", stats.Revision+1, stats.Revision+1, 1)); !proto.Equal(got, want) {
				t.Fatalf("read after a failed restore = %s, want %s", show(got), show(want))
			}
			// And a good snapshot still restores.
			mustRestore(t, f, good)
			if f.AppliedIndex() == 0 || mustRange(t, f, get("after", "")).GetCount() != 0 {
				t.Fatal("a good snapshot after a failed one did not replace the state")
			}
		})
	}
}

// TestRestoreThenReopen checks that the restored state is the one on disk.
func TestRestoreThenReopen(t *testing.T) {
	src, l := newFSM(t), newTestLog(t)
	applyInBatches(src, workload(t, l, 7, 200), 10)
	data := snapshotBytes(t, src)

	dir := t.TempDir()
	dst := openFSM(t, dir)
	mustRestore(t, dst, data)
	if err := dst.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	reopened := openFSM(t, dir)
	sameState(t, src, reopened)

	// The stored key values are what a client would read.
	got := mustRange(t, reopened, rangeAll(0))
	for _, kv := range got.GetKvs() {
		if kv.GetVersion() < 1 || kv.GetCreateRevision() > kv.GetModRevision() {
			t.Fatalf("restored key is malformed: %s", show(kv))
		}
	}
	if got.GetCount() == 0 {
		t.Fatal("the workload left no keys")
	}
}
