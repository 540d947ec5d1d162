// Package mvcc is kvd's revisioned key-value store, with etcd v3's
// semantics: every write moves the store revision, every version of every key
// is kept in a history, and reads are served at the current revision or at a
// past one. It works inside a bbolt transaction that its caller opens
// (package fsm, through package backend), and knows nothing of raft, of
// commands or of when transactions commit.
//
// # Views
//
// A Store holds what the store keeps in memory, the key index, for one
// database; everything else is in the bbolt transactions its views read
// and write. Store.Read returns a ReadView, which reads through any bbolt
// transaction: Range at the current or a past revision, the history of a
// range of keys (History), the key count, and the hashes (HashKV,
// HashData). Store.NewWriter holds the key-value buckets of one bbolt write
// transaction; each key-value transaction in it (one command: a put, a
// delete-range or a txn) begins with Writer.Begin, which returns the
// TxnWrite that applies it. The transaction's revision is allocated on its
// first write, so one that changes nothing (a delete that matched no key, a
// txn whose branch only reads) does not move the store revision.
// TxnWrite.Changes returns what it changed, as Events in the order its
// operations were applied.
//
// # Storage
//
// Two buckets, whose format existing data directories and snapshots keep
// (Store.Init converts the older ones, see migrateHistory and dropKeys),
// and the key index in memory:
//
//   - meta (shared with the caller, which keeps its own keys there):
//     "revision", the store revision, 8 bytes big-endian, 1 in an empty
//     store (etcd's convention: the first write is revision 2, and revision 0
//     can mean "current"); "compact_revision", the revision below which
//     history may have been trimmed (absent: 0).
//   - revisions: history, every version of every key, keyed by the
//     revision that wrote it and the key (see revKey), each with the
//     revision of the version it replaced; a deletion is a tombstone, a
//     KeyValue with only Key and ModRevision. The history type is the one
//     place that touches the bucket.
//   - the key index (see index): for each key, the revisions of its
//     versions in history, rebuilt from history whenever a database is
//     opened. Every read, at the current revision or a past one, finds the
//     versions it returns through it.
//
// Each key changes at most once per revision (the caller's validation
// rejects a txn that writes a key twice), so a version's history key is
// unique.
package mvcc

import (
	"errors"
	"fmt"
	"math"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Bucket names, for a caller that hashes or inspects the whole database.
const (
	MetaBucket    = "meta"
	HistoryBucket = "revisions"
)

var (
	bucketMeta    = []byte(MetaBucket)
	bucketHistory = []byte(HistoryBucket)
	// bucketKeys held every key's live version, in key order, until
	// 7 December 2026; the key index replaced it (see dropKeys).
	bucketKeys = []byte("keys")

	metaRevision        = []byte("revision")
	metaCompactRevision = []byte("compact_revision")
	// metaFormat records Format; versions before it wrote none.
	metaFormat = []byte("format")
)

// Format is the layout of the data this package keeps, recorded in the
// meta bucket whenever a database is initialised: 1, history in key order
// (until 6 December 2026); 2, history by revision beside a bucket of live
// keys (until 7 December 2026); 3, history by revision and the key index in
// memory. Formats 1 and 2 carried no record; Init tells them by their
// buckets and converts them. A database of a newer format is refused
// (ErrNewerFormat) rather than misread: a kvd that does not know a layout
// must not serve it or write into it.
const Format = 3

// ErrNewerFormat: the database was written by a newer kvd, in a format
// this one does not know.
var ErrNewerFormat = errors.New("mvcc: the state was written by a newer kvd")

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

// ErrOvertaken: a read found that the trim of a compaction applied since
// its transaction began (writes overtook it) had removed versions it needed
// from the key index. The read is to be made again in a new transaction,
// which sees the compaction: it then reads what is left, or fails with
// ErrCompacted if it asked for a revision below the compact revision.
var ErrOvertaken = errors.New("mvcc: a compaction overtook the read; read again")

// Store is the store's state in memory for one database: the key index.
// Make one per database with NewStore, Init it in a write transaction
// whenever the database is opened or replaced, before any other use, and
// read and write through Read and NewWriter.
type Store struct{ idx *index }

// NewStore returns a Store with an empty index; Init fills it.
func NewStore() *Store { return &Store{idx: newIndex()} }

// Init creates the store's buckets in tx if they are missing, converts data
// kept in older formats, gives an empty store its revision 1, and builds
// the key index from history. The caller runs it whenever it opens a
// database, a snapshot's included; reads of the Store's previous database
// must have ended.
func (s *Store) Init(tx *bolt.Tx) error { return s.InitFrom(tx, nil) }

// InitFrom is Init with a key index built already: built's, if not nil,
// which must hold the versions of tx's history (a Store that was loaded
// from a copy of the database and wrote everything the copy has since
// received; package fsm's defragmentation). s takes it over, and built must
// not be used after.
func (s *Store) InitFrom(tx *bolt.Tx, built *Store) error {
	if err := CheckFormat(tx); err != nil {
		return err
	}
	for _, b := range [][]byte{bucketMeta, bucketHistory, bucketLeases, bucketLeaseKeys} {
		if _, err := tx.CreateBucketIfNotExists(b); err != nil {
			return err
		}
	}
	if err := migrateHistory(tx); err != nil {
		return err
	}
	if err := dropKeys(tx); err != nil {
		return err
	}
	meta := tx.Bucket(bucketMeta)
	if meta.Get(metaRevision) == nil {
		if err := meta.Put(metaRevision, u64(1)); err != nil {
			return err
		}
	}
	if readU64(meta.Get(metaFormat)) != Format {
		if err := meta.Put(metaFormat, u64(Format)); err != nil {
			return err
		}
	}
	if built != nil {
		built.idx.mu.Lock()
		tree, prunedTo := built.idx.tree, built.idx.prunedTo
		built.idx.tree = nil
		built.idx.mu.Unlock()
		s.idx.reset(tree, prunedTo)
		return nil
	}
	return s.Load(tx)
}

// CheckFormat refuses the database in tx if a newer kvd wrote it
// (ErrNewerFormat). Init checks it first; a caller that vets a file before
// it puts the file in place of its state (a snapshot) checks it then.
func CheckFormat(tx *bolt.Tx) error {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return nil
	}
	if f := readU64(meta.Get(metaFormat)); f > Format {
		return fmt.Errorf("%w: its format is %d, and this kvd reads formats up to %d; run that kvd or a newer one, or restore a backup", ErrNewerFormat, f, Format)
	}
	return nil
}

