package mvcc

import (
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// A store written at random, then compacted and trimmed in small chunks:
// reads at and above the compact revision answer the same before, during
// and after the trim, reads below it fail, the hashes do not move, Changes
// from the compact revision on are what the writes changed, and the trim
// deletes exactly the versions no read can reach.
func TestCompactionKeepsEveryReachableRevision(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			db := openDB(t)
			rng := rand.New(rand.NewSource(seed))
			keys := []string{"a", "a/1", "a/2", "b", "b\x00c", "c", "d"}
			type change struct {
				rev int64
				ev  Event
			}
			var changes []change
			for range 300 {
				k := keys[rng.Intn(len(keys))]
				rev, evs := apply(t, db, true, func(txn *TxnWrite) error {
					if rng.Intn(4) == 0 {
						_, err := txn.DeleteRange(&kvv1.DeleteRangeRequest{Key: []byte(k)})
						return err
					}
					_, err := txn.Put(putReq(k, fmt.Sprint(rng.Int())))
					return err
				})
				for _, e := range evs {
					changes = append(changes, change{rev, e})
				}
			}
			var current int64
			read(t, db, func(r ReadView) { current = r.Revision() })
			compact := 2 + rng.Int63n(current-2)

			// What reads answer at every reachable revision, and, with
			// hashes, the hashes (which the compact revision moves: it
			// leaves out what compaction put out of reach).
			snapshot := func(hashes bool) map[int64]string { return readsAt(t, db, compact, current, hashes) }
			reads := snapshot(false)
			compactTo(t, db, compact)
			if mid := snapshot(false); !mapsEqual(reads, mid) {
				t.Fatal("reads changed when the compact revision moved")
			}
			before := snapshot(true)
			read(t, db, func(r ReadView) {
				if _, err := r.Range(&kvv1.RangeRequest{Key: []byte("a"), Revision: compact - 1}); !errors.Is(err, ErrCompacted) {
					t.Fatalf("read below the compact revision: %v", err)
				}
				if !r.TrimPending() {
					t.Fatal("no trim pending after a compaction")
				}
			})
			chunks, deleted := 0, 0
			for {
				var done bool
				err := db.Update(func(tx *bolt.Tx) error {
					w := db.s.NewWriter(tx, false)
					n, err := 0, error(nil)
					done, n, err = w.TrimHistory(7)
					// A version visited dooms at most two: the one it
					// replaced and, a tombstone, itself.
					if n > 7+1 {
						t.Fatalf("a chunk of 7 deleted %d versions", n)
					}
					deleted += n
					return err
				})
				if err != nil {
					t.Fatal(err)
				}
				chunks++
				if chunks%5 == 0 {
					if mid := snapshot(true); !mapsEqual(before, mid) {
						t.Fatalf("reads or hashes changed during the trim (chunk %d)", chunks)
					}
				}
				if done {
					break
				}
			}
			if after := snapshot(true); !mapsEqual(before, after) {
				t.Fatal("reads or hashes changed by the trim")
			}
			if deleted > 8 && chunks < 2 {
				t.Fatalf("the trim deleted %d versions in %d chunk of 7; it did not stop at its limit", deleted, chunks)
			}

			// Exactly the unreachable versions are gone.
			read(t, db, func(r ReadView) {
				want := 0
				last := map[string]change{} // newest change at or below compact, per key
				for _, c := range changes {
					k := string(c.ev.KV.GetKey())
					if c.rev > compact {
						want++
					} else {
						last[k] = c
					}
				}
				for _, c := range last {
					if c.ev.Type == Put {
						want++
					}
				}
				if got := r.tx.Bucket(bucketHistory).Stats().KeyN; got != want {
					t.Fatalf("history holds %d versions after the trim, want %d", got, want)
				}
				if r.TrimPending() || r.TrimmedTo() != compact {
					t.Fatalf("trim pending %v, trimmed to %d, want %d", r.TrimPending(), r.TrimmedTo(), compact)
				}
			})

			// Changes from the compact revision on, in any window.
			for range 20 {
				from := compact + rng.Int63n(current-compact+1)
				to := from + rng.Int63n(current-from+1)
				key, end := []byte(keys[rng.Intn(len(keys))]), []byte{0}
				var got, want []string
				read(t, db, func(r ReadView) {
					err := r.Changes(key, end, from, to, func(rev int64, ev Event) error {
						got = append(got, describe(rev, ev))
						return nil
					})
					if err != nil {
						t.Fatal(err)
					}
				})
				for _, c := range changes {
					if c.rev >= from && c.rev <= to && InRange(c.ev.KV.GetKey(), key, end) {
						want = append(want, describe(c.rev, c.ev))
					}
				}
				slices.Sort(got)
				slices.Sort(want)
				if !slices.Equal(got, want) {
					t.Fatalf("changes of %q.. from %d to %d:\n got %q\nwant %q", key, from, to, got, want)
				}
			}
			read(t, db, func(r ReadView) {
				err := r.Changes([]byte("a"), nil, compact-1, 0, func(int64, Event) error { return nil })
				if !errors.Is(err, ErrCompacted) {
					t.Fatalf("changes below the compact revision: %v", err)
				}
			})
		})
	}
}

