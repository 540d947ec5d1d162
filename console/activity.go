package console

import (
	"math"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The activity charts read the member's own metrics registry, as a
// Prometheus server would scrape it, but in process and only while a page
// shows them: the sampler's goroutine starts with the first subscriber and
// stops with the last, so a closed console costs the member nothing.

// The request methods the charts count. A request on the KV stream is
// recorded under the unary method of its kind (observe.ObserveRequest), so
// these count every request once.
var (
	readMethods  = []string{"/kv.v1.KVService/Range"}
	writeMethods = []string{"/kv.v1.KVService/Put", "/kv.v1.KVService/DeleteRange", "/kv.v1.KVService/Txn"}
)

// sample is one point of the charts: rates over the interval before T.
type sample struct {
	T      int64   `json:"t"` // Unix milliseconds
	Writes float64 `json:"writes"`
	Reads  float64 `json:"reads"`
	// P99 is the 99th percentile latency of the KV requests served in the
	// interval, in milliseconds (an upper estimate from the histogram's
	// buckets); NaN is sent as null when none was served.
	P99 *float64 `json:"p99_ms"`
	// Proposals is the rate of writes this member put into the log as
	// leader; zero on followers.
	Proposals float64 `json:"proposals"`
	// ApplyLag is how many committed entries this member had yet to apply.
	ApplyLag float64 `json:"apply_lag"`
}

// counters are the cumulative values a sample is the difference of.
type counters struct {
	t         time.Time
	reads     float64
	writes    float64
	proposals float64
	// buckets are the KV requests' latency histogram, cumulative counts
	// by upper bound (seconds), summed over the methods.
	bounds  []float64
	buckets []float64
	lag     float64
}

type sampler struct {
	g       prometheus.Gatherer
	every   time.Duration
	keep    int
	methods map[string]bool

	mu      sync.Mutex
	subs    map[chan sample]struct{}
	ring    []sample
	prev    *counters
	stopped chan struct{} // closed to stop the running loop
	closed  bool          // by stop: no loop starts again
	// loops counts the loops not yet returned: a loop stopped by the last
	// unsubscribe may still be finishing when the next subscriber starts
	// another; stop waits for both.
	loops sync.WaitGroup
}

func newSampler(g prometheus.Gatherer, every, history time.Duration) *sampler {
	s := &sampler{g: g, every: every, keep: int(history / every), subs: map[chan sample]struct{}{}, methods: map[string]bool{}}
	for _, m := range append(append([]string(nil), readMethods...), writeMethods...) {
		s.methods[m] = true
	}
	return s
}

// subscribe returns the points kept so far and a channel of the next
// ones; cancel unsubscribes. The first subscriber starts the sampling.
func (s *sampler) subscribe() (past []sample, ch chan sample, cancel func()) {
	ch = make(chan sample, 4)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed { // the console is closing: the page gets no more points
		return nil, ch, func() {}
	}
	s.subs[ch] = struct{}{}
	if s.stopped == nil {
		s.stopped = make(chan struct{})
		s.prev = nil
		s.loops.Add(1)
		go s.run(s.stopped)
	}
	return append([]sample(nil), s.ring...), ch, func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.subs, ch)
		if len(s.subs) == 0 && s.stopped != nil {
			close(s.stopped)
			s.stopped = nil
		}
	}
}

// running reports whether the sampling loop runs.
func (s *sampler) running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopped != nil
}

// stop stops the loop, if it runs, waits for it, and keeps it from
// starting again.
func (s *sampler) stop() {
	s.mu.Lock()
	s.closed = true
	if s.stopped != nil {
		close(s.stopped)
		s.stopped = nil
	}
	s.mu.Unlock()
	s.loops.Wait()
}

func (s *sampler) run(stopped chan struct{}) {
	defer s.loops.Done()
	s.take(stopped) // the baseline the first point is the difference from
	tick := time.NewTicker(s.every)
	defer tick.Stop()
	for {
		select {
		case <-stopped:
			return
		case <-tick.C:
			s.take(stopped)
		}
	}
}

// take reads the registry and, given a previous reading, sends a point;
// a loop already stopped (stopped closed) leaves the points to its
// successor.
func (s *sampler) take(stopped chan struct{}) {
	cur := s.read()
	s.mu.Lock()
	defer s.mu.Unlock()
	select {
	case <-stopped:
		return
	default:
	}
	prev := s.prev
	s.prev = cur
	if prev == nil || cur == nil {
		return
	}
	secs := cur.t.Sub(prev.t).Seconds()
	if secs <= 0 {
		return
	}
	p := sample{
		T:         cur.t.UnixMilli(),
		Writes:    rate(cur.writes, prev.writes, secs),
		Reads:     rate(cur.reads, prev.reads, secs),
		Proposals: rate(cur.proposals, prev.proposals, secs),
		ApplyLag:  cur.lag,
	}
	if q := quantile(0.99, cur, prev); !math.IsNaN(q) {
		ms := q * 1000
		p.P99 = &ms
	}
	s.ring = append(s.ring, p)
	if len(s.ring) > s.keep {
		s.ring = s.ring[len(s.ring)-s.keep:]
	}
	for ch := range s.subs {
		select {
		case ch <- p:
		default: // a slow page misses a point rather than stalling the others
		}
	}
}

