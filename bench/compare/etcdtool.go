package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The rows where etcd's own benchmark tool drives both clusters through
// etcd's v3 API, with the same flags: kvd serves that API beside kv.v1, so
// these ratios do not depend on two different load generators.

// toolBar is the bar of issue 19 that a row is held to.
type toolBar int

const (
	barNone       toolBar = iota // a latency row: shown, not held to a bar
	barThroughput                // throughput at least 1.5 x etcd's
	barPut11                     // throughput at least 1.5 x and p50 at most 1.0 x etcd's
)

// toolWorkload is one run of etcd's benchmark tool.
type toolWorkload struct {
	name string
	// args follow --endpoints on the tool's command line.
	args []string
	// reports names each report the tool prints, in order: one for most
	// commands, reads and writes for txn-mixed, puts and watch events for
	// watch-latency.
	reports []string
	// bars holds the bar of each report.
	bars  []toolBar
	total int
	// noFloor keeps the row off the gRPC floor, which does not serve it.
	noFloor bool
}

func (w toolWorkload) timeout() time.Duration {
	return max(5*time.Minute, time.Duration(w.total)*time.Millisecond)
}

// toolWorkloads are issue 19's rows: the put and range loads of the main
// table, a mixed transaction load, watch latency and lease keepalives, with
// 8-byte keys and 256-byte values.
func toolWorkloads(quick bool) []toolWorkload {
	div := 1
	if quick {
		div = 10
	}
	n := func(total int) string { return strconv.Itoa(total / div) }
	put := func(name string, clients, conns, total int, bar toolBar) toolWorkload {
		return toolWorkload{name: name, total: total / div, reports: []string{""}, bars: []toolBar{bar},
			args: []string{"--precise", "--clients", strconv.Itoa(clients), "--conns", strconv.Itoa(conns),
				"put", "--total", n(total), "--key-size", strconv.Itoa(keySize), "--val-size", strconv.Itoa(valSize),
				"--key-space-size", strconv.Itoa(keySpace), "--sequential-keys"}}
	}
	rng := func(name, consistency string) toolWorkload {
		return toolWorkload{name: name, total: 50000 / div, reports: []string{""}, bars: []toolBar{barThroughput},
			args: []string{"--precise", "--clients", "100", "--conns", "10",
				"range", getKey, "--consistency", consistency, "--total", n(50000)}}
	}
	return []toolWorkload{
		put("put, 1 client / 1 conn", 1, 1, 3000, barPut11),
		put("put, 100 clients / 10 conns", 100, 10, 30000, barThroughput),
		put("put, 1000 clients / 100 conns", 1000, 100, 50000, barThroughput),
		rng("range linearizable, 100 clients / 10 conns", "l"),
		rng("range serializable, 100 clients / 10 conns", "s"),
		{name: "txn-mixed, 100 clients / 10 conns, 1:1, ranges of 100 over 1,000 keys", total: 20000 / div,
			reports: []string{"reads", "writes"}, bars: []toolBar{barThroughput, barThroughput},
			args: []string{"--precise", "--clients", "100", "--conns", "10", "txn-mixed", "--total", n(20000),
				"--key-size", strconv.Itoa(keySize), "--val-size", strconv.Itoa(valSize),
				"--key-space-size", "1000", "--rw-ratio", "1", "--limit", "100"}},
		{name: "watch-latency, 100 watchers on 10 streams, puts at 100/s", total: 1000 / div, noFloor: true,
			reports: []string{"puts", "watch events"}, bars: []toolBar{barNone, barNone},
			args: []string{"--precise", "--clients", "10", "--conns", "10", "watch-latency",
				"--streams", "10", "--watchers-per-stream", "10", "--put-total", n(1000), "--put-rate", "100",
				"--key-size", strconv.Itoa(keySize), "--val-size", strconv.Itoa(valSize)}},
		{name: "lease-keepalive, 100 clients / 10 conns", total: 20000 / div,
			reports: []string{""}, bars: []toolBar{barThroughput},
			args: []string{"--precise", "--clients", "100", "--conns", "10", "lease-keepalive", "--total", n(20000)}},
	}
}

// toolRow is one report of one run on both clusters.
type toolRow struct {
	name      string
	bar       toolBar
	kvd, etcd measurement
	// CPU of the three members per request of the whole run (all its
	// reports), in µs.
	kvdCPU, etcdCPU float64
	// floor is the same run on the gRPC floor, when it ran (hasFloor).
	floor    measurement
	floorCPU float64
	hasFloor bool
}

// toolResult is the section: its rows, or why it was skipped.
type toolResult struct {
	rows    []toolRow
	skipped string
	// kvdEndpoints is where the kvd column's runs went (another cluster
	// than kvd's only when --etcd-tool-kvd-endpoints says so).
	kvdEndpoints string
	elsewhere    bool // kvdEndpoints are not kvd's
	tool         string
	floor        bool // the rows ran on the gRPC floor too
}

