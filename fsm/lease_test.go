package fsm

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"

	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// recordingLeases keeps what the FSM reports of leases.
type recordingLeases struct {
	events   []LeaseEvent
	restored int
}

func (r *recordingLeases) LeasesChanged(events []LeaseEvent) { r.events = append(r.events, events...) }
func (r *recordingLeases) LeasesRestored()                   { r.restored++ }

func openWithLeases(tb testing.TB, dir string) (*FSM, *recordingFeed, *recordingLeases) {
	tb.Helper()
	feed, leases := &recordingFeed{tb: tb}, &recordingLeases{}
	f, err := New(Config{Dir: dir, Logger: slog.New(slog.DiscardHandler), Feed: feed, Leases: leases})
	if err != nil {
		tb.Fatalf("New(%s): %v", dir, err)
	}
	tb.Cleanup(func() { _ = f.Close() })
	feed.f = f
	return f, feed, leases
}

func putWithLease(k, v string, lease int64) *kvv1.PutRequest {
	return &kvv1.PutRequest{Key: []byte(k), Value: []byte(v), Lease: lease}
}

// resultErr returns the domain error a command was answered with.
func resultErr(res any) error {
	err, _ := res.(error)
	return err
}

// A lease's keys are attached by puts, detached by puts without it and by
// deletes, and deleted together, at one revision, when it is revoked.
func TestLeaseLifecycle(t *testing.T) {
	f, feed, leases := openWithLeases(t, t.TempDir())
	l := newTestLog(t)
	if err := resultErr(l.applyOne(f, putWithLease("a", "1", 5))); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("put with a lease never granted: %v, want ErrLeaseNotFound", err)
	}
	res := l.applyOne(f, &fsmv1.LeaseGrant{Id: 5, Ttl: 10})
	if g, ok := res.(*kvv1.LeaseGrantResponse); !ok || g.GetId() != 5 || g.GetTtl() != 10 {
		t.Fatalf("grant: %v", res)
	}
	if err := resultErr(l.applyOne(f, &fsmv1.LeaseGrant{Id: 5, Ttl: 10})); !errors.Is(err, ErrLeaseExists) {
		t.Fatalf("second grant of 5: %v, want ErrLeaseExists", err)
	}
	for _, k := range []string{"a", "b", "c", "d"} {
		l.applyOne(f, putWithLease(k, "1", 5))
	}
	l.applyOne(f, put("c", "no lease")) // detached by a put without it
	l.applyOne(f, del("d", ""))         // detached by a delete
	l.applyOne(f, putWithLease("e", "1", 5))
	keys, err := f.LeaseKeys(5)
	if err != nil || !slices.Equal(strs(keys), []string{"a", "b", "e"}) {
		t.Fatalf("LeaseKeys = %q, %v; want a b e", keys, err)
	}
	l.applyOne(f, &fsmv1.LeaseCheckpoint{Leases: []*fsmv1.LeaseRemaining{{Id: 5, RemainingTtl: 7}, {Id: 99, RemainingTtl: 3}}})
	if le, ok, err := f.Lease(5); err != nil || !ok || le.TTL != 10 || le.RemainingTTL != 7 {
		t.Fatalf("Lease(5) = %+v, %v, %v; want TTL 10 remaining 7", le, ok, err)
	}

	before := len(feed.changes)
	res = l.applyOne(f, &fsmv1.LeaseRevoke{Id: 5})
	rev, ok := res.(*kvv1.LeaseRevokeResponse)
	if !ok {
		t.Fatalf("revoke: %v", res)
	}
	revoked := feed.changes[before:]
	if len(revoked) != 1 || revoked[0].Revision != rev.GetHeader().GetRevision() || len(revoked[0].Events) != 3 {
		t.Fatalf("the revocation was reported as %+v; want one revision with three deletes", revoked)
	}
	got := mustRange(t, f, rangeAll(0))
	if len(got.GetKvs()) != 1 || string(got.GetKvs()[0].GetKey()) != "c" {
		t.Fatalf("after the revocation: %v; want only c", got.GetKvs())
	}
	if _, ok, _ := f.Lease(5); ok {
		t.Fatal("the revoked lease is still there")
	}
	if err := resultErr(l.applyOne(f, &fsmv1.LeaseRevoke{Id: 5})); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("second revoke: %v, want ErrLeaseNotFound", err)
	}
	want := []LeaseEvent{{ID: 5, TTL: 10}, {ID: 5, Checkpoint: true, RemainingTTL: 7}, {ID: 5, Revoked: true}}
	if !slices.Equal(leases.events, want) {
		t.Fatalf("lease events %+v, want %+v", leases.events, want)
	}
}

