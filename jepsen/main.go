// Command jepsen tests kvd the way Jepsen does: real kvd processes, each in
// its own network namespace, take concurrent client operations while a
// nemesis kills, pauses and partitions them, removes members and adds them
// back, and moves leadership; every operation is recorded and
// the history is checked for linearizability (register), lost writes
// (set), fenced locks (lock) or lease expiry (lease). See docs/jepsen.md.
//
//	go run ./jepsen [run] --workload register --nemesis partition,kill --time-limit 60s
//	go run ./jepsen check jepsen/runs/<dir>     # check a saved history again
//	go run ./jepsen cleanup                     # remove what a crashed run left
//
// Exit status: 0 valid, 1 invalid (an anomaly), 2 inconclusive (the check
// timed out, the cluster did not recover, too little load, a nemesis saw
// kvd misbehave), 3 harness error.
// Running needs root (network namespaces, iptables).
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
	"strings"
	"syscall"
	"time"

	"github.com/kvd-io/kvd/jepsen/cluster"
	"github.com/kvd-io/kvd/jepsen/nemesis"
	"github.com/kvd-io/kvd/jepsen/runner"
	"github.com/kvd-io/kvd/jepsen/workload"
)

// Exit statuses.
const (
	exitValid   = 0
	exitInvalid = 1
	exitUnknown = 2
	exitError   = 3
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := "run"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "run":
		return runTest(ctx, args, stdout, stderr)
	case "check":
		return check(args, stdout, stderr)
	case "cleanup":
		return cleanup(ctx, args, stderr)
	}
	fmt.Fprintf(stderr, "jepsen: unknown command %q; want run, check or cleanup\n", cmd)
	return exitError
}

