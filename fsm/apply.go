package fsm

import (
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/internal/auth"
	"github.com/kvd-io/kvd/internal/mvcc"
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
		fsmv1.CommandType_COMMAND_TYPE_COMPACT: decoded(func() *kvv1.CompactRequest { return &kvv1.CompactRequest{} },
			ValidateCompact, (*writer).compact),
		fsmv1.CommandType_COMMAND_TYPE_LEASE_GRANT: decoded(func() *fsmv1.LeaseGrant { return &fsmv1.LeaseGrant{} },
			validateLeaseGrant, (*writer).leaseGrant),
		fsmv1.CommandType_COMMAND_TYPE_LEASE_REVOKE: decoded(func() *fsmv1.LeaseRevoke { return &fsmv1.LeaseRevoke{} },
			nil, (*writer).leaseRevoke),
		fsmv1.CommandType_COMMAND_TYPE_LEASE_CHECKPOINT: decoded(func() *fsmv1.LeaseCheckpoint { return &fsmv1.LeaseCheckpoint{} },
			nil, (*writer).leaseCheckpoint),
		fsmv1.CommandType_COMMAND_TYPE_AUTH: decoded(func() *fsmv1.AuthCommand { return &fsmv1.AuthCommand{} },
			ValidateAuthCommand, (*writer).authCommand),
		fsmv1.CommandType_COMMAND_TYPE_ALARM: decoded(func() *kvv1.AlarmRequest { return &kvv1.AlarmRequest{} },
			ValidateAlarm, (*writer).alarm),
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
// every commitInterval or commitEntries entries, and before a snapshot, a
// long read (viewCommitted) or close; short reads read through it. A commit
// costs page writes and two fsyncs (see the package doc), and was half of
// ApplyBatch's CPU when every batch had its own; etcd batches its backend
// commits the same way. Entries applied but not yet committed are in the
// raft log, which a restart replays after the last commit.
const (
	commitInterval = 100 * time.Millisecond
	commitEntries  = 10000
)

// ApplyBatch applies committed log entries in the pending write transaction,
// together with the index of the last one. Entries at or below the applied
// index are skipped: raft replays the log after its last snapshot on
// restart, and the state already holds them.
//
// Once the entries are applied (and visible to reads), Config.Feed, if set,
// is told what they changed; see Feed.
//
// An entry that cannot be applied (see the package doc) rolls back every
// uncommitted entry, marks the FSM failed so that it serves nothing more and
// is rebuilt at the next start, and panics.
func (f *FSM) ApplyBatch(logs []*raft.Log) []any {
	f.applyMu.Lock()
	defer f.applyMu.Unlock()
	f.keepForDefrag(logs)
	results := make([]any, len(logs))
	start := time.Now()
	applied := f.AppliedIndex()
	var (
		last      *raft.Log
		revision  int64
		changes   []Change
		authMarks []authMark
		leases    []LeaseEvent
		compacted bool
	)
	err := f.be.Batch(func(tx *bolt.Tx) (int, error) {
		w := newWriter(tx, f.kv, f.feed != nil, f.auth.Load())
		var (
			n   int
			err error
		)
		last, n, err = f.applyEntries(w, logs, applied, results)
		changes, authMarks, leases, compacted = w.changes, w.authMarks, w.leases, w.compacted
		revision = w.kv.Revision()
		return n, err
	})
	if err != nil {
		// See the package doc: a member that cannot apply what a quorum
		// committed must stop rather than diverge.
		f.log.Error("fsm: cannot apply committed entries; stopping", "error", err)
		panic(fmt.Sprintf("fsm: %v", err))
	}
	if last != nil {
		f.revision.Store(revision)
		f.setApplied(last.Index)
	}
	if len(changes) > 0 || len(authMarks) > 0 {
		f.report(changes, authMarks)
	}
	if len(leases) > 0 && f.cfg.Leases != nil {
		f.cfg.Leases.LeasesChanged(leases)
	}
	if compacted {
		f.kickTrimmer()
	}
	if f.cfg.Observer != nil {
		f.cfg.Observer.ObserveApply(time.Since(start), len(logs))
	}
	return results
}

// report tells the feed what a batch changed: the key-value changes, and
// the auth states at the points marks say, in order.
func (f *FSM) report(changes []Change, marks []authMark) {
	i := 0
	for _, m := range marks {
		if m.changes > i {
			f.feed.Applied(changes[i:m.changes:m.changes]) // capped: the feed may append to its slice
			i = m.changes
		}
		f.feed.AuthChanged(m.state)
	}
	if i < len(changes) {
		f.feed.Applied(changes[i:])
	}
}

// authMark is a change of the auth state within a batch: the state after
// it, and how many key-value changes of the batch came before it.
type authMark struct {
	changes int
	state   *auth.State
}

// applyEntries applies the entries of logs above applied through w, fills in
// their results, and records the index and term of the last one. It returns
// that entry (nil if none was applied) and how many it applied.
func (f *FSM) applyEntries(w *writer, logs []*raft.Log, applied uint64, results []any) (last *raft.Log, n int, err error) {
	for i, l := range logs {
		if l.Index <= applied {
			continue
		}
		last = l
		n++
		if l.Type != raft.LogCommand {
			continue // configuration changes only move the applied index
		}
		res, err := f.applyCommand(w, l.Data)
		if err != nil {
			return nil, 0, fmt.Errorf("apply index %d: %w", l.Index, err)
		}
		results[i] = res
	}
	if w.membersChanged {
		f.forgetMembers()
	}
	if w.alarmsChanged {
		f.noSpace.Store(w.noSpace())
	}
	if w.authChanged {
		f.auth.Store(w.authState)
	}
	if last != nil {
		if err := w.meta.Put(metaAppliedIndex, u64(last.Index)); err != nil {
			return nil, 0, err
		}
		if err := w.meta.Put(metaAppliedTerm, u64(last.Term)); err != nil {
			return nil, 0, err
		}
	}
	return last, n, nil
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
	if denied, err := w.reauthorize(cmd); err != nil || denied != nil {
		return denied, err
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

// writer applies commands inside one write transaction: the key-value
// ones through mvcc, the cluster ones (LeaderStart, member attributes) to
// the meta and members buckets.
type writer struct {
	meta    *bolt.Bucket
	members *bolt.Bucket
	alarms  *bolt.Bucket
	// alarmsChanged is set when a command raised or cleared an alarm.
	alarmsChanged bool
	// auth is the auth bucket; authState the auth state as of the last
	// command applied, authChanged set when a command changed it.
	auth        *bolt.Bucket
	authState   *auth.State
	authChanged bool
	// leaseUser is the user of the command being applied if it is
	// subject to checkLeasePuts: auth is on and the user is not root.
	leaseUser string
	kv        mvcc.Writer
	// membersChanged is set when a command wrote the members bucket.
	membersChanged bool
	// compacted is set when a command moved the compact revision.
	compacted bool
	// record says a Feed listens: changes collects what each key-value
	// transaction changed, in revision order.
	record  bool
	changes []Change
	// authMarks collects the batch's changes of the auth state, for the
	// feed (FSM.report).
	authMarks []authMark
	// leases collects what the batch did to leases, for Config.Leases.
	leases []LeaseEvent
}

func newWriter(tx *bolt.Tx, kv *mvcc.Store, record bool, authState *auth.State) *writer {
	return &writer{
		meta:      tx.Bucket(bucketMeta),
		members:   tx.Bucket(bucketMembers),
		alarms:    tx.Bucket(bucketAlarms),
		auth:      tx.Bucket(bucketAuth),
		authState: authState,
		kv:        kv.NewWriter(tx, record),
		record:    record,
	}
}

// collect records what a finished key-value transaction changed, if a Feed
// listens and it changed anything.
func (w *writer) collect(t *mvcc.TxnWrite) {
	if w.record && t.Revision() != 0 {
		w.changes = append(w.changes, Change{Revision: t.Revision(), Events: t.Changes()})
	}
}

func (w *writer) put(r *kvv1.PutRequest) (any, error) {
	if w.noSpace() {
		return ErrNoSpace, nil
	}
	t := w.kv.Begin()
	if err := t.CheckPut(r.GetKey(), r.GetLease(), r.GetIgnoreValue(), r.GetIgnoreLease()); err != nil {
		return err, nil // a domain error, found before anything is written
	}
	if denied, err := w.checkLeasePuts(r); err != nil || denied != nil {
		return denied, err
	}
	resp, err := t.Put(r)
	if err != nil {
		return nil, err
	}
	w.collect(t)
	return resp, nil
}

func (w *writer) deleteRange(r *kvv1.DeleteRangeRequest) (any, error) {
	t := w.kv.Begin()
	resp, err := t.DeleteRange(r)
	if err != nil {
		return nil, err
	}
	w.collect(t)
	return resp, nil
}

func (w *writer) txn(r *kvv1.TxnRequest) (any, error) {
	if Grows(r) && w.noSpace() {
		return ErrNoSpace, nil
	}
	t := w.kv.Begin()
	if err := t.CheckTxn(r); err != nil {
		return err, nil // a domain error, found before anything is written
	}
	if denied, err := w.checkLeasePuts(r); err != nil || denied != nil {
		return denied, err
	}
	resp, err := t.Txn(r)
	if err != nil {
		return nil, err
	}
	w.collect(t)
	return resp, nil
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
	b, err := protoMarshal.Marshal(m)
	if err != nil {
		return nil, err
	}
	w.membersChanged = true
	return nil, w.members.Put([]byte(m.GetName()), b)
}
