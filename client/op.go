package client

import (
	"errors"
	"fmt"
	"strings"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// opType is the kind of an Op.
type opType int

const (
	tRange opType = iota + 1
	tPut
	tDeleteRange
	tTxn
	tWatch
)

func (t opType) String() string {
	switch t {
	case tRange:
		return "get"
	case tPut:
		return "put"
	case tDeleteRange:
		return "delete"
	case tTxn:
		return "txn"
	case tWatch:
		return "watch"
	default:
		return "empty op"
	}
}

// optBit names an OpOption, so that an option that does not fit an
// operation is reported instead of silently ignored.
type optBit uint32

const (
	optRange optBit = 1 << iota
	optPrefix
	optFromKey
	optRev
	optLimit
	optKeysOnly
	optCountOnly
	optSerializable
	optPrevKV
	optLease
	optProgressNotify
	optFilterPut
	optFilterDelete
	optFragment
	optCreatedNotify
	optSort
	optRevFilter
	optIgnoreValue
	optIgnoreLease
)

var optNames = []struct {
	bit  optBit
	name string
}{
	{optRange, "WithRange"},
	{optPrefix, "WithPrefix"},
	{optFromKey, "WithFromKey"},
	{optRev, "WithRev"},
	{optLimit, "WithLimit"},
	{optKeysOnly, "WithKeysOnly"},
	{optCountOnly, "WithCountOnly"},
	{optSerializable, "WithSerializable"},
	{optPrevKV, "WithPrevKV"},
	{optLease, "WithLease"},
	{optProgressNotify, "WithProgressNotify"},
	{optFilterPut, "WithFilterPut"},
	{optFilterDelete, "WithFilterDelete"},
	{optFragment, "WithFragment"},
	{optCreatedNotify, "WithCreatedNotify"},
	{optSort, "WithSort"},
	{optRevFilter, "WithMin/MaxModRev and WithMin/MaxCreateRev"},
	{optIgnoreValue, "WithIgnoreValue"},
	{optIgnoreLease, "WithIgnoreLease"},
}

// allowedOpts lists the options each operation accepts.
var allowedOpts = map[opType]optBit{
	tRange: optRange | optPrefix | optFromKey | optRev | optLimit |
		optKeysOnly | optCountOnly | optSerializable | optSort | optRevFilter,
	tPut:         optPrevKV | optLease | optIgnoreValue | optIgnoreLease,
	tDeleteRange: optRange | optPrefix | optFromKey | optPrevKV,
	tWatch: optRange | optPrefix | optFromKey | optRev | optPrevKV |
		optProgressNotify | optFilterPut | optFilterDelete | optFragment | optCreatedNotify,
}

// Op is one operation, built by OpGet, OpPut, OpDelete or OpTxn, for KV.Do or
// a transaction. The zero Op is invalid. An Op built with options that do not
// fit it carries an error that Do and Commit return.
type Op struct {
	t   opType
	key []byte
	end []byte
	val []byte

	// Reads.
	rev          int64
	limit        int64
	keysOnly     bool
	countOnly    bool
	serializable bool
	sortTarget   SortTarget
	sortOrder    SortOrder
	minModRev    int64
	maxModRev    int64
	minCreateRev int64
	maxCreateRev int64

	// Writes.
	lease       int64
	prevKV      bool
	ignoreValue bool
	ignoreLease bool

	// Watches.
	progressNotify bool
	filterPut      bool
	filterDelete   bool
	fragment       bool
	createdNotify  bool

	// Transactions.
	cmps    []Cmp
	thenOps []Op
	elseOps []Op

	set optBit // options applied
	err error  // first problem found while building the op
}

// OpOption configures an Op. Each operation accepts only the options listed
// in its documentation; others make the call fail.
type OpOption func(*Op)

// OpGet returns a read of key, or of the range that opts select.
// It accepts WithRange, WithPrefix, WithFromKey, WithRev, WithLimit,
// WithKeysOnly, WithCountOnly, WithSerializable, WithSort (and its
// shorthands WithFirstCreate, WithLastCreate and the like) and the revision
// filters WithMinModRev, WithMaxModRev, WithMinCreateRev and
// WithMaxCreateRev.
func OpGet(key string, opts ...OpOption) Op {
	return newOp(tRange, key, "", opts)
}

// OpPut returns a write of val under key. It accepts WithPrevKV,
// WithLease, WithIgnoreValue and WithIgnoreLease.
func OpPut(key, val string, opts ...OpOption) Op {
	return newOp(tPut, key, val, opts)
}

// OpDelete returns a delete of key, or of the range that opts select. It
// accepts WithRange, WithPrefix, WithFromKey and WithPrevKV.
func OpDelete(key string, opts ...OpOption) Op {
	return newOp(tDeleteRange, key, "", opts)
}

// OpTxn returns a transaction, for nesting in another transaction or for Do.
// The then operations run when every compare holds, the else operations
// otherwise.
func OpTxn(cmps []Cmp, thenOps, elseOps []Op) Op {
	op := Op{t: tTxn, cmps: cmps, thenOps: thenOps, elseOps: elseOps}
	for _, cmp := range cmps {
		if err := cmp.Err(); err != nil {
			op.err = err
			return op
		}
	}
	for _, sub := range append(append([]Op(nil), thenOps...), elseOps...) {
		if sub.t == 0 {
			op.err = errors.New("client: txn holds an empty op")
			return op
		}
		if sub.err != nil {
			op.err = sub.err
			return op
		}
	}
	return op
}

func newOp(t opType, key, val string, opts []OpOption) Op {
	op := Op{t: t, key: []byte(key)}
	if t == tPut {
		op.val = []byte(val)
	}
	for _, o := range opts {
		o(&op)
	}
	if op.err != nil {
		return op
	}
	if bad := op.set &^ allowedOpts[t]; bad != 0 {
		op.err = fmt.Errorf("client: %s is not valid for %s", bitNames(bad), t)
		return op
	}
	if n := countBits(op.set & (optRange | optPrefix | optFromKey)); n > 1 {
		op.err = fmt.Errorf("client: %s cannot be combined", bitNames(op.set&(optRange|optPrefix|optFromKey)))
		return op
	}
	if op.ignoreValue && len(op.val) > 0 {
		op.err = errors.New("client: WithIgnoreValue keeps the key's value: put an empty value with it")
		return op
	}
	if op.ignoreLease && op.lease != 0 {
		op.err = errors.New("client: WithIgnoreLease and WithLease cannot be combined")
		return op
	}
	if op.keysOnly && op.countOnly {
		op.err = errors.New("client: WithKeysOnly and WithCountOnly cannot be combined")
		return op
	}
	if len(op.key) == 0 {
		switch {
		case op.set&(optPrefix|optFromKey) != 0:
			// An empty prefix, or every key from the empty key on: all keys.
			op.key, op.end = []byte{0}, []byte{0}
		default:
			op.err = fmt.Errorf("client: %s: key is empty", t)
		}
	}
	return op
}

func countBits(b optBit) int {
	n := 0
	for ; b != 0; b &= b - 1 {
		n++
	}
	return n
}

func bitNames(b optBit) string {
	var names []string
	for _, o := range optNames {
		if b&o.bit != 0 {
			names = append(names, o.name)
		}
	}
	return strings.Join(names, " and ")
}

// setErr records the first error found while applying options.
func (op *Op) setErr(err error) {
	if op.err == nil {
		op.err = err
	}
}

// WithRange selects the keys in [key, end). An end of "\x00" selects every
// key from key on; an empty end selects key alone. Valid for get, delete and
// watch.
func WithRange(end string) OpOption {
	return func(op *Op) {
		op.set |= optRange
		op.end = []byte(end)
	}
}

// WithPrefix selects every key that starts with the op's key; with an empty
// key, every key. Valid for get, delete and watch.
func WithPrefix() OpOption {
	return func(op *Op) {
		op.set |= optPrefix
		op.end = []byte(PrefixEnd(string(op.key)))
	}
}

// WithFromKey selects every key greater than or equal to the op's key; with
// an empty key, every key. Valid for get, delete and watch.
func WithFromKey() OpOption {
	return func(op *Op) {
		op.set |= optFromKey
		op.end = []byte{0}
	}
}

// WithRev reads the store as it was at revision rev; zero means the current
// revision. Valid for get, and for watch, where it is the first revision
// whose events are sent (zero: only changes after the watch is created).
func WithRev(rev int64) OpOption {
	return func(op *Op) {
		op.set |= optRev
		if rev < 0 {
			op.setErr(fmt.Errorf("client: WithRev(%d): revision is negative", rev))
		}
		op.rev = rev
	}
}

// WithLimit returns at most n keys; zero means no limit. Valid for get.
func WithLimit(n int64) OpOption {
	return func(op *Op) {
		op.set |= optLimit
		if n < 0 {
			op.setErr(fmt.Errorf("client: WithLimit(%d): limit is negative", n))
		}
		op.limit = n
	}
}

// WithKeysOnly returns keys without their values. Valid for get.
func WithKeysOnly() OpOption {
	return func(op *Op) {
		op.set |= optKeysOnly
		op.keysOnly = true
	}
}

// WithCountOnly returns only the number of keys in the range. Valid for get.
func WithCountOnly() OpOption {
	return func(op *Op) {
		op.set |= optCountOnly
		op.countOnly = true
	}
}

// WithSerializable serves a read from the local state of the member that
// receives it, without a round trip to the leader: faster, but possibly
// stale. Valid for get; a transaction is always linearizable.
func WithSerializable() OpOption {
	return func(op *Op) {
		op.set |= optSerializable
		op.serializable = true
	}
}

// WithPrevKV returns the key-value pairs as they were before a put or
// delete. Valid for put, delete and watch (each event then carries PrevKv,
// when the key existed).
func WithPrevKV() OpOption {
	return func(op *Op) {
		op.set |= optPrevKV
		op.prevKV = true
	}
}

// WithLease attaches the lease id to a put; zero means no lease. Valid for
// put.
func WithLease(id int64) OpOption {
	return func(op *Op) {
		op.set |= optLease
		op.lease = id
	}
}

// WithIgnoreValue keeps the key's current value and changes only its lease
// (etcd's ignore_value): the put's value must be empty, and the key must
// exist (InvalidArgument otherwise). Valid for put.
func WithIgnoreValue() OpOption {
	return func(op *Op) {
		op.set |= optIgnoreValue
		op.ignoreValue = true
	}
}

// WithIgnoreLease keeps the key's current lease and changes only its value
// (etcd's ignore_lease); the key must exist. Valid for put.
func WithIgnoreLease() OpOption {
	return func(op *Op) {
		op.set |= optIgnoreLease
		op.ignoreLease = true
	}
}

// SortTarget is what WithSort sorts a get by.
type SortTarget = kvv1.RangeRequest_SortTarget

// SortOrder is the order WithSort sorts a get in.
type SortOrder = kvv1.RangeRequest_SortOrder

// Sort targets and orders for WithSort.
const (
	SortByKey            = kvv1.RangeRequest_SORT_TARGET_KEY
	SortByVersion        = kvv1.RangeRequest_SORT_TARGET_VERSION
	SortByCreateRevision = kvv1.RangeRequest_SORT_TARGET_CREATE
	SortByModRevision    = kvv1.RangeRequest_SORT_TARGET_MOD
	SortByValue          = kvv1.RangeRequest_SORT_TARGET_VALUE

	SortNone    = kvv1.RangeRequest_SORT_ORDER_UNSPECIFIED
	SortAscend  = kvv1.RangeRequest_SORT_ORDER_ASCEND
	SortDescend = kvv1.RangeRequest_SORT_ORDER_DESCEND
)

// WithSort sorts a get's keys by target in order (SortNone with a target
// other than the key sorts ascending, as etcd does). The limit applies after
// sorting. Valid for get.
func WithSort(target SortTarget, order SortOrder) OpOption {
	return func(op *Op) {
		op.set |= optSort
		op.sortTarget, op.sortOrder = target, order
	}
}

// WithFirstCreate gets the key of the range created first: WithSort by
// create revision, ascending, WithLimit(1).
func WithFirstCreate() []OpOption {
	return []OpOption{WithSort(SortByCreateRevision, SortAscend), WithLimit(1)}
}

// WithLastCreate gets the key of the range created last.
func WithLastCreate() []OpOption {
	return []OpOption{WithSort(SortByCreateRevision, SortDescend), WithLimit(1)}
}

// WithFirstKey gets the range's smallest key.
func WithFirstKey() []OpOption { return []OpOption{WithSort(SortByKey, SortAscend), WithLimit(1)} }

// WithLastKey gets the range's largest key.
func WithLastKey() []OpOption { return []OpOption{WithSort(SortByKey, SortDescend), WithLimit(1)} }

// WithFirstRev gets the key of the range modified first.
func WithFirstRev() []OpOption {
	return []OpOption{WithSort(SortByModRevision, SortAscend), WithLimit(1)}
}

// WithLastRev gets the key of the range modified last.
func WithLastRev() []OpOption {
	return []OpOption{WithSort(SortByModRevision, SortDescend), WithLimit(1)}
}

// revFilter sets one of a get's revision filters; rev must be positive.
func revFilter(name string, rev int64, field func(*Op) *int64) OpOption {
	return func(op *Op) {
		op.set |= optRevFilter
		if rev <= 0 {
			op.setErr(fmt.Errorf("client: %s(%d): the revision must be positive", name, rev))
			return
		}
		*field(op) = rev
	}
}

// WithMinModRev returns only keys modified at or after rev. Like the other
// revision filters it narrows what a get returns, not its count. Valid for
// get.
func WithMinModRev(rev int64) OpOption {
	return revFilter("WithMinModRev", rev, func(op *Op) *int64 { return &op.minModRev })
}

// WithMaxModRev returns only keys modified at or before rev.
func WithMaxModRev(rev int64) OpOption {
	return revFilter("WithMaxModRev", rev, func(op *Op) *int64 { return &op.maxModRev })
}

// WithMinCreateRev returns only keys created at or after rev.
func WithMinCreateRev(rev int64) OpOption {
	return revFilter("WithMinCreateRev", rev, func(op *Op) *int64 { return &op.minCreateRev })
}

// WithMaxCreateRev returns only keys created at or before rev.
func WithMaxCreateRev(rev int64) OpOption {
	return revFilter("WithMaxCreateRev", rev, func(op *Op) *int64 { return &op.maxCreateRev })
}

// WithProgressNotify asks the member to send the watcher a progress
// notification (a response without events, see
// WatchResponse.IsProgressNotify) when it has had no event for the member's
// progress interval. Valid for watch.
func WithProgressNotify() OpOption {
	return func(op *Op) {
		op.set |= optProgressNotify
		op.progressNotify = true
	}
}

// WithFilterPut drops put events from a watch. Valid for watch.
func WithFilterPut() OpOption {
	return func(op *Op) {
		op.set |= optFilterPut
		op.filterPut = true
	}
}

// WithFilterDelete drops delete events from a watch. Valid for watch.
func WithFilterDelete() OpOption {
	return func(op *Op) {
		op.set |= optFilterDelete
		op.filterDelete = true
	}
}

// WithFragment lets the member split the events of one revision over several
// messages when they would not fit in one (a transaction that changed many
// large keys). The client puts the pieces together again: a watch channel
// only ever carries whole revisions. Valid for watch.
func WithFragment() OpOption {
	return func(op *Op) {
		op.set |= optFragment
		op.fragment = true
	}
}

// WithCreatedNotify makes the first response on a watch channel the one that
// reports the watcher's creation (Created set, Header.Revision the member's
// revision then), as etcd's option of that name does. Valid for watch.
func WithCreatedNotify() OpOption {
	return func(op *Op) {
		op.set |= optCreatedNotify
		op.createdNotify = true
	}
}

// PrefixEnd returns the range end that, with prefix as the key, selects every
// key starting with prefix: the prefix with its last byte below 0xff
// incremented and what follows dropped. For an empty prefix, or one made only
// of 0xff bytes, it returns "\x00", which means every key from the key on.
func PrefixEnd(prefix string) string {
	end := []byte(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return string(end[:i+1])
		}
	}
	return "\x00"
}

