package fsm

import (
	"bytes"
	"encoding/binary"

	"github.com/kvd-io/kvd/internal/mvcc"
)

// The state database's buckets. meta is shared with mvcc, which keeps the
// store revision and compact revision there; history is mvcc's; members is
// the FSM's own.
var (
	bucketMeta    = []byte(mvcc.MetaBucket)
	bucketHistory = []byte(mvcc.HistoryBucket)
	bucketMembers = []byte("members")

	// The FSM's keys in the meta bucket.
	metaAppliedIndex = []byte("applied_index")
	metaAppliedTerm  = []byte("applied_term")
	metaClusterID    = []byte("cluster_id")
)

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func readU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// rangeEndAll is the range end that means "every key from key on".
var rangeEndAll = []byte{0}

// inRange reports whether k lies in [key, end) as a request names it: an empty
// end is the single key, rangeEndAll is unbounded.
func inRange(k, key, end []byte) bool { return mvcc.InRange(k, key, end) }

// PrefixEnd returns the range end that selects every key with the given
// prefix, as etcd's clientv3.GetPrefixRangeEnd does.
func PrefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	// The prefix is all 0xff (or empty): every key from it on.
	return []byte{0}
}
