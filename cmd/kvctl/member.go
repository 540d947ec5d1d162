package main

import "github.com/spf13/cobra"

// newMemberCmd groups the membership commands. Add a subcommand here, in its
// own file (member_add.go, member_remove.go...).
func newMemberCmd(g *globalOptions) *cobra.Command {
	return groupCmd("member", "Membership related commands",
		newMemberListCmd(g),
		newMemberAddCmd(g),
		newMemberPromoteCmd(g),
		newMemberRemoveCmd(g),
	)
}
