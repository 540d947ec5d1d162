package fsm

import (
	"encoding/binary"
	"hash"
	"hash/crc32"

	bolt "go.etcd.io/bbolt"
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Hash returns a checksum of the replicated state: every key-value version,
// the members, the revision and the cluster id. The applied raft index and
// term are left out: they describe the log, not the state, and members that
// applied the same commands agree on everything else.
func (f *FSM) Hash() (uint32, error) {
	h := crc32.New(castagnoli)
	err := f.view(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			h.Write(name)
			err := tx.Bucket(name).ForEach(func(k, v []byte) error {
				if string(name) == string(bucketMeta) && (string(k) == string(metaAppliedIndex) || string(k) == string(metaAppliedTerm)) {
					return nil
				}
				hashPair(h, k, v)
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

// hashPair feeds one key and value to h, each prefixed by its length, so that
// no two different sequences of pairs hash the same bytes.
func hashPair(h hash.Hash, k, v []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(k)))
	h.Write(n[:])
	h.Write(k)
	binary.BigEndian.PutUint64(n[:], uint64(len(v)))
	h.Write(n[:])
	h.Write(v)
}
