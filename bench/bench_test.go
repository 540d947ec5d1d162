package bench

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/kvd-io/kvd/client"
)

// The load generator's own cost per request, to tell it apart from the
// client SDK's and the server's in a profile:
//
//	go test -run '^$' -bench . -count 10 ./bench > new.txt && benchstat old.txt new.txt

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	b.RunParallel(func(pb *testing.PB) {
		d := 1234 * time.Microsecond
		for pb.Next() {
			h.Record(d)
			d += 7
		}
	})
}

func BenchmarkNextRequest(b *testing.B) {
	for _, op := range []Op{OpPut, OpGet, OpTxn, OpMixed} {
		b.Run(string(op), func(b *testing.B) {
			cfg := DefaultConfig(op)
			cfg.KeySpace = 100000
			g := generator{cfg: cfg}
			rng := rand.New(rand.NewPCG(1, 2))
			b.ReportAllocs()
			var i uint64
			for b.Loop() {
				_ = g.next(i, rng)
				i++
			}
		})
	}
}

// BenchmarkRunnerOverhead runs puts against an in-memory KV that answers at
// once: what the runner adds to each request, with 100 clients.
func BenchmarkRunnerOverhead(b *testing.B) {
	cfg := DefaultConfig(OpPut)
	cfg.Clients, cfg.Conns, cfg.Total, cfg.KeySpace, cfg.ValSize = 100, 10, b.N, 100000, 256
	conns := make([]client.KV, cfg.Conns)
	for i := range conns {
		conns[i] = nopKV{}
	}
	r, err := NewRunner(cfg, conns)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	if _, err := r.Run(context.Background()); err != nil {
		b.Fatal(err)
	}
}

// nopKV answers every put at once.
type nopKV struct{ client.KV }

func (nopKV) Put(context.Context, string, string, ...client.OpOption) (*client.PutResponse, error) {
	return &client.PutResponse{}, nil
}
