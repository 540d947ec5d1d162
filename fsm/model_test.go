package fsm

import (
	"bytes"
	"cmp"
	"fmt"
	"maps"
	"slices"
	"testing"

	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// model is a reference implementation of the etcd v3 semantics the FSM
// implements, written for obviousness rather than speed: every key keeps the
// list of its versions, and every read walks them.
type model struct {
	rev     int64
	history map[string][]modelVersion
}

// modelVersion is what one revision did to a key.
type modelVersion struct {
	rev int64
	kv  *kvv1.KeyValue // nil when the key was deleted at rev
}

func newModel() *model { return &model{rev: 1, history: map[string][]modelVersion{}} }

// at returns the key as it was at rev, or nil when it did not exist.
func (m *model) at(key string, rev int64) *kvv1.KeyValue {
	var found *kvv1.KeyValue
	for _, v := range m.history[key] {
		if v.rev > rev {
			break
		}
		found = v.kv
	}
	return found
}

// selects reports whether a request's key and range end name k.
func selects(k string, key, end []byte) bool {
	switch {
	case len(end) == 0:
		return k == string(key)
	case string(end) == "\x00":
		return k >= string(key)
	}
	return k >= string(key) && k < string(end)
}

// liveAt returns copies of the keys in [key, end) that existed at rev, in
// key order.
func (m *model) liveAt(key, end []byte, rev int64) []*kvv1.KeyValue {
	var out []*kvv1.KeyValue
	for _, k := range slices.Sorted(maps.Keys(m.history)) {
		if !selects(k, key, end) {
			continue
		}
		if kv := m.at(k, rev); kv != nil {
			out = append(out, proto.CloneOf(kv))
		}
	}
	return out
}

// apply returns what ApplyBatch should return for msg, and applies it.
func (m *model) apply(msg proto.Message) any {
	x := &modelTxn{m: m}
	switch r := msg.(type) {
	case *kvv1.PutRequest:
		if err := modelCheckPut(r); err != nil {
			return err
		}
		resp := x.put(r)
		resp.Header = hdr(m.rev)
		return resp
	case *kvv1.DeleteRangeRequest:
		if err := modelCheckKeyRange(r.GetKey(), r.GetRangeEnd()); err != nil {
			return err
		}
		resp := x.deleteRange(r)
		resp.Header = hdr(m.rev)
		return resp
	case *kvv1.TxnRequest:
		if err := modelCheckTxn(r); err != nil {
			return err
		}
		if m.readsFuture(r) {
			return ErrFutureRevision
		}
		resp := x.txn(r)
		resp.Header = hdr(m.rev)
		return resp
	}
	panic(fmt.Sprintf("model cannot apply %T", msg))
}

// rangeRead answers a Range outside a transaction.
func (m *model) rangeRead(r *kvv1.RangeRequest) (*kvv1.RangeResponse, error) {
	if err := modelCheckRange(r); err != nil {
		return nil, err
	}
	if r.GetRevision() > m.rev {
		return nil, ErrFutureRevision
	}
	resp := m.read(r)
	resp.Header = hdr(m.rev)
	return resp, nil
}

// read answers a range without a header.
func (m *model) read(r *kvv1.RangeRequest) *kvv1.RangeResponse {
	rev := r.GetRevision()
	if rev <= 0 {
		rev = m.rev
	}
	resp := &kvv1.RangeResponse{}
	for _, kv := range m.liveAt(r.GetKey(), r.GetRangeEnd(), rev) {
		resp.Count++
		switch {
		case r.GetCountOnly():
		case r.GetLimit() > 0 && int64(len(resp.Kvs)) == r.GetLimit():
			resp.More = true
		default:
			if r.GetKeysOnly() {
				kv.Value = nil
			}
			resp.Kvs = append(resp.Kvs, kv)
		}
	}
	return resp
}

// readsFuture reports whether any range in either branch of r, nested ones
// included, names a revision after the current one.
func (m *model) readsFuture(r *kvv1.TxnRequest) bool {
	for _, op := range slices.Concat(r.GetSuccess(), r.GetFailure()) {
		if op.GetRequestRange().GetRevision() > m.rev {
			return true
		}
		if t := op.GetRequestTxn(); t != nil && m.readsFuture(t) {
			return true
		}
	}
	return false
}

// modelTxn applies one command; all its writes share one revision, taken on
// the first write.
type modelTxn struct {
	m   *model
	rev int64
}

func (x *modelTxn) writeRev() int64 {
	if x.rev == 0 {
		x.m.rev++
		x.rev = x.m.rev
	}
	return x.rev
}

func (x *modelTxn) put(r *kvv1.PutRequest) *kvv1.PutResponse {
	key := string(r.GetKey())
	prev := x.m.at(key, x.m.rev)
	rev := x.writeRev()
	next := &kvv1.KeyValue{Key: r.GetKey(), Value: r.GetValue(), CreateRevision: rev, ModRevision: rev, Version: 1}
	resp := &kvv1.PutResponse{}
	if prev != nil {
		next.CreateRevision = prev.GetCreateRevision()
		next.Version = prev.GetVersion() + 1
		if r.GetPrevKv() {
			resp.PrevKv = proto.CloneOf(prev)
		}
	}
	x.m.history[key] = append(x.m.history[key], modelVersion{rev: rev, kv: next})
	return resp
}

func (x *modelTxn) deleteRange(r *kvv1.DeleteRangeRequest) *kvv1.DeleteRangeResponse {
	doomed := x.m.liveAt(r.GetKey(), r.GetRangeEnd(), x.m.rev)
	resp := &kvv1.DeleteRangeResponse{Deleted: int64(len(doomed))}
	if len(doomed) == 0 {
		return resp
	}
	rev := x.writeRev()
	for _, kv := range doomed {
		key := string(kv.GetKey())
		x.m.history[key] = append(x.m.history[key], modelVersion{rev: rev})
	}
	if r.GetPrevKv() {
		resp.PrevKvs = doomed
	}
	return resp
}

// txn applies r as etcd does: every compare, nested ones included, is
// evaluated against the state before the command, and only then do the
// chosen branches run.
func (x *modelTxn) txn(r *kvv1.TxnRequest) *kvv1.TxnResponse {
	path := x.m.path(r, nil)
	return x.txnAlong(r, &path)
}

// path evaluates the compares of r and of the nested transactions on the
// branch they choose, in the order txnAlong consumes them.
func (m *model) path(r *kvv1.TxnRequest, out []bool) []bool {
	held := true
	for _, c := range r.GetCompare() {
		held = held && m.holds(c)
	}
	out = append(out, held)
	branch := r.GetSuccess()
	if !held {
		branch = r.GetFailure()
	}
	for _, op := range branch {
		if t := op.GetRequestTxn(); t != nil {
			out = m.path(t, out)
		}
	}
	return out
}

func (x *modelTxn) txnAlong(r *kvv1.TxnRequest, path *[]bool) *kvv1.TxnResponse {
	held := (*path)[0]
	*path = (*path)[1:]
	branch := r.GetSuccess()
	if !held {
		branch = r.GetFailure()
	}
	resp := &kvv1.TxnResponse{Succeeded: held}
	for _, op := range branch {
		var out *kvv1.ResponseOp
		switch {
		case op.GetRequestRange() != nil:
			out = &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseRange{ResponseRange: x.m.read(op.GetRequestRange())}}
		case op.GetRequestPut() != nil:
			out = &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponsePut{ResponsePut: x.put(op.GetRequestPut())}}
		case op.GetRequestDeleteRange() != nil:
			out = &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: x.deleteRange(op.GetRequestDeleteRange())}}
		case op.GetRequestTxn() != nil:
			out = &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseTxn{ResponseTxn: x.txnAlong(op.GetRequestTxn(), path)}}
		}
		resp.Responses = append(resp.Responses, out)
	}
	return resp
}

