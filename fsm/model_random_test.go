package fsm

import (
	"flag"
	"fmt"
	"math/rand"
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

var modelSeed = flag.Int64("fsm.seed", 0,
	"seed of TestApplyRandomAgainstModel; 0 runs the fixed seeds 1, 2 and 3")

// TestApplyRandomAgainstModel applies random commands to the FSM, in batches
// of random sizes, and to the model, and compares every response, reads at
// random past revisions between batches, and the final state at many
// revisions.
func TestApplyRandomAgainstModel(t *testing.T) {
	seeds := []int64{1, 2, 3}
	if *modelSeed != 0 {
		seeds = []int64{*modelSeed}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			t.Parallel()
			t.Cleanup(func() {
				if t.Failed() {
					t.Logf("reproduce with: go test ./fsm -run TestApplyRandomAgainstModel -fsm.seed=%d", seed)
				}
			})
			runRandomAgainstModel(t, seed, 3000)
		})
	}
}

// randomOutcomes counts what the random commands did, to check that the
// generator reaches every interesting path.
type randomOutcomes struct {
	puts, deletes, txnsSucceeded, txnsFailed, nestedTxns int
	reads, pastReads, configEntries, readTxns            int
	errs                                                 map[string]int
}

func runRandomAgainstModel(t *testing.T, seed int64, n int) {
	rng := rand.New(rand.NewSource(seed))
	g := &opGen{rng: rng}
	f, m, l := newFSM(t), newModel(), newTestLog(t)
	out := randomOutcomes{errs: map[string]int{}}

	var (
		batch []*raft.Log
		want  []any
		reqs  []proto.Message
	)
	batchSize := 1 + rng.Intn(16)
	flush := func() {
		t.Helper()
		if len(batch) == 0 {
			return
		}
		got := f.ApplyBatch(batch)
		for i := range batch {
			if !sameResult(got[i], want[i]) {
				t.Fatalf("seed %d: log index %d (entry %d of a batch of %d): %s\n got  %s\n want %s",
					seed, batch[i].Index, i, len(batch), show(reqs[i]), show(got[i]), show(want[i]))
			}
		}
		if applied := f.AppliedIndex(); applied != batch[len(batch)-1].Index {
			t.Fatalf("seed %d: applied index %d after a batch ending at %d", seed, applied, batch[len(batch)-1].Index)
		}
		batch, want, reqs = batch[:0], want[:0], reqs[:0]
		batchSize = 1 + rng.Intn(16)
	}

	for range n {
		switch p := rng.Intn(100); {
		case p < 20:
			// A read between batches sees every entry applied so far.
			flush()
			r := g.rangeReq(m.rev)
			wantResp, wantErr := m.rangeRead(r)
			gotResp, gotErr := f.Range(r)
			if w, g := rangeResult(wantResp, wantErr), rangeResult(gotResp, gotErr); !sameResult(g, w) {
				t.Fatalf("seed %d: Range %s at revision %d\n got  %s\n want %s", seed, show(r), m.rev, show(g), show(w))
			}
			out.reads++
			if r.GetRevision() > 0 && r.GetRevision() < m.rev && wantErr == nil && wantResp.GetCount() > 0 {
				out.pastReads++
			}
		case p < 25:
			// A read-only txn between batches, answered from the state as
			// a read (ReadTxn), matches what the log would have answered.
			flush()
			r := readOnly(g.txn(m.rev, 0))
			if !ReadOnlyTxn(r) {
				t.Fatalf("seed %d: %s is not read-only", seed, show(r))
			}
			wantRes := m.apply(r)
			gotResp, gotErr := f.ReadTxn(r)
			var got any = gotResp
			if gotErr != nil {
				got = gotErr
			}
			if !sameResult(got, wantRes) {
				t.Fatalf("seed %d: ReadTxn %s at revision %d\n got  %s\n want %s", seed, show(r), m.rev, show(got), show(wantRes))
			}
			out.readTxns++
		case p < 27:
			// Configuration changes only move the applied index.
			batch = append(batch, l.raw(raft.LogConfiguration, nil))
			want = append(want, nil)
			reqs = append(reqs, nil)
			out.configEntries++
		default:
			msg := g.write(m.rev)
			res := m.apply(msg)
			batch = append(batch, l.command(msg))
			want = append(want, res)
			reqs = append(reqs, msg)
			out.count(msg, res)
		}
		if len(batch) >= batchSize {
			flush()
		}
	}
	flush()

	// The final state, at the current revision and at past ones.
	if got := f.Revision(); got != m.rev {
		t.Fatalf("seed %d: revision %d, model %d", seed, got, m.rev)
	}
	st := mustStats(t, f)
	keys, err := f.KeyCount()
	if err != nil {
		t.Fatal(err)
	}
	if live := len(m.liveAt([]byte{0}, []byte{0}, m.rev)); keys != live || st.Revision != m.rev || st.AppliedIndex != l.nextIndex()-1 {
		t.Fatalf("seed %d: stats %+v and %d keys; model has %d keys at revision %d, last index %d", seed, st, keys, live, m.rev, l.nextIndex()-1)
	}
	for rev := int64(1); rev <= m.rev; rev++ {
		if rev%7 != 0 && rev < m.rev-20 {
			continue // every 7th revision and the last 20, to stay quick
		}
		r := rangeAll(rev)
		wantResp, _ := m.rangeRead(r)
		if got := mustRange(t, f, r); !proto.Equal(got, wantResp) {
			t.Fatalf("seed %d: full range at revision %d of %d\n got  %s\n want %s", seed, rev, m.rev, show(got), show(wantResp))
		}
	}

	t.Logf("seed %d: %d revisions, %+v", seed, m.rev, out)
	if out.readTxns < 20 || out.puts < 100 || out.deletes < 50 || out.txnsSucceeded < 50 || out.txnsFailed < 50 || out.nestedTxns < 10 ||
		out.pastReads < 50 || out.configEntries < 10 ||
		out.errs[ErrDuplicateKey.Error()] < 10 || out.errs[ErrFutureRevision.Error()] < 5 || len(out.errs) < 5 {
		t.Fatalf("seed %d: the generator missed paths: %+v", seed, out)
	}
}

