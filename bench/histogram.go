package bench

import (
	"math"
	"math/bits"
	"sync/atomic"
	"time"
)

// The histogram keeps every value below 2^subBits nanoseconds exactly, and
// above that the subBits-1 bits below the highest set bit: a relative error of
// at most 1/2^(subBits-1), 1.6%, at every scale, as HdrHistogram with two
// significant digits does.
const (
	subBits    = 7
	subCount   = 1 << subBits // exact buckets 0..127
	halfCount  = subCount / 2 // buckets per power of two above them
	numBuckets = subCount + (64-subBits)*halfCount
)

// Histogram records durations in logarithmic buckets of relative width 1.6%.
// Record is safe for concurrent use and does not allocate; the zero value is
// an empty histogram. Read it (Count, Percentile, ...) once recording has
// stopped.
type Histogram struct {
	counts [numBuckets]atomic.Uint64
	n      atomic.Uint64
	sum    atomic.Uint64 // nanoseconds
	min    atomic.Int64  // nanoseconds + 1, so that zero means unset
	max    atomic.Int64  // nanoseconds
}

// bucketOf returns the bucket that holds v nanoseconds.
func bucketOf(v uint64) int {
	if v < subCount {
		return int(v)
	}
	shift := bits.Len64(v) - subBits // at least 1
	top := v >> shift                // in [halfCount, subCount)
	return subCount + (shift-1)*halfCount + int(top-halfCount)
}

// bucketRange returns the smallest and largest values that bucket b holds.
func bucketRange(b int) (lo, hi uint64) {
	if b < subCount {
		return uint64(b), uint64(b)
	}
	shift := (b-subCount)/halfCount + 1
	top := uint64((b-subCount)%halfCount + halfCount)
	lo = top << shift
	return lo, lo + (1 << shift) - 1
}

// Record adds one duration; negative durations count as zero.
func (h *Histogram) Record(d time.Duration) {
	v := uint64(max(d, 0))
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	for {
		cur := h.min.Load()
		if cur != 0 && cur-1 <= int64(v) || h.min.CompareAndSwap(cur, int64(v)+1) {
			break
		}
	}
	for {
		cur := h.max.Load()
		if cur >= int64(v) || h.max.CompareAndSwap(cur, int64(v)) {
			break
		}
	}
}

// Count returns the number of recorded durations.
func (h *Histogram) Count() int64 { return int64(h.n.Load()) }

// Min returns the smallest recorded duration, exactly; zero when empty.
func (h *Histogram) Min() time.Duration {
	if m := h.min.Load(); m > 0 {
		return time.Duration(m - 1)
	}
	return 0
}

// Max returns the largest recorded duration, exactly; zero when empty.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Mean returns the average recorded duration, exactly; zero when empty.
func (h *Histogram) Mean() time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// Stddev returns the standard deviation of the recorded durations, computed
// from the bucket midpoints.
func (h *Histogram) Stddev() time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	mean := float64(h.sum.Load()) / float64(n)
	var sq float64
	for b := range h.counts {
		if c := h.counts[b].Load(); c > 0 {
			lo, hi := bucketRange(b)
			d := (float64(lo)+float64(hi))/2 - mean
			sq += float64(c) * d * d
		}
	}
	return time.Duration(math.Sqrt(sq / float64(n)))
}

// Percentile returns the smallest recorded duration such that at least p
// percent of the recorded durations are no larger, to within the bucket
// width: the middle of its bucket, clamped to the exact minimum and maximum.
// The first and last ranks answer the exact minimum and maximum. p is in
// [0, 100]; an empty histogram answers zero.
func (h *Histogram) Percentile(p float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	switch rank {
	case 1:
		return h.Min()
	case n:
		return h.Max()
	}
	var seen uint64
	for b := range h.counts {
		seen += h.counts[b].Load()
		if seen >= rank {
			lo, hi := bucketRange(b)
			mid := time.Duration(lo + (hi-lo)/2)
			return min(max(mid, h.Min()), h.Max())
		}
	}
	return h.Max()
}

// Merge adds every duration recorded in o to h. o must not be recording.
func (h *Histogram) Merge(o *Histogram) {
	if o.n.Load() == 0 {
		return
	}
	for b := range o.counts {
		if c := o.counts[b].Load(); c > 0 {
			h.counts[b].Add(c)
		}
	}
	h.n.Add(o.n.Load())
	h.sum.Add(o.sum.Load())
	for {
		cur, v := h.min.Load(), o.min.Load()
		if cur != 0 && cur <= v || h.min.CompareAndSwap(cur, v) {
			break
		}
	}
	for {
		cur, v := h.max.Load(), o.max.Load()
		if cur >= v || h.max.CompareAndSwap(cur, v) {
			break
		}
	}
}

// Row is one row of a printed histogram: Count durations above the previous
// row's UpTo and at most UpTo.
type Row struct {
	UpTo  time.Duration
	Count int64
}

// Rows groups the recorded durations into at most n rows whose bounds grow
// geometrically from the minimum to the maximum, so that a long tail stays
// readable (etcd's report uses n linear rows). The last row ends at Max.
func (h *Histogram) Rows(n int) []Row {
	if h.n.Load() == 0 || n < 1 {
		return nil
	}
	lo, hi := float64(max(h.Min(), time.Microsecond)), float64(h.Max())
	if hi <= lo {
		return []Row{{UpTo: h.Max(), Count: h.Count()}}
	}
	ratio := math.Pow(hi/lo, 1/float64(n))
	rows := make([]Row, n)
	for i := range rows {
		rows[i].UpTo = time.Duration(lo * math.Pow(ratio, float64(i+1)))
	}
	rows[n-1].UpTo = h.Max()
	r := 0
	for b := range h.counts {
		c := h.counts[b].Load()
		if c == 0 {
			continue
		}
		l, u := bucketRange(b)
		mid := time.Duration(l + (u-l)/2)
		for r < n-1 && mid > rows[r].UpTo {
			r++
		}
		rows[r].Count += int64(c)
	}
	return rows
}
