package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

// healthKey is the key that endpoint health reads.
const healthKey = "health"

type endpointHealthOptions struct {
	g       *globalOptions
	cluster bool
}

func newEndpointHealthCmd(g *globalOptions) *cobra.Command {
	o := &endpointHealthOptions{g: g}
	cmd := &cobra.Command{
		Use:   "health",
		Short: "Checks the health of the endpoints in --endpoints",
		Long: `Checks every endpoint in --endpoints with a linearizable read of the key
"health" sent to that endpoint only, which succeeds only when the cluster has
a leader and a quorum. The command fails when any endpoint is unhealthy. With
--cluster, the endpoints are every member's client address, from the member
list that --endpoints serve.

The simple format prints "<endpoint> is healthy: successfully committed
proposal: took = <time>" on stdout and "<endpoint> is unhealthy: <error>" on
stderr, as etcdctl does.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&o.cluster, "cluster", false, "check every member of the cluster, not just --endpoints")
	return cmd
}

// Run checks every endpoint and prints the results.
func (o *endpointHealthOptions) Run(ctx context.Context) error {
	endpoints, err := o.g.endpointsFor(ctx, o.cluster)
	if err != nil {
		return err
	}
	healths := make([]endpointHealth, len(endpoints))
	o.g.forEachEndpoint(ctx, endpoints, func(ctx context.Context, i int, ep string) {
		healths[i] = o.check(ctx, ep)
	})
	if err := o.g.printer().EndpointHealth(healths); err != nil {
		return err
	}
	unhealthy := 0
	for _, h := range healths {
		if !h.Healthy {
			unhealthy++
		}
	}
	if unhealthy > 0 {
		return fmt.Errorf("unhealthy cluster: %d of %d endpoints are unhealthy", unhealthy, len(healths))
	}
	return nil
}

func (o *endpointHealthOptions) check(ctx context.Context, ep string) endpointHealth {
	h := endpointHealth{Endpoint: ep}
	c, err := o.g.newClient(ep)
	if err != nil {
		h.Error = err.Error()
		return h
	}
	defer c.Close()
	start := time.Now()
	_, err = c.Get(ctx, healthKey)
	h.Took = time.Since(start).Round(time.Microsecond)
	if err != nil {
		h.Error = err.Error()
		return h
	}
	h.Healthy = true
	return h
}
