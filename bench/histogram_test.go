package bench

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestBucketsCoverEveryValue(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	values := []uint64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 40, 1<<63 - 1}
	for range 10000 {
		values = append(values, rng.Uint64N(1<<rng.IntN(63)+1))
	}
	for _, v := range values {
		b := bucketOf(v)
		if b < 0 || b >= numBuckets {
			t.Fatalf("bucketOf(%d) = %d, outside [0, %d)", v, b, numBuckets)
		}
		lo, hi := bucketRange(b)
		if v < lo || v > hi {
			t.Fatalf("value %d in bucket %d = [%d, %d]", v, b, lo, hi)
		}
		if width := hi - lo + 1; v >= subCount && float64(width)/float64(lo) > 1.0/halfCount+1e-12 {
			t.Fatalf("bucket %d = [%d, %d] is wider than 1/%d of its low end", b, lo, hi, halfCount)
		}
	}
	// Consecutive buckets tile the values without gaps.
	for b := 1; b < numBuckets; b++ {
		_, prevHi := bucketRange(b - 1)
		lo, _ := bucketRange(b)
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, bucket %d ends at %d", b, lo, b-1, prevHi)
		}
	}
}

func TestPercentilesOfKnownData(t *testing.T) {
	tests := []struct {
		name   string
		values []time.Duration
		p      float64
		want   time.Duration
		tol    float64 // relative
	}{
		{"exact small median", seq(1, 100, time.Nanosecond), 50, 50, 0},
		{"exact small p90", seq(1, 100, time.Nanosecond), 90, 90, 0},
		{"exact small p0 is min", seq(1, 100, time.Nanosecond), 0, 1, 0},
		{"p100 is max exactly", seq(1, 1000, time.Millisecond), 100, time.Second, 0},
		{"ms median", seq(1, 1000, time.Millisecond), 50, 500 * time.Millisecond, 1.0 / halfCount},
		{"ms p90", seq(1, 1000, time.Millisecond), 90, 900 * time.Millisecond, 1.0 / halfCount},
		{"ms p99", seq(1, 1000, time.Millisecond), 99, 990 * time.Millisecond, 1.0 / halfCount},
		{"ms p99.9", seq(1, 1000, time.Millisecond), 99.9, 999 * time.Millisecond, 1.0 / halfCount},
		{"one value", []time.Duration{3 * time.Millisecond}, 50, 3 * time.Millisecond, 0},
		{"tail", append(repeat(1000, time.Millisecond), 2*time.Second), 99.9, time.Millisecond, 1.0 / halfCount},
		{"tail max", append(repeat(1000, time.Millisecond), 2*time.Second), 100, 2 * time.Second, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Histogram
			for _, v := range shuffled(tt.values) {
				h.Record(v)
			}
			got := h.Percentile(tt.p)
			if diff := float64(got-tt.want) / float64(tt.want); diff > tt.tol || diff < -tt.tol {
				t.Errorf("p%v = %v, want %v within %.1f%%", tt.p, got, tt.want, tt.tol*100)
			}
		})
	}
}

func TestHistogramStats(t *testing.T) {
	var h Histogram
	if h.Percentile(50) != 0 || h.Min() != 0 || h.Max() != 0 || h.Mean() != 0 || h.Rows(10) != nil {
		t.Fatal("an empty histogram must answer zeros")
	}
	for _, v := range seq(1, 4, time.Millisecond) {
		h.Record(v)
	}
	h.Record(-time.Second) // counts as zero
	if got := h.Count(); got != 5 {
		t.Errorf("Count = %d, want 5", got)
	}
	if h.Min() != 0 || h.Max() != 4*time.Millisecond || h.Mean() != 2*time.Millisecond {
		t.Errorf("min/max/mean = %v/%v/%v, want 0/4ms/2ms", h.Min(), h.Max(), h.Mean())
	}

	var other, merged Histogram
	other.Record(10 * time.Millisecond)
	merged.Merge(&h)
	merged.Merge(&other)
	if merged.Count() != 6 || merged.Min() != 0 || merged.Max() != 10*time.Millisecond {
		t.Errorf("merged count/min/max = %d/%v/%v, want 6/0/10ms", merged.Count(), merged.Min(), merged.Max())
	}
}

func TestRowsHoldEveryValue(t *testing.T) {
	var h Histogram
	for _, v := range append(seq(1, 1000, 10*time.Microsecond), time.Second) {
		h.Record(v)
	}
	rows := h.Rows(10)
	if len(rows) != 10 {
		t.Fatalf("got %d rows, want 10", len(rows))
	}
	var sum int64
	for i, r := range rows {
		sum += r.Count
		if i > 0 && r.UpTo <= rows[i-1].UpTo {
			t.Errorf("row %d ends at %v, not after row %d at %v", i, r.UpTo, i-1, rows[i-1].UpTo)
		}
	}
	if sum != h.Count() {
		t.Errorf("rows hold %d values, want %d", sum, h.Count())
	}
	if rows[9].UpTo != time.Second || rows[9].Count != 1 {
		t.Errorf("last row = %+v, want the one value of 1s", rows[9])
	}
}

// seq returns from*unit, (from+1)*unit, ..., to*unit.
func seq(from, to int, unit time.Duration) []time.Duration {
	var out []time.Duration
	for i := from; i <= to; i++ {
		out = append(out, time.Duration(i)*unit)
	}
	return out
}

func repeat(n int, d time.Duration) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = d
	}
	return out
}

func shuffled(in []time.Duration) []time.Duration {
	out := append([]time.Duration(nil), in...)
	rand.New(rand.NewPCG(3, 4)).Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}
