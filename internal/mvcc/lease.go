package mvcc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Leases are replicated state like keys: a lease's record (its TTL and the
// remaining TTL last checkpointed) and which keys are attached to it. When
// and whether a lease expires is not: the leader decides that, and revokes
// it through the log (RevokeLease), which deletes its keys here at one
// revision. A put with a lease attaches the key, a put without one (or with
// another) detaches it, a delete detaches it.
//
// Two buckets: "leases", the lease id (8 bytes, big-endian) to its record
// (TTL, then remaining TTL, 8 bytes each); and "lease_keys", the lease id
// followed by each attached key, to nothing.

var (
	bucketLeases    = []byte("leases")
	bucketLeaseKeys = []byte("lease_keys")
)

// Lease errors.
var (
	// ErrLeaseNotFound: a lease that does not exist (never granted,
	// expired, or revoked).
	ErrLeaseNotFound = errors.New("requested lease not found")
	// ErrLeaseExists: a grant of an id in use.
	ErrLeaseExists = errors.New("lease already exists")
	// ErrKeyNotFound: a put that keeps the key's value or lease
	// (ignore_value, ignore_lease) of a key that does not exist.
	ErrKeyNotFound = errors.New("key not found")
)

// Lease is a lease as the store keeps it.
type Lease struct {
	ID int64
	// TTL is what the lease was granted, in seconds.
	TTL int64
	// RemainingTTL is its remaining TTL at the last checkpoint, in
	// seconds; zero when it has none (a new leader gives it its full TTL).
	RemainingTTL int64
}

func leaseID(id int64) []byte { return u64(uint64(id)) }

func encodeLease(l Lease) []byte {
	b := make([]byte, 0, 16)
	b = binary.BigEndian.AppendUint64(b, uint64(l.TTL))
	return binary.BigEndian.AppendUint64(b, uint64(l.RemainingTTL))
}

func decodeLease(id int64, v []byte) (Lease, error) {
	if len(v) != 16 {
		return Lease{}, fmt.Errorf("mvcc: lease %d: malformed record of %d bytes", id, len(v))
	}
	return Lease{ID: id, TTL: int64(binary.BigEndian.Uint64(v)), RemainingTTL: int64(binary.BigEndian.Uint64(v[8:]))}, nil
}

// Lease returns a lease's record; ok is false when it does not exist.
func (r ReadView) Lease(id int64) (l Lease, ok bool, err error) {
	v := r.tx.Bucket(bucketLeases).Get(leaseID(id))
	if v == nil {
		return Lease{}, false, nil
	}
	l, err = decodeLease(id, v)
	return l, err == nil, err
}

// Leases returns every lease, by id.
func (r ReadView) Leases() ([]Lease, error) {
	var out []Lease
	err := r.tx.Bucket(bucketLeases).ForEach(func(k, v []byte) error {
		l, err := decodeLease(int64(readU64(k)), v)
		out = append(out, l)
		return err
	})
	return out, err
}

// LeaseKeys returns the keys attached to a lease, in key order.
func (r ReadView) LeaseKeys(id int64) ([][]byte, error) {
	prefix := leaseID(id)
	var out [][]byte
	c := r.tx.Bucket(bucketLeaseKeys).Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
		out = append(out, bytes.Clone(k[len(prefix):]))
	}
	return out, nil
}

// GrantLease creates a lease (ErrLeaseExists if its id is in use).
func (w *Writer) GrantLease(id, ttl int64) error {
	b := w.tx.Bucket(bucketLeases)
	if b.Get(leaseID(id)) != nil {
		return fmt.Errorf("%w: %d", ErrLeaseExists, id)
	}
	return b.Put(leaseID(id), encodeLease(Lease{ID: id, TTL: ttl}))
}

// CheckpointLease records a lease's remaining TTL (zero clears it). A lease
// that no longer exists is skipped (ok false): it was revoked after the
// checkpoint was proposed.
func (w *Writer) CheckpointLease(id, remaining int64) (ok bool, err error) {
	b := w.tx.Bucket(bucketLeases)
	v := b.Get(leaseID(id))
	if v == nil {
		return false, nil
	}
	l, err := decodeLease(id, v)
	if err != nil {
		return false, err
	}
	l.RemainingTTL = remaining
	return true, b.Put(leaseID(id), encodeLease(l))
}

// RestartLeases clears every lease's checkpointed remaining TTL, in a state
// database being seeded into a new cluster.
func RestartLeases(tx *bolt.Tx) error {
	b := tx.Bucket(bucketLeases)
	if b == nil {
		return nil // a state written before leases existed
	}
	var ls []Lease
	err := b.ForEach(func(k, v []byte) error {
		l, err := decodeLease(int64(readU64(k)), v)
		if err == nil && l.RemainingTTL != 0 {
			ls = append(ls, l)
		}
		return err
	})
	for _, l := range ls {
		if err != nil {
			break
		}
		l.RemainingTTL = 0
		err = b.Put(leaseID(l.ID), encodeLease(l))
	}
	return err
}

// RevokeLease deletes a lease and every key attached to it, all at the
// transaction's revision (ErrLeaseNotFound if there is no such lease). It
// returns how many keys it deleted.
func (t *TxnWrite) RevokeLease(id int64) (int, error) {
	r := t.w.Read()
	if _, ok, err := r.Lease(id); err != nil || !ok {
		if err == nil {
			err = fmt.Errorf("%w: %d", ErrLeaseNotFound, id)
		}
		return 0, err
	}
	keys, err := r.LeaseKeys(id)
	if err != nil {
		return 0, err
	}
	deleted := 0
	for _, k := range keys {
		dr, err := t.deleteRange(&kvv1.DeleteRangeRequest{Key: k})
		if err != nil {
			return 0, err
		}
		deleted += int(dr.GetDeleted())
	}
	return deleted, t.w.tx.Bucket(bucketLeases).Delete(leaseID(id))
}

// attach records that key is attached to lease, and that it is no longer
// attached to the lease it had (prev, 0 for none).
func (w *Writer) attach(key []byte, lease, prev int64) error {
	if lease == prev {
		return nil
	}
	b := w.tx.Bucket(bucketLeaseKeys)
	if prev != 0 {
		if err := b.Delete(append(leaseID(prev), key...)); err != nil {
			return err
		}
	}
	if lease != 0 {
		return b.Put(append(leaseID(lease), key...), nil)
	}
	return nil
}

// CheckPut reports a put that cannot be applied to the store as it is: a
// lease that does not exist (ErrLeaseNotFound), or ignore_value or
// ignore_lease on a key that does not exist (ErrKeyNotFound). Nothing is
// written; call it before Put.
func (t *TxnWrite) CheckPut(key []byte, lease int64, ignoreValue, ignoreLease bool) error {
	r := t.w.Read()
	if ignoreValue || ignoreLease {
		if _, live := t.w.idx.find(key).live(); !live {
			return fmt.Errorf("%w: %q", ErrKeyNotFound, key)
		}
	}
	if lease != 0 {
		if _, ok, err := r.Lease(lease); err != nil || !ok {
			if err == nil {
				err = fmt.Errorf("%w: %d", ErrLeaseNotFound, lease)
			}
			return err
		}
	}
	return nil
}
