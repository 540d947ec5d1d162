package main

import (
	"context"

	"github.com/spf13/cobra"
)

type leaderTransferOptions struct {
	g  *globalOptions
	to string
}

func newLeaderTransferCmd(g *globalOptions) *cobra.Command {
	o := &leaderTransferOptions{g: g}
	cmd := &cobra.Command{
		Use:   "transfer [--to NAME]",
		Short: "Moves leadership to another voter",
		Long: `Moves leadership to the voter named by --to, or, without --to, to the most
up-to-date voter, then prints "Leadership transferred to <name>". Writes pause
for the moment the new leader takes over.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.to != "" {
				if err := checkMemberName(o.to); err != nil {
					return err
				}
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&o.to, "to", "", "name of the voter to hand leadership to (default: raft picks)")
	return cmd
}

// Run moves leadership and prints the new leader.
func (o *leaderTransferOptions) Run(ctx context.Context) error {
	c, err := o.g.newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := o.g.commandContext(ctx)
	defer cancel()
	resp, err := c.LeaderTransfer(ctx, o.to)
	if err != nil {
		return err
	}
	return o.g.printer().LeaderTransfer(resp)
}
