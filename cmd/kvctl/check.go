package main

import "github.com/spf13/cobra"

// newCheckCmd groups the commands that check the cluster. Add a subcommand
// here, in its own file.
func newCheckCmd(g *globalOptions) *cobra.Command {
	return groupCmd("check", "Checks the cluster",
		newCheckHashCmd(g),
	)
}
