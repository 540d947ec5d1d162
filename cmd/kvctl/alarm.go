package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"
)

func newAlarmCmd(g *globalOptions) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "alarm <subcommand>",
		Short: "Lists and disarms the cluster's alarms",
		Long: `A member raises the NOSPACE alarm when its state file would grow past its
--quota-backend-bytes. While it is raised, every member refuses puts,
transactions with a put and lease grants ("database space exceeded"); reads,
deletes and compaction go on. To recover: delete what is not needed, compact
("kvctl compaction"), defragment every member ("kvctl defrag --cluster"), then
"kvctl alarm disarm".`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "Lists the raised alarms",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return alarmRun(cmd.Context(), g, false)
		},
	}, &cobra.Command{
		Use:   "disarm",
		Short: "Clears every raised alarm",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return alarmRun(cmd.Context(), g, true)
		},
	})
	return cmd
}

// alarmRun lists the alarms and, with disarm, clears each; it prints the
// alarms listed (disarmed), as etcdctl does.
func alarmRun(ctx context.Context, g *globalOptions, disarm bool) error {
	c, err := g.newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := g.commandContext(ctx)
	defer cancel()
	resp, err := c.AlarmList(ctx)
	if err != nil {
		return err
	}
	if disarm {
		for _, a := range resp.GetAlarms() {
			if _, err := c.AlarmDisarm(ctx, a); err != nil {
				return fmt.Errorf("disarm %v of member %x: %w", a.GetAlarm(), a.GetMemberId(), err)
			}
		}
	}
	return g.printer().Alarms(resp)
}