// errNoEtcdAPI marks a kvd that does not serve etcd's API.
var errNoEtcdAPI = errors.New("kvd does not serve etcd's v3 API")

// etcdTool runs every tool workload on kvd, then on etcd.
func (r *runner) etcdTool(ctx context.Context) (*toolResult, error) {
	res := &toolResult{kvdEndpoints: r.kvd.endpoints(), tool: r.o.etcdBenchmark}
	if r.o.toolKVDEndpoints != "" {
		res.kvdEndpoints, res.elsewhere = r.o.toolKVDEndpoints, true
	}
	if _, err := os.Stat(r.o.etcdBenchmark); err != nil {
		return nil, fmt.Errorf("etcd's benchmark tool: %w", err)
	}
	// A write through etcd's API on each side; kvd without it is a skip
	// with the reason, not a failed run.
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := etcdPut(pctx, strings.Split(res.kvdEndpoints, ",")[0], getKey, randomValue(valSize))
	cancel()
	if err != nil {
		res.skipped = fmt.Sprintf("%v: %v", errNoEtcdAPI, err)
		r.logf("etcd tool: skipped: %s", res.skipped)
		return res, nil
	}
	pctx, cancel = context.WithTimeout(ctx, 10*time.Second)
	err = etcdPut(pctx, strings.Split(etcdEndpoints, ",")[0], getKey, randomValue(valSize))
	cancel()
	if err != nil {
		return nil, fmt.Errorf("etcd: write %s: %w", getKey, err)
	}
	r.getKeyWritten = true
	var floor *floorCluster
	if r.o.grpcFloor {
		if floor, err = startFloor(ctx); err != nil {
			return nil, err
		}
		defer func() {
			if err := floor.stop(); err != nil {
				r.logf("gRPC floor: %v", err)
			}
		}()
		res.floor = true
	}

	for _, w := range toolWorkloads(r.o.quick) {
		r.logf("etcd tool on kvd:  %s", w.name)
		kvdMs, kvdCPU, err := r.runTool(ctx, w, res.kvdEndpoints, r.kvd.cpu, "kvd.txt")
		if err != nil {
			return nil, fmt.Errorf("etcd's benchmark on kvd, %s: %w", w.name, err)
		}
		r.logf("etcd tool on etcd: %s", w.name)
		etcdMs, etcdCPU, err := r.runTool(ctx, w, etcdEndpoints, r.etcd.cpu, "etcd.txt")
		if err != nil {
			return nil, fmt.Errorf("etcd's benchmark on etcd, %s: %w", w.name, err)
		}
		var floorMs []measurement
		var floorCPU float64
		if floor != nil && !w.noFloor {
			r.logf("etcd tool on the gRPC floor: %s", w.name)
			if floorMs, floorCPU, err = r.runTool(ctx, w, floor.endpoints(), floor.cpu, "floor.txt"); err != nil {
				return nil, fmt.Errorf("etcd's benchmark on the gRPC floor, %s: %w", w.name, err)
			}
		}
		for i, report := range w.reports {
			name := w.name
			if report != "" {
				name += ": " + report
			}
			row := toolRow{name: name, bar: w.bars[i], kvd: kvdMs[i], etcd: etcdMs[i], kvdCPU: kvdCPU, etcdCPU: etcdCPU}
			if floorMs != nil {
				row.floor, row.floorCPU, row.hasFloor = floorMs[i], floorCPU, true
			}
			r.logf("      %s: %.0f / %.0f req/s (%s), p50 %.3f / %.3f ms", name, row.kvd.rps, row.etcd.rps,
				ratio(row.kvd.rps, row.etcd.rps), row.kvd.p50, row.etcd.p50)
			res.rows = append(res.rows, row)
		}
	}
	return res, nil
}