func rate(cur, prev, secs float64) float64 {
	if cur < prev { // a counter restarted
		return 0
	}
	return (cur - prev) / secs
}

// read gathers the counters; nil without a registry or when it fails.
func (s *sampler) read() *counters {
	if s.g == nil {
		return nil
	}
	mfs, err := s.g.Gather()
	if err != nil && len(mfs) == 0 {
		return nil
	}
	c := &counters{t: time.Now()}
	var commit, applied float64
	hist := map[float64]float64{}
	for _, mf := range mfs {
		switch mf.GetName() {
		case "kvd_grpc_requests_total":
			for _, m := range mf.GetMetric() {
				method := label(m, "method")
				for _, r := range readMethods {
					if method == r {
						c.reads += m.GetCounter().GetValue()
					}
				}
				for _, wm := range writeMethods {
					if method == wm {
						c.writes += m.GetCounter().GetValue()
					}
				}
			}
		case "kvd_grpc_request_duration_seconds":
			for _, m := range mf.GetMetric() {
				if !s.methods[label(m, "method")] {
					continue
				}
				for _, b := range m.GetHistogram().GetBucket() {
					hist[b.GetUpperBound()] += float64(b.GetCumulativeCount())
				}
				hist[math.Inf(1)] += float64(m.GetHistogram().GetSampleCount())
			}
		case "kvd_raft_entry_proposals":
			for _, m := range mf.GetMetric() {
				c.proposals += m.GetHistogram().GetSampleSum()
			}
		case "kvd_raft_commit_index":
			commit = gauge(mf)
		case "kvd_raft_applied_index":
			applied = gauge(mf)
		}
	}
	c.lag = math.Max(commit-applied, 0)
	for b := range hist {
		c.bounds = append(c.bounds, b)
	}
	sort.Float64s(c.bounds)
	for _, b := range c.bounds {
		c.buckets = append(c.buckets, hist[b])
	}
	return c
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func gauge(mf *dto.MetricFamily) float64 {
	if ms := mf.GetMetric(); len(ms) > 0 {
		return ms[0].GetGauge().GetValue()
	}
	return 0
}

// quantile estimates the q-quantile of the requests observed between prev
// and cur from their cumulative buckets, interpolating linearly inside a
// bucket as Prometheus' histogram_quantile does; NaN when there were none.
func quantile(q float64, cur, prev *counters) float64 {
	if len(cur.bounds) == 0 {
		return math.NaN()
	}
	before := map[float64]float64{}
	for i, b := range prev.bounds {
		before[b] = prev.buckets[i]
	}
	delta := make([]float64, len(cur.bounds))
	for i, b := range cur.bounds {
		delta[i] = math.Max(cur.buckets[i]-before[b], 0)
	}
	total := delta[len(delta)-1]
	if total <= 0 {
		return math.NaN()
	}
	rank := q * total
	lowerBound, lowerCount := 0.0, 0.0
	for i, b := range cur.bounds {
		if delta[i] >= rank {
			if math.IsInf(b, 1) {
				return lowerBound // beyond the last finite bucket: its bound
			}
			if delta[i] == lowerCount {
				return b
			}
			return lowerBound + (b-lowerBound)*(rank-lowerCount)/(delta[i]-lowerCount)
		}
		lowerBound, lowerCount = b, delta[i]
	}
	return lowerBound
}

func (c *Console) handleActivity(w http.ResponseWriter, r *http.Request) {
	// The charts show the member's own metrics, which need no user; but
	// with auth on, only a logged-in user sees them, as the other views.
	if _, err := c.requireUser(r); err != nil {
		writeAPIError(w, err)
		return
	}
	sse, err := startSSE(w)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	past, ch, cancel := c.activity.subscribe()
	defer cancel()
	if err := sse.send("history", map[string]any{"interval_ms": c.cfg.SampleInterval.Milliseconds(), "keep": c.activity.keep, "samples": past}); err != nil {
		return
	}
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-c.ctx.Done():
			return
		case p := <-ch:
			if sse.send("sample", p) != nil {
				return
			}
		case <-ping.C:
			if sse.ping() != nil {
				return
			}
		}
	}
}
