package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

func newVersionCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Prints kvdutil's version",
		Long:  `Prints "kvdutil <version>", as kvdutil --version does.`,
		Args:  cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			_, err := fmt.Fprintln(g.out, "kvdutil", version)
			return err
		},
	}
}
