package mvcc

import (
	"bytes"
	"encoding/binary"
	"errors"
)

// Key escaping keeps the byte order of user keys inside history keys: 0x00 is
// written as 0x00 0xFF and the key ends with 0x00 0x01, which sorts before any
// continuation of the key. The revision follows, big-endian, so the versions
// of one key are adjacent and in revision order.
const (
	escByte  = 0x00
	escEsc   = 0xFF
	escTerm  = 0x01
	revBytes = 8
)

// historyPrefix returns the escaped key with its terminator: every history key
// of userKey starts with it, and the prefixes of keys sort as the keys do.
func historyPrefix(userKey []byte) []byte {
	out := make([]byte, 0, len(userKey)+2+revBytes)
	for _, b := range userKey {
		if b == escByte {
			out = append(out, escByte, escEsc)
			continue
		}
		out = append(out, b)
	}
	return append(out, escByte, escTerm)
}

// historyKey returns the history key of userKey written at rev.
func historyKey(userKey []byte, rev int64) []byte {
	return binary.BigEndian.AppendUint64(historyPrefix(userKey), uint64(rev))
}

var errBadHistoryKey = errors.New("malformed history key")

// splitHistoryKey returns the user key and revision of a history key.
func splitHistoryKey(hk []byte) ([]byte, int64, error) {
	if len(hk) < 2+revBytes {
		return nil, 0, errBadHistoryKey
	}
	body, rev := hk[:len(hk)-revBytes], hk[len(hk)-revBytes:]
	userKey := make([]byte, 0, len(body))
	for i := 0; i < len(body); i++ {
		if body[i] != escByte {
			userKey = append(userKey, body[i])
			continue
		}
		if i+1 >= len(body) {
			return nil, 0, errBadHistoryKey
		}
		switch body[i+1] {
		case escEsc:
			userKey = append(userKey, escByte)
			i++
		case escTerm:
			if i+2 != len(body) {
				return nil, 0, errBadHistoryKey
			}
			return userKey, int64(binary.BigEndian.Uint64(rev)), nil
		default:
			return nil, 0, errBadHistoryKey
		}
	}
	return nil, 0, errBadHistoryKey
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func readU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// rangeEndAll is the range end that means "every key from key on".
var rangeEndAll = []byte{0}

// InRange reports whether k lies in [key, end) as a request names it: an
// empty end is the single key, the end {0} is unbounded.
func InRange(k, key, end []byte) bool {
	if len(end) == 0 {
		return bytes.Equal(k, key)
	}
	if bytes.Compare(k, key) < 0 {
		return false
	}
	return bytes.Equal(end, rangeEndAll) || bytes.Compare(k, end) < 0
}

// beforeEnd returns a test of whether a key is before the end of a range
// [key, end) with a non-empty end, for a cursor that sought key and steps
// forward: every key it yields is at or after key, so only the end needs a
// comparison, and an unbounded end none. A count over a large range is a
// cursor step and this test per key, so the two comparisons InRange makes
// were half of its cost.
func beforeEnd(end []byte) func(k []byte) bool {
	if bytes.Equal(end, rangeEndAll) {
		return func(k []byte) bool { return k != nil }
	}
	return func(k []byte) bool { return k != nil && bytes.Compare(k, end) < 0 }
}