// Load builds the key index from the history in tx, without writing
// anything: Init does it, and a reader of a database file that no Store
// opened (a backup) does it alone, before reading through Read.
func (s *Store) Load(tx *bolt.Tx) error {
	tree := newTree()
	b := tx.Bucket(bucketHistory)
	if b == nil {
		return errors.New("mvcc: no history bucket: not a kvd state")
	}
	err := history{b}.walk(nil, rangeEndAll, 0, math.MaxInt64, func(rev int64, k []byte, _ int64, kv []byte) (bool, error) {
		tomb, err := isTombstone(kv)
		if err != nil {
			return false, err
		}
		addTo(tree, k, rev, tomb)
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("mvcc: build the key index: %w", err)
	}
	// The trim deletes a version from history and the index together, so
	// reads down to the compact revision find what they need in a fresh
	// index: nothing below it was pruned that is not gone from history.
	s.idx.reset(tree, s.Read(tx).CompactRevision())
	return nil
}

// dropKeys deletes the keys bucket of a state written before 7 December 2026:
// every version it held is also in history, which the key index is built
// from.
func dropKeys(tx *bolt.Tx) error {
	if tx.Bucket(bucketKeys) == nil {
		return nil
	}
	return tx.DeleteBucket(bucketKeys)
}

// Inspect returns the store revision and the number of live keys of the
// database in tx, which may be read-only and which no Store opened (a
// backup), in any format kvd has written (a newer one is ErrNewerFormat):
// before 7 December 2026 the keys bucket held every live key.
func Inspect(tx *bolt.Tx) (rev int64, keys int, err error) {
	if err := CheckFormat(tx); err != nil {
		return 0, 0, err
	}
	rev = int64(readU64(tx.Bucket(bucketMeta).Get(metaRevision)))
	if b := tx.Bucket(bucketKeys); b != nil {
		return rev, b.Stats().KeyN, nil
	}
	s := NewStore()
	if err := s.Load(tx); err != nil {
		return 0, 0, err
	}
	keys, err = s.Read(tx).KeyCount()
	return rev, keys, err
}

// Read returns a view of the store in tx, a transaction of the database
// the Store was initialised with.
func (s *Store) Read(tx *bolt.Tx) ReadView {
	return ReadView{tx: tx, idx: s.idx, hist: history{tx.Bucket(bucketHistory)}}
}

// isTombstone reports whether an encoded KeyValue is a tombstone: a
// deletion, which has no version. It reads the fields without decoding the
// message, which for a million versions at start saved most of the time
// and every allocation.
func isTombstone(kv []byte) (bool, error) {
	for len(kv) > 0 {
		num, typ, n := protowire.ConsumeTag(kv)
		if n < 0 {
			return false, fmt.Errorf("mvcc: decode key-value: %w", protowire.ParseError(n))
		}
		kv = kv[n:]
		if num == kvVersionField && typ == protowire.VarintType {
			v, n := protowire.ConsumeVarint(kv)
			if n < 0 {
				return false, fmt.Errorf("mvcc: decode key-value: %w", protowire.ParseError(n))
			}
			return v == 0, nil
		}
		n = protowire.ConsumeFieldValue(num, typ, kv)
		if n < 0 {
			return false, fmt.Errorf("mvcc: decode key-value: %w", protowire.ParseError(n))
		}
		kv = kv[n:]
	}
	return true, nil
}

// kvVersionField is the field number of kv.v1.KeyValue's version.
var kvVersionField = (&kvv1.KeyValue{}).ProtoReflect().Descriptor().Fields().ByName("version").Number()

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
