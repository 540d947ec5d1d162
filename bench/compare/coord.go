package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/kvd-io/kvd/bench"
)

// coordRow is one measurement of watches, leases or locks on both systems.
type coordRow struct {
	name       string
	unit       string
	kvd, etcd  float64
	higher     bool   // a higher value is better
	bar        string // the performance bar kvd is held to
	kvdErrors  int64
	etcdErrors int64
	note       string
}

// coordSizes are the sizes of the watch, lease and lock measurements.
type coordSizes struct {
	latencyPuts                int // watch-latency: puts at 100/s to 100 watchers on 10 streams
	fanoutWatchers, fanoutPuts int // fan-out: watchers on 100 streams, puts
	idleWatchers               int // memory: idle watchers on 100 streams
	keepAlives                 int // lease-keepalive requests
	lockCycles                 int // lock cycles
	idleLeases                 int // leases kept alive for the CPU row (0: skip)
	idleLeaseWindow            time.Duration
}

func coordSizesFor(o *options) coordSizes {
	s := coordSizes{latencyPuts: 1000, fanoutWatchers: 10000, fanoutPuts: 100, idleWatchers: 10000,
		keepAlives: 20000, lockCycles: 1000, idleLeases: o.idleLeases, idleLeaseWindow: 30 * time.Second}
	if s.idleLeases >= 100000 {
		s.idleLeaseWindow = time.Minute
	}
	if o.quick {
		s.latencyPuts, s.fanoutPuts, s.keepAlives, s.lockCycles = 200, 10, 2000, 100
		s.idleLeaseWindow = 10 * time.Second
	}
	return s
}

const watchStreams = 100 // fan-out and idle watchers: streams, each on a connection of its own

// coordination measures watches, leases and locks on both clusters.
func (r *runner) coordination(ctx context.Context) ([]coordRow, error) {
	s := coordSizesFor(r.o)
	// Member 1 was made leader at the start; the rows before may have
	// moved it.
	if err := r.sameLeaders(ctx); err != nil {
		return nil, fmt.Errorf("placing the leaders: %w", err)
	}
	r.logf("both: member 1 leads")
	var rows []coordRow
	steps := []func(context.Context, coordSizes) (coordRow, error){
		r.watchLatency, r.watchFanout, r.leaseKeepAlive, r.lockCycles,
	}
	if s.idleLeases > 0 {
		steps = append(steps, r.idleLeaseCPU)
	}
	for _, step := range steps {
		row, err := step(ctx, s)
		if err != nil {
			return rows, err
		}
		r.logf("      %s: kvd %.2f, etcd %.2f %s", row.name, row.kvd, row.etcd, row.unit)
		rows = append(rows, row)
	}
	return rows, nil
}