// isWrite reports whether op may change the store.
func (op Op) isWrite() bool {
	switch op.t {
	case tPut, tDeleteRange:
		return true
	case tTxn:
		for _, sub := range op.thenOps {
			if sub.isWrite() {
				return true
			}
		}
		for _, sub := range op.elseOps {
			if sub.isWrite() {
				return true
			}
		}
	}
	return false
}

func (op Op) kind() rpcKind {
	if op.isWrite() {
		return kindWrite
	}
	return kindRead
}

func (op Op) check() error {
	if op.t == 0 {
		return errors.New("client: empty op")
	}
	return op.err
}

func (op Op) rangeRequest() *kvv1.RangeRequest {
	return &kvv1.RangeRequest{
		Key:               op.key,
		RangeEnd:          op.end,
		Limit:             op.limit,
		Revision:          op.rev,
		Serializable:      op.serializable,
		KeysOnly:          op.keysOnly,
		CountOnly:         op.countOnly,
		SortOrder:         op.sortOrder,
		SortTarget:        op.sortTarget,
		MinModRevision:    op.minModRev,
		MaxModRevision:    op.maxModRev,
		MinCreateRevision: op.minCreateRev,
		MaxCreateRevision: op.maxCreateRev,
	}
}

func (op Op) putRequest() *kvv1.PutRequest {
	return &kvv1.PutRequest{Key: op.key, Value: op.val, Lease: op.lease, PrevKv: op.prevKV,
		IgnoreValue: op.ignoreValue, IgnoreLease: op.ignoreLease}
}

