package main

import (
	"context"
	"sync"

	"github.com/spf13/cobra"
)

// newEndpointCmd groups the commands that ask each endpoint in turn. Add a
// subcommand here, in its own file.
func newEndpointCmd(g *globalOptions) *cobra.Command {
	return groupCmd("endpoint", "Endpoint related commands",
		newEndpointStatusCmd(g),
		newEndpointHealthCmd(g),
	)
}

// forEachEndpoint runs fn for every endpoint of endpoints concurrently, each
// with its own --command-timeout, and returns when all are done.
func (g *globalOptions) forEachEndpoint(ctx context.Context, endpoints []string, fn func(ctx context.Context, i int, ep string)) {
	var wg sync.WaitGroup
	for i, ep := range endpoints {
		wg.Go(func() {
			ctx, cancel := g.commandContext(ctx)
			defer cancel()
			fn(ctx, i, ep)
		})
	}
	wg.Wait()
}