// holds evaluates a compare against the current state: over a range every
// key must match; an absent key fails a value compare and is zero otherwise.
func (m *model) holds(c *kvv1.Compare) bool {
	kvs := m.liveAt(c.GetKey(), c.GetRangeEnd(), m.rev)
	if len(kvs) == 0 {
		if c.GetTarget() == kvv1.Compare_COMPARE_TARGET_VALUE {
			return false
		}
		kvs = []*kvv1.KeyValue{{}}
	}
	for _, kv := range kvs {
		var d int
		switch c.GetTarget() {
		case kvv1.Compare_COMPARE_TARGET_VALUE:
			d = bytes.Compare(kv.GetValue(), c.GetValue())
		case kvv1.Compare_COMPARE_TARGET_VERSION:
			d = cmp.Compare(kv.GetVersion(), c.GetVersion())
		case kvv1.Compare_COMPARE_TARGET_CREATE:
			d = cmp.Compare(kv.GetCreateRevision(), c.GetCreateRevision())
		case kvv1.Compare_COMPARE_TARGET_MOD:
			d = cmp.Compare(kv.GetModRevision(), c.GetModRevision())
		case kvv1.Compare_COMPARE_TARGET_LEASE:
			d = cmp.Compare(kv.GetLease(), c.GetLease())
		}
		ok := map[kvv1.Compare_CompareResult]bool{eq: d == 0, ne: d != 0, gt: d > 0, lt: d < 0}[c.GetResult()]
		if !ok {
			return false
		}
	}
	return true
}

