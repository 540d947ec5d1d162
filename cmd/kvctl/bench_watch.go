package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kvd-io/kvd/bench"
	"github.com/kvd-io/kvd/client"
)

// watchCmd returns the subcommand of a watch workload. Its flags are its
// own, with etcd's names and defaults; of bench's shared flags it uses
// --key-size and --val-size (default 32 bytes here, as etcd's) and
// --target-leader (for the puts).
func (o *benchOptions) watchCmd(op bench.Op, use, short, long string) *cobra.Command {
	wc := bench.DefaultWatchConfig(op)
	cmd := &cobra.Command{
		Use:   use,
		Short: short,
		Long:  long,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := o.completeWatch(wc, cmd.Flags())
			if err != nil {
				return err
			}
			return o.runWatch(cmd.Context(), cfg)
		},
	}
	fs := cmd.Flags()
	fs.IntVar(&wc.Streams, "streams", wc.Streams, "watch streams, each on a connection of its own")
	perStream := "watchers-per-stream"
	if op == bench.OpWatch {
		perStream = "watch-per-stream" // etcd's name for this workload
	}
	fs.IntVar(&wc.WatchersPerStream, perStream, wc.WatchersPerStream, "watchers on each stream")
	fs.IntVar(&wc.PutTotal, "put-total", wc.PutTotal, "puts of the watched key")
	fs.Float64Var(&wc.PutRate, "put-rate", wc.PutRate, "maximum puts per second (0: no limit)")
	fs.IntVar(&wc.PutClients, "put-clients", wc.PutClients, "goroutines sending the puts")
	fs.BoolVar(&wc.PrevKV, "prevkv", false, "ask for the previous key-value pair in every event")
	fs.DurationVar(&wc.Drain, "drain", time.Minute, "after the last put, how long to wait for events still on their way")
	return cmd
}

// completeWatch adds the shared flags to the workload's and validates it.
func (o *benchOptions) completeWatch(wc bench.WatchConfig, fs *pflag.FlagSet) (bench.WatchConfig, error) {
	if fs.Changed("key-size") {
		wc.KeySize = o.cfg.KeySize
	}
	if fs.Changed("val-size") {
		wc.ValSize = o.cfg.ValSize
	}
	for _, name := range []string{"clients", "conns", "total", "duration", "rate", "key-space", "sequential-keys"} {
		if fs.Changed(name) {
			return wc, flagError(fmt.Errorf("--%s is not used by bench %s (see --streams, --put-total, --put-rate)", name, wc.Op))
		}
	}
	wc.RequestTimeout = o.g.commandTimeout
	if err := wc.Validate(); err != nil {
		return wc, flagError(err)
	}
	return wc, nil
}

// runWatch connects the streams and the putting client, runs the workload
// and prints the report.
func (o *benchOptions) runWatch(ctx context.Context, cfg bench.WatchConfig) error {
	eps := o.g.endpoints
	clients, err := o.dial(ctx, eps, cfg.Streams)
	defer closeAll(clients)
	if err != nil {
		return err
	}
	putEps := []string{eps[cfg.Streams%len(eps)]}
	if o.targetLeader {
		leader, err := o.findLeader(ctx)
		if err != nil {
			return err
		}
		putEps = []string{leader}
	}
	put, err := o.dial(ctx, putEps, 1)
	defer closeAll(put)
	if err != nil {
		return err
	}
	streams := make([]client.Watcher, len(clients))
	for i, c := range clients {
		streams[i] = c
	}
	w, err := bench.NewWatchRunner(cfg, streams, put[0])
	if err != nil {
		return flagError(err)
	}
	stop := o.progress(ctx, string(cfg.Op), w.Progress)
	rep, runErr := w.Run(ctx)
	stop()
	if err := o.print(rep); err != nil {
		return err
	}
	switch {
	case runErr != nil:
		return fmt.Errorf("bench interrupted after %d events: %w", rep.Latency.Count(), runErr)
	case rep.Latency.Count() == 0:
		return fmt.Errorf("bench: no event arrived (%d errors)", rep.Errors)
	}
	return nil
}
