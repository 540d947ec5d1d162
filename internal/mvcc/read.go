package mvcc

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"hash"
	"hash/crc32"
	"math"
	"slices"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// ReadView reads the store through a bbolt transaction, read-only or not,
// and the key index. Inside a write transaction it sees the writes made so
// far. It is a value: make one per transaction with Store.Read, and do not
// use it after the transaction ends.
type ReadView struct {
	tx   *bolt.Tx
	idx  *index
	hist history // opened once: in a read transaction bbolt makes a new Bucket for every lookup
}

// Revision returns the store revision: that of the last transaction that
// changed a key, 1 in an empty store.
func (r ReadView) Revision() int64 {
	return int64(readU64(r.tx.Bucket(bucketMeta).Get(metaRevision)))
}

// CompactRevision returns the revision below which history may have been
// trimmed; 0 before any compaction.
func (r ReadView) CompactRevision() int64 {
	return int64(readU64(r.tx.Bucket(bucketMeta).Get(metaCompactRevision)))
}

// KeyCount returns the number of live keys. It walks the whole key index
// (about a millisecond per 100,000 keys), not the database.
func (r ReadView) KeyCount() (int, error) {
	n, err := r.idx.count(nil, rangeEndAll, r.Revision())
	return int(n), err
}

// each calls fn with every key in [key, end) live at rev, decoded, in key
// order, until fn returns false. rev is at least the compact revision r's
// transaction sees; ErrOvertaken means the trim of a later compaction has
// since removed versions the read needs (see index.live).
func (r ReadView) each(key, end []byte, rev int64, fn func(*kvv1.KeyValue) bool) error {
	vr := r.hist.reader()
	return r.idx.live(key, end, rev, func(k []byte, mod int64) (bool, error) {
		v, err := vr.indexed(k, mod)
		if err != nil {
			return false, err
		}
		kv, err := decodeKV(v)
		if err != nil {
			return false, err
		}
		return fn(kv), nil
	})
}

// Range answers a range read at the current revision or at a past one
// (req.Revision), with req's limit, count-only and keys-only. The caller has
// validated req (fsm.ValidateRange). A revision the store cannot serve is an
// error wrapping ErrFutureRevision or ErrCompacted; other errors are storage
// failures.
func (r ReadView) Range(req *kvv1.RangeRequest) (*kvv1.RangeResponse, error) {
	meta := r.tx.Bucket(bucketMeta)
	current := int64(readU64(meta.Get(metaRevision)))
	compacted := int64(readU64(meta.Get(metaCompactRevision)))
	rev := req.GetRevision()
	switch {
	case rev > current:
		return nil, fmt.Errorf("%w: %d > current %d", ErrFutureRevision, rev, current)
	case rev > 0 && rev < compacted:
		return nil, fmt.Errorf("%w: %d < compacted %d", ErrCompacted, rev, compacted)
	}
	resp := &kvv1.RangeResponse{Header: &kvv1.ResponseHeader{Revision: current}}
	order := sortOrder(req)
	filtered := req.GetMinModRevision() > 0 || req.GetMaxModRevision() > 0 ||
		req.GetMinCreateRevision() > 0 || req.GetMaxCreateRevision() > 0
	// Without sorting or filters the limit applies as the scan goes;
	// otherwise to what is left after them.
	limit := req.GetLimit()
	if order != kvv1.RangeRequest_SORT_ORDER_UNSPECIFIED || filtered {
		limit = 0
	}
	// Without filters or sorting, the keys past the limit (or every key,
	// counting only) need only be counted, not decoded: a page of 100 of
	// a prefix of 50,000 keys would otherwise decode all 50,000.
	countRest := !filtered && order == kvv1.RangeRequest_SORT_ORDER_UNSPECIFIED
	emit := func(kv *kvv1.KeyValue) bool {
		resp.Count++
		if req.GetCountOnly() {
			return !countRest
		}
		if filtered && !passes(req, kv) {
			return true
		}
		if limit > 0 && int64(len(resp.Kvs)) >= limit {
			resp.More = true
			return !countRest
		}
		if req.GetKeysOnly() && order == kvv1.RangeRequest_SORT_ORDER_UNSPECIFIED {
			kv.Value = nil
		}
		resp.Kvs = append(resp.Kvs, kv)
		return true
	}
	if rev <= 0 {
		rev = current
	}
	// Once emit says the rest are only counted (from the start, for a
	// plain count), the key index alone counts them, from countFrom.
	countFrom := req.GetKey()
	if !req.GetCountOnly() || !countRest {
		countFrom = nil
		err := r.each(req.GetKey(), req.GetRangeEnd(), rev, func(kv *kvv1.KeyValue) bool {
			if emit(kv) {
				return true
			}
			if len(req.GetRangeEnd()) > 0 {
				countFrom = append(bytes.Clone(kv.GetKey()), 0) // the key after it
			}
			return false
		})
		if err != nil {
			return nil, err
		}
	}
	if countFrom != nil {
		rest, err := r.idx.count(countFrom, req.GetRangeEnd(), rev)
		if err != nil {
			return nil, err
		}
		resp.Count += rest
	}
	if order != kvv1.RangeRequest_SORT_ORDER_UNSPECIFIED {
		sortKVs(resp.Kvs, req.GetSortTarget(), order)
		if req.GetKeysOnly() {
			for _, kv := range resp.Kvs {
				kv.Value = nil // after sorting, which may be by value
			}
		}
	}
	if l := req.GetLimit(); l > 0 && int64(len(resp.Kvs)) > l {
		resp.Kvs = resp.Kvs[:l]
		resp.More = true
	}
	return resp, nil
}

