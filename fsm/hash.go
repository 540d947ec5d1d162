package fsm

import (
	"bytes"
	"hash/crc32"
	"slices"

	bolt "go.etcd.io/bbolt"

	"github.com/kvd-io/kvd/internal/mvcc"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Hash returns a checksum of the replicated state: every key-value version,
// the members, the revision and the cluster id. The applied raft index and
// term are left out: they describe the log, not the state, and members that
// applied the same commands agree on everything else.
func (f *FSM) Hash() (uint32, error) {
	h := crc32.New(castagnoli)
	err := f.viewCommitted(func(tx *bolt.Tx) error {
		// The buckets in a fixed order: meta, keys, history (mvcc's), members.
		h.Write(bucketMeta)
		err := tx.Bucket(bucketMeta).ForEach(func(k, v []byte) error {
			if string(k) == string(metaAppliedIndex) || string(k) == string(metaAppliedTerm) || slices.Contains(mvcc.LocalMetaKeys, string(k)) {
				return nil
			}
			mvcc.HashPair(h, k, v)
			return nil
		})
		if err != nil {
			return err
		}
		if err := f.kv.Read(tx).HashData(h); err != nil {
			return err
		}
		h.Write(bucketMembers)
		err = tx.Bucket(bucketMembers).ForEach(func(k, v []byte) error {
			mvcc.HashPair(h, k, v)
			return nil
		})
		if err != nil {
			return err
		}
		// Alarms and auth only when there are any, so that a state without
		// them hashes as it did before they existed.
		for _, name := range [][]byte{bucketAlarms, bucketAuth} {
			b := tx.Bucket(name)
			if b == nil || b.Stats().KeyN == 0 {
				continue
			}
			h.Write(name)
			err := b.ForEach(func(k, v []byte) error {
				if bytes.Equal(name, bucketAuth) && !authHashable(k) {
					return nil
				}
				mvcc.HashPair(h, k, v)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	return h.Sum32(), err
}
