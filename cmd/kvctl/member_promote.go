package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

type memberPromoteOptions struct {
	g    *globalOptions
	name string
}

func newMemberPromoteCmd(g *globalOptions) *cobra.Command {
	o := &memberPromoteOptions{g: g}
	return &cobra.Command{
		Use:   "promote NAME",
		Short: "Promotes a non-voting learner to a voting member",
		Long: `Makes the learner NAME a voter, then prints "Member <id> promoted in cluster
<id>" and the members after the change. It is refused while the learner lags
far behind the leader: wait for it to catch up and try again.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("member promote needs a member name, got %d arguments", len(args))
			}
			o.name = args[0]
			if err := checkMemberName(o.name); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
}

// Run promotes the learner and prints the result.
func (o *memberPromoteOptions) Run(ctx context.Context) error {
	c, err := o.g.newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := o.g.commandContext(ctx)
	defer cancel()
	resp, err := c.MemberPromote(ctx, o.name)
	if err != nil {
		return err
	}
	return o.g.printer().MemberChange(memberChange{
		Action:  memberPromoted,
		ID:      memberID(resp.GetMembers(), o.name),
		Name:    o.name,
		Header:  resp.GetHeader(),
		Members: resp.GetMembers(),
	})
}
