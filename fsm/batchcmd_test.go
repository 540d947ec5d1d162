package fsm

import (
	"testing"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// A batch must apply exactly as its commands would in entries of their own:
// the same results (revisions included), the same state.
func TestBatchCommandAppliesLikeSeparateEntries(t *testing.T) {
	cmds := []proto.Message{
		put("a", "1"),
		putPrev("a", "2"),
		put("", "empty key"), // a domain error, which changes nothing
		put("b", "1"),
		del("zzz", ""), // deletes nothing: no new revision
		txn(cmps(cmpValue("a", kvv1.Compare_COMPARE_RESULT_EQUAL, "2")),
			ops(opPut(put("c", "1")), opDel(del("b", ""))), nil),
		txn(cmps(cmpValue("a", kvv1.Compare_COMPARE_RESULT_EQUAL, "nope")), nil,
			ops(opGet(get("a", "")))),
		delPrev("a", "b"),
	}

	separate := newFSM(t)
	sepLog := newTestLog(t)
	var want []any
	for _, c := range cmds {
		want = append(want, sepLog.applyOne(separate, c))
	}

	batched := newFSM(t)
	batchLog := newTestLog(t)
	encoded := make([][]byte, len(cmds))
	for i, c := range cmds {
		var err error
		if encoded[i], err = EncodeCommand(commandType(t, c), c); err != nil {
			t.Fatal(err)
		}
	}
	// Two batches, so that the second starts from the first's revision.
	var got []any
	for _, part := range [][][]byte{encoded[:3], encoded[3:]} {
		data, err := EncodeBatch(part)
		if err != nil {
			t.Fatal(err)
		}
		res := batched.ApplyBatch([]*raft.Log{batchLog.raw(raft.LogCommand, data)})[0]
		br, ok := res.(BatchResult)
		if !ok || len(br) != len(part) {
			t.Fatalf("a batch of %d answered %T (%v)", len(part), res, res)
		}
		got = append(got, br...)
	}

	for i := range cmds {
		if !sameResult(got[i], want[i]) {
			t.Errorf("command %d: batched %s, separate %s", i, show(got[i]), show(want[i]))
		}
	}
	if hs, hb := mustHash(t, separate), mustHash(t, batched); hs != hb {
		t.Errorf("state hash %08x when separate, %08x when batched", hs, hb)
	}
	if rs, rb := separate.Revision(), batched.Revision(); rs != rb || rs == 0 {
		t.Errorf("revision %d when separate, %d when batched", rs, rb)
	}
}

func TestBatchInsideABatchStopsTheFSM(t *testing.T) {
	f := newFSM(t)
	l := newTestLog(t)
	inner, err := EncodeBatch([][]byte{mustEncode(t, put("a", "1"))})
	if err != nil {
		t.Fatal(err)
	}
	outer, err := EncodeBatch([][]byte{mustEncode(t, put("b", "1")), inner})
	if err != nil {
		t.Fatal(err)
	}
	_, panicked := applyRecovering(f, []*raft.Log{l.raw(raft.LogCommand, outer)})
	if panicked == nil {
		t.Fatal("a batch inside a batch was applied; want the FSM to stop")
	}
	if _, err := f.Range(get("b", "")); err == nil {
		t.Error("the FSM still serves reads after a failed apply")
	}
}

func TestFeaturesNameBatchCommands(t *testing.T) {
	m := &fsmv1.MemberAttributes{Name: "n1", Features: Features()}
	if !HasFeature(m, FeatureBatchCommands) {
		t.Errorf("Features() = %q lacks %q", Features(), FeatureBatchCommands)
	}
	if HasFeature(&fsmv1.MemberAttributes{Name: "old"}, FeatureBatchCommands) || HasFeature(nil, FeatureBatchCommands) {
		t.Error("a member that published no features has one")
	}
}

func mustEncode(t *testing.T, msg proto.Message) []byte {
	t.Helper()
	data, err := EncodeCommand(commandType(t, msg), msg)
	if err != nil {
		t.Fatal(err)
	}
	return data
}
