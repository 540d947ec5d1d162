package mvcc

import (
	"bytes"
	"cmp"
	"errors"
	"math"
	"math/rand"
	"testing"
	"testing/quick"
)

func TestHistoryKeyRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		key  []byte
		rev  int64
	}{
		{name: "empty key", key: nil, rev: 1},
		{name: "plain", key: []byte("foo"), rev: 2},
		{name: "zero byte", key: []byte{0x00}, rev: 3},
		{name: "ff byte", key: []byte{0xff}, rev: 4},
		{name: "zero zero", key: []byte{0x00, 0x00}, rev: 5},
		{name: "terminator sequence", key: []byte{0x00, 0x01}, rev: 6},
		{name: "escape sequence", key: []byte{0x00, 0xff}, rev: 7},
		{name: "terminator inside", key: []byte("a\x00\x01b"), rev: 8},
		{name: "trailing zero", key: []byte("a\x00"), rev: 9},
		{name: "ff then zero", key: []byte{0xff, 0x00}, rev: 10},
		{name: "revision zero", key: []byte("k"), rev: 0},
		{name: "revision max", key: []byte("k"), rev: math.MaxInt64},
		{name: "revision with terminator bytes", key: []byte("k"), rev: 0x0001_0001_0001_0001},
		{name: "all byte values", key: allBytes(), rev: 11},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hk := historyKey(tt.key, tt.rev)
			if !bytes.HasPrefix(hk, historyPrefix(tt.key)) {
				t.Fatalf("historyKey(%q, %d) = %x does not start with historyPrefix %x", tt.key, tt.rev, hk, historyPrefix(tt.key))
			}
			k, rev, err := splitHistoryKey(hk)
			if err != nil {
				t.Fatalf("splitHistoryKey(%x): %v", hk, err)
			}
			if !bytes.Equal(k, tt.key) || rev != tt.rev {
				t.Fatalf("splitHistoryKey(historyKey(%q, %d)) = %q, %d", tt.key, tt.rev, k, rev)
			}
		})
	}
}

func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(i)
	}
	return b
}

func TestSplitHistoryKeyRejectsMalformed(t *testing.T) {
	rev := []byte{0, 0, 0, 0, 0, 0, 0, 7}
	tests := []struct {
		name string
		hk   []byte
	}{
		{name: "empty", hk: nil},
		{name: "shorter than terminator and revision", hk: []byte{0x00, 0x01, 0, 0, 0, 0, 0, 0, 0}},
		{name: "no terminator", hk: append([]byte("ab"), rev...)},
		{name: "lone zero before revision", hk: append([]byte("ab\x00"), rev...)},
		{name: "unknown escape", hk: append([]byte{'a', 0x00, 0x02}, rev...)},
		{name: "terminator before the end", hk: append([]byte{'a', 0x00, 0x01, 'b'}, rev...)},
		{name: "two terminators", hk: append([]byte{'a', 0x00, 0x01, 0x00, 0x01}, rev...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, r, err := splitHistoryKey(tt.hk)
			if !errors.Is(err, errBadHistoryKey) {
				t.Fatalf("splitHistoryKey(%x) = %q, %d, %v; want errBadHistoryKey", tt.hk, k, r, err)
			}
		})
	}
}

// checkHistoryOrder checks the property the history bucket relies on: history
// keys sort by user key first (bytewise), then by revision.
func checkHistoryOrder(t *testing.T, a, b []byte, r1, r2 int64) {
	t.Helper()
	want := bytes.Compare(a, b)
	if want == 0 {
		want = cmp.Compare(r1, r2)
	}
	got := bytes.Compare(historyKey(a, r1), historyKey(b, r2))
	if got != want {
		t.Fatalf("compare(historyKey(%x, %d), historyKey(%x, %d)) = %d, want %d", a, r1, b, r2, got, want)
	}
	if got, want := bytes.Compare(historyPrefix(a), historyPrefix(b)), bytes.Compare(a, b); got != want {
		t.Fatalf("compare(historyPrefix(%x), historyPrefix(%x)) = %d, want %d", a, b, got, want)
	}
}