// A put with a lease that does not exist fails the whole txn, but only on
// the branch that runs; compares see the state before the txn.
func TestLeaseInTxn(t *testing.T) {
	f := newFSM(t)
	l := newTestLog(t)
	l.applyOne(f, &fsmv1.LeaseGrant{Id: 1, Ttl: 10})
	l.applyOne(f, putWithLease("k", "v", 1))
	isLease := func(id int64) *kvv1.Compare {
		return &kvv1.Compare{Key: []byte("k"), Target: kvv1.Compare_COMPARE_TARGET_LEASE, Result: kvv1.Compare_COMPARE_RESULT_EQUAL, TargetUnion: &kvv1.Compare_Lease{Lease: id}}
	}
	opPutLease := func(k string, lease int64) *kvv1.RequestOp {
		return &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestPut{RequestPut: putWithLease(k, "x", lease)}}
	}
	rev := f.Revision()
	res := l.applyOne(f, &kvv1.TxnRequest{Compare: []*kvv1.Compare{isLease(1)},
		Success: []*kvv1.RequestOp{opPutLease("x", 1)}, Failure: []*kvv1.RequestOp{opPutLease("y", 42)}})
	if txn, ok := res.(*kvv1.TxnResponse); !ok || !txn.GetSucceeded() {
		t.Fatalf("txn whose unknown lease is on the branch not taken: %v", res)
	}
	res = l.applyOne(f, &kvv1.TxnRequest{Compare: []*kvv1.Compare{isLease(2)},
		Success: []*kvv1.RequestOp{opPutLease("x", 1)}, Failure: []*kvv1.RequestOp{opPutLease("z", 1), opPutLease("y", 42)}})
	if err := resultErr(res); !errors.Is(err, ErrLeaseNotFound) {
		t.Fatalf("txn putting with an unknown lease: %v, want ErrLeaseNotFound", err)
	}
	if f.Revision() != rev+1 {
		t.Fatalf("revision %d, want %d: the failed txn wrote", f.Revision(), rev+1)
	}
	if resp := mustRange(t, f, &kvv1.RangeRequest{Key: []byte("z")}); len(resp.GetKvs()) != 0 {
		t.Fatal("the failed txn's first put was applied")
	}
}

// Leases travel in snapshots; a state seeded into a new cluster keeps them,
// with their remaining TTLs cleared (restarted at their full TTL).
func TestLeasesInSnapshotsAndRestores(t *testing.T) {
	src, l := newFSM(t), newTestLog(t)
	l.applyOne(src, &fsmv1.LeaseGrant{Id: 1, Ttl: 10})
	l.applyOne(src, &fsmv1.LeaseGrant{Id: 2, Ttl: 600})
	l.applyOne(src, putWithLease("a", "1", 1))
	l.applyOne(src, putWithLease("b", "1", 2))
	l.applyOne(src, &fsmv1.LeaseCheckpoint{Leases: []*fsmv1.LeaseRemaining{{Id: 2, RemainingTtl: 300}}})
	data := snapshotBytes(t, src)

	dst, _, leases := openWithLeases(t, t.TempDir())
	mustRestore(t, dst, data)
	if leases.restored != 1 {
		t.Fatalf("LeasesRestored called %d times, want 1", leases.restored)
	}
	if mustHash(t, dst) != mustHash(t, src) {
		t.Fatal("restored state's hash differs")
	}
	if le, ok, _ := dst.Lease(2); !ok || le.RemainingTTL != 300 {
		t.Fatalf("restored lease 2: %+v, %v", le, ok)
	}

	// A backup seeded into a new cluster.
	path := filepath.Join(t.TempDir(), StateFile)
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(filepath.Dir(dst.path), StateFile), path)
	copyFile(t, filepath.Join(filepath.Dir(dst.path), CleanMarker), filepath.Join(filepath.Dir(path), CleanMarker))
	if err := ResetForNewCluster(path); err != nil {
		t.Fatal(err)
	}
	seeded := openFSM(t, filepath.Dir(path))
	ls, err := seeded.Leases()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"1 10 0", "2 600 0"}
	var got []string
	for _, le := range ls {
		got = append(got, fmtLease(le.ID, le.TTL, le.RemainingTTL))
	}
	if !slices.Equal(got, want) {
		t.Fatalf("seeded leases %q, want %q", got, want)
	}
	if keys, _ := seeded.LeaseKeys(2); !slices.Equal(strs(keys), []string{"b"}) {
		t.Fatalf("seeded lease 2's keys: %q", keys)
	}
}

// Members that differ only in their leases have different hashes.
func TestLeasesAreHashed(t *testing.T) {
	a, b := newFSM(t), newFSM(t)
	la, lb := newTestLog(t), newTestLog(t)
	la.applyOne(a, &fsmv1.LeaseGrant{Id: 1, Ttl: 10})
	lb.applyOne(b, &fsmv1.LeaseGrant{Id: 1, Ttl: 11})
	if mustHash(t, a) == mustHash(t, b) {
		t.Fatal("different leases, same hash")
	}
}

func strs(bs [][]byte) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = string(b)
	}
	return out
}

func fmtLease(id, ttl, remaining int64) string {
	return fmt.Sprintf("%d %d %d", id, ttl, remaining)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(to, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
