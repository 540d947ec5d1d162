package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/kvd-io/kvd/fsm"
)

type snapshotStatusOptions struct {
	g    *globalOptions
	path string
}

func newSnapshotStatusCmd(g *globalOptions) *cobra.Command {
	o := &snapshotStatusOptions{g: g}
	return &cobra.Command{
		Use:   "status FILE",
		Short: "Checks a snapshot file and prints what it holds",
		Long: `Checks the SHA-256 at the end of the snapshot file FILE against its database,
then reads the database (from a copy in the temporary directory) and prints
its hash (the first 8 hex digits of the SHA-256), revision, number of keys and
size. The simple format is etcdctl's: "hash, revision, total keys, total size";
the table and json formats add whether the checksum matched.

It needs no cluster. The command fails when the checksum does not match (the
file was truncated or damaged) or when the file is not a kvd state database.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("snapshot status needs a file name, got %d arguments", len(args))
			}
			o.path = args[0]
			return o.Run(cmd.Context())
		},
	}
}

// Run checks the file and prints its status.
func (o *snapshotStatusOptions) Run(context.Context) error {
	f, err := os.Open(o.path)
	if err != nil {
		return fmt.Errorf("snapshot status: %w", err)
	}
	defer f.Close()
	tmp, err := os.MkdirTemp("", "kvdutil-snapshot-status-")
	if err != nil {
		return fmt.Errorf("snapshot status: %w", err)
	}
	defer os.RemoveAll(tmp)
	db := filepath.Join(tmp, fsm.StateFile)
	check, info, err := copyAndInspect(f, db)
	if err != nil {
		return fmt.Errorf("snapshot status: %w", err)
	}
	st := snapshotStatus{Path: o.path, SHA256: check.sum, ChecksumOK: check.ok()}
	switch {
	case info.err != nil && !st.ChecksumOK:
		return fmt.Errorf("%w; its database is unreadable too: %v", check.mismatch(o.path), info.err)
	case info.err != nil:
		return fmt.Errorf("snapshot %s has a valid checksum but is not a kvd state database: %w", o.path, info.err)
	}
	st.Info = info.StateInfo
	if err := o.g.printer().SnapshotStatus(st); err != nil {
		return err
	}
	if !st.ChecksumOK {
		return check.mismatch(o.path)
	}
	return nil
}

// inspected is the outcome of reading a database copy.
type inspected struct {
	fsm.StateInfo
	err error
}

// copyAndInspect checks the snapshot file f while copying its database part
// to db, then inspects the copy.
func copyAndInspect(f *os.File, db string) (snapshotCheck, inspected, error) {
	out, err := os.OpenFile(db, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return snapshotCheck{}, inspected{}, err
	}
	check, err := checkSnapshotFile(f, out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return check, inspected{}, err
	}
	var in inspected
	in.StateInfo, in.err = inspectState(db)
	return check, in, nil
}
