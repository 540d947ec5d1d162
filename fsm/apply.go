package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// handler applies one decoded command inside the batch's write transaction.
// It returns the command's response (a proto message, nil, or a domain error).
// A returned Go error is a storage failure and stops the process.
type handler func(w *writer, payload []byte) (result any, err error)

func (f *FSM) handlerTable() map[fsmv1.CommandType]handler {
	return map[fsmv1.CommandType]handler{
		fsmv1.CommandType_COMMAND_TYPE_PUT: decoded(func() *kvv1.PutRequest { return &kvv1.PutRequest{} },
			ValidatePut, (*writer).put),
		fsmv1.CommandType_COMMAND_TYPE_DELETE_RANGE: decoded(func() *kvv1.DeleteRangeRequest { return &kvv1.DeleteRangeRequest{} },
			ValidateDeleteRange, (*writer).deleteRange),
		fsmv1.CommandType_COMMAND_TYPE_TXN: decoded(func() *kvv1.TxnRequest { return &kvv1.TxnRequest{} },
			ValidateTxn, (*writer).txn),
		fsmv1.CommandType_COMMAND_TYPE_LEADER_START: decoded(func() *fsmv1.LeaderStart { return &fsmv1.LeaderStart{} },
			nil, (*writer).leaderStart),
		fsmv1.CommandType_COMMAND_TYPE_PUBLISH_MEMBER: decoded(func() *fsmv1.MemberAttributes { return &fsmv1.MemberAttributes{} },
			nil, (*writer).publishMember),
	}
}

// decoded builds a handler that decodes the payload into M, validates it
// (a domain error is the result and nothing is written), then applies it.
func decoded[M proto.Message](newMsg func() M, validate func(M) error, apply func(*writer, M) (any, error)) handler {
	return func(w *writer, payload []byte) (any, error) {
		m := newMsg()
		if err := proto.Unmarshal(payload, m); err != nil {
			return nil, fmt.Errorf("decode %T: %w", m, err)
		}
		if validate != nil {
			if err := validate(m); err != nil {
				return err, nil
			}
		}
		return apply(w, m)
	}
}

// Apply applies one committed log entry. raft uses ApplyBatch instead; Apply
// exists to satisfy raft.FSM.
func (f *FSM) Apply(l *raft.Log) any {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// Batches of applied entries share one bbolt write transaction, committed
// every commitInterval or commitEntries entries, and before any read, snapshot
// or close. A commit costs page writes (not fsyncs: see the package doc) and
// was half of ApplyBatch's CPU when every batch had its own; etcd batches its
// backend commits the same way. Entries applied but not yet committed are in
// the raft log, like everything since the last (unsynced) commit.
const (
	commitInterval = 100 * time.Millisecond
	commitEntries  = 10000
)

// ApplyBatch applies committed log entries in the pending write transaction,
// together with the index of the last one. Entries at or below the applied
// index are skipped: raft replays the log after its last snapshot on
// restart, and the state already holds them.
//
// An entry that cannot be applied (see the package doc) rolls back every
// uncommitted entry, marks the FSM failed so that it serves nothing more and
// is rebuilt at the next start, and panics.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	results := make([]any, len(logs))
	start := time.Now()
	f.mu.RLock()
	defer f.mu.RUnlock()
	applied := f.AppliedIndex()
	var last *raft.Log
	f.txMu.Lock()
	err := f.failed
	if err == nil {
		last, err = f.applyPending(logs, applied, results)
	}
	if err != nil {
		f.fail(err) // unlocks txMu
		// See the package doc: a member that cannot apply what a quorum
		// committed must stop rather than diverge.
		f.log.Error("fsm: cannot apply committed entries; stopping", "error", err)
		panic(fmt.Sprintf("fsm: %v", err))
	}
	f.txMu.Unlock()
	if last != nil {
		f.setApplied(last.Index)
	}
	if f.cfg.Observer != nil {
		f.cfg.Observer.ObserveApply(time.Since(start), len(logs))
	}
	return results
}

