package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kvd-io/kvd/client"
)

func newLeaseCmd(g *globalOptions) *cobra.Command {
	cmd := groupCmd("lease", "Grants, renews, inspects and revokes leases",
		newLeaseGrantCmd(g), newLeaseRevokeCmd(g), newLeaseKeepAliveCmd(g),
		newLeaseTimeToLiveCmd(g), newLeaseListCmd(g))
	cmd.Long = `A lease lives for its TTL after its grant and after each renewal; when it
expires or is revoked, every key put with it (kvctl put --lease ID) is deleted,
all at one revision. Lease ids print in hex, as etcdctl prints them, and are
read in hex ("694d7a4d6c26c00b", or with a 0x prefix).`
	return cmd
}

// parseLeaseID reads a lease id in hex, as kvctl prints them.
func parseLeaseID(s string) (client.LeaseID, error) {
	v, err := strconv.ParseUint(strings.TrimPrefix(strings.TrimPrefix(s, "0x"), "0X"), 16, 63)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("invalid lease id %q: want a positive hexadecimal id such as 694d7a4d6c26c00b", s)
	}
	return client.LeaseID(v), nil
}

// leaseIDArg reads the one argument of a lease subcommand, the lease id.
func leaseIDArg(use string, args []string) (client.LeaseID, error) {
	if len(args) != 1 {
		return 0, fmt.Errorf("lease %s needs a lease id, got %d arguments", use, len(args))
	}
	return parseLeaseID(args[0])
}

// withClient runs fn with a client of --endpoints and a context bounded by
// --command-timeout.
func (g *globalOptions) withClient(ctx context.Context, fn func(ctx context.Context, c *client.Client) error) error {
	c, err := g.newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := g.commandContext(ctx)
	defer cancel()
	return fn(ctx, c)
}

func newLeaseGrantCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "grant TTL",
		Short: "Grants a lease of TTL seconds",
		Long: `Grants a lease of TTL seconds and prints its id. The cluster refuses a TTL
below its minimum (one and a half election timeouts, rounded up to a second).`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("lease grant needs a TTL in seconds, got %d arguments", len(args))
			}
			ttl, err := strconv.ParseInt(args[0], 10, 64)
			if err != nil || ttl <= 0 {
				return fmt.Errorf("invalid TTL %q: want a positive number of seconds", args[0])
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client.Client) error {
				resp, err := c.Grant(ctx, ttl)
				if err != nil {
					return err
				}
				return g.printer().LeaseGrant(resp)
			})
		},
	}
}

func newLeaseRevokeCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "revoke ID",
		Short: "Revokes a lease, deleting its keys",
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := leaseIDArg("revoke", args)
			if err != nil {
				return err
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client.Client) error {
				resp, err := c.Revoke(ctx, id)
				if err != nil {
					return err
				}
				return g.printer().LeaseRevoke(id, resp)
			})
		},
	}
}

func newLeaseTimeToLiveCmd(g *globalOptions) *cobra.Command {
	var keys bool
	cmd := &cobra.Command{
		Use:   "timetolive ID",
		Short: "Prints a lease's remaining and granted TTL",
		Long: `Prints a lease's granted TTL and the time it has left, as the leader's clock
has it; with --keys, the keys attached to it too. A lease that no longer
exists prints "already expired".`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := leaseIDArg("timetolive", args)
			if err != nil {
				return err
			}
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client.Client) error {
				var opts []client.LeaseOption
				if keys {
					opts = append(opts, client.WithAttachedKeys())
				}
				resp, err := c.TimeToLive(ctx, id, opts...)
				if err != nil {
					return err
				}
				return g.printer().LeaseTimeToLive(resp, keys)
			})
		},
	}
	cmd.Flags().BoolVar(&keys, "keys", false, "also print the keys attached to the lease")
	return cmd
}

func newLeaseListCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "list",
		Short: "Lists every lease of the cluster",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return g.withClient(cmd.Context(), func(ctx context.Context, c *client.Client) error {
				resp, err := c.Leases(ctx)
				if err != nil {
					return err
				}
				return g.printer().LeaseList(resp)
			})
		},
	}
}

// errLeaseGone ends keep-alive when the lease expired or was revoked.
var errLeaseGone = errors.New("the lease expired or was revoked")

func newLeaseKeepAliveCmd(g *globalOptions) *cobra.Command {
	var once bool
	cmd := &cobra.Command{
		Use:   "keep-alive [--once] ID",
		Short: "Renews a lease until interrupted",
		Long: `Renews the lease every third of its TTL and prints each renewal, until
interrupted (Ctrl-C), which is a success. If the lease expires or is revoked,
it prints "expired or revoked." and fails. With --once, it renews the lease
once, within --command-timeout.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := leaseIDArg("keep-alive", args)
			if err != nil {
				return err
			}
			if once {
				return g.withClient(cmd.Context(), func(ctx context.Context, c *client.Client) error {
					resp, err := c.KeepAliveOnce(ctx, id)
					if errors.Is(err, client.ErrLeaseNotFound) {
						if perr := g.printer().LeaseKeepAlive(id, nil); perr != nil {
							return perr
						}
						return fmt.Errorf("lease %s: %w", leaseID(id), errLeaseGone)
					}
					if err != nil {
						return err
					}
					return g.printer().LeaseKeepAlive(id, resp)
				})
			}
			return leaseKeepAlive(cmd.Context(), g, id)
		},
	}
	cmd.Flags().BoolVar(&once, "once", false, "renew the lease once and exit")
	return cmd
}

// leaseKeepAlive renews id until ctx ends (nil) or the lease is lost.
func leaseKeepAlive(ctx context.Context, g *globalOptions, id client.LeaseID) error {
	c, err := g.newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	// The first renewal says whether the lease exists at all.
	first, cancel := g.commandContext(ctx)
	resp, err := c.KeepAliveOnce(first, id)
	cancel()
	p := g.printer()
	if errors.Is(err, client.ErrLeaseNotFound) {
		if perr := p.LeaseKeepAlive(id, nil); perr != nil {
			return perr
		}
		return fmt.Errorf("lease %s: %w", leaseID(id), errLeaseGone)
	}
	if err != nil {
		return err
	}
	if err := p.LeaseKeepAlive(id, resp); err != nil {
		return err
	}
	ch, err := c.KeepAlive(ctx, id)
	if err != nil {
		return err
	}
	for resp := range ch {
		if err := p.LeaseKeepAlive(id, resp); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return nil // interrupted
	}
	if err := p.LeaseKeepAlive(id, nil); err != nil {
		return err
	}
	return fmt.Errorf("lease %s: %w", leaseID(id), errLeaseGone)
}
