package bench

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"
)

// KeyAt makes the keys etcd's benchmark tool makes.
func TestKeyAt(t *testing.T) {
	tests := []struct {
		i    uint64
		size int
		want string
	}{
		{0, 8, "\x00\x00\x00\x00\x00\x00\x00\x00"},
		{1, 8, "\x02\x00\x00\x00\x00\x00\x00\x00"},
		{63, 1, "\x7e"},
		{64, 2, "\x80\x01"},
		{99999, 8, "\xbe\x9a\x0c\x00\x00\x00\x00\x00"},
		{1, 12, "\x02\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"},
	}
	for _, tt := range tests {
		// What etcd's tool does: binary.PutVarint into a key of the size.
		etcd := make([]byte, tt.size)
		binary.PutVarint(etcd, int64(tt.i))
		if string(etcd) != tt.want {
			t.Fatalf("test case %d/%d: etcd makes %q", tt.i, tt.size, etcd)
		}
		if got := KeyAt(tt.i, tt.size); got != tt.want {
			t.Errorf("KeyAt(%d, %d) = %q, want %q", tt.i, tt.size, got, tt.want)
		}
	}
	// Distinct indexes make distinct keys, and consecutive ones do not
	// sort next to each other.
	seen := map[string]bool{}
	var keys []string
	for i := range uint64(1000) {
		k := KeyAt(i, 8)
		if seen[k] {
			t.Fatalf("KeyAt(%d, 8) = %q, made before", i, k)
		}
		seen[k] = true
		keys = append(keys, k)
	}
	if slices.IsSorted(keys) {
		t.Error("keys sort in index order; etcd's do not")
	}
}

func TestKeySpaceMustFitTheKeySize(t *testing.T) {
	for _, tt := range []struct {
		size, space int
		ok          bool
	}{
		{1, 64, true}, {1, 65, false}, {2, 8192, true}, {2, 8193, false}, {8, 100000, true}, {10, 1 << 40, true},
	} {
		cfg := DefaultConfig(OpPut)
		cfg.KeySize, cfg.KeySpace = tt.size, tt.space
		if err := cfg.Validate(); (err == nil) != tt.ok {
			t.Errorf("key size %d, key space %d: Validate() = %v, want ok %v", tt.size, tt.space, err, tt.ok)
		}
	}
}

// keysOf returns the keys of requests 0..n-1 of cfg, from one client.
func keysOf(cfg Config, n int) (kinds []Op, keys [][]string) {
	g := generator{cfg: cfg}
	rng := rand.New(rand.NewPCG(7, 8))
	for i := range uint64(n) {
		r := g.next(i, rng)
		kinds = append(kinds, r.kind)
		keys = append(keys, r.keys)
	}
	return kinds, keys
}

func TestSequentialKeys(t *testing.T) {
	cfg := DefaultConfig(OpPut)
	cfg.KeySpace, cfg.SequentialKeys = 5, true
	_, keys := keysOf(cfg, 12)
	for i, k := range keys {
		if want := KeyAt(uint64(i%5), 8); len(k) != 1 || k[0] != want {
			t.Errorf("request %d: keys %q, want [%q]", i, k, want)
		}
	}
}

func TestRandomKeysStayInTheKeySpace(t *testing.T) {
	cfg := DefaultConfig(OpPut)
	cfg.KeySpace, cfg.KeySize = 10, 4
	seen := map[string]bool{}
	_, keys := keysOf(cfg, 2000)
	for _, k := range keys {
		if len(k[0]) != 4 {
			t.Fatalf("key %q is not 4 bytes", k[0])
		}
		seen[k[0]] = true
	}
	var want []string
	for i := range uint64(10) {
		want = append(want, KeyAt(i, 4))
	}
	got := slices.Sorted(func(yield func(string) bool) {
		for k := range seen {
			if !yield(k) {
				return
			}
		}
	})
	if !slices.Equal(got, want) {
		t.Errorf("2000 random keys used %q, want every key of the space %q", got, want)
	}
}

func TestSingleKeyGet(t *testing.T) {
	cfg := DefaultConfig(OpGet)
	cfg.Key = "foo"
	kinds, keys := keysOf(cfg, 3)
	for i := range keys {
		if kinds[i] != OpGet || !slices.Equal(keys[i], []string{"foo"}) {
			t.Errorf("request %d = %s %q, want get [foo]", i, kinds[i], keys[i])
		}
	}
}

func TestTxnKeys(t *testing.T) {
	cfg := DefaultConfig(OpTxn)
	cfg.KeySpace, cfg.TxnOps, cfg.SequentialKeys = 5, 3, true
	_, keys := keysOf(cfg, 3)
	want := [][]uint64{{0, 1, 2}, {3, 4, 0}, {1, 2, 3}}
	for i, ks := range keys {
		for j, k := range ks {
			if k != KeyAt(want[i][j], 8) {
				t.Errorf("txn %d put %d: key %q, want index %d", i, j, k, want[i][j])
			}
		}
	}
	cfg.SequentialKeys = false
	_, keys = keysOf(cfg, 500)
	for _, ks := range keys {
		if len(ks) != 3 || ks[0] == ks[1] || ks[1] == ks[2] || ks[0] == ks[2] {
			t.Fatalf("txn keys %q are not 3 distinct keys", ks)
		}
	}
}

func TestMixedReadRatio(t *testing.T) {
	tests := []struct {
		ratio      float64
		minR, maxR int // reads out of 1000
	}{
		{0, 0, 0},
		{1, 1000, 1000},
		{0.9, 850, 950}, // a fixed seed: deterministic, with room for the seed
	}
	for _, tt := range tests {
		cfg := DefaultConfig(OpMixed)
		cfg.ReadRatio, cfg.KeySpace = tt.ratio, 100
		kinds, _ := keysOf(cfg, 1000)
		reads := 0
		for _, k := range kinds {
			if k == OpGet {
				reads++
			} else if k != OpPut {
				t.Fatalf("mixed sent a %s", k)
			}
		}
		if reads < tt.minR || reads > tt.maxR {
			t.Errorf("read ratio %v: %d reads of 1000, want %d..%d", tt.ratio, reads, tt.minR, tt.maxR)
		}
	}
}

func TestPrefillConfig(t *testing.T) {
	cfg := DefaultConfig(OpGet)
	cfg.KeySpace, cfg.Clients, cfg.Conns, cfg.Rate = 3, 10, 4, 100
	p := cfg.prefillConfig()
	if p.Op != OpPut || p.Total != 3 || !p.SequentialKeys || p.Rate != 0 || p.Clients != 3 || p.Conns != 3 {
		t.Errorf("prefill of a key space of 3 = %+v", p)
	}
	if err := p.Validate(); err != nil {
		t.Error(err)
	}
	cfg = DefaultConfig(OpGet)
	cfg.Key = "k"
	if p := cfg.prefillConfig(); p.Total != 1 || p.Key != "k" || p.Validate() != nil {
		t.Errorf("prefill of one key = %+v", p)
	}
}
