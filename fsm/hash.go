package fsm

import (
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
	err := f.view(func(tx *bolt.Tx) error {
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
		if err := mvcc.Read(tx).HashData(h); err != nil {
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
		// Alarms only when there are any, so that a state without alarms
		// hashes as it did before they existed.
		alarms := tx.Bucket(bucketAlarms)
		if alarms == nil || alarms.Stats().KeyN == 0 {
			return nil
		}
		h.Write(bucketAlarms)
		return alarms.ForEach(func(k, v []byte) error {
			mvcc.HashPair(h, k, v)
			return nil
		})
	})
	return h.Sum32(), err
}
