package main

import (
	"context"
	"fmt"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/kvd-io/kvd/client"
)

type compactionOptions struct {
	g        *globalOptions
	rev      int64
	physical bool
}

func newCompactionCmd(g *globalOptions) *cobra.Command {
	o := &compactionOptions{g: g}
	cmd := &cobra.Command{
		Use:   "compaction REV",
		Short: "Discards the history of keys below revision REV",
		Long: `Compacts the key-value history at revision REV, on every member, through the
raft log: the versions of keys that a newer version replaced before REV are
discarded. Reads and watches at a revision below REV then fail with
"required revision has been compacted"; reading at REV or later works, and the
newest version of every key stays. REV must not be above the current
revision, nor at or below the revision already compacted. It prints
"compacted revision REV", as etcdctl does.

The compaction is committed when the command returns; members delete the
history in the background. --physical waits until the serving member has
deleted it. The space it took stays in the members' state files, to be
reused; "kvctl defrag" gives it back to the file system.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.complete(args); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().BoolVar(&o.physical, "physical", false, "wait until the serving member has deleted the compacted history")
	return cmd
}

func (o *compactionOptions) complete(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("compaction needs a revision, got %d arguments", len(args))
	}
	rev, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil {
		return fmt.Errorf("invalid revision %q: want a positive integer", args[0])
	}
	if rev < 1 {
		return fmt.Errorf("invalid revision %d: must be at least 1", rev)
	}
	o.rev = rev
	return nil
}

// Run compacts and prints the revision.
func (o *compactionOptions) Run(ctx context.Context) error {
	c, err := o.g.newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := o.g.commandContext(ctx)
	defer cancel()
	var opts []client.CompactOption
	if o.physical {
		opts = append(opts, client.WithCompactPhysical())
	}
	resp, err := c.Compact(ctx, o.rev, opts...)
	if err != nil {
		return err
	}
	return o.g.printer().Compaction(o.rev, resp)
}
