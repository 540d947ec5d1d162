package main

import (
	"context"

	"github.com/spf13/cobra"
)

type memberListOptions struct {
	g *globalOptions
}

func newMemberListCmd(g *globalOptions) *cobra.Command {
	o := &memberListOptions{g: g}
	return &cobra.Command{
		Use:   "list",
		Short: "Lists all members in the cluster",
		Long: `Lists the members as the serving member knows them. The simple format prints
one line per member: id (hex), name, raft address, client address, is
learner, is leader, healthy, last contact.

Healthy and last contact are the serving member's view: the leader hears from
every member, other members only from those they can reach. Last contact is
shown as the time since ("0.4s ago", against kvctl's clock) in the simple and
table formats, and as an RFC 3339 time in json.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.Run(cmd.Context())
		},
	}
}

// Run lists the members and prints them.
func (o *memberListOptions) Run(ctx context.Context) error {
	c, err := o.g.newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := o.g.commandContext(ctx)
	defer cancel()
	resp, err := c.MemberList(ctx)
	if err != nil {
		return err
	}
	return o.g.printer().MemberList(resp)
}
