// Command compare measures kvd next to etcd on this machine, as `make
// bench-compare` runs it: it starts a three-member kvd cluster on loopback
// and a three-member etcd 3.6 cluster (through the peers script), runs the
// same workloads on each with their own benchmark tools (kvctl bench and
// etcd's benchmark), prints one table with the ratios, and stops both
// clusters. With --scale N it also loads N keys into each and measures the
// data dir, resident memory, restart-to-serve time and snapshot save and
// restore; with --profile it records CPU profiles of kvd's leader with perf
// during extra put and get runs. See docs/performance.md.
//
// Every load is bounded by a request count, every step by a timeout, and
// every process it starts is stopped before it returns, also on SIGINT.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// idleWindow is how long the idle clusters' CPU use is measured.
const idleWindow = 5 * time.Second

type options struct {
	kvdBin     string
	kvctlBin   string
	etcdScript string
	dir        string
	keep       bool
	scale      int
	profile    bool
	out        string
	quick      bool
	table      bool
	coord      bool
	revisions  int
	idleLeases int
	timeout    time.Duration
	// etcdTool runs the rows of etcd's benchmark tool on both clusters.
	etcdTool      bool
	etcdBenchmark string
	// toolKVDEndpoints sends the kvd column of those rows elsewhere: to
	// etcd itself, to try the harness on a kvd without etcd's API.
	toolKVDEndpoints string
	// grpcFloor also runs those rows on a grpc-go server with no store.
	grpcFloor  bool
	security   bool
	etcdBinDir string
}