// step is one request of a semantics case: a write applied through
// ApplyBatch, or a *kvv1.RangeRequest read with Range. want is the expected
// response, or the sentinel error it must match.
type step struct {
	req  proto.Message
	want any
}

// runSteps runs steps against a fresh FSM and a fresh model, and checks both
// against every step's expectation, so the hand-written expectations pin down
// the model that the randomized test trusts.
func runSteps(t *testing.T, steps []step) {
	t.Helper()
	f, m, l := newFSM(t), newModel(), newTestLog(t)
	for i, s := range steps {
		var got, fromModel any
		if r, ok := s.req.(*kvv1.RangeRequest); ok {
			got, fromModel = rangeResult(f.Range(r)), rangeResult(m.rangeRead(r))
		} else {
			rev, hash := f.Revision(), mustHash(t, f)
			got, fromModel = l.applyOne(f, s.req), m.apply(s.req)
			if f.AppliedIndex() != l.nextIndex()-1 {
				t.Errorf("step %d: applied index %d, want %d", i, f.AppliedIndex(), l.nextIndex()-1)
			}
			if _, failed := got.(error); failed {
				// A rejected command writes nothing.
				if r, h := f.Revision(), mustHash(t, f); r != rev || h != hash {
					t.Errorf("step %d: rejected command changed the state: revision %d -> %d, hash %08x -> %08x", i, rev, r, hash, h)
				}
			}
		}
		if !sameResult(got, s.want) {
			t.Errorf("step %d: %T %s\n got  %s\n want %s", i, s.req, show(s.req), show(got), show(s.want))
		}
		if !sameResult(fromModel, s.want) {
			t.Errorf("step %d: model disagrees with the expectation: %T %s\n model %s\n want  %s", i, s.req, show(s.req), show(fromModel), show(s.want))
		}
	}
}

// rangeResult turns Range's two results into one, as ApplyBatch returns them.
func rangeResult(resp *kvv1.RangeResponse, err error) any {
	if err != nil {
		return err
	}
	return resp
}