// sortOrder is the order a range must be sorted in after the scan, which
// yields keys ascending: none for keys ascending, and ascending by default
// for another target (as etcd).
func sortOrder(req *kvv1.RangeRequest) kvv1.RangeRequest_SortOrder {
	target, order := req.GetSortTarget(), req.GetSortOrder()
	byKey := target == kvv1.RangeRequest_SORT_TARGET_UNSPECIFIED || target == kvv1.RangeRequest_SORT_TARGET_KEY
	switch {
	case byKey && order == kvv1.RangeRequest_SORT_ORDER_ASCEND:
		return kvv1.RangeRequest_SORT_ORDER_UNSPECIFIED
	case !byKey && order == kvv1.RangeRequest_SORT_ORDER_UNSPECIFIED:
		return kvv1.RangeRequest_SORT_ORDER_ASCEND
	}
	return order
}

// passes reports whether kv is within the range's revision filters.
func passes(req *kvv1.RangeRequest, kv *kvv1.KeyValue) bool {
	within := func(v, lo, hi int64) bool { return (lo <= 0 || v >= lo) && (hi <= 0 || v <= hi) }
	return within(kv.GetModRevision(), req.GetMinModRevision(), req.GetMaxModRevision()) &&
		within(kv.GetCreateRevision(), req.GetMinCreateRevision(), req.GetMaxCreateRevision())
}

// sortKVs sorts kvs by target in order; ties keep key order.
func sortKVs(kvs []*kvv1.KeyValue, target kvv1.RangeRequest_SortTarget, order kvv1.RangeRequest_SortOrder) {
	var cmpKV func(a, b *kvv1.KeyValue) int
	switch target {
	case kvv1.RangeRequest_SORT_TARGET_VERSION:
		cmpKV = func(a, b *kvv1.KeyValue) int { return cmp.Compare(a.GetVersion(), b.GetVersion()) }
	case kvv1.RangeRequest_SORT_TARGET_CREATE:
		cmpKV = func(a, b *kvv1.KeyValue) int { return cmp.Compare(a.GetCreateRevision(), b.GetCreateRevision()) }
	case kvv1.RangeRequest_SORT_TARGET_MOD:
		cmpKV = func(a, b *kvv1.KeyValue) int { return cmp.Compare(a.GetModRevision(), b.GetModRevision()) }
	case kvv1.RangeRequest_SORT_TARGET_VALUE:
		cmpKV = func(a, b *kvv1.KeyValue) int { return bytes.Compare(a.GetValue(), b.GetValue()) }
	default:
		cmpKV = func(a, b *kvv1.KeyValue) int { return bytes.Compare(a.GetKey(), b.GetKey()) }
	}
	if order == kvv1.RangeRequest_SORT_ORDER_DESCEND {
		slices.SortStableFunc(kvs, func(a, b *kvv1.KeyValue) int { return cmpKV(b, a) })
		return
	}
	slices.SortStableFunc(kvs, cmpKV)
}

