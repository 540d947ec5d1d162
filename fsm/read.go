package fsm

import (
	"bytes"
	"fmt"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// rangeTx answers a range read inside tx, at the current revision or at a
// past one. Inside a write transaction it sees the writes made so far.
func rangeTx(tx *bolt.Tx, r *kvv1.RangeRequest) (*kvv1.RangeResponse, error) {
	meta := tx.Bucket(bucketMeta)
	current := int64(readU64(meta.Get(metaRevision)))
	compacted := int64(readU64(meta.Get(metaCompactRevision)))
	rev := r.GetRevision()
	switch {
	case rev > current:
		return nil, fmt.Errorf("%w: %d > current %d", ErrFutureRevision, rev, current)
	case rev > 0 && rev < compacted:
		return nil, fmt.Errorf("%w: %d < compacted %d", ErrCompacted, rev, compacted)
	}
	resp := &kvv1.RangeResponse{Header: &kvv1.ResponseHeader{Revision: current}}
	emit := func(kv *kvv1.KeyValue) {
		resp.Count++
		if r.GetCountOnly() {
			return
		}
		if r.GetLimit() > 0 && int64(len(resp.Kvs)) >= r.GetLimit() {
			resp.More = true
			return
		}
		if r.GetKeysOnly() {
			kv.Value = nil
		}
		resp.Kvs = append(resp.Kvs, kv)
	}
	var err error
	if rev <= 0 || rev == current {
		err = scanCurrent(tx, r.GetKey(), r.GetRangeEnd(), emit)
	} else {
		err = scanHistory(tx, r.GetKey(), r.GetRangeEnd(), rev, emit)
	}
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// scanCurrent calls emit for every live key in [key, end), in key order.
func scanCurrent(tx *bolt.Tx, key, end []byte, emit func(*kvv1.KeyValue)) error {
	b := tx.Bucket(bucketKeys)
	if len(end) == 0 {
		v := b.Get(key)
		if v == nil {
			return nil
		}
		kv, err := decodeKV(v)
		if err != nil {
			return err
		}
		emit(kv)
		return nil
	}
	c := b.Cursor()
	for k, v := c.Seek(key); k != nil && inRange(k, key, end); k, v = c.Next() {
		kv, err := decodeKV(v)
		if err != nil {
			return err
		}
		emit(kv)
	}
	return nil
}

// scanHistory calls emit for every key in [key, end) that was live at rev,
// with the version it had then.
func scanHistory(tx *bolt.Tx, key, end []byte, rev int64, emit func(*kvv1.KeyValue)) error {
	c := tx.Bucket(bucketHistory).Cursor()
	var stop []byte // history keys from here on are past the range
	switch {
	case len(end) == 0:
		// Every history key of key starts with its prefix, which ends in the
		// terminator 0x00 0x01; 0x00 0x02 never occurs, so it bounds them.
		stop = historyPrefix(key)
		stop[len(stop)-1]++
	case !bytes.Equal(end, rangeEndAll):
		stop = historyPrefix(end)
	}
	var (
		curKey  []byte
		visible []byte // the newest version of curKey at or before rev
	)
	flush := func() error {
		if visible == nil {
			return nil
		}
		kv, err := decodeKV(visible)
		if err != nil {
			return err
		}
		visible = nil
		if kv.GetVersion() > 0 { // tombstones have version 0
			emit(kv)
		}
		return nil
	}
	for hk, v := c.Seek(historyPrefix(key)); hk != nil; hk, v = c.Next() {
		if stop != nil && bytes.Compare(hk, stop) >= 0 {
			break
		}
		uk, r, err := splitHistoryKey(hk)
		if err != nil {
			return err
		}
		if !bytes.Equal(uk, curKey) {
			if err := flush(); err != nil {
				return err
			}
			curKey = uk
		}
		if r <= rev {
			visible = v
		}
	}
	return flush()
}

func decodeKV(v []byte) (*kvv1.KeyValue, error) {
	kv := &kvv1.KeyValue{}
	if err := proto.Unmarshal(v, kv); err != nil {
		return nil, fmt.Errorf("fsm: decode key-value: %w", err)
	}
	return kv, nil
}