func describe(rev int64, ev Event) string {
	s := fmt.Sprintf("%d %s %s", rev, ev.Type, ev.KV.GetKey())
	if ev.Type == Put {
		s += "=" + string(ev.KV.GetValue())
	}
	if ev.PrevKV != nil {
		s += " prev=" + string(ev.PrevKV.GetValue())
	}
	return s
}

func compactTo(t *testing.T, db *testDB, rev int64) {
	t.Helper()
	err := db.Update(func(tx *bolt.Tx) error {
		w := db.s.NewWriter(tx, false)
		return w.Compact(rev)
	})
	if err != nil {
		t.Fatal(err)
	}
}

func mapsEqual(a, b map[int64]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func TestCompactRefusesFutureAndPastRevisions(t *testing.T) {
	db := openDB(t)
	for i := range 5 {
		apply(t, db, false, func(txn *TxnWrite) error {
			_, err := txn.Put(putReq("k", fmt.Sprint(i)))
			return err
		})
	}
	var current int64
	read(t, db, func(r ReadView) { current = r.Revision() })
	try := func(rev int64) error {
		return db.Update(func(tx *bolt.Tx) error {
			w := db.s.NewWriter(tx, false)
			return w.Compact(rev)
		})
	}
	if err := try(current + 1); !errors.Is(err, ErrFutureRevision) {
		t.Errorf("compact above the current revision: %v", err)
	}
	if err := try(current); err != nil {
		t.Fatalf("compact at the current revision: %v", err)
	}
	if err := try(current); !errors.Is(err, ErrCompacted) {
		t.Errorf("compact again at the same revision: %v", err)
	}
	if err := try(2); !errors.Is(err, ErrCompacted) {
		t.Errorf("compact below the compact revision: %v", err)
	}
	// The newest version of the key is readable at the compact revision.
	read(t, db, func(r ReadView) {
		live, err := r.Range(&kvv1.RangeRequest{Key: []byte("k")})
		if err != nil || len(live.GetKvs()) != 1 {
			t.Fatalf("read of the live key: %v, %v", live, err)
		}
		resp, err := r.Range(&kvv1.RangeRequest{Key: []byte("k"), Revision: current})
		if err != nil || len(resp.GetKvs()) != 1 || !proto.Equal(resp.GetKvs()[0], live.GetKvs()[0]) || string(resp.GetKvs()[0].GetValue()) != "4" {
			t.Fatalf("read at the compact revision: %v, %v (live %v)", resp, err, live)
		}
	})
}

// TestCompactionAgainDuringATrim moves the compact revision while a trim is
// under way, and again after it: the trim goes on to the new target, and
// in the end history holds exactly the versions reads can reach.
func TestCompactionAgainDuringATrim(t *testing.T) {
	db := openDB(t)
	rng := rand.New(rand.NewSource(11))
	keys := []string{"a", "b", "c", "d", "e"}
	for range 400 {
		k := keys[rng.Intn(len(keys))]
		apply(t, db, false, func(txn *TxnWrite) error {
			if rng.Intn(4) == 0 {
				_, err := txn.DeleteRange(&kvv1.DeleteRangeRequest{Key: []byte(k)})
				return err
			}
			_, err := txn.Put(putReq(k, fmt.Sprint(rng.Int())))
			return err
		})
	}
	var current int64
	read(t, db, func(r ReadView) { current = r.Revision() })
	reads := func(from int64) map[int64]string { return readsAt(t, db, from, current, false) }
	c1, c2, c3 := current/4, current/2, current-10
	before := reads(c3)
	compactTo(t, db, c1)
	for range 2 { // part of the way
		err := db.Update(func(tx *bolt.Tx) error {
			w := db.s.NewWriter(tx, false)
			_, _, err := w.TrimHistory(5)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	compactTo(t, db, c2)
	trimAll(t, db)
	compactTo(t, db, c3)
	trimAll(t, db)
	if after := reads(c3); !mapsEqual(before, after) {
		t.Fatal("reads at or above the compact revision changed")
	}
	// What is left: the versions above c3, and the live ones at c3.
	read(t, db, func(r ReadView) {
		resp, err := r.Range(&kvv1.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: c3})
		if err != nil {
			t.Fatal(err)
		}
		want := len(resp.GetKvs())
		if err := r.Changes([]byte{0}, []byte{0}, c3+1, 0, func(int64, Event) error { want++; return nil }); err != nil {
			t.Fatal(err)
		}
		if got := r.tx.Bucket(bucketHistory).Stats().KeyN; got != want {
			t.Fatalf("history holds %d versions, want %d", got, want)
		}
	})
}

// readsAt returns what a read of every key answers at each revision from
// from to to, with the store's hash at that revision when hashes is set.
func readsAt(t *testing.T, db *testDB, from, to int64, hashes bool) map[int64]string {
	t.Helper()
	out := map[int64]string{}
	read(t, db, func(r ReadView) {
		for rev := from; rev <= to; rev++ {
			resp, err := r.Range(&kvv1.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev})
			if err != nil {
				t.Fatalf("range at %d: %v", rev, err)
			}
			out[rev] = fmt.Sprint(resp.GetKvs())
			if hashes {
				h, _, _, err := r.HashKV(rev)
				if err != nil {
					t.Fatal(err)
				}
				out[rev] += fmt.Sprintf(" hash %08x", h)
			}
		}
	})
	return out
}
