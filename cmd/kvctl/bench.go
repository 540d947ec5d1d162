package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kvd-io/kvd/bench"
	"github.com/kvd-io/kvd/client"
)

// benchOptions holds the flags of bench and its workload subcommands. The
// workload logic lives in package bench; this file only wires flags,
// connections and output.
type benchOptions struct {
	g   *globalOptions
	cfg bench.Config

	key          string
	prefill      bool
	targetLeader bool
}

func newBenchCmd(g *globalOptions) *cobra.Command {
	o := &benchOptions{g: g, cfg: bench.DefaultConfig("")}
	cmd := groupCmd("bench", "Benchmarks the cluster, as etcd's benchmark tool does",
		o.opCmd(bench.OpPut, "put", "Benchmarks puts",
			`Sends --total puts (or as many as --duration allows) of --val-size byte values
to keys of --key-size bytes drawn from --key-space keys: uniformly at random,
or 0, 1, ..., N-1 in turn with --sequential-keys. Key i is the varint of i
followed by zeros, the key etcd's benchmark tool writes for i.`),
		o.opCmd(bench.OpGet, "get", "Benchmarks gets",
			`Reads one key, as etcd's "benchmark range KEY" does: --key, or by default the
key that "kvctl bench put" writes with its default --key-space of 1. With
--key-space, reads keys drawn from the key space instead, like put picks them.
--consistency s makes the reads serializable. The keys must exist for the
reads to find values: run "kvctl bench put" first with the same key flags, or
give --prefill to write them (once each, untimed) before the run.`),
		o.opCmd(bench.OpTxn, "txn", "Benchmarks transactions that compare and put",
			`Sends transactions with one compare (the mod revision of the first key, which
always holds) and --txn-ops puts of consecutive keys of the key space, like
etcd's "benchmark txn-put" with a compare added.`),
		o.opCmd(bench.OpMixed, "mixed", "Benchmarks a mix of gets and puts",
			`Sends gets with probability --read-ratio and puts otherwise, on keys of the
key space; the report splits the latencies of gets and puts. --consistency s
makes the gets serializable; --prefill writes the key space first.`),
		o.opCmd(bench.OpLeaseKeepAlive, "lease-keepalive", "Benchmarks lease renewals",
			`Each client grants a lease of --lease-ttl seconds, then renews it once per
request, each renewal on a stream of its own, as etcd's "benchmark
lease-keepalive" (clientv3's KeepAliveOnce) does. The leases are revoked at
the end.`),
		o.opCmd(bench.OpLock, "lock", "Benchmarks acquire-release cycles of a contended lock",
			`Every client opens a session (a lease of --session-ttl seconds kept alive) and
takes the same mutex, --lock-name, in turn (client/concurrency's Mutex). Under
the lock it reads a key of the key space and commits a transaction that
checks the key has not changed, then unlocks: one request is one cycle, as
etcd's "benchmark stm --stm-locker lock-client" counts them with its defaults.`),
		o.watchCmd(bench.OpWatchLatency, "watch-latency", "Benchmarks the latency of watch events",
			`Creates --streams watch streams (one connection each, round-robin over
--endpoints) with --watchers-per-stream watchers of one new key each, then puts
that key --put-total times at --put-rate per second. Reports the time from each
put's acknowledgement to its event's arrival at each watcher (zero when the
event arrived first), as etcd's "benchmark watch-latency" does, and the puts'
own latencies.`),
		o.watchCmd(bench.OpWatch, "watch", "Benchmarks the fan-out of watch events",
			`Creates --streams watch streams (one connection each, round-robin over
--endpoints) with --watchers-per-stream watchers of one new key each, then puts
that key --put-total times from --put-clients goroutines (no rate limit unless
--put-rate). Reports the events delivered per second, from the first put to the
last event, as etcd's "benchmark watch" does.`),
	)
	cmd.Long = `Benchmarks the cluster with etcd's benchmark habits: --conns gRPC connections,
spread round-robin over --endpoints (or all on the leader with --target-leader),
shared by --clients goroutines, each waiting for its answer before sending the
next request; --total requests or --duration of sending; --rate caps requests
per second over all clients. Each request is bounded by --command-timeout.

It prints the throughput, a response time histogram and the latency
distribution; -w json prints one JSON object instead (total, errors,
errors_by_code, duration_s, requests_per_sec, p50_ms, p90_ms, p99_ms, p999_ms,
...). A progress bar is drawn on stderr when stderr is a terminal. Failed
requests are counted by gRPC code and kept out of the latencies; the command
fails only when every request failed or the run was interrupted. The simple
and table formats print the same report.`
	o.bindFlags(cmd.PersistentFlags())
	return cmd
}