func main() {
	if addr := os.Getenv(floorEnv); addr != "" {
		if err := serveFloor(addr); err != nil {
			fmt.Fprintln(os.Stderr, "bench-compare: gRPC floor:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "bench-compare:", err)
		os.Exit(1)
	}
}

// scaleQuotaBytes is both clusters' backend quota for --scale-revisions
// runs: room for 10 revisions of a million 256-byte values on either.
const scaleQuotaBytes = 32 << 30

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{}
	fs := flag.NewFlagSet("compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.kvdBin, "kvd", "bin/kvd", "kvd binary")
	fs.StringVar(&o.kvctlBin, "kvctl", "bin/kvctl", "kvctl binary")
	fs.StringVar(&o.etcdScript, "etcd", "../shared/peers/etcd", "the etcd peers script (build, start DIR, stop DIR, bench ARGS)")
	fs.StringVar(&o.dir, "dir", "", "working directory for data and logs (default: a new temporary directory)")
	fs.BoolVar(&o.keep, "keep", false, "keep the working directory")
	fs.IntVar(&o.scale, "scale", 0, "also load this many keys into each cluster and measure size, memory, restart and snapshots (0: skip)")
	fs.BoolVar(&o.profile, "profile", false, "record perf CPU profiles of kvd's leader during extra put and get runs (100 clients / 10 conns)")
	fs.StringVar(&o.out, "out", "", "also write the results as markdown to this file")
	fs.BoolVar(&o.quick, "quick", false, "a tenth of the requests, to try the harness")
	fs.BoolVar(&o.table, "table", true, "run the workloads of the comparison table (--table=false with --scale: only the scale measurements)")
	fs.IntVar(&o.revisions, "scale-revisions", 1, "with --scale N: give every key this many revisions in all, then compact to the latest revision and defragment, measuring time, data dir and the longest stall of a member while it defragments (1: skip)")
	fs.BoolVar(&o.coord, "coord", true, "measure watches, leases and locks (watch latency and fan-out, memory per idle watcher, keepalives, lock cycles)")
	fs.IntVar(&o.idleLeases, "idle-leases", 10000, "leases kept alive idle for the CPU row (100000 for the issue's measurement, about 3 minutes more; 0: skip)")
	fs.DurationVar(&o.timeout, "timeout", 30*time.Minute, "bound of the whole run")
	fs.BoolVar(&o.etcdTool, "etcd-tool", true, "also run etcd's benchmark tool on both clusters through etcd's v3 API, with the same flags (skipped with a note when kvd does not serve it)")
	fs.StringVar(&o.etcdBenchmark, "etcd-benchmark", defaultEtcdBenchmark(), "etcd's benchmark tool (the peers script builds it there)")
	fs.BoolVar(&o.grpcFloor, "grpc-floor", true, "also run etcd's tool on a grpc-go server with no store behind it (the floor: the best any grpc-go server could do on this machine)")
	fs.StringVar(&o.toolKVDEndpoints, "etcd-tool-kvd-endpoints", "", "run the kvd column of etcd's tool against these endpoints instead of kvd's (to try the harness against etcd)")
	fs.BoolVar(&o.security, "security", false, "instead of the comparison table: the cost of TLS and of auth, kvd and etcd each plain, with mutual TLS, and with mutual TLS and auth")
	fs.StringVar(&o.etcdBinDir, "etcd-bin-dir", peersBinDir(), "where the peers script builds etcd and etcd-benchmark (--security starts etcd itself, with TLS flags)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	for _, p := range []*string{&o.kvdBin, &o.kvctlBin, &o.etcdScript} {
		abs, err := filepath.Abs(*p)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(abs); err != nil {
			return nil, err
		}
		*p = abs
	}
	if o.idleLeases < 0 {
		return nil, fmt.Errorf("--idle-leases %d: must not be negative", o.idleLeases)
	}
	if o.revisions < 1 {
		return nil, fmt.Errorf("--scale-revisions %d: must be at least 1", o.revisions)
	}
	if o.revisions > 1 && o.scale == 0 {
		return nil, fmt.Errorf("--scale-revisions needs --scale N (the keys to rewrite)")
	}
	if o.scale < 0 {
		return nil, fmt.Errorf("--scale %d: must not be negative", o.scale)
	}
	return o, nil
}

func run(args []string, stdout, stderr io.Writer) (err error) {
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	began := time.Now()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	if o.dir == "" {
		if o.dir, err = os.MkdirTemp("", "kvd-bench-compare-"); err != nil {
			return err
		}
		if !o.keep {
			defer os.RemoveAll(o.dir)
		}
	} else if err := os.MkdirAll(o.dir, 0o755); err != nil {
		return err
	}
	logf := func(format string, args ...any) {
		fmt.Fprintf(stderr, "[%6.1fs] %s\n", time.Since(began).Seconds(), fmt.Sprintf(format, args...))
	}
	logf("working directory %s", o.dir)

	res := &results{sys: systemInfo(o.dir)}
	logf("building etcd (cached after the first time)")
	etcd := &etcdCluster{script: o.etcdScript, dir: filepath.Join(o.dir, "etcd")}
	if err := etcd.build(ctx); err != nil {
		return err
	}
	if o.security {
		rows, err := security(ctx, o, o.etcdBinDir, logf)
		if err != nil {
			return err
		}
		md := securityMarkdown(rows)
		fmt.Fprint(stdout, md)
		if o.out != "" {
			return os.WriteFile(o.out, []byte(md), 0o644)
		}
		return nil
	}
	kvd := newKVDCluster(o.kvdBin, filepath.Join(o.dir, "kvd"))
	if o.revisions > 1 {
		// Every key rewritten many times outgrows both defaults (2 GiB):
		// the rewrite would end in NOSPACE on both sides, at different
		// points, and compare nothing.
		q := strconv.FormatInt(scaleQuotaBytes, 10)
		kvd.extraArgs = append(kvd.extraArgs, "--quota-backend-bytes", q)
		etcd.env = append(etcd.env, "ETCD_QUOTA_BACKEND_BYTES="+q)
	}
	defer func() {
		logf("stopping both clusters")
		err = errors.Join(err, kvd.stop(), etcd.stop())
	}()
	if err := checkPortsFree(append(kvd.ports(), etcdPorts...)); err != nil {
		return err
	}
	logf("starting kvd (3 members, %s)", kvd.endpoints())
	if err := kvd.start(ctx); err != nil {
		return err
	}
	logf("starting etcd (3 members, %s)", etcdEndpoints)
	if err := etcd.start(ctx); err != nil {
		return err
	}
	r := &runner{o: o, kvd: kvd, etcd: etcd, logf: logf}
	// Member 1 leads both clusters for every row: where the leader is
	// moves the single-client rows and watch latency (see sameLeaders).
	if err := r.sameLeaders(ctx); err != nil {
		return fmt.Errorf("placing the leaders: %w", err)
	}
	res.kvdLeader, _ = kvd.leader(ctx)
	res.etcdLeader, _ = etcd.leader(ctx)
	logf("leaders: kvd %s, etcd %s", res.kvdLeader, res.etcdLeader)

	// What the idle clusters cost: heartbeats and timers, which the
	// one-client runs pay for too.
	k0, e0 := kvd.cpu(), etcd.cpu()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(idleWindow):
	}
	res.kvdIdle, res.etcdIdle = kvd.cpu()-k0, etcd.cpu()-e0
	logf("idle CPU over %v: kvd %v, etcd %v", idleWindow, res.kvdIdle, res.etcdIdle)

	// Memory per idle watcher first, on fresh members: after the other
	// workloads their heaps hold freed memory that new watchers reuse, and
	// the resident memory barely moves.
	var memRow *coordRow
	if o.coord {
		row, err := r.idleWatcherMemory(ctx, coordSizesFor(o))
		if err != nil {
			return err
		}
		memRow = &row
	}
	for _, w := range workloads(o.quick) {
		if !o.table {
			break
		}
		row, err := r.measure(ctx, w)
		if err != nil {
			return err
		}
		res.rows = append(res.rows, row)
	}
	if o.etcdTool {
		if res.tool, err = r.etcdTool(ctx); err != nil {
			return err
		}
	}
	if o.coord {
		if res.coord, err = r.coordination(ctx); err != nil {
			return err
		}
		res.coord = append([]coordRow{*memRow}, res.coord...)
	}
	if o.profile {
		if res.profiles, err = r.profiles(ctx); err != nil {
			logf("profile: %v", err)
		}
	}
	if o.scale > 0 {
		if res.scale, err = r.scale(ctx, o.scale); err != nil {
			return err
		}
		if o.revisions > 1 {
			if res.compaction, err = r.compaction(ctx, o.scale, o.revisions); err != nil {
				return err
			}
		}
	}
	res.wall = time.Since(began)
	md := res.markdown()
	fmt.Fprint(stdout, md)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(md), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// defaultEtcdBenchmark is where the peers script puts etcd's benchmark
// tool: ${KV_PEERS:-$HOME/.cache/kv-peers}/bin/etcd-benchmark.
func defaultEtcdBenchmark() string {
	return filepath.Join(peersBinDir(), "etcd-benchmark")
}

// peersBinDir is where the peers script builds etcd and its benchmark tool
// (${KV_PEERS:-$HOME/.cache/kv-peers}/bin).
func peersBinDir() string {
	root := os.Getenv("KV_PEERS")
	if root == "" {
		home, _ := os.UserHomeDir()
		root = filepath.Join(home, ".cache", "kv-peers")
	}
	return filepath.Join(root, "bin")
}