// applyPending applies logs into the pending transaction, opening it if
// needed, fills in their results, and commits the transaction once it holds
// commitEntries entries. It returns the last entry it applied. The caller
// holds mu shared and txMu.
func (f *FSM) applyPending(logs []*raft.Log, applied uint64, results []any) (last *raft.Log, err error) {
	if f.pending == nil {
		tx, err := f.db.Begin(true)
		if err != nil {
			return nil, fmt.Errorf("begin state transaction: %w", err)
		}
		f.pending = tx
		f.commitTimer = time.AfterFunc(commitInterval, f.commitDue)
	}
	w := newWriter(f.pending, f.marshal)
	for i, l := range logs {
		if l.Index <= applied {
			continue
		}
		last = l
		f.pendingEntries++
		if l.Type != raft.LogCommand {
			continue // configuration changes only move the applied index
		}
		res, err := f.applyCommand(w, l.Data)
		if err != nil {
			return nil, fmt.Errorf("apply index %d: %w", l.Index, err)
		}
		results[i] = res
	}
	if w.membersChanged {
		f.forgetMembers()
	}
	if last != nil {
		if err := w.meta.Put(metaAppliedIndex, u64(last.Index)); err != nil {
			return nil, err
		}
		if err := w.meta.Put(metaAppliedTerm, u64(last.Term)); err != nil {
			return nil, err
		}
	}
	if f.pendingEntries >= commitEntries {
		return last, f.commitLocked()
	}
	return last, nil
}

// commitLocked commits the pending transaction, if any. The caller holds
// txMu.
func (f *FSM) commitLocked() error {
	if f.pending == nil {
		return nil
	}
	f.commitTimer.Stop()
	tx := f.pending
	f.pending, f.pendingEntries = nil, 0
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit state: %w", err)
	}
	return nil
}

// flush commits the pending transaction. A commit that fails leaves the
// state behind the applied index, so it fails the FSM like a failed apply.
// The caller holds mu.
func (f *FSM) flush() error {
	f.txMu.Lock()
	if f.failed != nil {
		defer f.txMu.Unlock()
		return fmt.Errorf("fsm: stopped after a failed apply: %w", f.failed)
	}
	if err := f.commitLocked(); err != nil {
		f.fail(err)
		f.log.Error("fsm: cannot commit applied entries; the state will be rebuilt at the next start", "error", err)
		return err
	}
	f.txMu.Unlock()
	return nil
}

// commitDue is the commit timer's callback.
func (f *FSM) commitDue() {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db != nil {
		_ = f.flush() // a failure is logged and fails the FSM
	}
}

// fail rolls back the pending transaction and records err, after which the
// FSM refuses all use and Close leaves no clean marker. The caller holds
// txMu; fail releases it.
func (f *FSM) fail(err error) {
	f.rollbackLocked()
	if f.failed == nil {
		f.failed = err
	}
	f.txMu.Unlock()
}

// rollbackLocked discards the pending transaction, if any. The caller holds
// txMu.
func (f *FSM) rollbackLocked() {
	if f.pending == nil {
		return
	}
	f.commitTimer.Stop()
	_ = f.pending.Rollback()
	f.pending, f.pendingEntries = nil, 0
}

func (f *FSM) applyCommand(w *writer, data []byte) (any, error) {
	return f.applyCommandIn(w, data, false)
}

// applyCommandIn applies one encoded command; inBatch says it came from a
// batch, which may not hold another.
func (f *FSM) applyCommandIn(w *writer, data []byte, inBatch bool) (any, error) {
	cmd := &fsmv1.Command{}
	if err := proto.Unmarshal(data, cmd); err != nil {
		return nil, fmt.Errorf("decode command: %w", err)
	}
	if cmd.GetType() == fsmv1.CommandType_COMMAND_TYPE_BATCH {
		if inBatch {
			return nil, errors.New("a batch holds a batch")
		}
		return f.applyBatchCommand(w, cmd.GetPayload())
	}
	h, ok := f.handlers[cmd.GetType()]
	if !ok {
		if cmd.GetIgnorable() {
			f.log.Warn("fsm: skipping unknown ignorable command", "type", cmd.GetType())
			return nil, nil
		}
		return nil, fmt.Errorf("unknown command type %d", cmd.GetType())
	}
	return h(w, cmd.GetPayload())
}

// applyBatchCommand applies the commands of a COMMAND_TYPE_BATCH in order,
// each exactly as if it had a log entry of its own, and returns their
// results as a BatchResult.
func (f *FSM) applyBatchCommand(w *writer, payload []byte) (any, error) {
	batch := &fsmv1.CommandBatch{}
	if err := proto.Unmarshal(payload, batch); err != nil {
		return nil, fmt.Errorf("decode command batch: %w", err)
	}
	results := make(BatchResult, len(batch.GetCommands()))
	for i, data := range batch.GetCommands() {
		res, err := f.applyCommandIn(w, data, true)
		if err != nil {
			return nil, fmt.Errorf("command %d of a batch: %w", i, err)
		}
		results[i] = res
	}
	return results, nil
}

