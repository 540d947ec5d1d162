package member

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"

	"github.com/kvd-io/kvd/fsm"
)

// RestoreConfig describes a member of a new cluster to build from a backup.
type RestoreConfig struct {
	// Name is the member's name; it must be in InitialCluster.
	Name string
	// DataDir is created; it must not exist or be empty.
	DataDir string
	// InitialCluster lists every member of the new cluster. Every member is
	// restored from the same backup with the same list.
	InitialCluster []Peer
}

// Validate reports what is wrong with the config.
func (c RestoreConfig) Validate() error {
	if c.DataDir == "" {
		return errors.New("data dir is required")
	}
	if len(c.InitialCluster) == 0 {
		return errors.New("initial cluster is required")
	}
	cfg := DefaultConfig()
	cfg.Name, cfg.DataDir, cfg.InitialCluster = c.Name, c.DataDir, c.InitialCluster
	return cfg.Validate()
}

// RestoreDataDir builds the data dir of a member of a new cluster from a
// backup of a state database (the payload of `kvctl snapshot save`, already
// checked): the key-value data and revision are kept; the raft log is started
// anew with InitialCluster as its voters, as etcdutl snapshot restore does.
// Started on that dir, kvd resumes and needs no --initial-cluster.
func RestoreDataDir(backup io.Reader, cfg RestoreConfig) error {
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if entries, err := os.ReadDir(cfg.DataDir); err == nil && len(entries) > 0 {
		return fmt.Errorf("restore: %w: %s", ErrDataDirNotEmpty, cfg.DataDir)
	} else if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("restore: %w", err)
	}
	if err := os.MkdirAll(filepath.Join(cfg.DataDir, "raft"), 0o700); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	statePath := filepath.Join(cfg.DataDir, fsm.StateFile)
	if err := writeSynced(statePath, backup); err != nil {
		return fmt.Errorf("restore: write state: %w", err)
	}
	if err := fsm.ResetForNewCluster(statePath); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := fsm.MarkClean(cfg.DataDir); err != nil {
		return fmt.Errorf("restore: %w", err)
	}

	logs, err := raftboltdb.New(raftboltdb.Options{Path: filepath.Join(cfg.DataDir, "raft", "raft.db")})
	if err != nil {
		return fmt.Errorf("restore: open raft log: %w", err)
	}
	defer logs.Close()
	hlog := newRaftLogger(slog.New(slog.DiscardHandler))
	snaps, err := raft.NewFileSnapshotStoreWithLogger(cfg.DataDir, 1, hlog)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.Name)
	rc.Logger = hlog
	var servers []raft.Server
	for _, p := range cfg.InitialCluster {
		servers = append(servers, raft.Server{ID: raft.ServerID(p.Name), Address: raft.ServerAddress(p.RaftAddr), Suffrage: raft.Voter})
	}
	// BootstrapCluster only writes the first configuration entry; the
	// transport is not used to send anything.
	_, trans := raft.NewInmemTransport(raft.ServerAddress(cfg.Name))
	if err := raft.BootstrapCluster(rc, logs, logs, snaps, trans, raft.Configuration{Servers: servers}); err != nil {
		return fmt.Errorf("restore: write raft configuration: %w", err)
	}
	return nil
}

func writeSynced(path string, r io.Reader) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