// History calls fn with every change to a key in [key, end) at revision from
// or later that history still holds, as the Event a TxnWrite reported for it
// (PrevKV is nil when the key did not exist before, or when its version
// before was trimmed by compaction), in revision order; within one
// revision that is key order, where TxnWrite.Changes gives the order of the
// operations. An error from fn stops the scan and is returned.
func (r ReadView) History(key, end []byte, from int64, fn func(rev int64, ev Event) error) error {
	return r.changes(key, end, from, math.MaxInt64, fn)
}

// changes is History bounded by to.
func (r ReadView) changes(key, end []byte, from, to int64, fn func(rev int64, ev Event) error) error {
	prevs := r.hist.reader()
	return r.hist.walk(key, end, from, to, func(rev int64, k []byte, prev int64, v []byte) (bool, error) {
		kv, err := decodeKV(v)
		if err != nil {
			return false, err
		}
		ev := Event{Type: Put, KV: kv}
		if kv.GetVersion() == 0 {
			ev.Type = Delete
		}
		if prev > 0 {
			pv, err := prevs.get(k, prev)
			if err != nil {
				return false, err
			}
			if pv != nil {
				if ev.PrevKV, err = decodeKV(pv); err != nil {
					return false, err
				}
			}
		}
		return true, fn(rev, ev)
	})
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// HashKV returns a CRC-32C of every key-value version (tombstones included)
// that a read can reach at or below rev (see logicalVersions: what
// compaction has put out of reach is left out, trimmed or not), and the
// revision it covers; rev <= 0 means the current revision. Members that
// applied the same log agree on it whatever else they hold.
func (r ReadView) HashKV(rev int64) (hash uint32, hashRev, compactRev int64, err error) {
	h := crc32.New(castagnoli)
	current, compactRev := r.Revision(), r.CompactRevision()
	if rev <= 0 {
		rev = current
	}
	if rev > current {
		return 0, 0, compactRev, fmt.Errorf("%w: %d > current %d", ErrFutureRevision, rev, current)
	}
	if rev < compactRev {
		return 0, 0, compactRev, fmt.Errorf("%w: %d < compacted %d", ErrCompacted, rev, compactRev)
	}
	err = r.logicalVersions(rev, func(hk, v []byte) error {
		HashPair(h, hk, v)
		return nil
	})
	return h.Sum32(), rev, compactRev, err
}

// HashData feeds the store's data to h: every live key and its encoded
// KeyValue, in key order, prefixed by "keys" (what the keys bucket of
// kvd before 7 December 2026 held, so that the hash is the same as then),
// then the history a read can reach (see logicalVersions), prefixed by the
// history bucket's name, each pair as HashPair writes it. The meta bucket,
// shared with the caller, is the caller's to hash (without LocalMetaKeys).
func (r ReadView) HashData(h hash.Hash) error {
	h.Write(bucketKeys)
	err := r.at(nil, rangeEndAll, r.Revision(), func(k, v []byte) bool {
		HashPair(h, k, v)
		return true
	})
	if err != nil {
		return err
	}
	h.Write(bucketHistory)
	err = r.logicalVersions(math.MaxInt64, func(k, v []byte) error {
		HashPair(h, k, v)
		return nil
	})
	if err != nil {
		return err
	}
	for _, name := range [][]byte{bucketLeases, bucketLeaseKeys} {
		b := r.tx.Bucket(name)
		if b.Stats().KeyN == 0 {
			continue // no leases: the hash of a store that never had any is unchanged
		}
		h.Write(name)
		if err := b.ForEach(func(k, v []byte) error {
			HashPair(h, k, v)
			return nil
		}); err != nil {
			return err
		}
	}
	return nil
}

// HashPair feeds one key and value to h, each prefixed by its length, so that
// no two different sequences of pairs hash the same bytes.
func HashPair(h hash.Hash, k, v []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(k)))
	h.Write(n[:])
	h.Write(k)
	binary.BigEndian.PutUint64(n[:], uint64(len(v)))
	h.Write(n[:])
	h.Write(v)
}

func decodeKV(v []byte) (*kvv1.KeyValue, error) {
	kv := &kvv1.KeyValue{}
	if err := proto.Unmarshal(v, kv); err != nil {
		return nil, fmt.Errorf("mvcc: decode key-value: %w", err)
	}
	return kv, nil
}
