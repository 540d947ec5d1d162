package main

import (
	"context"
	"fmt"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// clusterMembers asks --endpoints for the member list, within
// --command-timeout.
func (g *globalOptions) clusterMembers(ctx context.Context) ([]*kvv1.Member, error) {
	c, err := g.newClient()
	if err != nil {
		return nil, err
	}
	defer c.Close()
	ctx, cancel := g.commandContext(ctx)
	defer cancel()
	resp, err := c.MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("list the members: %w", err)
	}
	return resp.GetMembers(), nil
}

// clusterEndpoints returns the client address of every member, in member
// list order, as etcdctl's --cluster does. A member that has not published
// its address yet (it never ran) is reported on stderr and skipped.
func (g *globalOptions) clusterEndpoints(ctx context.Context) ([]string, error) {
	members, err := g.clusterMembers(ctx)
	if err != nil {
		return nil, err
	}
	var eps []string
	seen := map[string]bool{}
	for _, m := range members {
		addr := m.GetClientAddr()
		switch {
		case addr == "":
			fmt.Fprintf(g.errOut, "Skipping member %s (%s): it has not published a client address\n", m.GetName(), hexID(m.GetId()))
		case !seen[addr]:
			seen[addr] = true
			eps = append(eps, addr)
		}
	}
	if len(eps) == 0 {
		return nil, fmt.Errorf("no member of the cluster has a client address (%d members)", len(members))
	}
	return eps, nil
}

// endpointsFor returns every member's client address when cluster is set,
// and --endpoints otherwise.
func (g *globalOptions) endpointsFor(ctx context.Context, cluster bool) ([]string, error) {
	if !cluster {
		return g.endpoints, nil
	}
	return g.clusterEndpoints(ctx)
}