// runTool runs etcd's benchmark with w's flags against endpoints and
// returns a measurement per report and the members' CPU per request
// (cpu reads the members' CPU time so far).
func (r *runner) runTool(ctx context.Context, w toolWorkload, endpoints string, cpu func() time.Duration, suffix string) ([]measurement, float64, error) {
	ctx, cancel := context.WithTimeout(ctx, w.timeout())
	defer cancel()
	cmd := exec.CommandContext(ctx, r.o.etcdBenchmark, append([]string{"--endpoints=" + endpoints}, w.args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 10 * time.Second
	cpu0 := cpu()
	if err := cmd.Run(); err != nil {
		return nil, 0, fmt.Errorf("%w: %s", err, lastLines(errOut.String(), 5))
	}
	serverCPU := cpu() - cpu0
	text := out.String()
	r.keep(workload{name: "etcd tool " + w.name}, suffix, text)
	ms, err := parseToolReports(text, len(w.reports))
	if err != nil {
		return nil, 0, err
	}
	var ok float64
	for i := range ms {
		ms[i].total = int64(w.total)
		ms[i].serverCPU = serverCPU
		ok += ms[i].rps * ms[i].seconds
	}
	perReq := 0.0
	if ok > 0 {
		perReq = float64(serverCPU.Microseconds()) / ok
	}
	return ms, perReq, nil
}

// parseToolReports splits the tool's output at its "Summary:" lines and
// parses each report; it wants exactly n of them.
func parseToolReports(text string, n int) ([]measurement, error) {
	var parts []*strings.Builder
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "Summary:" {
			parts = append(parts, &strings.Builder{})
		}
		if len(parts) > 0 {
			parts[len(parts)-1].WriteString(line + "\n")
		}
	}
	if len(parts) != n {
		return nil, fmt.Errorf("%d reports in the output, want %d:\n%s", len(parts), n, lastLines(text, 40))
	}
	var ms []measurement
	for _, p := range parts {
		m, err := parseEtcdReport(p.String(), 0)
		if err != nil {
			return nil, fmt.Errorf("%w:\n%s", err, p)
		}
		ms = append(ms, m)
	}
	return ms, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// verdict says whether the row meets its bar.
func (row toolRow) verdict() string {
	if row.bar == barNone || row.etcd.rps == 0 {
		return "-"
	}
	var miss []string
	if t := row.kvd.rps / row.etcd.rps; t < 1.5 {
		miss = append(miss, fmt.Sprintf("throughput %.3f x < 1.5 x", t))
	}
	if row.bar == barPut11 && row.etcd.p50 > 0 {
		if p := row.kvd.p50 / row.etcd.p50; p > 1.0 {
			miss = append(miss, fmt.Sprintf("p50 %.3f x > 1.0 x", p))
		}
	}
	want := "≥ 1.5 x"
	if row.bar == barPut11 {
		want = "≥ 1.5 x, p50 ≤ 1.0 x"
	}
	if len(miss) == 0 {
		return want + ": met"
	}
	if row.hasFloor && row.floor.rps < 1.5*row.etcd.rps {
		miss = append(miss, fmt.Sprintf("the gRPC floor does %.2f x", row.floor.rps/row.etcd.rps))
	}
	return want + ": missed (" + strings.Join(miss, ", ") + ")"
}

func (t *toolResult) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n### etcd's benchmark tool on both, through etcd's v3 API\n\n")
	if t.skipped != "" {
		fmt.Fprintf(&b, "Skipped: %s.\n", t.skipped)
		return b.String()
	}
	fmt.Fprintf(&b, "`%s --endpoints=... ARGS`, the same ARGS on both (kvd: %s; etcd: %s). Rows with a bar are held to issue 19's: throughput at least 1.5 x etcd's, and for put 1/1 p50 at most 1.0 x. A run's members' CPU is divided by the requests of all its reports.",
		filepath.Base(t.tool), t.kvdEndpoints, etcdEndpoints)
	if t.floor {
		fmt.Fprintf(&b, " The gRPC floor is the same run on three grpc-go servers (%s) that answer with no store behind them: the most any grpc-go server gets here; a bar above the floor's ratio to etcd cannot be met by work on the store.", strings.Join(floorAddrs, ", "))
	}
	fmt.Fprintf(&b, "\n\n| workload | kvd req/s | etcd req/s | throughput kvd/etcd | kvd p50 / p99 ms | etcd p50 / p99 ms | p50 kvd/etcd | members' CPU µs/req kvd / etcd | errors kvd / etcd |")
	if t.floor {
		fmt.Fprintf(&b, " gRPC floor req/s (x etcd), CPU µs/req |")
	}
	fmt.Fprintf(&b, " bar |\n|---|--:|--:|--:|--:|--:|--:|--:|--:|")
	if t.floor {
		fmt.Fprintf(&b, "--:|")
	}
	fmt.Fprintf(&b, "---|\n")
	for _, row := range t.rows {
		k, e := row.kvd, row.etcd
		// The kvd members' CPU says nothing when the kvd column ran
		// against another cluster.
		kvdCPU := fmt.Sprintf("%.0f", row.kvdCPU)
		if t.elsewhere {
			kvdCPU = "-"
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %s | %.2f / %.2f | %.2f / %.2f | %s | %s / %.0f | %d / %d |",
			row.name, k.rps, e.rps, ratio(k.rps, e.rps), k.p50, k.p99, e.p50, e.p99, ratio(k.p50, e.p50),
			kvdCPU, row.etcdCPU, k.errors, e.errors)
		switch {
		case !t.floor:
		case row.hasFloor:
			fmt.Fprintf(&b, " %.0f (%s), %.0f |", row.floor.rps, ratio(row.floor.rps, e.rps), row.floorCPU)
		default:
			fmt.Fprintf(&b, " - |")
		}
		fmt.Fprintf(&b, " %s |\n", row.verdict())
	}
	return b.String()
}