func (o *randomOutcomes) count(msg proto.Message, res any) {
	if err, ok := res.(error); ok {
		o.errs[err.Error()]++
		return
	}
	switch r := res.(type) {
	case *kvv1.PutResponse:
		o.puts++
	case *kvv1.DeleteRangeResponse:
		if r.GetDeleted() > 0 {
			o.deletes++
		}
	case *kvv1.TxnResponse:
		if r.GetSucceeded() {
			o.txnsSucceeded++
		} else {
			o.txnsFailed++
		}
		for _, op := range r.GetResponses() {
			if op.GetResponseTxn() != nil {
				o.nestedTxns++
			}
		}
	}
}

// opGen generates random commands over a small key space, so that commands
// often touch the same keys. The keys include the bytes the history encoding
// escapes.
type opGen struct {
	rng    *rand.Rand
	values int
}

var genKeys = []string{"a", "a/1", "a/2", "a\x00", "a\x00\x01", "b", "b/1", "c", "\x00", "\x00\xff", "\xff", "\xff\x00"}

func (g *opGen) key() []byte { return []byte(genKeys[g.rng.Intn(len(genKeys))]) }

// keyRange returns a key and range end: one key, a prefix, two keys of the
// key space, or every key from one on.
func (g *opGen) keyRange() (key, end []byte) {
	key = g.key()
	switch p := g.rng.Intn(100); {
	case p < 40:
		return key, nil
	case p < 60:
		return key, PrefixEnd(key)
	case p < 85:
		end = g.key()
		switch c := string(key); {
		case c < string(end):
			return key, end
		case c > string(end):
			return end, key
		}
		return key, nil
	}
	return key, []byte{0}
}

// value returns one of a few shared values, so value compares sometimes
// match, or a fresh one.
func (g *opGen) value() []byte {
	if g.rng.Intn(2) == 0 {
		return []byte([]string{"x", "y", "z"}[g.rng.Intn(3)])
	}
	g.values++
	return fmt.Appendf(nil, "v%d", g.values)
}

// rev returns a read revision: current, a past one, or rarely a future one.
func (g *opGen) rev(cur int64) int64 {
	switch p := g.rng.Intn(100); {
	case p < 35:
		return 0
	case p < 97:
		return 1 + g.rng.Int63n(cur)
	}
	return cur + 1 + g.rng.Int63n(2)
}

func (g *opGen) put() *kvv1.PutRequest {
	return &kvv1.PutRequest{Key: g.key(), Value: g.value(), PrevKv: g.rng.Intn(3) == 0}
}

func (g *opGen) del() *kvv1.DeleteRangeRequest {
	k, end := g.keyRange()
	return &kvv1.DeleteRangeRequest{Key: k, RangeEnd: end, PrevKv: g.rng.Intn(2) == 0}
}

