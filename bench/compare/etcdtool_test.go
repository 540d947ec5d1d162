package main

import (
	"math"
	"os"
	"slices"
	"strings"
	"testing"
)

// The reports of etcd's benchmark 3.6.7 (stdout of a real run against
// etcd), which the etcd-tool rows parse.
func TestParseToolReports(t *testing.T) {
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-6 }
	for _, tc := range []struct {
		file      string
		n         int
		rps, p50s []float64
	}{
		{"testdata/etcd-benchmark-txn-mixed.txt", 2, []float64{135.36565309236587, 135.30786266148837}, []float64{309.357778, 187.061619}},
		{"testdata/etcd-benchmark-watch-latency.txt", 2, []float64{36.21088500495978, 3599.26752580723}, []float64{9.859363, 0.205192}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, err := os.ReadFile(tc.file)
			if err != nil {
				t.Fatal(err)
			}
			ms, err := parseToolReports(string(b), tc.n)
			if err != nil {
				t.Fatal(err)
			}
			for i, m := range ms {
				if !near(m.rps, tc.rps[i]) || !near(m.p50, tc.p50s[i]) || m.seconds <= 0 || m.p99 < m.p50 {
					t.Errorf("report %d: %+v, want %.3f req/s and p50 %.6f ms", i, m, tc.rps[i], tc.p50s[i])
				}
			}
			if _, err := parseToolReports(string(b), tc.n+1); err == nil {
				t.Errorf("wanting %d reports of %d parsed", tc.n+1, tc.n)
			}
		})
	}
	if _, err := parseToolReports("Error: context deadline exceeded\n", 1); err == nil {
		t.Error("an output without a report parsed")
	}
}

// Each row runs the tool with issue 19's flags, the same on both clusters;
// --quick divides the request counts by ten and nothing else.
func TestToolWorkloads(t *testing.T) {
	full, quick := toolWorkloads(false), toolWorkloads(true)
	if len(full) != 8 || len(quick) != len(full) {
		t.Fatalf("%d and %d workloads", len(full), len(quick))
	}
	var cmds []string
	for i, w := range full {
		if len(w.reports) != len(w.bars) || w.total <= 0 || w.args[0] != "--precise" {
			t.Errorf("%s: %+v", w.name, w)
		}
		var sub string
		for _, a := range w.args {
			if !strings.HasPrefix(a, "-") && sub == "" && !isNumber(a) {
				sub = a
			}
		}
		cmds = append(cmds, sub)
		q := quick[i]
		if q.total != w.total/10 {
			t.Errorf("%s: quick total %d of %d", w.name, q.total, w.total)
		}
		diff := 0
		for j := range w.args {
			if w.args[j] != q.args[j] {
				diff++
			}
		}
		if diff != 1 || len(q.args) != len(w.args) {
			t.Errorf("%s: quick args %q differ from %q in %d places, want only the count", w.name, q.args, w.args, diff)
		}
	}
	want := []string{"put", "put", "put", "range", "range", "txn-mixed", "watch-latency", "lease-keepalive"}
	if !slices.Equal(cmds, want) {
		t.Errorf("commands %v, want %v", cmds, want)
	}
	if full[0].bars[0] != barPut11 || !slices.Contains(full[0].args, "1") {
		t.Errorf("put 1/1: %+v", full[0])
	}
}

func isNumber(s string) bool {
	return strings.Trim(s, "0123456789") == ""
}

func TestToolRowVerdict(t *testing.T) {
	row := func(bar toolBar, krps, erps, kp50, ep50 float64) toolRow {
		return toolRow{bar: bar, kvd: measurement{rps: krps, p50: kp50}, etcd: measurement{rps: erps, p50: ep50}}
	}
	for _, tc := range []struct {
		row  toolRow
		want string
	}{
		{row(barThroughput, 3000, 2000, 1, 1), "≥ 1.5 x: met"},
		{row(barThroughput, 2000, 2000, 1, 1), "≥ 1.5 x: missed (throughput 1.000 x < 1.5 x)"},
		{row(barPut11, 3000, 1000, 0.5, 1), "≥ 1.5 x, p50 ≤ 1.0 x: met"},
		{row(barPut11, 3000, 1000, 2, 1), "≥ 1.5 x, p50 ≤ 1.0 x: missed (p50 2.000 x > 1.0 x)"},
		{row(barNone, 1, 1000, 2, 1), "-"},
		{row(barThroughput, 1, 0, 2, 1), "-"},
	} {
		if got := tc.row.verdict(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.row, got, tc.want)
		}
	}
	md := (&toolResult{skipped: "kvd does not serve etcd's v3 API: Unimplemented"}).markdown()
	if !strings.Contains(md, "Skipped: kvd does not serve") {
		t.Errorf("skipped section: %q", md)
	}
	md = (&toolResult{tool: "/x/etcd-benchmark", kvdEndpoints: "a:1", rows: []toolRow{row(barThroughput, 3000, 2000, 1, 1)}}).markdown()
	if !strings.Contains(md, "| 3000 | 2000 | 1.50 x |") || !strings.Contains(md, "≥ 1.5 x: met |") {
		t.Errorf("table: %q", md)
	}
	md = (&toolResult{kvdEndpoints: "a:1", elsewhere: true, rows: []toolRow{row(barThroughput, 3000, 2000, 1, 1)}}).markdown()
	if !strings.Contains(md, "| - / 0 |") {
		t.Errorf("a kvd column run elsewhere shows kvd's CPU: %q", md)
	}
}
