package main

import (
	"github.com/spf13/cobra"
)

// newSnapshotStatusCmd is kept so that etcdctl habits find their way:
// checking a snapshot file is kvdutil's job, which links the storage code
// kvctl leaves out.
func newSnapshotStatusCmd(g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "status FILE",
		Short: "Moved to kvdutil: use kvdutil snapshot status FILE",
		Long: `Checking a snapshot file and printing what it holds needs no cluster, and is
done by kvdutil, kvd's offline tool (as etcdutl is etcd's):

  kvdutil snapshot status FILE [-w simple|json|table]

This command only prints that command line, with your arguments, and fails.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(_ *cobra.Command, args []string) error {
			return movedToKvdutil(g, "snapshot status", positionalArgs(args, "FILE")...)
		},
	}
}