// kvctlJSON runs kvctl with args and decodes its bench summary.
func (r *runner) kvctlJSON(ctx context.Context, timeout time.Duration, name string, args ...string) (bench.Summary, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	args = append([]string{"--endpoints", r.kvd.endpoints(), "--command-timeout", "30s", "-w", "json"}, args...)
	cmd := exec.CommandContext(ctx, r.o.kvctlBin, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	var s bench.Summary
	if err := cmd.Run(); err != nil {
		return s, fmt.Errorf("kvctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	r.keep(workload{name: name}, "kvd.json", out.String())
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		return s, fmt.Errorf("decode %q: %w", out.String(), err)
	}
	return s, nil
}

// etcdSection runs etcd's benchmark and parses the report that follows
// title in its output (all of it when title is empty).
func (r *runner) etcdSection(ctx context.Context, timeout time.Duration, name, title string, args ...string) (measurement, error) {
	text, _, err := r.etcd.bench(ctx, timeout, args...)
	if err != nil {
		return measurement{}, err
	}
	r.keep(workload{name: name}, "etcd.txt", text)
	part := text
	if title != "" {
		i := strings.Index(text, title)
		if i < 0 {
			return measurement{}, fmt.Errorf("no %q in etcd's report:\n%s", title, text)
		}
		part = text[i:]
	}
	m, err := parseEtcdReport(part, 0)
	if err != nil {
		return m, fmt.Errorf("%w\n%s", err, text)
	}
	return m, nil
}

func (r *runner) watchLatency(ctx context.Context, s coordSizes) (coordRow, error) {
	name := fmt.Sprintf("watch latency, 100 watchers on 10 streams, %d puts at 100/s", s.latencyPuts)
	r.logf("both: %s", name)
	timeout := 2*time.Minute + time.Duration(s.latencyPuts)*20*time.Millisecond
	k, err := r.kvctlJSON(ctx, timeout, name, "bench", "watch-latency", "--streams", "10", "--watchers-per-stream", "10",
		"--put-total", strconv.Itoa(s.latencyPuts), "--put-rate", "100")
	if err != nil {
		return coordRow{}, err
	}
	e, err := r.etcdSection(ctx, timeout, name, "Watch events summary:", "--precise", "--conns", "10", "--clients", "10",
		"watch-latency", "--streams", "10", "--watchers-per-stream", "10", "--put-total", strconv.Itoa(s.latencyPuts), "--put-rate", "100")
	if err != nil {
		return coordRow{}, fmt.Errorf("etcd watch-latency: %w", err)
	}
	return coordRow{name: name, unit: "p50 ms", kvd: k.P50Ms, etcd: e.p50, bar: "p50 and p99 ≤ 1.0 x",
		kvdErrors: k.Errors, etcdErrors: e.errors,
		note: fmt.Sprintf("p99 %.2f / %.2f ms (%s)", k.P99Ms, e.p99, ratio(k.P99Ms, e.p99))}, nil
}

func (r *runner) watchFanout(ctx context.Context, s coordSizes) (coordRow, error) {
	per := s.fanoutWatchers / watchStreams
	name := fmt.Sprintf("watch fan-out, one key, %d watchers on %d streams, %d puts", per*watchStreams, watchStreams, s.fanoutPuts)
	r.logf("both: %s", name)
	timeout := 5 * time.Minute
	k, err := r.kvctlJSON(ctx, timeout, name, "bench", "watch", "--streams", strconv.Itoa(watchStreams), "--watch-per-stream", strconv.Itoa(per),
		"--put-total", strconv.Itoa(s.fanoutPuts), "--put-clients", "100")
	if err != nil {
		return coordRow{}, err
	}
	e, err := r.etcdSection(ctx, timeout, name, "Watch events received summary:", "--precise", "--conns", strconv.Itoa(watchStreams), "--clients", strconv.Itoa(watchStreams),
		"watch", "--streams", strconv.Itoa(watchStreams), "--watch-per-stream", strconv.Itoa(per), "--put-total", strconv.Itoa(s.fanoutPuts))
	if err != nil {
		return coordRow{}, fmt.Errorf("etcd watch: %w", err)
	}
	return coordRow{name: name, unit: "events/s", kvd: k.RequestsPerSec, etcd: e.rps, higher: true, bar: "≥ 1.5 x",
		kvdErrors: k.Errors, etcdErrors: e.errors}, nil
}

func (r *runner) idleWatcherMemory(ctx context.Context, s coordSizes) (coordRow, error) {
	per := s.idleWatchers / watchStreams
	n := per * watchStreams
	name := fmt.Sprintf("memory per idle watcher, %d watchers on %d streams", n, watchStreams)
	r.logf("both: %s", name)
	measure := func(api rawAPI, addrs []string, pids []int) (float64, error) {
		before := rssSum(pids)
		w, err := openIdleWatchers(ctx, api, addrs, watchStreams, per, "idle-watch-key")
		if err != nil {
			return 0, err
		}
		defer w.close()
		// Let the members settle (allocations of the creations, GC).
		if err := sleepCtx(ctx, 3*time.Second); err != nil {
			return 0, err
		}
		return float64(rssSum(pids)-before) / float64(n), nil
	}
	k, err := measure(kvdAPI, strings.Split(r.kvd.endpoints(), ","), r.kvd.pids())
	if err != nil {
		return coordRow{}, fmt.Errorf("kvd idle watchers: %w", err)
	}
	e, err := measure(etcdAPI, strings.Split(etcdEndpoints, ","), r.etcd.pids())
	if err != nil {
		return coordRow{}, fmt.Errorf("etcd idle watchers: %w", err)
	}
	return coordRow{name: name, unit: "bytes of members' RSS per watcher", kvd: k, etcd: e, bar: "≤ 1.0 x",
		note: "resident memory of the three members after the watchers were created, minus before"}, nil
}

func (r *runner) leaseKeepAlive(ctx context.Context, s coordSizes) (coordRow, error) {
	name := fmt.Sprintf("lease keepalive, 100 clients / 10 conns, %d renewals", s.keepAlives)
	r.logf("both: %s", name)
	timeout := 5 * time.Minute
	k, err := r.kvctlJSON(ctx, timeout, name, "bench", "lease-keepalive", "--clients", "100", "--conns", "10", "--total", strconv.Itoa(s.keepAlives))
	if err != nil {
		return coordRow{}, err
	}
	e, err := r.etcdSection(ctx, timeout, name, "", "--precise", "--conns", "10", "--clients", "100", "lease-keepalive", "--total", strconv.Itoa(s.keepAlives))
	if err != nil {
		return coordRow{}, fmt.Errorf("etcd lease-keepalive: %w", err)
	}
	return coordRow{name: name, unit: "renewals/s", kvd: k.RequestsPerSec, etcd: e.rps, higher: true, bar: "≥ 1.5 x",
		kvdErrors: k.Errors, etcdErrors: e.errors,
		note: fmt.Sprintf("p50 %.2f / %.2f ms", k.P50Ms, e.p50)}, nil
}

func (r *runner) lockCycles(ctx context.Context, s coordSizes) (coordRow, error) {
	name := fmt.Sprintf("lock cycles, one mutex, 10 clients / 10 conns, %d cycles", s.lockCycles)
	r.logf("both: %s", name)
	timeout := 5 * time.Minute
	k, err := r.kvctlJSON(ctx, timeout, name, "bench", "lock", "--clients", "10", "--conns", "10", "--total", strconv.Itoa(s.lockCycles))
	if err != nil {
		return coordRow{}, err
	}
	e, err := r.etcdSection(ctx, timeout, name, "", "--precise", "--conns", "10", "--clients", "10", "stm", "--stm-locker", "lock-client", "--total", strconv.Itoa(s.lockCycles))
	if err != nil {
		return coordRow{}, fmt.Errorf("etcd stm lock-client: %w", err)
	}
	return coordRow{name: name, unit: "cycles/s", kvd: k.RequestsPerSec, etcd: e.rps, higher: true, bar: "≥ 1.5 x",
		kvdErrors: k.Errors, etcdErrors: e.errors,
		note: fmt.Sprintf("p50 %.2f / %.2f ms", k.P50Ms, e.p50)}, nil
}

// idleLeaseTTL is the TTL of the idle leases: etcd's default session TTL,
// renewed every 20 seconds.
const idleLeaseTTL = 60

func (r *runner) idleLeaseCPU(ctx context.Context, s coordSizes) (coordRow, error) {
	name := fmt.Sprintf("CPU of %d idle leases kept alive (TTL %d s, renewed every TTL/3 on 100 streams), %v window", s.idleLeases, idleLeaseTTL, s.idleLeaseWindow)
	r.logf("both: %s", name)
	measure := func(api rawAPI, addrs []string, cpu func() time.Duration) (float64, error) {
		gctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
		defer cancel()
		start := time.Now()
		l, err := grantLeases(gctx, api, addrs, s.idleLeases, idleLeaseTTL)
		if err != nil {
			return 0, fmt.Errorf("grant: %w", err)
		}
		r.logf("      %d leases granted in %v", s.idleLeases, time.Since(start).Round(time.Millisecond))
		kctx, stop := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- l.keepAlive(kctx, 100) }()
		// The renewals are spread evenly over their period from the start;
		// a few seconds let the streams open before the window.
		err = sleepCtx(ctx, 3*time.Second)
		c0 := cpu()
		if err == nil {
			err = sleepCtx(ctx, s.idleLeaseWindow)
		}
		used := cpu() - c0
		stop()
		kerr := <-done
		r.logf("      %d renewals answered, %d failed", l.renewed.Load(), l.failed.Load())
		rctx, cancel2 := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Minute)
		defer cancel2()
		if rerr := l.revoke(rctx); rerr != nil {
			r.logf("      revoking the leases: %v", rerr)
		}
		if err != nil || kerr != nil {
			return 0, fmt.Errorf("keep alive: %w", errors.Join(err, kerr))
		}
		if f := l.failed.Load(); f > 0 {
			return 0, fmt.Errorf("%d renewals failed", f)
		}
		return used.Seconds() / s.idleLeaseWindow.Minutes(), nil
	}
	k, err := measure(kvdAPI, strings.Split(r.kvd.endpoints(), ","), r.kvd.cpu)
	if err != nil {
		return coordRow{}, fmt.Errorf("kvd idle leases: %w", err)
	}
	e, err := measure(etcdAPI, strings.Split(etcdEndpoints, ","), r.etcd.cpu)
	if err != nil {
		return coordRow{}, fmt.Errorf("etcd idle leases: %w", err)
	}
	return coordRow{name: name, unit: "members' CPU s per minute", kvd: k, etcd: e, bar: "reported",
		note: "three members together, idle baseline included"}, nil
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

func rssSum(pids []int) int64 {
	var n int64
	for _, pid := range pids {
		n += rss(pid)
	}
	return n
}

func coordMarkdown(rows []coordRow) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n### Watches, leases and locks\n\n")
	fmt.Fprintf(&b, "Member 1 leads both clusters during these rows (see sameLeaders).\n\n")
	fmt.Fprintf(&b, "| measure | unit | kvd | etcd | kvd/etcd | bar | errors kvd / etcd | notes |\n|---|---|--:|--:|--:|---|--:|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %d / %d | %s |\n", r.name, r.unit, num(r.kvd), num(r.etcd), ratio(r.kvd, r.etcd), r.bar,
			r.kvdErrors, r.etcdErrors, r.note)
	}
	return b.String()
}

// num formats v with precision that suits its size.
func num(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
