package fsm

import (
	"errors"
	"fmt"
	"io"
	"os"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/kvd-io/kvd/internal/mvcc"
)

// Backup writes a consistent copy of the state database to w, as of the last
// applied entry, and returns its size. It runs in a read transaction, so
// applies continue meanwhile. size is called with the size of the copy before
// anything is written.
func (f *FSM) Backup(w io.Writer, size func(int64)) (int64, error) {
	n, err := f.be.WriteTo(w, size)
	if err != nil {
		return n, fmt.Errorf("fsm: backup: %w", err)
	}
	return n, nil
}

// HashKV returns a CRC-32C of every key-value version (tombstones included)
// up to rev, and the revision it covers; rev <= 0 means the current revision.
// Members that applied the same log agree on it whatever else they hold, so
// it finds a member whose data was damaged.
func (f *FSM) HashKV(rev int64) (hash uint32, hashRev, compactRev int64, err error) {
	err = f.viewCommitted(func(tx *bolt.Tx) error {
		var err error
		hash, hashRev, compactRev, err = f.kv.Read(tx).HashKV(rev)
		return err
	})
	return hash, hashRev, compactRev, err
}

// StateInfo describes a state database file.
type StateInfo struct {
	Revision     int64
	Keys         int
	AppliedIndex uint64
	ClusterID    uint64
	Size         int64
}

// InspectState reads a state database file (a backup, for instance) without
// changing it.
func InspectState(path string) (StateInfo, error) {
	var info StateInfo
	fi, err := os.Stat(path)
	if err != nil {
		return info, err
	}
	info.Size = fi.Size()
	if _, err := checkStateFile(path); err != nil {
		return info, fmt.Errorf("not a kvd state database: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return info, err
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return errors.New("not a kvd state database: buckets missing")
		}
		var err error
		if info.Revision, info.Keys, err = mvcc.Inspect(tx); err != nil {
			return fmt.Errorf("not a kvd state database: %w", err)
		}
		info.AppliedIndex = readU64(meta.Get(metaAppliedIndex))
		info.ClusterID = readU64(meta.Get(metaClusterID))
		return nil
	})
	return info, err
}

// ResetForNewCluster prepares a copy of a state database to seed a member of
// a new cluster: the key-value data, the revision and the leases stay; the
// raft position, the published members and the cluster id are cleared,
// because they belong to the old cluster's log. Every lease's checkpointed
// remaining TTL is cleared too: the restored cluster's first leader starts
// each lease over at its full TTL, as etcd does.
func ResetForNewCluster(path string) error {
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		return fmt.Errorf("fsm: open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta == nil {
			return errors.New("not a kvd state database")
		}
		for _, k := range [][]byte{metaAppliedIndex, metaAppliedTerm, metaClusterID} {
			if err := meta.Delete(k); err != nil {
				return err
			}
		}
		if err := tx.DeleteBucket(bucketMembers); err != nil && !errors.Is(err, bolterrors.ErrBucketNotFound) {
			return err
		}
		if _, err := tx.CreateBucket(bucketMembers); err != nil {
			return err
		}
		return mvcc.RestartLeases(tx)
	})
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	return err
}
