package main

import (
	"context"
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/kvd-io/kvd/internal/memberid"
)

type memberIDOptions struct {
	g     *globalOptions
	names []string
}

func newMemberIDCmd(g *globalOptions) *cobra.Command {
	o := &memberIDOptions{g: g}
	return &cobra.Command{
		Use:   "id NAME...",
		Short: "Prints the member id kvd derives from each name",
		Long: `Prints the id kvd gives the member named NAME, for each NAME, in the order
given: the id that kvctl member list, endpoint status and the response headers
show, in hex as they print it (the json format gives it as a number). A
member's id depends on its name only, so it is known before the member exists.

Every name is checked first: a name that is empty or holds a comma, '=' or
whitespace is refused, and nothing is printed.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.setArgs(args); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
}

// setArgs takes the names and checks every one.
func (o *memberIDOptions) setArgs(args []string) error {
	if len(args) == 0 {
		return errors.New("member id needs at least one member name")
	}
	for _, name := range args {
		if name == "" {
			return errors.New("member id: a member name is empty")
		}
		if err := memberid.CheckName(name); err != nil {
			return fmt.Errorf("member id: %w", err)
		}
	}
	o.names = args
	return nil
}

// Run prints the id of every name.
func (o *memberIDOptions) Run(context.Context) error {
	ids := make([]memberID, 0, len(o.names))
	for _, name := range o.names {
		ids = append(ids, memberID{Name: name, ID: memberid.FromName(name)})
	}
	return o.g.printer().MemberIDs(ids)
}
