package bench

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
)

// Op is the kind of workload a run drives.
type Op string

// The workloads.
const (
	// OpPut writes a value of ValSize bytes to a key of the key space.
	OpPut Op = "put"
	// OpGet reads Key, or a key of the key space when Key is empty.
	OpGet Op = "get"
	// OpTxn sends a transaction with one compare (on the first key's mod
	// revision, which always holds) and TxnOps puts, like etcd's txn-put
	// with a compare added.
	OpTxn Op = "txn"
	// OpMixed sends gets with probability ReadRatio and puts otherwise, both on
	// keys of the key space.
	OpMixed Op = "mixed"
	// OpLeaseKeepAlive renews a lease once per request, each client its own
	// lease of LeaseTTL seconds on a stream of its own per renewal, as etcd's
	// lease-keepalive (clientv3's KeepAliveOnce).
	OpLeaseKeepAlive Op = "lease-keepalive"
	// OpLock is one cycle of a contended lock per request: every client
	// takes the same client/concurrency Mutex (LockName) with a session of
	// its own, reads LockKey and commits a transaction that compares its
	// mod revision (a read-only repeatable-read STM transaction, as etcd's
	// "stm --stm-locker lock-client" runs under the lock), and unlocks.
	OpLock Op = "lock"
)

// ErrInvalidConfig is wrapped by every error Config.Validate returns.
var ErrInvalidConfig = errors.New("invalid bench config")

// Config describes one run. The zero value of a field means what its
// comment says; DefaultConfig fills in etcd benchmark's defaults.
type Config struct {
	// Op is the workload. Required.
	Op Op

	// Clients is the number of goroutines sending requests, each waiting for
	// its answer before sending the next. At least 1.
	Clients int
	// Conns is the number of connections the clients share: client i uses
	// connection i mod Conns. At least 1 and at most Clients.
	Conns int

	// Total is the number of requests to send; zero means no limit, and
	// then Duration must be set.
	Total int
	// Duration stops sending new requests once it has passed since the
	// start; zero means no limit, and then Total must be set. With both, the
	// run ends at whichever comes first.
	Duration time.Duration
	// Rate caps the requests sent per second over all clients; zero means no
	// limit.
	Rate float64
	// RequestTimeout bounds each request; zero means only the run's context
	// bounds it.
	RequestTimeout time.Duration

	// KeySize is the length of every key in bytes: the key's index in the key
	// space as a varint, zeros after, as etcd's benchmark tool makes keys
	// (see KeyAt).
	KeySize int
	// ValSize is the length of every written value in bytes; zero writes
	// empty values.
	ValSize int
	// KeySpace is the number of distinct keys: indexes 0 to KeySpace-1. At
	// least 1 and no more than KeySize bytes can count.
	KeySpace int
	// SequentialKeys makes request i use key i mod KeySpace instead of a
	// uniformly random key.
	SequentialKeys bool
	// Key, when not empty, is the one key every request uses (OpGet and
	// OpPut only), as etcd's `benchmark range KEY`; KeySpace must then be 1.
	Key string

	// Serializable makes gets serializable instead of linearizable.
	Serializable bool
	// ReadRatio is the fraction of gets in OpMixed, in [0, 1].
	ReadRatio float64
	// TxnOps is the number of puts in each OpTxn transaction, on consecutive
	// keys. Zero means 1; it must not exceed KeySpace.
	TxnOps int

	// LeaseTTL is the TTL in seconds of each client's lease (OpLeaseKeepAlive).
	// Zero means 100, etcd's benchmark's.
	LeaseTTL int64
	// LockName is the prefix of the contended mutex (OpLock); empty means
	// "bench-lock".
	LockName string
	// SessionTTL is the TTL in seconds of each client's session (OpLock).
	// Zero means 60, the session default of etcd's concurrency package.
	SessionTTL int64

	// Seed seeds the random key choice; zero means a seed from the clock.
	Seed uint64
}