func TestApplySemantics(t *testing.T) {
	tests := []struct {
		name  string
		steps []step
	}{
		{name: "put then get", steps: []step{
			{get("a", ""), rangeResp(1)},
			{put("a", "1"), putResp(2, nil)},
			{get("a", ""), rangeResp(2, kv("a", "1", 2, 2, 1))},
			{get("b", ""), rangeResp(2)},
		}},
		{name: "overwrite bumps version and mod revision", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{put("a", "2"), putResp(3, nil)},
			{put("b", "1"), putResp(4, nil)},
			{put("a", "3"), putResp(5, nil)},
			{get("a", ""), rangeResp(5, kv("a", "3", 2, 5, 3))},
		}},
		{name: "delete and recreate", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{put("a", "2"), putResp(3, nil)},
			{del("a", ""), delResp(4, 1)},
			{get("a", ""), rangeResp(4)},
			{put("a", "3"), putResp(5, nil)},
			{get("a", ""), rangeResp(5, kv("a", "3", 5, 5, 1))},
		}},
		{name: "delete of a missing key keeps the revision", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{del("b", ""), delResp(2, 0)},
			{delPrev("b", "c"), delResp(2, 0)},
			{put("c", "1"), putResp(3, nil)},
		}},
		{name: "put prev_kv", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{putPrev("a", "2"), putResp(3, kv("a", "1", 2, 2, 1))},
			{putPrev("b", "1"), putResp(4, nil)},
			{put("a", "3"), putResp(5, nil)},
		}},
		{name: "delete prev_kv", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{put("b", "2"), putResp(3, nil)},
			{put("c", "3"), putResp(4, nil)},
			{delPrev("a", "c"), delResp(5, 2, kv("a", "1", 2, 2, 1), kv("b", "2", 3, 3, 1))},
			{del("c", ""), delResp(6, 1)},
			{get("\x00", "\x00"), rangeResp(6)},
		}},
		{name: "range prefix", steps: []step{
			{put("fo", "1"), putResp(2, nil)},
			{put("foo", "2"), putResp(3, nil)},
			{put("foo/a", "3"), putResp(4, nil)},
			{put("foo/b", "4"), putResp(5, nil)},
			{put("fop", "5"), putResp(6, nil)},
			{get("foo/", string(PrefixEnd([]byte("foo/")))), rangeResp(6, kv("foo/a", "3", 4, 4, 1), kv("foo/b", "4", 5, 5, 1))},
			{get("foo", string(PrefixEnd([]byte("foo")))), rangeResp(6, kv("foo", "2", 3, 3, 1), kv("foo/a", "3", 4, 4, 1), kv("foo/b", "4", 5, 5, 1))},
		}},
		{name: "range end is exclusive", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{put("b", "2"), putResp(3, nil)},
			{put("c", "3"), putResp(4, nil)},
			{put("d", "4"), putResp(5, nil)},
			{get("b", "d"), rangeResp(5, kv("b", "2", 3, 3, 1), kv("c", "3", 4, 4, 1))},
			{get("b", "c\x00"), rangeResp(5, kv("b", "2", 3, 3, 1), kv("c", "3", 4, 4, 1))},
		}},
		{name: "from key and all keys", steps: []step{
			{put("\x00", "z"), putResp(2, nil)},
			{put("a", "1"), putResp(3, nil)},
			{put("b", "2"), putResp(4, nil)},
			{put("\xff", "f"), putResp(5, nil)},
			{get("b", "\x00"), rangeResp(5, kv("b", "2", 4, 4, 1), kv("\xff", "f", 5, 5, 1))},
			{get("\x00", "\x00"), rangeResp(5, kv("\x00", "z", 2, 2, 1), kv("a", "1", 3, 3, 1), kv("b", "2", 4, 4, 1), kv("\xff", "f", 5, 5, 1))},
		}},
		{name: "keys with zero and ff bytes", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{put("a\x00", "2"), putResp(3, nil)},
			{put("a\x00\x01", "3"), putResp(4, nil)},
			{put("a\xff", "4"), putResp(5, nil)},
			{del("a\x00", ""), delResp(6, 1)},
			{getAt("a", "", 5), rangeResp(6, kv("a", "1", 2, 2, 1))},
			{getAt("a\x00", "", 5), rangeResp(6, kv("a\x00", "2", 3, 3, 1))},
			{getAt("a\x00", "", 6), rangeResp(6)},
			{getAt("a", "b", 5), rangeResp(6, kv("a", "1", 2, 2, 1), kv("a\x00", "2", 3, 3, 1), kv("a\x00\x01", "3", 4, 4, 1), kv("a\xff", "4", 5, 5, 1))},
			{getAt("a\x00", "a\xff", 5), rangeResp(6, kv("a\x00", "2", 3, 3, 1), kv("a\x00\x01", "3", 4, 4, 1))},
			{get("a", "b"), rangeResp(6, kv("a", "1", 2, 2, 1), kv("a\x00\x01", "3", 4, 4, 1), kv("a\xff", "4", 5, 5, 1))},
		}},
		{name: "limit more and count", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{put("b", "2"), putResp(3, nil)},
			{put("c", "3"), putResp(4, nil)},
			{&kvv1.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), Limit: 2},
				&kvv1.RangeResponse{Header: hdr(4), Kvs: []*kvv1.KeyValue{kv("a", "1", 2, 2, 1), kv("b", "2", 3, 3, 1)}, More: true, Count: 3}},
			{&kvv1.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), Limit: 3}, rangeResp(4, kv("a", "1", 2, 2, 1), kv("b", "2", 3, 3, 1), kv("c", "3", 4, 4, 1))},
			{&kvv1.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), Limit: 9}, rangeResp(4, kv("a", "1", 2, 2, 1), kv("b", "2", 3, 3, 1), kv("c", "3", 4, 4, 1))},
			{&kvv1.RangeRequest{Key: []byte("a"), RangeEnd: []byte("\x00"), Limit: 1, Revision: 3},
				&kvv1.RangeResponse{Header: hdr(4), Kvs: []*kvv1.KeyValue{kv("a", "1", 2, 2, 1)}, More: true, Count: 2}},
		}},
		{name: "keys only and count only", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{put("b", "2"), putResp(3, nil)},
			{&kvv1.RangeRequest{Key: []byte("a"), RangeEnd: []byte("c"), KeysOnly: true}, rangeResp(3, kv("a", "", 2, 2, 1), kv("b", "", 3, 3, 1))},
			{&kvv1.RangeRequest{Key: []byte("a"), RangeEnd: []byte("c"), KeysOnly: true, Revision: 2}, rangeResp(3, kv("a", "", 2, 2, 1))},
			{&kvv1.RangeRequest{Key: []byte("a"), RangeEnd: []byte("c"), CountOnly: true}, &kvv1.RangeResponse{Header: hdr(3), Count: 2}},
			{&kvv1.RangeRequest{Key: []byte("a"), RangeEnd: []byte("c"), CountOnly: true, Limit: 1}, &kvv1.RangeResponse{Header: hdr(3), Count: 2}},
			{&kvv1.RangeRequest{Key: []byte("a"), RangeEnd: []byte("c"), CountOnly: true, Revision: 2}, &kvv1.RangeResponse{Header: hdr(3), Count: 1}},
		}},
		{name: "reads at past revisions", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{put("b", "1"), putResp(3, nil)},
			{put("a", "2"), putResp(4, nil)},
			{del("b", ""), delResp(5, 1)},
			{put("c", "1"), putResp(6, nil)},
			{getAt("\x00", "\x00", 1), rangeResp(6)},
			{getAt("\x00", "\x00", 2), rangeResp(6, kv("a", "1", 2, 2, 1))},
			{getAt("\x00", "\x00", 3), rangeResp(6, kv("a", "1", 2, 2, 1), kv("b", "1", 3, 3, 1))},
			{getAt("\x00", "\x00", 4), rangeResp(6, kv("a", "2", 2, 4, 2), kv("b", "1", 3, 3, 1))},
			{getAt("\x00", "\x00", 5), rangeResp(6, kv("a", "2", 2, 4, 2))},
			{getAt("\x00", "\x00", 6), rangeResp(6, kv("a", "2", 2, 4, 2), kv("c", "1", 6, 6, 1))},
			{getAt("\x00", "\x00", 0), rangeResp(6, kv("a", "2", 2, 4, 2), kv("c", "1", 6, 6, 1))},
			{getAt("\x00", "\x00", -1), rangeResp(6, kv("a", "2", 2, 4, 2), kv("c", "1", 6, 6, 1))},
			// A key deleted later, and a key created later.
			{getAt("b", "", 4), rangeResp(6, kv("b", "1", 3, 3, 1))},
			{getAt("c", "", 5), rangeResp(6)},
			{getAt("a", "", 3), rangeResp(6, kv("a", "1", 2, 2, 1))},
		}},
		{name: "past revision of a recreated key", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{del("a", ""), delResp(3, 1)},
			{put("a", "2"), putResp(4, nil)},
			{getAt("a", "", 2), rangeResp(4, kv("a", "1", 2, 2, 1))},
			{getAt("a", "", 3), rangeResp(4)},
			{getAt("a", "", 4), rangeResp(4, kv("a", "2", 4, 4, 1))},
		}},
		{name: "future revision", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{getAt("a", "", 3), ErrFutureRevision},
			{getAt("\x00", "\x00", 100), ErrFutureRevision},
			// A txn that would read the future is rejected whole, even in
			// the branch that does not run.
			{txn(nil, ops(opPut(put("b", "1"))), ops(opGet(getAt("a", "", 3)))), ErrFutureRevision},
			{txn(nil, ops(opTxn(txn(nil, nil, ops(opGet(getAt("a", "", 3)))))), nil), ErrFutureRevision},
			{get("b", ""), rangeResp(2)},
		}},
		{name: "txn success branch", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{txn(cmps(cmpValue("a", eq, "1")), ops(opPut(put("b", "then"))), ops(opPut(put("c", "else")))), txnResp(3, true, rPut(nil))},
			{get("b", "d"), rangeResp(3, kv("b", "then", 3, 3, 1))},
		}},
		{name: "txn failure branch", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{txn(cmps(cmpValue("a", eq, "1"), cmpVersion("a", eq, 2)), ops(opPut(put("b", "then"))), ops(opPut(put("c", "else")))), txnResp(3, false, rPut(nil))},
			{get("b", "d"), rangeResp(3, kv("c", "else", 3, 3, 1))},
		}},
		{name: "txn that writes nothing keeps the revision", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{txn(nil, nil, nil), txnResp(2, true)},
			{txn(cmps(cmpVersion("a", eq, 5)), ops(opPut(put("b", "1"))), nil), txnResp(2, false)},
			{txn(nil, ops(opGet(get("a", "")), opDel(del("zz", ""))), nil), txnResp(2, true, rGet(kv("a", "1", 2, 2, 1)), rDel(0))},
			{put("b", "1"), putResp(3, nil)},
		}},
		{name: "compare on absent key", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{txn(cmps(cmpValue("x", eq, "")), nil, nil), txnResp(2, false)},
			{txn(cmps(cmpValue("x", ne, "v")), nil, nil), txnResp(2, false)},
			{txn(cmps(cmpValue("x", lt, "v")), nil, nil), txnResp(2, false)},
			{txn(cmps(cmpVersion("x", eq, 0)), nil, nil), txnResp(2, true)},
			{txn(cmps(cmpVersion("x", gt, 0)), nil, nil), txnResp(2, false)},
			{txn(cmps(cmpCreate("x", eq, 0)), nil, nil), txnResp(2, true)},
			{txn(cmps(cmpMod("x", lt, 1)), nil, nil), txnResp(2, true)},
			{txn(cmps(cmpLease("x", eq, 0)), nil, nil), txnResp(2, true)},
			// A deleted key is absent too.
			{del("a", ""), delResp(3, 1)},
			{txn(cmps(cmpVersion("a", eq, 0), cmpCreate("a", eq, 0)), nil, nil), txnResp(3, true)},
			{txn(cmps(cmpValue("a", eq, "1")), nil, nil), txnResp(3, false)},
		}},
		{name: "compare over a range", steps: []step{
			{put("p/1", "x"), putResp(2, nil)},
			{put("p/2", "x"), putResp(3, nil)},
			{put("p/2", "y"), putResp(4, nil)},
			{txn(cmps(withEnd(cmpVersion("p/", gt, 0), "p0")), nil, nil), txnResp(4, true)},
			{txn(cmps(withEnd(cmpVersion("p/", eq, 1), "p0")), nil, nil), txnResp(4, false)},
			{txn(cmps(withEnd(cmpVersion("p/1", eq, 1), "p/2")), nil, nil), txnResp(4, true)},
			{txn(cmps(withEnd(cmpValue("p/", eq, "x"), "p0")), nil, nil), txnResp(4, false)},
			{txn(cmps(withEnd(cmpValue("p/", ne, "z"), "p0")), nil, nil), txnResp(4, true)},
			{txn(cmps(withEnd(cmpMod("p/2", eq, 4), "\x00")), nil, nil), txnResp(4, true)},
			{txn(cmps(withEnd(cmpMod("p/", lt, 4), "\x00")), nil, nil), txnResp(4, false)},
			// No key in the range: absent.
			{txn(cmps(withEnd(cmpValue("q/", eq, ""), "q0")), nil, nil), txnResp(4, false)},
			{txn(cmps(withEnd(cmpVersion("q/", eq, 0), "q0")), nil, nil), txnResp(4, true)},
		}},
		{name: "txn reads its own writes", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{put("c", "1"), putResp(3, nil)},
			{txn(nil, ops(
				opPut(putPrev("a", "2")),
				opGet(get("a", "")),
				opPut(put("b", "1")),
				opGet(get("a", "c")),
				opDel(delPrev("c", "")),
				opGet(get("a", "\x00")),
				opGet(getAt("a", "\x00", 3)),
			), nil), txnResp(4, true,
				rPut(kv("a", "1", 2, 2, 1)),
				rGet(kv("a", "2", 2, 4, 2)),
				rPut(nil),
				rGet(kv("a", "2", 2, 4, 2), kv("b", "1", 4, 4, 1)),
				rDel(1, kv("c", "1", 3, 3, 1)),
				rGet(kv("a", "2", 2, 4, 2), kv("b", "1", 4, 4, 1)),
				rGet(kv("a", "1", 2, 2, 1), kv("c", "1", 3, 3, 1)),
			)},
			{get("\x00", "\x00"), rangeResp(4, kv("a", "2", 2, 4, 2), kv("b", "1", 4, 4, 1))},
		}},
		// As in etcd, nested compares see the state before the command, not
		// the outer branch's writes; ranges do see them.
		{name: "nested compares see the state before the txn", steps: []step{
			{txn(nil, ops(
				opPut(put("a", "1")),
				opTxn(txn(cmps(cmpValue("a", eq, "1")), ops(opPut(put("b", "then"))), ops(opPut(put("b", "else"))))),
				opTxn(txn(cmps(cmpVersion("a", eq, 0)), ops(opPut(put("c", "then")), opGet(get("b", ""))), ops(opPut(put("c", "else"))))),
			), nil), txnResp(2, true,
				rPut(nil),
				rTxn(false, rPut(nil)),
				rTxn(true, rPut(nil), rGet(kv("b", "else", 2, 2, 1))),
			)},
			{get("\x00", "\x00"), rangeResp(2, kv("a", "1", 2, 2, 1), kv("b", "else", 2, 2, 1), kv("c", "then", 2, 2, 1))},
		}},
		{name: "one key in both branches of a nested txn", steps: []step{
			{txn(nil, ops(opTxn(txn(cmps(cmpVersion("a", eq, 0)), ops(opPut(put("a", "t"))), ops(opPut(put("a", "f")))))), nil),
				txnResp(2, true, rTxn(true, rPut(nil)))},
			{txn(nil, ops(opTxn(txn(cmps(cmpVersion("a", eq, 0)), ops(opPut(put("a", "t"))), ops(opPut(putPrev("a", "f")))))), nil),
				txnResp(3, true, rTxn(false, rPut(kv("a", "t", 2, 2, 1))))},
		}},
		{name: "duplicate put", steps: []step{
			{put("a", "0"), putResp(2, nil)},
			{txn(nil, ops(opPut(put("a", "1")), opPut(put("a", "2"))), nil), ErrDuplicateKey},
			{get("a", ""), rangeResp(2, kv("a", "0", 2, 2, 1))},
		}},
		{name: "duplicate put and overlapping delete", steps: []step{
			{put("b", "0"), putResp(2, nil)},
			{txn(nil, ops(opPut(put("b", "1")), opDel(del("a", "c"))), nil), ErrDuplicateKey},
			{txn(nil, ops(opDel(del("a", "\x00")), opPut(put("z", "1"))), nil), ErrDuplicateKey},
			{txn(nil, ops(opDel(del("b", "")), opPut(put("b", "1"))), nil), ErrDuplicateKey},
			{get("\x00", "\x00"), rangeResp(2, kv("b", "0", 2, 2, 1))},
		}},
		{name: "duplicate in the branch that does not run", steps: []step{
			{put("a", "0"), putResp(2, nil)},
			{txn(nil, ops(opPut(put("x", "1"))), ops(opPut(put("b", "1")), opPut(put("b", "2")))), ErrDuplicateKey},
			{get("x", ""), rangeResp(2)},
		}},
		{name: "duplicate between outer and nested txn", steps: []step{
			{put("a", "0"), putResp(2, nil)},
			{txn(nil, ops(opPut(put("a", "1")), opTxn(txn(nil, ops(opDel(del("a", ""))), nil))), nil), ErrDuplicateKey},
			{txn(nil, ops(opTxn(txn(nil, nil, ops(opPut(put("a", "1"))))), opPut(put("a", "2"))), nil), ErrDuplicateKey},
			{txn(nil, ops(opTxn(txn(nil, ops(opPut(put("a", "1"))), nil)), opTxn(txn(nil, nil, ops(opPut(put("a", "2")))))), nil), ErrDuplicateKey},
			{get("a", ""), rangeResp(2, kv("a", "0", 2, 2, 1))},
		}},
		{name: "writes that do not overlap", steps: []step{
			{put("c", "0"), putResp(2, nil)},
			{txn(nil, ops(opPut(put("c", "1")), opDel(del("a", "c")), opDel(del("c\x00", "\x00"))), nil), txnResp(3, true, rPut(nil), rDel(0), rDel(0))},
		}},
		{name: "overlapping deletes are allowed, as in etcd", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{put("b", "2"), putResp(3, nil)},
			{txn(nil, ops(opDel(del("a", "")), opDel(delPrev("a", "c")), opDel(del("a", "")), opDel(del("\x00", "\x00"))), nil),
				txnResp(4, true, rDel(1), rDel(1, kv("b", "2", 3, 3, 1)), rDel(0), rDel(0))},
			{get("\x00", "\x00"), rangeResp(4)},
		}},
		{name: "empty key", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{put("", "v"), ErrEmptyKey},
			{del("", ""), ErrEmptyKey},
			{del("", "b"), ErrEmptyKey},
			{get("", ""), ErrEmptyKey},
			{txn(nil, ops(opPut(put("", "v"))), nil), ErrEmptyKey},
			{txn(cmps(cmpVersion("", eq, 0)), nil, nil), ErrEmptyKey},
		}},
		{name: "bad range end", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{del("b", "a"), ErrInvalidRange},
			{del("b", "b"), ErrInvalidRange},
			{get("b", "a"), ErrInvalidRange},
			{&kvv1.RangeRequest{Key: []byte("a"), Limit: -1}, ErrInvalidRange},
			{txn(nil, ops(opDel(del("b", "a"))), nil), ErrInvalidRange},
			{txn(nil, nil, ops(opGet(get("b", "a")))), ErrInvalidRange},
			{txn(cmps(withEnd(cmpVersion("b", eq, 0), "a")), nil, nil), ErrInvalidRange},
		}},
		{name: "lease is rejected", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{&kvv1.PutRequest{Key: []byte("a"), Value: []byte("2"), Lease: 7}, ErrLeaseNotFound},
			{txn(nil, ops(opPut(&kvv1.PutRequest{Key: []byte("b"), Lease: 7})), nil), ErrLeaseNotFound},
			{get("a", ""), rangeResp(2, kv("a", "1", 2, 2, 1))},
		}},
		{name: "invalid txn", steps: []step{
			{put("a", "1"), putResp(2, nil)},
			{txn(cmps(cmpVersion("a", none, 1)), nil, nil), ErrInvalidCompare},
			{txn(cmps(cmpVersion("a", kvv1.Compare_CompareResult(9), 1)), nil, nil), ErrInvalidCompare},
			{txn(cmps(&kvv1.Compare{Key: []byte("a"), Result: eq, Target: kvv1.Compare_COMPARE_TARGET_VALUE, TargetUnion: &kvv1.Compare_Version{Version: 1}}), nil, nil), ErrInvalidCompare},
			{txn(cmps(&kvv1.Compare{Key: []byte("a"), Result: eq, TargetUnion: &kvv1.Compare_Version{Version: 1}}), nil, nil), ErrInvalidCompare},
			{txn(nil, ops(&kvv1.RequestOp{}), nil), ErrEmptyRequest},
			{txn(nil, slices.Repeat(ops(opGet(get("a", ""))), MaxTxnOpsLimit+1), nil), ErrTooManyOps},
			{txn(nil, slices.Repeat(ops(opGet(get("a", ""))), MaxTxnOps), nil), txnResp(2, true, slices.Repeat([]*kvv1.ResponseOp{rGet(kv("a", "1", 2, 2, 1))}, MaxTxnOps)...)},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { runSteps(t, tt.steps) })
	}
}

