package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

type defragOptions struct {
	g       *globalOptions
	cluster bool
}

func newDefragCmd(g *globalOptions) *cobra.Command {
	o := &defragOptions{g: g}
	cmd := &cobra.Command{
		Use:   "defrag",
		Short: "Defragments the state file of each member in --endpoints",
		Long: `Asks each endpoint in --endpoints, one after the other, to rewrite its member's
state file without the free space that deleted and compacted data left (the
difference between DB SIZE and DB SIZE IN USE in "kvctl endpoint status"). A
member goes on serving while it defragments; reads and writes wait only for
the final swap of the files. With --cluster, the endpoints are every member's
client address, from the member list that --endpoints serve.

It prints "Finished defragmenting member ENDPOINT (BEFORE -> AFTER) in TOOK"
for each member, and "Failed to defragment member ENDPOINT ..." on stderr for
each failure, after which the command fails. --command-timeout bounds each
member's defragmentation: raise it for large state files.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&o.cluster, "cluster", false, "defragment every member of the cluster, not just --endpoints")
	return cmd
}

// Run defragments every endpoint in turn and prints the results.
func (o *defragOptions) Run(ctx context.Context) error {
	endpoints, err := o.g.endpointsFor(ctx, o.cluster)
	if err != nil {
		return err
	}
	c, err := o.g.newClient(endpoints...)
	if err != nil {
		return err
	}
	defer c.Close()
	results := make([]defragResult, 0, len(endpoints))
	failed := 0
	for _, ep := range endpoints {
		cctx, cancel := o.g.commandContext(ctx)
		start := time.Now()
		resp, err := c.Defragment(cctx, ep)
		cancel()
		r := defragResult{Endpoint: ep, Took: time.Since(start).Round(time.Microsecond), Resp: resp}
		if err != nil {
			r.Resp, r.Error = nil, err.Error()
			failed++
		}
		results = append(results, r)
		if ctx.Err() != nil {
			break // interrupted: do not start on the next member
		}
	}
	if err := o.g.printer().Defrag(results); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("failed to defragment %d of %d members", failed, len(endpoints))
	}
	return nil
}