// writer applies commands inside one write transaction. The revision of a
// command is allocated on its first write, so a command that changes nothing
// (a delete that matched no key, a read-only txn) does not move it.
type writer struct {
	tx      *bolt.Tx
	meta    *bolt.Bucket
	keys    *bolt.Bucket
	history *bolt.Bucket
	members *bolt.Bucket
	marshal proto.MarshalOptions
	// membersChanged is set when a command wrote the members bucket.
	membersChanged bool
	writeRev       int64 // revision of the command being applied; 0 until it writes
}

// fillPercent is how full bbolt packs the pages of keys and history when it
// splits them. Its default of 50% leaves pages written in key order (a bulk
// load, or history, where every new revision of a key lands after its older
// ones) half empty for good, which at a million keys doubled state.db and
// every snapshot. etcd packs its revision-keyed bucket the same way.
const fillPercent = 0.9

func newWriter(tx *bolt.Tx, m proto.MarshalOptions) *writer {
	w := &writer{
		tx:      tx,
		meta:    tx.Bucket(bucketMeta),
		keys:    tx.Bucket(bucketKeys),
		history: tx.Bucket(bucketHistory),
		members: tx.Bucket(bucketMembers),
		marshal: m,
	}
	w.keys.FillPercent = fillPercent
	w.history.FillPercent = fillPercent
	return w
}

func (w *writer) revision() int64 { return int64(readU64(w.meta.Get(metaRevision))) }

// begin starts a command: writes that follow share one new revision.
func (w *writer) begin() { w.writeRev = 0 }

// rev returns the command's revision, allocating it on first use.
func (w *writer) rev() (int64, error) {
	if w.writeRev == 0 {
		w.writeRev = w.revision() + 1
		if err := w.meta.Put(metaRevision, u64(uint64(w.writeRev))); err != nil {
			return 0, err
		}
	}
	return w.writeRev, nil
}

func (w *writer) header() *kvv1.ResponseHeader {
	return &kvv1.ResponseHeader{Revision: w.revision()}
}

func (w *writer) put(r *kvv1.PutRequest) (any, error) {
	w.begin()
	resp, err := w.putOp(r)
	if err != nil {
		return nil, err
	}
	resp.Header = w.header()
	return resp, nil
}

func (w *writer) putOp(r *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	rev, err := w.rev()
	if err != nil {
		return nil, err
	}
	resp := &kvv1.PutResponse{}
	kv := &kvv1.KeyValue{Key: r.GetKey(), Value: r.GetValue(), Lease: r.GetLease(),
		CreateRevision: rev, ModRevision: rev, Version: 1}
	if old := w.keys.Get(r.GetKey()); old != nil {
		prev, err := decodeKV(old)
		if err != nil {
			return nil, err
		}
		kv.CreateRevision = prev.GetCreateRevision()
		kv.Version = prev.GetVersion() + 1
		if r.GetPrevKv() {
			resp.PrevKv = prev
		}
	}
	return resp, w.store(kv, rev)
}

// store writes kv as the live value of its key and as its version at rev.
func (w *writer) store(kv *kvv1.KeyValue, rev int64) error {
	b, err := w.marshal.Marshal(kv)
	if err != nil {
		return err
	}
	if err := w.keys.Put(kv.GetKey(), b); err != nil {
		return err
	}
	return w.history.Put(historyKey(kv.GetKey(), rev), b)
}

func (w *writer) deleteRange(r *kvv1.DeleteRangeRequest) (any, error) {
	w.begin()
	resp, err := w.deleteOp(r)
	if err != nil {
		return nil, err
	}
	resp.Header = w.header()
	return resp, nil
}

func (w *writer) deleteOp(r *kvv1.DeleteRangeRequest) (*kvv1.DeleteRangeResponse, error) {
	var doomed []*kvv1.KeyValue
	if err := scanCurrent(w.tx, r.GetKey(), r.GetRangeEnd(), func(kv *kvv1.KeyValue) {
		doomed = append(doomed, kv)
	}); err != nil {
		return nil, err
	}
	resp := &kvv1.DeleteRangeResponse{Deleted: int64(len(doomed))}
	if len(doomed) == 0 {
		return resp, nil
	}
	rev, err := w.rev()
	if err != nil {
		return nil, err
	}
	for _, kv := range doomed {
		if err := w.keys.Delete(kv.GetKey()); err != nil {
			return nil, err
		}
		tomb, err := w.marshal.Marshal(&kvv1.KeyValue{Key: kv.GetKey(), ModRevision: rev})
		if err != nil {
			return nil, err
		}
		if err := w.history.Put(historyKey(kv.GetKey(), rev), tomb); err != nil {
			return nil, err
		}
	}
	if r.GetPrevKv() {
		resp.PrevKvs = doomed
	}
	return resp, nil
}

