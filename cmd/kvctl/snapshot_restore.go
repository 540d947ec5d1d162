package main

import (
	"github.com/spf13/cobra"
)

type snapshotRestoreOptions struct {
	name           string
	dataDir        string
	initialCluster string
}

// newSnapshotRestoreCmd is kept so that etcdctl habits find their way:
// restoring writes a data dir with the server's storage code, which is
// kvdutil's, not kvctl's. It takes the flags of kvdutil snapshot restore so
// that it can print the command line to run instead.
func newSnapshotRestoreCmd(g *globalOptions) *cobra.Command {
	o := &snapshotRestoreOptions{}
	cmd := &cobra.Command{
		Use:   "restore FILE --name NAME --data-dir DIR --initial-cluster NAME=RAFTADDR,...",
		Short: "Moved to kvdutil: use kvdutil snapshot restore FILE ...",
		Long: `Restoring a snapshot file into a member's data dir needs no cluster, and is
done by kvdutil, kvd's offline tool (as etcdutl snapshot restore is etcd's):

  kvdutil snapshot restore FILE --name NAME --data-dir DIR --initial-cluster NAME=RAFTADDR,...

This command only prints that command line, with your arguments, and fails.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(_ *cobra.Command, args []string) error {
			return movedToKvdutil(g, "snapshot restore", append(positionalArgs(args, "FILE"),
				offlineArg{flag: "--name", value: o.name, placeholder: "NAME"},
				offlineArg{flag: "--data-dir", value: o.dataDir, placeholder: "DIR"},
				offlineArg{flag: "--initial-cluster", value: o.initialCluster, placeholder: "NAME=RAFTADDR,..."},
			)...)
		},
	}
	cmd.Flags().StringVar(&o.name, "name", "", "name of the member to restore (see kvdutil snapshot restore)")
	cmd.Flags().StringVar(&o.dataDir, "data-dir", "", "data dir to create (see kvdutil snapshot restore)")
	cmd.Flags().StringVar(&o.initialCluster, "initial-cluster", "", "voters of the new cluster (see kvdutil snapshot restore)")
	return cmd
}
