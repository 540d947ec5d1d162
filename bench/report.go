package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"
)

// Report is the outcome of a run.
type Report struct {
	Op      Op
	Clients int
	Conns   int

	// Total counts the requests answered, successfully or not.
	Total int64
	// Errors counts the failed requests; ErrorsByCode splits them by
	// ErrorCode.
	Errors       int64
	ErrorsByCode map[string]int64
	// Elapsed runs from the first request sent to the last answer.
	Elapsed time.Duration
	// Latency holds the latency of every successful request.
	Latency *Histogram
	// ByKind splits Latency by what was sent (get, put), for mixed runs;
	// nil otherwise.
	ByKind map[Op]*Histogram
	// Interrupted is set when the run's context ended before the run did.
	Interrupted bool
	// Events is set for the watch workloads: Total counts the events due
	// (every successful put times the watchers), Latency holds the events'
	// latencies, RequestsPerSec is events per second, and Clients is the
	// number of watchers.
	Events bool
}

// RequestsPerSec is the throughput: successful requests per second of
// Elapsed, as etcd's benchmark counts it.
func (r *Report) RequestsPerSec() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Latency.Count()) / r.Elapsed.Seconds()
}

// Percentiles are the latency percentiles every report prints.
var Percentiles = []float64{10, 25, 50, 75, 90, 95, 99, 99.9}

// Summary is the machine-readable form of a report, printed by -w json.
// Latencies are in milliseconds and cover successful requests only.
type Summary struct {
	Op             string           `json:"op"`
	Clients        int              `json:"clients"`
	Conns          int              `json:"conns"`
	Total          int64            `json:"total"`
	Errors         int64            `json:"errors"`
	ErrorsByCode   map[string]int64 `json:"errors_by_code"`
	DurationS      float64          `json:"duration_s"`
	RequestsPerSec float64          `json:"requests_per_sec"`
	LatencySummary
	// Ops splits a mixed run by what was sent: "get" and "put".
	Ops         map[string]OpSummary `json:"ops,omitempty"`
	Interrupted bool                 `json:"interrupted,omitempty"`
	// Unit is "events" for the watch workloads (total, requests_per_sec
	// and the latencies are of events) and "requests" otherwise.
	Unit string `json:"unit"`
}

// LatencySummary holds the latency statistics of a Summary.
type LatencySummary struct {
	MinMs  float64 `json:"min_ms"`
	MeanMs float64 `json:"mean_ms"`
	MaxMs  float64 `json:"max_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p999_ms"`
}