func (c Config) leaseTTL() int64 {
	if c.LeaseTTL == 0 {
		return 100
	}
	return c.LeaseTTL
}

func (c Config) lockName() string {
	if c.LockName == "" {
		return "bench-lock"
	}
	return c.LockName
}

func (c Config) sessionTTL() int64 {
	if c.SessionTTL == 0 {
		return 60
	}
	return c.SessionTTL
}

// DefaultConfig returns the defaults of etcd's benchmark tool for op: one
// client on one connection, 10,000 requests, 8-byte keys and values, a key
// space of one key.
func DefaultConfig(op Op) Config {
	return Config{
		Op:        op,
		Clients:   1,
		Conns:     1,
		Total:     10000,
		KeySize:   8,
		ValSize:   8,
		KeySpace:  1,
		ReadRatio: 0.9,
		TxnOps:    1,
	}
}

// Validate reports the first problem with c, quoting the bad values. It does
// not change c.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalidConfig, fmt.Sprintf(format, args...))
	}
	switch c.Op {
	case OpPut, OpGet, OpTxn, OpMixed, OpLeaseKeepAlive, OpLock:
	default:
		return bad("unknown op %q: want put, get, txn, mixed, lease-keepalive or lock", c.Op)
	}
	switch {
	case c.Clients < 1:
		return bad("clients %d: must be at least 1", c.Clients)
	case c.Conns < 1:
		return bad("conns %d: must be at least 1", c.Conns)
	case c.Conns > c.Clients:
		return bad("conns %d is more than clients %d: connections without a client would stay idle", c.Conns, c.Clients)
	case c.Total < 0:
		return bad("total %d: must not be negative", c.Total)
	case c.Duration < 0:
		return bad("duration %v: must not be negative", c.Duration)
	case c.Total == 0 && c.Duration == 0:
		return bad("neither total nor duration is set: the run would never end")
	case c.Rate < 0:
		return bad("rate %g: must not be negative", c.Rate)
	case c.RequestTimeout < 0:
		return bad("request timeout %v: must not be negative", c.RequestTimeout)
	case c.KeySize < 1:
		return bad("key size %d: must be at least 1", c.KeySize)
	case c.ValSize < 0:
		return bad("value size %d: must not be negative", c.ValSize)
	case c.KeySpace < 1:
		return bad("key space %d: must be at least 1", c.KeySpace)
	case keyBytes(uint64(c.KeySpace-1)) > c.KeySize:
		return bad("key space %d does not fit in keys of %d bytes (at most %d keys)", c.KeySpace, c.KeySize, maxKeys(c.KeySize))
	case c.ReadRatio < 0 || c.ReadRatio > 1:
		return bad("read ratio %g: must be between 0 and 1", c.ReadRatio)
	case c.TxnOps < 0:
		return bad("txn ops %d: must not be negative", c.TxnOps)
	case c.LeaseTTL < 0:
		return bad("lease TTL %d: must not be negative", c.LeaseTTL)
	case c.SessionTTL < 0:
		return bad("session TTL %d: must not be negative", c.SessionTTL)
	case c.txnOps() > c.KeySpace:
		return bad("txn ops %d is more than key space %d: a transaction cannot put the same key twice", c.txnOps(), c.KeySpace)
	}
	if c.Key != "" {
		switch {
		case c.Op != OpGet && c.Op != OpPut:
			return bad("a single key (%q) is only for get and put, not %s", c.Key, c.Op)
		case c.KeySpace != 1:
			return bad("a single key (%q) and a key space of %d cannot be used together", c.Key, c.KeySpace)
		}
	}
	return nil
}

func (c Config) txnOps() int {
	if c.TxnOps == 0 {
		return 1
	}
	return c.TxnOps
}

// maxKeys is how many keys of size bytes KeyAt can make.
func maxKeys(size int) uint64 {
	if size >= binary.MaxVarintLen64 {
		return math.MaxUint64
	}
	// The zig-zag varint of i holds 2i in 7 bits per byte.
	return uint64(1) << (7*size - 1)
}
