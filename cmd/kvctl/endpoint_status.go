package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kvd-io/kvd/client"
)

type endpointStatusOptions struct {
	g       *globalOptions
	cluster bool
}

func newEndpointStatusCmd(g *globalOptions) *cobra.Command {
	o := &endpointStatusOptions{g: g}
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Prints the status of the endpoints in --endpoints",
		Long: `Asks every endpoint in --endpoints for its own status, without failing over
to another endpoint. An endpoint that does not answer is reported on stderr,
the others are printed, and the command fails. With --cluster, the endpoints
are every member's client address, from the member list that --endpoints
serve.

The table format shows each member's role and its commit and applied indexes
side by side; the simple format prints every column. DB SIZE is the size of
the member's state file, DB SIZE IN USE how much of it holds data: "kvctl
defrag" gives the rest back. The json format prints an array with one object
per endpoint that answered.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&o.cluster, "cluster", false, "ask every member of the cluster, not just --endpoints")
	return cmd
}

// Run asks every endpoint for its status and prints the answers.
func (o *endpointStatusOptions) Run(ctx context.Context) error {
	endpoints, err := o.g.endpointsFor(ctx, o.cluster)
	if err != nil {
		return err
	}
	c, err := o.g.newClient(endpoints...)
	if err != nil {
		return err
	}
	defer c.Close()

	resps := make([]*client.StatusResponse, len(endpoints))
	errs := make([]error, len(endpoints))
	o.g.forEachEndpoint(ctx, endpoints, func(ctx context.Context, i int, ep string) {
		resps[i], errs[i] = c.Status(ctx, ep)
	})

	var statuses []endpointStatus
	failed := 0
	for i, ep := range endpoints {
		if errs[i] != nil {
			failed++
			fmt.Fprintf(o.g.errOut, "Failed to get the status of endpoint %s (%v)\n", ep, errs[i])
			continue
		}
		statuses = append(statuses, endpointStatus{Endpoint: ep, Resp: resps[i]})
	}
	if err := o.g.printer().EndpointStatus(statuses); err != nil {
		return err
	}
	if failed > 0 {
		return fmt.Errorf("failed to get the status of %d of %d endpoints", failed, len(endpoints))
	}
	return nil
}
