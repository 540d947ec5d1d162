// Package mvcc is kvd's revisioned key-value store, with etcd v3's
// semantics: every write moves the store revision, every version of every key
// is kept in a history, and reads are served at the current revision or at a
// past one. It works inside a bbolt transaction that its caller opens
// (package fsm, through package backend), and knows nothing of raft, of
// commands or of when transactions commit.
//
// # Views
//
// A ReadView reads through any bbolt transaction: Range at the current or a
// past revision, the history of a range of keys (History), the key count,
// and the hashes (HashKV, HashData). A Writer holds the key-value buckets of
// one bbolt write transaction; each key-value transaction in it (one command:
// a put, a delete-range or a txn) begins with Writer.Begin, which returns the
// TxnWrite that applies it. The transaction's revision is allocated on its
// first write, so one that changes nothing (a delete that matched no key, a
// txn whose branch only reads) does not move the store revision.
// TxnWrite.Changes returns what it changed, as Events in the order its
// operations were applied.
//
// # Storage
//
// Three buckets, whose format existing data directories and snapshots keep
// (Init converts the one older format, see migrateHistory):
//
//   - meta (shared with the caller, which keeps its own keys there):
//     "revision", the store revision, 8 bytes big-endian, 1 in an empty
//     store (etcd's convention: the first write is revision 2, and revision 0
//     can mean "current"); "compact_revision", the revision below which
//     history may have been trimmed (absent: 0).
//   - keys: the live value of every key, a kv.v1.KeyValue keyed by the key,
//     for reads at the current revision.
//   - revisions: history, every version of every key, keyed by the
//     revision that wrote it and the key (see revKey), each with the
//     revision of the version it replaced; a deletion is a tombstone, a
//     KeyValue with only Key and ModRevision. Reads at past revisions,
//     watches catching up and compaction go through the history type, the
//     one place that touches the bucket.
//
// Each key changes at most once per revision (the caller's validation
// rejects a txn that writes a key twice), so a version's history key is
// unique.
package mvcc

import (
	"errors"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Bucket names, for a caller that hashes or inspects the whole database.
const (
	MetaBucket    = "meta"
	KeysBucket    = "keys"
	HistoryBucket = "revisions"
)

var (
	bucketMeta    = []byte(MetaBucket)
	bucketKeys    = []byte(KeysBucket)
	bucketHistory = []byte(HistoryBucket)

	metaRevision        = []byte("revision")
	metaCompactRevision = []byte("compact_revision")
)

// Errors of reads at revisions the store cannot serve, and of malformed
// requests. Package fsm re-exports them as its own sentinels.
var (
	// ErrFutureRevision: a read at a revision the store has not reached.
	ErrFutureRevision = errors.New("required revision is a future revision")
	// ErrCompacted: a read at a revision that compaction has removed.
	ErrCompacted = errors.New("required revision has been compacted")
	// ErrEmptyRequest: a request op with nothing in it.
	ErrEmptyRequest = errors.New("empty request")
)

// protoMarshal is the deterministic encoding every stored message uses.
var protoMarshal = proto.MarshalOptions{Deterministic: true}

// Init creates the store's buckets in tx if they are missing, converts
// history kept in the older format, and gives an empty store its revision
// 1. The caller runs it whenever it opens a database, a snapshot's
// included.
func Init(tx *bolt.Tx) error {
	for _, b := range [][]byte{bucketMeta, bucketKeys, bucketHistory, bucketLeases, bucketLeaseKeys} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	if err := migrateHistory(tx); err != nil {
		return err
	}
	meta := tx.Bucket(bucketMeta)
	if meta.Get(metaRevision) == nil {
		return meta.Put(metaRevision, u64(1))
	}
	return nil
}

// EventType is what an Event did to its key.
type EventType int

const (
	// Put wrote a value: it created the key or replaced its value.
	Put EventType = iota
	// Delete removed the key.
	Delete
)

func (t EventType) String() string {
	switch t {
	case Put:
		return "PUT"
	case Delete:
		return "DELETE"
	}
	return "EventType(?)"
}

// Event is one key changed by a transaction, at the transaction's revision.
//
// For a Put, KV is the key's new version (ModRevision is the transaction's
// revision) and PrevKV its version before, nil if the key did not exist.
// For a Delete, KV is the tombstone: the key, with ModRevision set to the
// deleting revision and nothing else; PrevKV is the version deleted.
//
// The KeyValues may be shared with the response to the request that made
// the change, and with other consumers: treat them as immutable.
type Event struct {
	Type   EventType
	KV     *kvv1.KeyValue
	PrevKV *kvv1.KeyValue
}
