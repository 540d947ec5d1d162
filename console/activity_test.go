package console

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/kvd-io/kvd/internal/poll"
	"github.com/kvd-io/kvd/observe"
)

// TestSamplerRunsOnlyWhileSubscribed: no goroutine and no reading of the
// registry until a page subscribes; rates and the p99 come from the
// registry's counters; the loop stops with the last subscriber.
func TestSamplerRunsOnlyWhileSubscribed(t *testing.T) {
	m := observe.NewMetrics(nil)
	s := newSampler(m.Gatherer(), 100*time.Millisecond, time.Minute)
	if s.running() {
		t.Fatal("the sampler runs before anybody subscribed")
	}
	_, ch, cancel := s.subscribe()
	_, ch2, cancel2 := s.subscribe()
	if !s.running() {
		t.Fatal("the sampler does not run with a subscriber")
	}
	// The first point comes after the baseline reading: requests from then
	// on are in the points that follow.
	var lastT int64 // the time of the last point read: the next covers from then
	select {
	case p := <-ch:
		lastT = p.T
	case <-time.After(10 * time.Second):
		t.Fatal("no point within 10s")
	}
	// Points queued meanwhile predate the requests below: drop them, so
	// that the channel (4 points; a slow page misses points) has room for
	// the ones that count the requests.
drain:
	for {
		select {
		case p := <-ch:
			lastT = p.T
		default:
			break drain
		}
	}
	// 10 writes and 20 reads, all fast but one slow read.
	for range 10 {
		m.ObserveRequest("/kv.v1.KVService/Put", time.Millisecond, nil)
	}
	for range 19 {
		m.ObserveRequest("/kv.v1.KVService/Range", 100*time.Microsecond, nil)
	}
	m.ObserveRequest("/kv.v1.KVService/Range", 2*time.Second, nil)
	m.ObserveRequest("/kv.v1.WatchService/Watch", time.Hour, nil) // not a KV request
	var sum sample
	err := poll.Within(10*time.Second, func() error {
		for more := true; more; {
			select {
			case p := <-ch:
				// Back to counts: a point's rates cover the time since
				// the one before (about 100 ms, more on a loaded machine).
				secs := float64(p.T-lastT) / 1000
				lastT = p.T
				sum.Writes += p.Writes * secs
				sum.Reads += p.Reads * secs
				if p.P99 != nil {
					sum.P99 = p.P99
				}
			default:
				more = false
			}
		}
		if sum.P99 == nil {
			return errors.New("no point with the requests yet")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if math.Abs(sum.Writes-10) > 3 || math.Abs(sum.Reads-20) > 6 {
		t.Fatalf("the points count %.1f writes and %.1f reads, want about 10 and 20", sum.Writes, sum.Reads)
	}
	if *sum.P99 < 1000 || *sum.P99 > 2500 {
		t.Fatalf("p99 %.1f ms: want the slow read's bucket (1-2.5 s), not the watch's hour", *sum.P99)
	}
	cancel()
	if !s.running() {
		t.Fatal("the sampler stopped with a subscriber left")
	}
	cancel2()
	if s.running() {
		t.Fatal("the sampler still runs with no subscriber")
	}
	_ = ch2
	past, _, cancel3 := s.subscribe()
	if len(past) == 0 {
		t.Fatal("a new subscriber gets none of the points kept")
	}
	cancel3()
	s.stop() // waits for the loop
	if _, _, cancel := s.subscribe(); s.running() {
		cancel()
		t.Fatal("a subscriber after stop started the sampler again")
	}
}

func TestQuantile(t *testing.T) {
	prev := &counters{bounds: []float64{0.001, 0.01, 0.1, math.Inf(1)}, buckets: []float64{5, 5, 5, 5}}
	cases := []struct {
		name    string
		buckets []float64
		q       float64
		want    float64
	}{
		{"no requests", []float64{5, 5, 5, 5}, 0.99, math.NaN()},
		{"all in the first bucket", []float64{105, 105, 105, 105}, 0.99, 0.00099},
		{"the tail in the second", []float64{95, 105, 105, 105}, 0.99, 0.001 + 0.009*0.9},
		{"beyond the last bound", []float64{5, 5, 5, 105}, 0.99, 0.1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := quantile(tc.q, &counters{bounds: prev.bounds, buckets: tc.buckets}, prev)
			if math.IsNaN(tc.want) != math.IsNaN(got) || (!math.IsNaN(got) && math.Abs(got-tc.want) > 1e-9) {
				t.Fatalf("quantile %v = %v, want %v", tc.q, got, tc.want)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{MemberName: "n1", API: Dialer{Endpoint: "127.0.0.1:1"}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		edit func(*Config)
	}{
		{"no member name", func(c *Config) { c.MemberName = "" }},
		{"no endpoint", func(c *Config) { c.API.Endpoint = "" }},
		{"sample interval too short", func(c *Config) { c.SampleInterval = time.Millisecond }},
		{"history shorter than the interval", func(c *Config) { c.History = 10 * time.Millisecond }},
		{"page size too large", func(c *Config) { c.PageSize = 5000 }},
		{"negative sessions", func(c *Config) { c.MaxSessions = -1 }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.edit(&c)
			if err := c.Validate(); err == nil {
				t.Fatalf("accepted %+v", c)
			}
		})
	}
}
