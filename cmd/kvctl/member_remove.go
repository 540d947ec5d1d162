package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

type memberRemoveOptions struct {
	g    *globalOptions
	name string
}

func newMemberRemoveCmd(g *globalOptions) *cobra.Command {
	o := &memberRemoveOptions{g: g}
	return &cobra.Command{
		Use:   "remove NAME",
		Short: "Removes a member from the cluster",
		Long: `Removes the member NAME, then prints "Member <id> removed from cluster <id>"
and the members left. Removing the leader first moves leadership to another
voter. It is refused when the remaining healthy voters could not reach quorum.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("member remove needs a member name, got %d arguments", len(args))
			}
			o.name = args[0]
			if err := checkMemberName(o.name); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
}

// Run removes the member and prints the result.
func (o *memberRemoveOptions) Run(ctx context.Context) error {
	c, err := o.g.newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := o.g.commandContext(ctx)
	defer cancel()
	resp, err := c.MemberRemove(ctx, o.name)
	if err != nil {
		return err
	}
	return o.g.printer().MemberChange(memberChange{
		Action:  memberRemoved,
		ID:      memberID(nil, o.name), // gone from the list
		Name:    o.name,
		Header:  resp.GetHeader(),
		Members: resp.GetMembers(),
	})
}
