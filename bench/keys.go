package bench

import (
	"encoding/binary"
	"math/rand/v2"
)

// KeyAt returns the key of index i in a key space of keys size bytes long,
// laid out as etcd's benchmark tool lays out its keys: the varint
// (zig-zag) encoding of i at the start, zeros after. Both stores are then
// given the same keys in the same order; consecutive indexes do not sort
// next to each other (0, 1, 2 begin 0x00, 0x02, 0x04; 64 begins 0x80 0x01),
// so a run over a key space writes all over a store's key order, as real
// keys do. The caller keeps i within what size bytes can hold
// (Config.Validate checks it for a key space).
func KeyAt(i uint64, size int) string {
	k := make([]byte, max(size, binary.MaxVarintLen64))
	binary.PutVarint(k, int64(i))
	return string(k[:size])
}

// keyBytes is how many bytes the varint of KeyAt takes for index i.
func keyBytes(i uint64) int {
	var b [binary.MaxVarintLen64]byte
	return binary.PutVarint(b[:], int64(i))
}

// request is one request of a workload.
type request struct {
	kind Op       // OpPut, OpGet or OpTxn: what is sent
	keys []string // the key of a get or put, the keys of a txn's puts
}

// generator picks the requests of a workload. Its methods are safe for
// concurrent use as long as each goroutine passes its own *rand.Rand.
type generator struct {
	cfg Config
}

// keyIndex returns the key-space index of request i's key.
func (g *generator) keyIndex(i uint64, rng *rand.Rand) uint64 {
	if g.cfg.SequentialKeys {
		return i % uint64(g.cfg.KeySpace)
	}
	return rng.Uint64N(uint64(g.cfg.KeySpace))
}

// next returns request i (counted from 0 over the whole run).
func (g *generator) next(i uint64, rng *rand.Rand) request {
	c := g.cfg
	switch c.Op {
	case OpLeaseKeepAlive:
		return request{kind: OpLeaseKeepAlive}
	case OpLock:
		return request{kind: OpLock, keys: []string{KeyAt(g.keyIndex(i, rng), c.KeySize)}}
	case OpGet:
		if c.Key != "" {
			return request{kind: OpGet, keys: []string{c.Key}}
		}
		return request{kind: OpGet, keys: []string{KeyAt(g.keyIndex(i, rng), c.KeySize)}}
	case OpTxn:
		// Consecutive keys from the chosen one, wrapping around the key space,
		// as etcd's txn-put does; Validate keeps them distinct.
		n := uint64(c.txnOps())
		space := uint64(c.KeySpace)
		var first uint64
		if c.SequentialKeys {
			first = (i * n) % space
		} else {
			first = rng.Uint64N(space)
		}
		keys := make([]string, n)
		for j := range keys {
			keys[j] = KeyAt((first+uint64(j))%space, c.KeySize)
		}
		return request{kind: OpTxn, keys: keys}
	case OpMixed:
		kind := OpPut
		if rng.Float64() < c.ReadRatio {
			kind = OpGet
		}
		return request{kind: kind, keys: []string{KeyAt(g.keyIndex(i, rng), c.KeySize)}}
	default:
		if c.Key != "" {
			return request{kind: OpPut, keys: []string{c.Key}}
		}
		return request{kind: OpPut, keys: []string{KeyAt(g.keyIndex(i, rng), c.KeySize)}}
	}
}

// prefillConfig returns the run that writes, once each, every key that a run
// of c reads: the single Key, or every key of the key space in order, with
// c's clients, connections and value size and no rate limit.
func (c Config) prefillConfig() Config {
	p := c
	p.Op, p.Duration, p.Rate, p.SequentialKeys = OpPut, 0, 0, true
	p.Total = c.KeySpace
	if c.Key != "" {
		p.Total = 1
	}
	p.Clients = min(c.Clients, p.Total)
	p.Conns = min(c.Conns, p.Clients)
	return p
}
