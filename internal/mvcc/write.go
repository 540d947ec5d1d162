package mvcc

import (
	"bytes"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// fillPercent is how full bbolt packs the pages of history when it splits
// them. Its default of 50% leaves pages written in key order (history is in
// revision order: every write lands after the last) half empty for good,
// which at a million keys doubled state.db and every snapshot. etcd packs
// its revision-keyed bucket the same way.
const fillPercent = 0.9

// Writer holds the store's buckets in one bbolt write transaction, in which
// its caller applies any number of key-value transactions, one after the
// other, each begun with Begin. It is used by one goroutine (kvd: raft's FSM
// goroutine, inside backend.Batch) and must not outlive the bbolt
// transaction, nor be copied once Begin was called.
//
// Compaction is a method here (Compact, then TrimHistory): it moves the
// compact revision in meta and trims versions through the history type,
// the one place that touches the history bucket.
type Writer struct {
	tx     *bolt.Tx
	idx    *index
	meta   *bolt.Bucket
	hist   history
	record bool
	txn    TxnWrite
}

// NewWriter returns a Writer over tx, which must be writable, and the key
// index. recordChanges says whether TxnWrite.Changes reports events;
// without it no event is built, at no cost to the writes.
//
// The index changes with every write, before the bbolt transaction
// commits: a write that fails fails the caller's backend, whose database
// the Store must be initialised with again (Init) before it is used.
func (s *Store) NewWriter(tx *bolt.Tx, recordChanges bool) Writer {
	w := Writer{
		tx:     tx,
		idx:    s.idx,
		meta:   tx.Bucket(bucketMeta),
		hist:   history{tx.Bucket(bucketHistory)},
		record: recordChanges,
	}
	w.hist.b.FillPercent = fillPercent
	return w
}

// Revision returns the store revision as written so far.
func (w *Writer) Revision() int64 { return int64(readU64(w.meta.Get(metaRevision))) }

// Read returns a read view of the store as written so far.
func (w *Writer) Read() ReadView { return ReadView{tx: w.tx, idx: w.idx, hist: w.hist} }

// Begin starts a key-value transaction: the writes made through the
// returned TxnWrite share one new revision, allocated on the first of them.
// The TxnWrite is valid until the next Begin; Begin must not be called
// while another TxnWrite of this Writer is in use.
func (w *Writer) Begin() *TxnWrite {
	w.txn = TxnWrite{w: w}
	return &w.txn
}

// TxnWrite is one key-value transaction in progress (etcd's TxnWrite): a
// put, a delete-range or a txn request, or several of them, at one
// revision. Its methods return what the request answers; an error is a
// storage failure, after which the bbolt transaction must be rolled back.
type TxnWrite struct {
	w       *Writer
	rev     int64 // 0 until the transaction writes
	changes []Event
}

// Revision returns the transaction's revision, or 0 if it has written
// nothing (and so has not moved the store revision).
func (t *TxnWrite) Revision() int64 { return t.rev }

// Changes returns the keys the transaction changed so far, at its
// revision, in the order its operations applied them (the keys of one
// delete-range in key order); nil if it changed none, or if the Writer does
// not record changes. The slice is the caller's: the TxnWrite only appends
// to it.
func (t *TxnWrite) Changes() []Event { return t.changes }

// writeRev returns the transaction's revision, allocating it on first use.
func (t *TxnWrite) writeRev() (int64, error) {
	if t.rev == 0 {
		t.rev = t.w.Revision() + 1
		if err := t.w.meta.Put(metaRevision, u64(uint64(t.rev))); err != nil {
			return 0, err
		}
	}
	return t.rev, nil
}

func (t *TxnWrite) header() *kvv1.ResponseHeader {
	return &kvv1.ResponseHeader{Revision: t.w.Revision()}
}

// Put writes a key's value, as a put request does. The caller has
// validated r (fsm.ValidatePut).
func (t *TxnWrite) Put(r *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	resp, err := t.put(r)
	if err != nil {
		return nil, err
	}
	resp.Header = t.header()
	return resp, nil
}

func (t *TxnWrite) put(r *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	rev, err := t.writeRev()
	if err != nil {
		return nil, err
	}
	resp := &kvv1.PutResponse{}
	kv := &kvv1.KeyValue{Key: r.GetKey(), Value: r.GetValue(), Lease: r.GetLease(),
		CreateRevision: rev, ModRevision: rev, Version: 1}
	at := t.w.idx.find(r.GetKey())
	prev, err := t.w.current(r.GetKey(), at)
	if err != nil {
		return nil, err
	}
	if prev != nil {
		kv.CreateRevision = prev.GetCreateRevision()
		kv.Version = prev.GetVersion() + 1
		if r.GetPrevKv() {
			resp.PrevKv = prev
		}
		// CheckPut made sure the key exists when these are set.
		if r.GetIgnoreValue() {
			kv.Value = prev.GetValue()
		}
		if r.GetIgnoreLease() {
			kv.Lease = prev.GetLease()
		}
	}
	if err := t.w.attach(kv.GetKey(), kv.GetLease(), prev.GetLease()); err != nil {
		return nil, err
	}
	if err := t.store(kv, rev, prev.GetModRevision(), at); err != nil {
		return nil, err
	}
	if t.w.record {
		t.changes = append(t.changes, Event{Type: Put, KV: kv, PrevKV: prev})
	}
	return resp, nil
}

// current returns key's live version, nil if the key does not exist; at is
// key's slot in the index.
func (w *Writer) current(key []byte, at slot) (*kvv1.KeyValue, error) {
	rev, ok := at.live()
	if !ok {
		return nil, nil
	}
	v, err := w.hist.reader().indexed(key, rev)
	if err != nil {
		return nil, err
	}
	return decodeKV(v)
}

// store writes kv as its key's version at rev, which replaced the version
// at prev (0: none), to history and to the key's slot in the index.
func (t *TxnWrite) store(kv *kvv1.KeyValue, rev, prev int64, at slot) error {
	b, err := protoMarshal.Marshal(kv)
	if err != nil {
		return err
	}
	if err := t.w.hist.put(kv.GetKey(), rev, prev, b); err != nil {
		return err
	}
	t.w.idx.fill(at, kv.GetKey(), rev, kv.GetVersion() == 0)
	return nil
}

// DeleteRange deletes the keys in a range, as a delete-range request does.
// The caller has validated r (fsm.ValidateDeleteRange).
func (t *TxnWrite) DeleteRange(r *kvv1.DeleteRangeRequest) (*kvv1.DeleteRangeResponse, error) {
	resp, err := t.deleteRange(r)
	if err != nil {
		return nil, err
	}
	resp.Header = t.header()
	return resp, nil
}

func (t *TxnWrite) deleteRange(r *kvv1.DeleteRangeRequest) (*kvv1.DeleteRangeResponse, error) {
	var doomed []*kvv1.KeyValue
	if err := t.w.Read().each(r.GetKey(), r.GetRangeEnd(), t.w.Revision(), func(kv *kvv1.KeyValue) bool {
		doomed = append(doomed, kv)
		return true
	}); err != nil {
		return nil, err
	}
	resp := &kvv1.DeleteRangeResponse{Deleted: int64(len(doomed))}
	if len(doomed) == 0 {
		return resp, nil
	}
	rev, err := t.writeRev()
	if err != nil {
		return nil, err
	}
	for _, kv := range doomed {
		if err := t.w.attach(kv.GetKey(), 0, kv.GetLease()); err != nil {
			return nil, err
		}
		tombKV := &kvv1.KeyValue{Key: kv.GetKey(), ModRevision: rev}
		if err := t.store(tombKV, rev, kv.GetModRevision(), t.w.idx.find(kv.GetKey())); err != nil {
			return nil, err
		}
		if t.w.record {
			t.changes = append(t.changes, Event{Type: Delete, KV: tombKV, PrevKV: kv})
		}
	}
	if r.GetPrevKv() {
		resp.PrevKvs = doomed
	}
	return resp, nil
}

// CheckTxn rejects a txn whose reads (in either branch, nested ones
// included) name a revision the store cannot serve (an error wrapping
// ErrFutureRevision or ErrCompacted), or whose puts, on the path its
// compares select, cannot be applied (see CheckPut). It writes nothing;
// call it before Txn.
func (t *TxnWrite) CheckTxn(r *kvv1.TxnRequest) error {
	if err := checkTxnRevisions(r, t.w.Revision(), t.w.Read().CompactRevision()); err != nil {
		return err
	}
	path, err := t.path(r, nil)
	if err != nil {
		return err
	}
	return t.checkPuts(r, &path)
}

func checkTxnRevisions(r *kvv1.TxnRequest, current, compacted int64) error {
	for _, branch := range [][]*kvv1.RequestOp{r.GetSuccess(), r.GetFailure()} {
		for _, op := range branch {
			switch o := op.GetRequest().(type) {
			case *kvv1.RequestOp_RequestRange:
				rev := o.RequestRange.GetRevision()
				if rev > current {
					return fmt.Errorf("%w: %d > current %d", ErrFutureRevision, rev, current)
				}
				if rev > 0 && rev < compacted {
					return fmt.Errorf("%w: %d < compacted %d", ErrCompacted, rev, compacted)
				}
			case *kvv1.RequestOp_RequestTxn:
				if err := checkTxnRevisions(o.RequestTxn, current, compacted); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// Txn evaluates a txn request's compares and applies the branch they
// select, as etcd does: every compare, those of nested txns in the branches
// taken included, is evaluated against the store as it was before the txn,
// so that the whole path is known, and checked (CheckTxn), before anything
// is written. The caller has validated r (fsm.ValidateTxn) and checked it
// with CheckTxn, so an error here is a storage failure.
func (t *TxnWrite) Txn(r *kvv1.TxnRequest) (*kvv1.TxnResponse, error) {
	path, err := t.path(r, nil)
	if err != nil {
		return nil, err
	}
	resp, err := t.txn(r, &path)
	if err != nil {
		return nil, err
	}
	resp.Header = t.header()
	return resp, nil
}

// path appends the branches r takes (true: success) to out, r's first, then
// those of the nested txns of its branch, depth first.
func (t *TxnWrite) path(r *kvv1.TxnRequest, out []bool) ([]bool, error) {
	ok := true
	for _, c := range r.GetCompare() {
		held, err := t.compare(c)
		if err != nil {
			return nil, err
		}
		if !held {
			ok = false
			break
		}
	}
	out = append(out, ok)
	for _, op := range branch(r, ok) {
		if nested := op.GetRequestTxn(); nested != nil {
			var err error
			if out, err = t.path(nested, out); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func branch(r *kvv1.TxnRequest, ok bool) []*kvv1.RequestOp {
	if ok {
		return r.GetSuccess()
	}
	return r.GetFailure()
}

// checkPuts reports a put of the branches on path that cannot be applied
// (see CheckPut).
func (t *TxnWrite) checkPuts(r *kvv1.TxnRequest, path *[]bool) error {
	ok := (*path)[0]
	*path = (*path)[1:]
	for _, op := range branch(r, ok) {
		switch o := op.GetRequest().(type) {
		case *kvv1.RequestOp_RequestPut:
			p := o.RequestPut
			if err := t.CheckPut(p.GetKey(), p.GetLease(), p.GetIgnoreValue(), p.GetIgnoreLease()); err != nil {
				return err
			}
		case *kvv1.RequestOp_RequestTxn:
			if err := t.checkPuts(o.RequestTxn, path); err != nil {
				return err
			}
		}
	}
	return nil
}

func (t *TxnWrite) txn(r *kvv1.TxnRequest, path *[]bool) (*kvv1.TxnResponse, error) {
	ok := (*path)[0]
	*path = (*path)[1:]
	ops := branch(r, ok)
	resp := &kvv1.TxnResponse{Succeeded: ok, Responses: make([]*kvv1.ResponseOp, 0, len(ops))}
	for _, op := range ops {
		out, err := t.op(op, path)
		if err != nil {
			return nil, err
		}
		resp.Responses = append(resp.Responses, out)
	}
	return resp, nil
}

func (t *TxnWrite) op(op *kvv1.RequestOp, path *[]bool) (*kvv1.ResponseOp, error) {
	switch o := op.GetRequest().(type) {
	case *kvv1.RequestOp_RequestRange:
		// CheckTxn has ruled out domain errors, so an error here is a
		// storage failure.
		rr, err := t.w.Read().Range(o.RequestRange)
		if err != nil {
			return nil, err
		}
		rr.Header = nil
		return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseRange{ResponseRange: rr}}, nil
	case *kvv1.RequestOp_RequestPut:
		pr, err := t.put(o.RequestPut)
		if err != nil {
			return nil, err
		}
		return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponsePut{ResponsePut: pr}}, nil
	case *kvv1.RequestOp_RequestDeleteRange:
		dr, err := t.deleteRange(o.RequestDeleteRange)
		if err != nil {
			return nil, err
		}
		return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: dr}}, nil
	case *kvv1.RequestOp_RequestTxn:
		tr, err := t.txn(o.RequestTxn, path)
		if err != nil {
			return nil, err
		}
		return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseTxn{ResponseTxn: tr}}, nil
	default:
		return nil, fmt.Errorf("%w in txn", ErrEmptyRequest)
	}
}

// compare evaluates one txn condition against the store as written so far.
func (t *TxnWrite) compare(c *kvv1.Compare) (bool, error) { return t.w.Read().compare(c) }

// compare evaluates one txn condition against the store as r sees it.
// Over a range, every key must match; a value compare on an absent key
// fails, and other targets compare an absent key as zero, as etcd does.
func (r ReadView) compare(c *kvv1.Compare) (bool, error) {
	var kvs []*kvv1.KeyValue
	if err := r.each(c.GetKey(), c.GetRangeEnd(), r.Revision(), func(kv *kvv1.KeyValue) bool {
		kvs = append(kvs, kv)
		return true
	}); err != nil {
		return false, err
	}
	if len(kvs) == 0 {
		if c.GetTarget() == kvv1.Compare_COMPARE_TARGET_VALUE {
			return false, nil
		}
		kvs = []*kvv1.KeyValue{{}}
	}
	for _, kv := range kvs {
		if !compareKV(c, kv) {
			return false, nil
		}
	}
	return true, nil
}

func compareKV(c *kvv1.Compare, kv *kvv1.KeyValue) bool {
	var cmp int
	switch c.GetTarget() {
	case kvv1.Compare_COMPARE_TARGET_VALUE:
		cmp = bytes.Compare(kv.GetValue(), c.GetValue())
	case kvv1.Compare_COMPARE_TARGET_VERSION:
		cmp = compareInt(kv.GetVersion(), c.GetVersion())
	case kvv1.Compare_COMPARE_TARGET_CREATE:
		cmp = compareInt(kv.GetCreateRevision(), c.GetCreateRevision())
	case kvv1.Compare_COMPARE_TARGET_MOD:
		cmp = compareInt(kv.GetModRevision(), c.GetModRevision())
	case kvv1.Compare_COMPARE_TARGET_LEASE:
		cmp = compareInt(kv.GetLease(), c.GetLease())
	}
	switch c.GetResult() {
	case kvv1.Compare_COMPARE_RESULT_EQUAL:
		return cmp == 0
	case kvv1.Compare_COMPARE_RESULT_NOT_EQUAL:
		return cmp != 0
	case kvv1.Compare_COMPARE_RESULT_GREATER:
		return cmp > 0
	case kvv1.Compare_COMPARE_RESULT_LESS:
		return cmp < 0
	}
	return false
}

func compareInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// ReadOnlyTxn reports whether r writes nothing in either branch, nested
// txns included: it can be answered from a member's state like a range.
func ReadOnlyTxn(r *kvv1.TxnRequest) bool {
	for _, b := range [][]*kvv1.RequestOp{r.GetSuccess(), r.GetFailure()} {
		for _, op := range b {
			switch o := op.GetRequest().(type) {
			case *kvv1.RequestOp_RequestRange:
			case *kvv1.RequestOp_RequestTxn:
				if !ReadOnlyTxn(o.RequestTxn) {
					return false
				}
			default:
				return false
			}
		}
	}
	return true
}

// Txn answers a read-only txn (ReadOnlyTxn) at the current revision: its
// compares and the ranges of the branches they select, all in r's one
// transaction, as Txn on a TxnWrite would have answered it. The caller has
// validated req (fsm.ValidateTxn). A range at a revision the store cannot
// serve is an error wrapping ErrFutureRevision or ErrCompacted.
func (r ReadView) Txn(req *kvv1.TxnRequest) (*kvv1.TxnResponse, error) {
	if !ReadOnlyTxn(req) {
		return nil, errors.New("mvcc: a txn that writes cannot be answered from a read view")
	}
	current := r.Revision()
	if err := checkTxnRevisions(req, current, r.CompactRevision()); err != nil {
		return nil, err
	}
	resp, err := r.txn(req)
	if err != nil {
		return nil, err
	}
	resp.Header = &kvv1.ResponseHeader{Revision: current}
	return resp, nil
}

func (r ReadView) txn(req *kvv1.TxnRequest) (*kvv1.TxnResponse, error) {
	ok := true
	for _, c := range req.GetCompare() {
		held, err := r.compare(c)
		if err != nil {
			return nil, err
		}
		if !held {
			ok = false
			break
		}
	}
	ops := branch(req, ok)
	resp := &kvv1.TxnResponse{Succeeded: ok, Responses: make([]*kvv1.ResponseOp, 0, len(ops))}
	for _, op := range ops {
		switch o := op.GetRequest().(type) {
		case *kvv1.RequestOp_RequestRange:
			rr, err := r.Range(o.RequestRange)
			if err != nil {
				return nil, err
			}
			rr.Header = nil
			resp.Responses = append(resp.Responses, &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseRange{ResponseRange: rr}})
		case *kvv1.RequestOp_RequestTxn:
			tr, err := r.txn(o.RequestTxn)
			if err != nil {
				return nil, err
			}
			resp.Responses = append(resp.Responses, &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseTxn{ResponseTxn: tr}})
		}
	}
	return resp, nil
}