func (o *benchOptions) bindFlags(fs *pflag.FlagSet) {
	c := &o.cfg
	fs.IntVar(&c.Clients, "clients", c.Clients, "number of concurrent clients (goroutines)")
	fs.IntVar(&c.Conns, "conns", c.Conns, "number of gRPC connections the clients share")
	fs.IntVar(&c.Total, "total", c.Total, "number of requests (default 10000; with only --duration given, no limit)")
	fs.DurationVar(&c.Duration, "duration", 0, "stop sending after this long (0: run until --total)")
	fs.Float64Var(&c.Rate, "rate", 0, "maximum requests per second over all clients (0: no limit)")
	fs.IntVar(&c.KeySize, "key-size", c.KeySize, "key size in bytes")
	fs.IntVar(&c.ValSize, "val-size", c.ValSize, "value size in bytes")
	fs.IntVar(&c.KeySpace, "key-space", c.KeySpace, "number of distinct keys")
	fs.BoolVar(&c.SequentialKeys, "sequential-keys", false, "use keys 0..key-space-1 in turn instead of random ones")
	fs.Uint64Var(&c.Seed, "seed", 0, "seed of the random key choice (0: from the clock)")
	fs.BoolVar(&o.targetLeader, "target-leader", false, "open every connection to the leader")
}

// opCmd returns the subcommand of one workload.
func (o *benchOptions) opCmd(op bench.Op, use, short, long string) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) == 1 {
				o.key = args[0]
			}
			if err := o.complete(op, cmd.Flags()); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	fs := cmd.Flags()
	switch op {
	case bench.OpGet:
		// The key is an argument, as in etcd's "benchmark range KEY": a
		// --key flag would hide the global --key (the TLS key file).
		cmd.Use, cmd.Args = use+" [KEY]", cobra.MaximumNArgs(1)
		fs.BoolVar(&o.prefill, "prefill", false, "write the keys to read, once each, before the run")
	case bench.OpMixed:
		fs.Float64Var(&o.cfg.ReadRatio, "read-ratio", o.cfg.ReadRatio, "fraction of requests that are gets")
		fs.BoolVar(&o.prefill, "prefill", false, "write every key of the key space once before the run")
	case bench.OpTxn:
		fs.IntVar(&o.cfg.TxnOps, "txn-ops", o.cfg.TxnOps, "puts per transaction")
	case bench.OpLeaseKeepAlive:
		fs.Int64Var(&o.cfg.LeaseTTL, "lease-ttl", 100, "TTL in seconds of each client's lease")
	case bench.OpLock:
		fs.StringVar(&o.cfg.LockName, "lock-name", "bench-lock", "the mutex's key prefix")
		fs.Int64Var(&o.cfg.SessionTTL, "session-ttl", 60, "TTL in seconds of each client's session")
	}
	return cmd
}

// complete turns the flags into the run's config and validates it.
func (o *benchOptions) complete(op bench.Op, fs *pflag.FlagSet) error {
	c := &o.cfg
	c.Op = op
	if fs.Changed("duration") && !fs.Changed("total") {
		c.Total = 0
	}
	if op == bench.OpGet {
		switch {
		case o.key != "" && fs.Changed("key-space"):
			return errors.New("a KEY and --key-space cannot be used together: give one key or a key space to read")
		case o.key != "":
			c.Key = o.key
		case !fs.Changed("key-space"):
			// The single key of a default put run, as etcd's range reads one key.
			c.Key = bench.KeyAt(0, c.KeySize)
		}
	}
	c.Serializable = o.g.serializable()
	c.RequestTimeout = o.g.commandTimeout
	if err := c.Validate(); err != nil {
		return flagError(err)
	}
	return nil
}