// checkSingleKeyBounds checks the bounds scanHistory uses for a single key:
// every history key of a, and none of b != a, lies in [prefix(a), stop(a)).
func checkSingleKeyBounds(t *testing.T, a, b []byte, r int64) {
	t.Helper()
	lo := historyPrefix(a)
	hi := historyPrefix(a)
	hi[len(hi)-1]++
	in := func(hk []byte) bool { return bytes.Compare(hk, lo) >= 0 && bytes.Compare(hk, hi) < 0 }
	if !in(historyKey(a, r)) {
		t.Fatalf("historyKey(%x, %d) is outside the bounds of its own key", a, r)
	}
	if !bytes.Equal(a, b) && in(historyKey(b, r)) {
		t.Fatalf("historyKey(%x, %d) is inside the bounds of key %x", b, r, a)
	}
}

func TestHistoryKeyOrderQuick(t *testing.T) {
	prop := func(a, b []byte, r1, r2 uint64) bool {
		// Revisions are never negative.
		r1, r2 = r1&math.MaxInt64, r2&math.MaxInt64
		want := bytes.Compare(a, b)
		if want == 0 {
			want = cmp.Compare(r1, r2)
		}
		return bytes.Compare(historyKey(a, int64(r1)), historyKey(b, int64(r2))) == want
	}
	if err := quick.Check(prop, &quick.Config{MaxCount: 2000, Rand: rand.New(rand.NewSource(1))}); err != nil {
		t.Fatal(err)
	}
}

// TestHistoryKeyOrderSmallAlphabet draws keys from the bytes that matter to
// the escaping, so that shared prefixes and prefix relations are common, which
// they are not for testing/quick's random slices.
func TestHistoryKeyOrderSmallAlphabet(t *testing.T) {
	const seed = 42
	rng := rand.New(rand.NewSource(seed))
	alphabet := []byte{0x00, 0x01, 0x02, 0xfe, 0xff, 'a'}
	randKey := func() []byte {
		k := make([]byte, rng.Intn(6))
		for i := range k {
			k[i] = alphabet[rng.Intn(len(alphabet))]
		}
		return k
	}
	randRev := func() int64 {
		switch rng.Intn(3) {
		case 0:
			return rng.Int63n(4)
		case 1:
			// Revisions whose bytes look like escapes and terminators.
			return int64(rng.Intn(2))<<56 | 0x0001_00ff_0001
		}
		return rng.Int63()
	}
	for i := 0; i < 20000; i++ {
		a, b := randKey(), randKey()
		if rng.Intn(4) == 0 {
			b = append(bytes.Clone(a), randKey()...) // a is a prefix of b
		}
		r1, r2 := randRev(), randRev()
		checkHistoryOrder(t, a, b, r1, r2)
		checkHistoryOrder(t, b, a, r2, r1)
		checkHistoryOrder(t, a, a, r1, r2)
		checkSingleKeyBounds(t, a, b, r1)
		checkSingleKeyBounds(t, b, a, r2)
		if t.Failed() {
			t.Fatalf("seed %d, iteration %d", seed, i)
		}
	}
}

func FuzzHistoryKey(f *testing.F) {
	f.Add([]byte("a"), []byte("b"), int64(1), int64(2))
	f.Add([]byte{}, []byte{0x00}, int64(0), int64(math.MaxInt64))
	f.Add([]byte{0x00}, []byte{0x00, 0x00}, int64(5), int64(1))
	f.Add([]byte{0x00, 0x01}, []byte{0x00, 0xff}, int64(2), int64(2))
	f.Add([]byte("a\x00\x01b"), []byte("a\x00"), int64(3), int64(1))
	f.Add([]byte{0xff}, []byte{0xff, 0x00}, int64(7), int64(6))
	f.Add([]byte("foo"), []byte("foo\x00"), int64(1<<40), int64(1))
	f.Fuzz(func(t *testing.T, a, b []byte, r1, r2 int64) {
		r1, r2 = r1&math.MaxInt64, r2&math.MaxInt64
		for _, c := range []struct {
			key []byte
			rev int64
		}{{a, r1}, {b, r2}} {
			k, rev, err := splitHistoryKey(historyKey(c.key, c.rev))
			if err != nil || !bytes.Equal(k, c.key) || rev != c.rev {
				t.Fatalf("round trip of (%x, %d) = (%x, %d, %v)", c.key, c.rev, k, rev, err)
			}
		}
		checkHistoryOrder(t, a, b, r1, r2)
		checkSingleKeyBounds(t, a, b, r1)
		// Decoding arbitrary bytes must not panic, and what it accepts must
		// be the one encoding of what it returns.
		if k, rev, err := splitHistoryKey(a); err == nil && !bytes.Equal(historyKey(k, rev), a) {
			t.Fatalf("splitHistoryKey(%x) = (%x, %d), which encodes as %x", a, k, rev, historyKey(k, rev))
		}
	})
}
