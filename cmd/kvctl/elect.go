package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kvd-io/kvd/client"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

type electOptions struct {
	g        *globalOptions
	name     string
	proposal string
	listen   bool
	ttl      int64
}

func newElectCmd(g *globalOptions) *cobra.Command {
	o := &electOptions{g: g}
	cmd := &cobra.Command{
		Use:   "elect [flags] NAME [PROPOSAL]",
		Short: "Campaigns in, or observes, a named election",
		Long: `Campaigns in the election NAME with PROPOSAL through the cluster's election
service, with a lease of --ttl seconds kept alive meanwhile, and waits until it
leads. Then it prints the leader's key (NAME/ and the lease id) and the
proposal, and leads until interrupted (Ctrl-C); then it resigns. If the lease is
lost meanwhile, it fails.

With --listen, it prints the leader's key and proposal each time a leader is
elected or proclaims a new proposal, until interrupted.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case o.listen && len(args) != 1:
				return fmt.Errorf("elect --listen needs an election name and no proposal, got %d arguments", len(args))
			case !o.listen && len(args) != 2:
				return fmt.Errorf("elect needs an election name and a proposal, got %d arguments", len(args))
			case args[0] == "":
				return errors.New("elect: name is empty")
			case o.ttl <= 0:
				return fmt.Errorf("invalid --ttl %d: must be positive", o.ttl)
			}
			o.name = args[0]
			if !o.listen {
				o.proposal = args[1]
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().BoolVarP(&o.listen, "listen", "l", false, "observe the election's leaders rather than campaign")
	cmd.Flags().Int64Var(&o.ttl, "ttl", defaultSessionTTL, "TTL in seconds of the lease the candidacy is held with")
	return cmd
}

// Run campaigns and leads until interrupted, or observes.
func (o *electOptions) Run(ctx context.Context) error {
	c, err := o.g.newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	if o.listen {
		return o.observe(ctx, c)
	}
	s, err := startSession(ctx, o.g, c, o.ttl)
	if err != nil {
		return err
	}
	defer s.close()
	resp, err := c.Campaign(s.ctx, o.name, s.id, o.proposal)
	if err != nil {
		if ctx.Err() != nil {
			return nil // interrupted while waiting
		}
		if s.lost(ctx) {
			return fmt.Errorf("elect %q: %w", o.name, errSessionLost)
		}
		return fmt.Errorf("elect %q: %w", o.name, err)
	}
	l := resp.GetLeader()
	defer o.resign(c, l)
	kv := &kvv1.KeyValue{Key: l.GetKey(), Value: []byte(o.proposal), CreateRevision: l.GetRev(), Lease: l.GetLease()}
	if err := o.g.printer().Leader(resp.GetHeader(), kv); err != nil {
		return err
	}
	return s.hold(ctx)
}

// resign gives up leadership, within --command-timeout of its own.
func (o *electOptions) resign(c *client.Client, l *client.LeaderKey) {
	ctx, cancel := context.WithTimeout(context.Background(), o.g.commandTimeout)
	defer cancel()
	if _, err := c.Resign(ctx, l); err != nil {
		fmt.Fprintf(o.g.errOut, "kvctl: resign %s: %v (revoking its lease resigns)\n", l.GetKey(), err)
	}
}

// observe prints each leader until ctx ends (nil) or observing fails.
func (o *electOptions) observe(ctx context.Context, c *client.Client) error {
	p := o.g.printer()
	for ev := range c.Observe(ctx, o.name) {
		if err := ev.Err(); err != nil {
			return fmt.Errorf("elect --listen %q: %w", o.name, err)
		}
		if err := p.Leader(ev.GetHeader(), ev.GetKv()); err != nil {
			return err
		}
	}
	return nil
}