// flagError rewords a bench.Config error in terms of the command's flags.
func flagError(err error) error {
	return fmt.Errorf("invalid bench flags: %w", err)
}

// Run connects, optionally prefills, runs the workload and prints the report.
func (o *benchOptions) Run(ctx context.Context) error {
	eps := o.g.endpoints
	if o.targetLeader {
		leader, err := o.findLeader(ctx)
		if err != nil {
			return err
		}
		eps = []string{leader}
	}
	clients, err := o.dial(ctx, eps, o.cfg.Conns)
	defer closeAll(clients)
	if err != nil {
		return err
	}
	kvs := make([]client.KV, len(clients))
	for i, c := range clients {
		kvs[i] = c
	}

	if o.prefill {
		p, err := bench.NewPrefill(o.cfg, kvs)
		if err != nil {
			return flagError(err)
		}
		stop := o.progress(ctx, "prefill", p.Progress)
		n, err := bench.Prefill(ctx, p)
		stop()
		if err != nil {
			return err
		}
		fmt.Fprintf(o.g.errOut, "prefilled %d keys\n", n)
	}

	r, err := bench.NewRunner(o.cfg, kvs)
	if err != nil {
		return flagError(err)
	}
	stop := o.progress(ctx, string(o.cfg.Op), r.Progress)
	rep, runErr := r.Run(ctx)
	stop()
	if err := o.print(rep); err != nil {
		return err
	}
	switch {
	case runErr != nil:
		return fmt.Errorf("bench interrupted after %d requests: %w", rep.Total, runErr)
	case rep.Total > 0 && rep.Errors == rep.Total:
		return fmt.Errorf("bench: every request failed (%d)", rep.Errors)
	}
	return nil
}

func (o *benchOptions) print(rep *bench.Report) error {
	if o.g.writeOut == formatJSON {
		return rep.WriteJSON(o.g.out)
	}
	return rep.WriteText(o.g.out)
}

// findLeader returns the endpoint whose member says it is the leader.
func (o *benchOptions) findLeader(ctx context.Context) (string, error) {
	c, err := o.g.newClient()
	if err != nil {
		return "", err
	}
	defer c.Close()
	var errs []error
	for _, ep := range o.g.endpoints {
		cctx, cancel := o.g.commandContext(ctx)
		st, err := c.Status(cctx, ep)
		cancel()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if st.IsLeader() {
			return ep, nil
		}
	}
	return "", fmt.Errorf("--target-leader: no endpoint is the leader: %w", errors.Join(errs...))
}

// dial builds n clients, one per connection, connection i on endpoint i mod
// len(eps), and waits until each has answered a Status, so that connecting
// is not part of the measurement and an endpoint that is down fails the
// command before it starts.
func (o *benchOptions) dial(ctx context.Context, eps []string, n int) ([]*client.Client, error) {
	clients := make([]*client.Client, n)
	for i := range clients {
		c, err := o.g.newClient(eps[i%len(eps)])
		if err != nil {
			return clients[:i], err
		}
		clients[i] = c
	}
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	for i, c := range clients {
		wg.Go(func() {
			cctx, cancel := o.g.commandContext(ctx)
			defer cancel()
			ep := c.Endpoints()[0]
			if _, err := c.Status(cctx, ep); err != nil {
				errs[i] = fmt.Errorf("connection %d to %s: %w", i, ep, err)
			}
		})
	}
	wg.Wait()
	return clients, errors.Join(errs...)
}

func closeAll(clients []*client.Client) {
	for _, c := range clients {
		_ = c.Close()
	}
}

// progress draws a progress bar on stderr while a run goes, when stderr is a
// terminal. The returned function stops it.
func (o *benchOptions) progress(ctx context.Context, label string, source func() bench.Progress) func() {
	if !isTerminalWriter(o.g.errOut) {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		bench.ShowProgress(ctx, o.g.errOut, label, 200*time.Millisecond, source)
	}()
	return func() { cancel(); <-done }
}