func (g *opGen) rangeReq(cur int64) *kvv1.RangeRequest {
	k, end := g.keyRange()
	r := &kvv1.RangeRequest{Key: k, RangeEnd: end, Revision: g.rev(cur)}
	if g.rng.Intn(4) == 0 {
		r.Limit = 1 + g.rng.Int63n(3)
	}
	r.KeysOnly = g.rng.Intn(6) == 0
	r.CountOnly = g.rng.Intn(8) == 0
	return r
}

func (g *opGen) compare(cur int64) *kvv1.Compare {
	c := &kvv1.Compare{Key: g.key(), Result: []kvv1.Compare_CompareResult{eq, ne, gt, lt}[g.rng.Intn(4)]}
	if g.rng.Intn(5) == 0 {
		c.Key, c.RangeEnd = g.keyRange()
	}
	switch g.rng.Intn(5) {
	case 0:
		c.Target, c.TargetUnion = kvv1.Compare_COMPARE_TARGET_VALUE, &kvv1.Compare_Value{Value: g.value()}
	case 1:
		c.Target, c.TargetUnion = kvv1.Compare_COMPARE_TARGET_VERSION, &kvv1.Compare_Version{Version: g.rng.Int63n(4)}
	case 2:
		c.Target, c.TargetUnion = kvv1.Compare_COMPARE_TARGET_CREATE, &kvv1.Compare_CreateRevision{CreateRevision: g.rng.Int63n(cur + 1)}
	case 3:
		c.Target, c.TargetUnion = kvv1.Compare_COMPARE_TARGET_MOD, &kvv1.Compare_ModRevision{ModRevision: g.rng.Int63n(cur + 1)}
	case 4:
		c.Target, c.TargetUnion = kvv1.Compare_COMPARE_TARGET_LEASE, &kvv1.Compare_Lease{Lease: g.rng.Int63n(3) - 1}
	}
	return c
}

func (g *opGen) txn(cur int64, depth int) *kvv1.TxnRequest {
	r := &kvv1.TxnRequest{}
	for range g.rng.Intn(3) {
		r.Compare = append(r.Compare, g.compare(cur))
	}
	branch := func() []*kvv1.RequestOp {
		var b []*kvv1.RequestOp
		for range g.rng.Intn(4) {
			switch p := g.rng.Intn(100); {
			case p < 35:
				b = append(b, opPut(g.put()))
			case p < 55:
				b = append(b, opDel(g.del()))
			case p < 88 || depth > 0:
				b = append(b, opGet(g.rangeReq(cur)))
			default:
				b = append(b, opTxn(g.txn(cur, depth+1)))
			}
		}
		return b
	}
	r.Success, r.Failure = branch(), branch()
	return r
}

// readOnly drops the writes of r's branches, nested txns' included.
func readOnly(r *kvv1.TxnRequest) *kvv1.TxnRequest {
	keep := func(ops []*kvv1.RequestOp) []*kvv1.RequestOp {
		var out []*kvv1.RequestOp
		for _, op := range ops {
			switch o := op.GetRequest().(type) {
			case *kvv1.RequestOp_RequestRange:
				out = append(out, op)
			case *kvv1.RequestOp_RequestTxn:
				out = append(out, opTxn(readOnly(o.RequestTxn)))
			}
		}
		return out
	}
	r.Success, r.Failure = keep(r.Success), keep(r.Failure)
	return r
}

// invalid returns a command that validation rejects.
func (g *opGen) invalid() proto.Message {
	switch g.rng.Intn(5) {
	case 0:
		return &kvv1.PutRequest{Value: g.value()}
	case 1:
		return &kvv1.PutRequest{Key: g.key(), Lease: 1 + g.rng.Int63n(5)}
	case 2:
		return &kvv1.DeleteRangeRequest{Key: []byte("b"), RangeEnd: []byte("a")}
	case 3:
		return txn(cmps(cmpVersion("a", none, 0)), ops(opPut(g.put())), nil)
	}
	return txn(nil, ops(opPut(g.put()), opGet(&kvv1.RangeRequest{Key: g.key(), Limit: -1})), nil)
}

// write returns a random command for the log.
func (g *opGen) write(cur int64) proto.Message {
	switch p := g.rng.Intn(100); {
	case p < 40:
		return g.put()
	case p < 57:
		return g.del()
	case p < 97:
		return g.txn(cur, 0)
	}
	return g.invalid()
}