// OpSummary is the part of a mixed run's summary for one kind of request.
type OpSummary struct {
	Count int64 `json:"count"`
	LatencySummary
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func latencySummary(h *Histogram) LatencySummary {
	return LatencySummary{
		MinMs:  ms(h.Min()),
		MeanMs: ms(h.Mean()),
		MaxMs:  ms(h.Max()),
		P50Ms:  ms(h.Percentile(50)),
		P90Ms:  ms(h.Percentile(90)),
		P99Ms:  ms(h.Percentile(99)),
		P999Ms: ms(h.Percentile(99.9)),
	}
}

// Summary returns the report's machine-readable form.
func (r *Report) Summary() Summary {
	s := Summary{
		Op:             string(r.Op),
		Clients:        r.Clients,
		Conns:          r.Conns,
		Total:          r.Total,
		Errors:         r.Errors,
		ErrorsByCode:   maps.Clone(r.ErrorsByCode),
		DurationS:      r.Elapsed.Seconds(),
		RequestsPerSec: r.RequestsPerSec(),
		LatencySummary: latencySummary(r.Latency),
		Interrupted:    r.Interrupted,
		Unit:           r.unit(),
	}
	if s.ErrorsByCode == nil {
		s.ErrorsByCode = map[string]int64{}
	}
	if r.ByKind != nil {
		s.Ops = map[string]OpSummary{}
		for k, h := range r.ByKind {
			s.Ops[string(k)] = OpSummary{Count: h.Count(), LatencySummary: latencySummary(h)}
		}
	}
	return s
}

func (r *Report) unit() string {
	if r.Events {
		return "events"
	}
	return "requests"
}

// WriteJSON writes the summary as one JSON object on one line.
func (r *Report) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(r.Summary())
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// fmtMs formats d in milliseconds with three decimals.
func fmtMs(d time.Duration) string { return fmt.Sprintf("%.3f ms", ms(d)) }

// WriteText writes the report as etcd's benchmark prints it: a summary, a
// histogram of response times, the latency distribution and the errors, with
// times in milliseconds.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	h := r.Latency
	fmt.Fprintf(&b, "\nSummary:\n")
	if r.Events {
		fmt.Fprintf(&b, "  Workload:\t%s, %d watchers on %d streams\n", r.Op, r.Clients, r.Conns)
	} else {
		fmt.Fprintf(&b, "  Workload:\t%s, %d clients on %d connections\n", r.Op, r.Clients, r.Conns)
	}
	fmt.Fprintf(&b, "  Total:\t%.4f secs, %d %s, %d errors\n", r.Elapsed.Seconds(), r.Total, r.unit(), r.Errors)
	if h.Count() > 0 {
		fmt.Fprintf(&b, "  Slowest:\t%s\n", fmtMs(h.Max()))
		fmt.Fprintf(&b, "  Fastest:\t%s\n", fmtMs(h.Min()))
		fmt.Fprintf(&b, "  Average:\t%s\n", fmtMs(h.Mean()))
		fmt.Fprintf(&b, "  Stddev:\t%s\n", fmtMs(h.Stddev()))
	}
	if r.Events {
		fmt.Fprintf(&b, "  Events/sec:\t%.4f\n", r.RequestsPerSec())
	} else {
		fmt.Fprintf(&b, "  Requests/sec:\t%.4f\n", r.RequestsPerSec())
	}
	if r.Interrupted {
		fmt.Fprintf(&b, "  Interrupted:\tthe run was stopped before its end\n")
	}
	if h.Count() > 0 {
		writeRows(&b, h.Rows(10))
		writeDistribution(&b, "Latency distribution", h)
		for _, k := range slices.Sorted(maps.Keys(r.ByKind)) {
			if r.ByKind[k].Count() > 0 {
				writeDistribution(&b, fmt.Sprintf("Latency distribution of %s (%d requests)", k, r.ByKind[k].Count()), r.ByKind[k])
			}
		}
	}
	if r.Errors > 0 {
		fmt.Fprintf(&b, "\nError distribution:\n")
		for _, code := range slices.Sorted(maps.Keys(r.ErrorsByCode)) {
			fmt.Fprintf(&b, "  [%d]\t%s\n", r.ErrorsByCode[code], code)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeRows(b *strings.Builder, rows []Row) {
	var most int64
	for _, row := range rows {
		most = max(most, row.Count)
	}
	fmt.Fprintf(b, "\nResponse time histogram:\n")
	for _, row := range rows {
		bar := 0
		if most > 0 {
			bar = int(row.Count * 40 / most)
		}
		fmt.Fprintf(b, "  %10.3f ms [%d]\t|%s\n", ms(row.UpTo), row.Count, strings.Repeat("∎", bar))
	}
}

func writeDistribution(b *strings.Builder, title string, h *Histogram) {
	fmt.Fprintf(b, "\n%s:\n", title)
	for _, p := range Percentiles {
		fmt.Fprintf(b, "  %v%% in %s\n", p, fmtMs(h.Percentile(p)))
	}
}

// errorList lists the error counts on one line, for error messages.
func (r *Report) errorList() string {
	var parts []string
	for _, code := range slices.Sorted(maps.Keys(r.ErrorsByCode)) {
		parts = append(parts, fmt.Sprintf("%s: %d", code, r.ErrorsByCode[code]))
	}
	return strings.Join(parts, ", ")
}
