package main

import "github.com/spf13/cobra"

// newMemberCmd groups the offline member commands. Add a subcommand here, in
// its own file. Changing a cluster's members is kvctl member.
func newMemberCmd(g *globalOptions) *cobra.Command {
	return groupCmd("member", "Derives what kvd computes from member names",
		newMemberIDCmd(g),
	)
}