func (op Op) deleteRequest() *kvv1.DeleteRangeRequest {
	return &kvv1.DeleteRangeRequest{Key: op.key, RangeEnd: op.end, PrevKv: op.prevKV}
}

func (op Op) txnRequest() (*kvv1.TxnRequest, error) {
	if err := op.check(); err != nil {
		return nil, err
	}
	req := &kvv1.TxnRequest{}
	for _, cmp := range op.cmps {
		pc, err := cmp.proto()
		if err != nil {
			return nil, err
		}
		req.Compare = append(req.Compare, pc)
	}
	var err error
	if req.Success, err = requestOps(op.thenOps); err != nil {
		return nil, err
	}
	if req.Failure, err = requestOps(op.elseOps); err != nil {
		return nil, err
	}
	return req, nil
}

func requestOps(ops []Op) ([]*kvv1.RequestOp, error) {
	out := make([]*kvv1.RequestOp, 0, len(ops))
	for _, op := range ops {
		ro, err := op.requestOp()
		if err != nil {
			return nil, err
		}
		out = append(out, ro)
	}
	return out, nil
}

func (op Op) requestOp() (*kvv1.RequestOp, error) {
	if err := op.check(); err != nil {
		return nil, err
	}
	switch op.t {
	case tRange:
		return &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestRange{RequestRange: op.rangeRequest()}}, nil
	case tPut:
		return &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestPut{RequestPut: op.putRequest()}}, nil
	case tDeleteRange:
		return &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestDeleteRange{RequestDeleteRange: op.deleteRequest()}}, nil
	default:
		tr, err := op.txnRequest()
		if err != nil {
			return nil, err
		}
		return &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestTxn{RequestTxn: tr}}, nil
	}
}