func runTest(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg := runner.DefaultConfig()
	fs := flag.NewFlagSet("jepsen run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.Workload, "workload", cfg.Workload, "workload: "+strings.Join(workload.Names(), ", "))
	fs.StringVar(&cfg.Nemesis, "nemesis", cfg.Nemesis, "comma-separated faults: "+strings.Join(nemesis.Names(), ", "))
	fs.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "cluster size")
	fs.DurationVar(&cfg.TimeLimit, "time-limit", cfg.TimeLimit, "length of the load phase (warm-up and fault cycles)")
	fs.DurationVar(&cfg.Warmup, "warmup", cfg.Warmup, "load without faults before the first fault")
	fs.DurationVar(&cfg.FaultDuration, "fault-duration", cfg.FaultDuration, "how long each fault lasts")
	fs.DurationVar(&cfg.HealDuration, "heal-duration", cfg.HealDuration, "healthy time between faults")
	fs.DurationVar(&cfg.FinalPhase, "final-phase", cfg.FinalPhase, "load after the final heal (recovery is measured here)")
	fs.DurationVar(&cfg.Quiet, "quiet", cfg.Quiet, "pause after the clients stop, before the health check and final reads")
	fs.DurationVar(&cfg.RecoveryTimeout, "recovery-timeout", cfg.RecoveryTimeout, "how long the cluster may take to become healthy after the final heal")
	fs.IntVar(&cfg.Concurrency, "concurrency", cfg.Concurrency, "logical clients")
	fs.Float64Var(&cfg.Rate, "rate", cfg.Rate, "total operations per second (a ceiling)")
	fs.DurationVar(&cfg.OpTimeout, "op-timeout", cfg.OpTimeout, "timeout of one operation")
	fs.StringVar(&cfg.ClientEndpoints, "client-endpoints", cfg.ClientEndpoints, "all: each client knows every member; one: each client talks to one member")
	fs.IntVar(&cfg.Keys, "keys", cfg.Keys, "register: keys in use at once")
	fs.IntVar(&cfg.OpsPerKey, "ops-per-key", cfg.OpsPerKey, "register: operations per key before moving to a fresh key")
	fs.Int64Var(&cfg.Seed, "seed", 0, "random seed (0: from the clock)")
	fs.StringVar(&cfg.OutDir, "out", "", "run directory (default jepsen/runs/<time>-<workload>-<nemesis>)")
	fs.StringVar(&cfg.KvdBin, "kvd", "", "static kvd binary (default: build ./cmd/kvd into jepsen/runs/.bin)")
	fs.BoolVar(&cfg.UnsafeLocalReads, "unsafe-local-reads", false, "negative control: run kvd with --unsafe-local-reads (needs a kvd_unsafe build; built automatically without --kvd)")
	fs.BoolVar(&cfg.TLS, "tls", false, "mutual TLS on the members' client and peer ports, with certificates made for the run")
	fs.BoolVar(&cfg.Auth, "auth", false, "authentication on: the workload's clients log in as a user with read and write on jepsen/ only")
	kvdArgs := fs.String("kvd-args", "", "extra kvd flags, space-separated")
	fs.DurationVar(&cfg.CheckTimeout, "check-timeout", cfg.CheckTimeout, "bound on the linearizability check (running out is inconclusive)")
	fs.IntVar(&cfg.MinWarmupOK, "min-warmup-ok", cfg.MinWarmupOK, "fewest ok operations before the first fault for the run to count")
	fs.BoolVar(&cfg.KeepData, "keep-data", false, "keep the members' data directories of a valid run")
	fs.StringVar(&cfg.Iptables, "iptables", cfg.Iptables, "iptables command (iptables, iptables-nft or iptables-legacy)")
	fs.StringVar(&cfg.Subnet, "subnet", cfg.Subnet, "first three octets of the private /24 the members live in")
	expect := fs.String("expect", "valid", "expected verdict: valid, or invalid for a negative control (then exit 0 only if an anomaly was found)")
	quiet := fs.Bool("q", false, "no progress messages")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitValid
		}
		return exitError
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "jepsen: unexpected arguments %v\n", fs.Args())
		return exitError
	}
	if *expect != "valid" && *expect != "invalid" {
		fmt.Fprintf(stderr, "jepsen: --expect must be valid or invalid, got %q\n", *expect)
		return exitError
	}
	if *kvdArgs != "" {
		cfg.KvdArgs = strings.Fields(*kvdArgs)
	}
	if cfg.Seed == 0 {
		cfg.Seed = time.Now().UnixNano() % 1_000_000_007
	}
	if cfg.OutDir == "" {
		nem := strings.ReplaceAll(cfg.Nemesis, ",", "+")
		cfg.OutDir = filepath.Join("jepsen", "runs", fmt.Sprintf("%s-%s-%s", time.Now().Format("20060102-150405"), cfg.Workload, nem))
		if cfg.UnsafeLocalReads {
			cfg.OutDir += "-unsafe"
		}
		if cfg.TLS {
			cfg.OutDir += "-tls"
		}
		if cfg.Auth {
			cfg.OutDir += "-auth"
		}
	}
	if !*quiet {
		cfg.Logf = func(format string, args ...any) {
			fmt.Fprintf(stderr, "%s jepsen: %s\n", time.Now().Format("15:04:05.000"), fmt.Sprintf(format, args...))
		}
	}
	// Catch bad flags before building anything.
	probe := cfg
	if probe.KvdBin == "" {
		probe.KvdBin = "(built)"
	}
	if err := probe.Validate(); err != nil {
		fmt.Fprintf(stderr, "jepsen: %v\n", err)
		return exitError
	}
	if !cluster.IsRoot() {
		fmt.Fprintln(stderr, "jepsen: running needs root (network namespaces, iptables)")
		return exitError
	}
	if cfg.KvdBin == "" {
		bin, err := runner.BuildKvd(ctx, filepath.Join("jepsen", "runs", ".bin"), cfg.UnsafeLocalReads)
		if err != nil {
			fmt.Fprintf(stderr, "jepsen: build kvd: %v\n", err)
			return exitError
		}
		cfg.KvdBin = bin
	}
	res, err := runner.Run(ctx, cfg)
	if err != nil {
		fmt.Fprintf(stderr, "jepsen: %v\n", err)
		return exitError
	}
	fmt.Fprint(stdout, res.Summary())
	fmt.Fprintf(stdout, "results: %s\n", filepath.Join(cfg.OutDir, "results.json"))
	code := verdictCode(res.Verdict)
	if *expect == "invalid" {
		if res.Verdict == "invalid" {
			fmt.Fprintln(stdout, "negative control: the checker found the anomaly, as expected")
			return exitValid
		}
		fmt.Fprintf(stdout, "negative control FAILED: expected an anomaly, got %s\n", res.Verdict)
		return exitInvalid
	}
	return code
}

func verdictCode(v string) int {
	switch v {
	case "valid":
		return exitValid
	case "invalid":
		return exitInvalid
	}
	return exitUnknown
}

func check(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: jepsen check RUN_DIR")
		return exitError
	}
	res, err := runner.Recheck(args[0])
	if err != nil {
		fmt.Fprintf(stderr, "jepsen: check: %v\n", err)
		return exitError
	}
	fmt.Fprint(stdout, res.Summary())
	return verdictCode(res.Verdict)
}

func cleanup(ctx context.Context, args []string, stderr io.Writer) int {
	if len(args) != 0 {
		fmt.Fprintln(stderr, "usage: jepsen cleanup")
		return exitError
	}
	cfg := cluster.DefaultConfig()
	cfg.Logf = func(format string, args ...any) { fmt.Fprintf(stderr, "jepsen: "+format+"\n", args...) }
	if err := cluster.Cleanup(ctx, cfg); err != nil {
		fmt.Fprintf(stderr, "jepsen: cleanup: %v\n", err)
		return exitError
	}
	return exitValid
}