// TestTxnCompareTargets checks every compare target with every operator, for
// a value below, equal to and above the key's.
func TestTxnCompareTargets(t *testing.T) {
	// Key "a" ends with value "m", version 2, create revision 2, mod
	// revision 4 and lease 0.
	setup := []*kvv1.PutRequest{put("a", "m"), put("b", "1"), put("a", "m")}
	targets := []struct {
		name string
		make func(res kvv1.Compare_CompareResult, below, equal, above bool) *kvv1.Compare
	}{
		{"value", func(res kvv1.Compare_CompareResult, below, equal, _ bool) *kvv1.Compare {
			return cmpValue("a", res, pick(below, equal, "l", "m", "n"))
		}},
		{"version", func(res kvv1.Compare_CompareResult, below, equal, _ bool) *kvv1.Compare {
			return cmpVersion("a", res, pick[int64](below, equal, 1, 2, 3))
		}},
		{"create", func(res kvv1.Compare_CompareResult, below, equal, _ bool) *kvv1.Compare {
			return cmpCreate("a", res, pick[int64](below, equal, 1, 2, 3))
		}},
		{"mod", func(res kvv1.Compare_CompareResult, below, equal, _ bool) *kvv1.Compare {
			return cmpMod("a", res, pick[int64](below, equal, 3, 4, 5))
		}},
		{"lease", func(res kvv1.Compare_CompareResult, below, equal, _ bool) *kvv1.Compare {
			return cmpLease("a", res, pick[int64](below, equal, -1, 0, 1))
		}},
	}
	operators := []struct {
		name string
		res  kvv1.Compare_CompareResult
		// want is the outcome when the key's property is above, equal to
		// and below the compared value.
		want [3]bool
	}{
		{"equal", eq, [3]bool{false, true, false}},
		{"not equal", ne, [3]bool{true, false, true}},
		{"greater", gt, [3]bool{true, false, false}},
		{"less", lt, [3]bool{false, false, true}},
	}
	type tc struct {
		name string
		cmp  *kvv1.Compare
		want bool
	}
	var tests []tc
	for _, tg := range targets {
		for _, op := range operators {
			for i, rel := range []string{"compared value below", "compared value equal", "compared value above"} {
				tests = append(tests, tc{
					name: tg.name + "/" + op.name + "/" + rel,
					cmp:  tg.make(op.res, i == 0, i == 1, i == 2),
					want: op.want[i],
				})
			}
		}
	}
	f, m, l := newFSM(t), newModel(), newTestLog(t)
	for _, r := range setup {
		l.applyOne(f, r)
		m.apply(r)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := txn(cmps(tt.cmp), ops(opGet(get("b", ""))), nil)
			want := txnResp(4, tt.want)
			if tt.want {
				want.Responses = []*kvv1.ResponseOp{rGet(kv("b", "1", 3, 3, 1))}
			}
			if got := l.applyOne(f, r); !sameResult(got, want) {
				t.Errorf("FSM: %s\n got  %s\n want %s", show(tt.cmp), show(got), show(want))
			}
			if got := m.apply(r); !sameResult(got, want) {
				t.Errorf("model: %s\n got  %s\n want %s", show(tt.cmp), show(got), show(want))
			}
		})
	}
}

func pick[T any](below, equal bool, b, e, a T) T {
	switch {
	case below:
		return b
	case equal:
		return e
	}
	return a
}
