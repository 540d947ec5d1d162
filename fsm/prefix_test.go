package fsm

import (
	"bytes"
	"math/rand"
	"testing"
)

func TestPrefixEnd(t *testing.T) {
	tests := []struct {
		name   string
		prefix []byte
		want   []byte
	}{
		{name: "single byte", prefix: []byte("a"), want: []byte("b")},
		{name: "last byte bumped", prefix: []byte("abc"), want: []byte("abd")},
		{name: "trailing ff dropped", prefix: []byte("a\xff"), want: []byte("b")},
		{name: "several trailing ff dropped", prefix: []byte("ab\xff\xff"), want: []byte("ac")},
		{name: "zero byte", prefix: []byte{0x00}, want: []byte{0x01}},
		{name: "ends in zero", prefix: []byte("a\x00"), want: []byte("a\x01")},
		{name: "fe", prefix: []byte{0xfe}, want: []byte{0xff}},
		{name: "all ff is from-key", prefix: []byte{0xff}, want: []byte{0x00}},
		{name: "all ff twice is from-key", prefix: []byte{0xff, 0xff}, want: []byte{0x00}},
		{name: "empty is from-key", prefix: nil, want: []byte{0x00}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := bytes.Clone(tt.prefix)
			if got := PrefixEnd(in); !bytes.Equal(got, tt.want) {
				t.Fatalf("PrefixEnd(%q) = %q, want %q", tt.prefix, got, tt.want)
			}
			if !bytes.Equal(in, tt.prefix) {
				t.Fatalf("PrefixEnd modified its argument: %q, was %q", in, tt.prefix)
			}
		})
	}
}

// TestPrefixEndSelectsPrefix checks the definition: a key is in
// [prefix, PrefixEnd(prefix)) exactly when it starts with prefix.
func TestPrefixEndSelectsPrefix(t *testing.T) {
	const seed = 7
	rng := rand.New(rand.NewSource(seed))
	alphabet := []byte{0x00, 0x01, 'a', 0xfe, 0xff}
	randKey := func(n int) []byte {
		k := make([]byte, n)
		for i := range k {
			k[i] = alphabet[rng.Intn(len(alphabet))]
		}
		return k
	}
	for i := 0; i < 20000; i++ {
		prefix, k := randKey(1+rng.Intn(3)), randKey(1+rng.Intn(5))
		if got, want := inRange(k, prefix, PrefixEnd(prefix)), bytes.HasPrefix(k, prefix); got != want {
			t.Fatalf("seed %d: key %x in [%x, PrefixEnd %x) = %v, has prefix = %v", seed, k, prefix, PrefixEnd(prefix), got, want)
		}
	}
}