func (w *writer) txn(r *kvv1.TxnRequest) (any, error) {
	if err := w.checkTxnRevisions(r); err != nil {
		return err, nil // a domain error, found before anything is written
	}
	w.begin()
	resp, err := w.txnOp(r)
	if err != nil {
		return nil, err
	}
	resp.Header = w.header()
	return resp, nil
}

func (w *writer) txnOp(r *kvv1.TxnRequest) (*kvv1.TxnResponse, error) {
	ok := true
	for _, c := range r.GetCompare() {
		held, err := w.compare(c)
		if err != nil {
			return nil, err
		}
		if !held {
			ok = false
			break
		}
	}
	ops := r.GetSuccess()
	if !ok {
		ops = r.GetFailure()
	}
	resp := &kvv1.TxnResponse{Succeeded: ok, Responses: make([]*kvv1.ResponseOp, 0, len(ops))}
	for _, op := range ops {
		out, err := w.op(op)
		if err != nil {
			return nil, err
		}
		resp.Responses = append(resp.Responses, out)
	}
	return resp, nil
}

// checkTxnRevisions rejects a txn whose reads (in either branch, nested ones
// included) name a revision the store cannot serve, before the txn writes.
func (w *writer) checkTxnRevisions(r *kvv1.TxnRequest) error {
	current := w.revision()
	compacted := int64(readU64(w.meta.Get(metaCompactRevision)))
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
				if err := w.checkTxnRevisions(o.RequestTxn); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (w *writer) op(op *kvv1.RequestOp) (*kvv1.ResponseOp, error) {
	switch o := op.GetRequest().(type) {
	case *kvv1.RequestOp_RequestRange:
		// checkTxnRevisions has ruled out domain errors, so an error here
		// is a storage failure.
		rr, err := rangeTx(w.tx, o.RequestRange)
		if err != nil {
			return nil, err
		}
		rr.Header = nil
		return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseRange{ResponseRange: rr}}, nil
	case *kvv1.RequestOp_RequestPut:
		pr, err := w.putOp(o.RequestPut)
		if err != nil {
			return nil, err
		}
		return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponsePut{ResponsePut: pr}}, nil
	case *kvv1.RequestOp_RequestDeleteRange:
		dr, err := w.deleteOp(o.RequestDeleteRange)
		if err != nil {
			return nil, err
		}
		return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: dr}}, nil
	case *kvv1.RequestOp_RequestTxn:
		tr, err := w.txnOp(o.RequestTxn)
		if err != nil {
			return nil, err
		}
		return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseTxn{ResponseTxn: tr}}, nil
	default:
		return nil, fmt.Errorf("%w in txn", ErrEmptyRequest)
	}
}

// compare evaluates one txn condition against the state as written so far.
// Over a range, every key must match; a value compare on an absent key fails,
// and other targets compare an absent key as zero, as etcd does.
func (w *writer) compare(c *kvv1.Compare) (bool, error) {
	var kvs []*kvv1.KeyValue
	if err := scanCurrent(w.tx, c.GetKey(), c.GetRangeEnd(), func(kv *kvv1.KeyValue) {
		kvs = append(kvs, kv)
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

func (w *writer) leaderStart(ls *fsmv1.LeaderStart) (any, error) {
	if readU64(w.meta.Get(metaClusterID)) == 0 && ls.GetClusterId() != 0 {
		if err := w.meta.Put(metaClusterID, u64(ls.GetClusterId())); err != nil {
			return nil, err
		}
	}
	if ls.GetLeader() != nil {
		if _, err := w.publishMember(ls.GetLeader()); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

func (w *writer) publishMember(m *fsmv1.MemberAttributes) (any, error) {
	if m.GetName() == "" {
		return nil, nil
	}
	b, err := w.marshal.Marshal(m)
	if err != nil {
		return nil, err
	}
	w.membersChanged = true
	return nil, w.members.Put([]byte(m.GetName()), b)
}
