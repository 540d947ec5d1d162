package main

import "github.com/spf13/cobra"

// newLeaderCmd groups the leadership commands. Add a subcommand here, in its
// own file.
func newLeaderCmd(g *globalOptions) *cobra.Command {
	return groupCmd("leader", "Leadership related commands",
		newLeaderTransferCmd(g),
	)
}
