package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/member"
)

type snapshotRestoreOptions struct {
	g              *globalOptions
	path           string
	name           string
	dataDir        string
	initialCluster string
}

func newSnapshotRestoreCmd(g *globalOptions) *cobra.Command {
	o := &snapshotRestoreOptions{g: g}
	cmd := &cobra.Command{
		Use:   "restore FILE --name NAME --data-dir DIR --initial-cluster NAME=RAFTADDR,...",
		Short: "Builds a member's data dir of a new cluster from a snapshot file",
		Long: `Checks the SHA-256 at the end of the snapshot file FILE, refusing a corrupt
file, then builds the data dir of member --name of a new cluster whose voters
are --initial-cluster, as etcdutl snapshot restore does: the keys and the
revision are kept, the raft log starts anew. --data-dir must not exist or be
empty.

Restore every member of the new cluster from the same file with the same
--initial-cluster, each with its own --name and --data-dir, then start them;
the command prints the kvd command line. It needs no cluster.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("snapshot restore needs a file name, got %d arguments", len(args))
			}
			o.path = args[0]
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&o.name, "name", "", "name of the member to restore (required)")
	cmd.Flags().StringVar(&o.dataDir, "data-dir", "", "data dir to create; it must not exist or be empty (required)")
	cmd.Flags().StringVar(&o.initialCluster, "initial-cluster", "", "voters of the new cluster: name=raftaddr,name=raftaddr,... (required)")
	return cmd
}

// config checks the flags and returns the restore's config and the raft
// address of the member.
func (o *snapshotRestoreOptions) config() (member.RestoreConfig, string, error) {
	switch {
	case o.name == "":
		return member.RestoreConfig{}, "", errors.New("snapshot restore needs --name")
	case o.dataDir == "":
		return member.RestoreConfig{}, "", errors.New("snapshot restore needs --data-dir")
	case o.initialCluster == "":
		return member.RestoreConfig{}, "", errors.New("snapshot restore needs --initial-cluster")
	}
	peers, err := member.ParseInitialCluster(o.initialCluster)
	if err != nil {
		return member.RestoreConfig{}, "", fmt.Errorf("invalid --initial-cluster: %w", err)
	}
	cfg := member.RestoreConfig{Name: o.name, DataDir: o.dataDir, InitialCluster: peers}
	if err := cfg.Validate(); err != nil {
		return cfg, "", fmt.Errorf("snapshot restore: %w", err)
	}
	var raftAddr string
	for _, p := range peers {
		if p.Name == o.name {
			raftAddr = p.RaftAddr
		}
	}
	return cfg, raftAddr, nil
}

// Run checks the file, restores it and prints what it did.
func (o *snapshotRestoreOptions) Run(context.Context) error {
	cfg, raftAddr, err := o.config()
	if err != nil {
		return err
	}
	f, err := os.Open(o.path)
	if err != nil {
		return fmt.Errorf("snapshot restore: %w", err)
	}
	defer f.Close()
	check, err := checkSnapshotFile(f, nil)
	if err != nil {
		return fmt.Errorf("snapshot restore: %w", err)
	}
	if !check.ok() {
		return fmt.Errorf("refusing to restore: %w", check.mismatch(o.path))
	}

	undo := undoForDataDir(o.dataDir)
	backup := &verifyingReader{r: io.NewSectionReader(f, 0, check.dbSize), h: sha256.New(), want: check.sum}
	if err := member.RestoreDataDir(backup, cfg); err != nil {
		if !errors.Is(err, member.ErrDataDirNotEmpty) {
			undo()
		}
		return fmt.Errorf("snapshot restore of %s: %w", o.path, err)
	}
	info, err := inspectState(filepath.Join(o.dataDir, fsm.StateFile))
	if err != nil {
		undo()
		return fmt.Errorf("snapshot restore of %s: it is not a kvd state database: %w", o.path, err)
	}
	return o.g.printer().SnapshotRestore(snapshotRestored{
		Path:           o.path,
		Name:           o.name,
		DataDir:        o.dataDir,
		RaftAddr:       raftAddr,
		InitialCluster: o.initialCluster,
		Info:           info,
	})
}

// undoForDataDir returns a function that removes what a failed restore left
// in dir: all of dir when it does not exist yet, its contents when it is an
// empty directory, and nothing otherwise (the restore refuses such a dir).
func undoForDataDir(dir string) func() {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return func() { _ = os.RemoveAll(dir) }
	case err == nil && len(entries) == 0:
		return func() {
			left, _ := os.ReadDir(dir)
			for _, e := range left {
				_ = os.RemoveAll(filepath.Join(dir, e.Name()))
			}
		}
	default:
		return func() {}
	}
}
