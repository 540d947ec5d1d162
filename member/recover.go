package member

import (
	"fmt"

	"github.com/hashicorp/raft"
)

// forceNewCluster rewrites the member's raft configuration to a single voter,
// itself, keeping all its data. It is for a cluster that lost quorum for good;
// it discards the other members, and entries this member holds beyond the
// last commit it knew of are kept as committed (hashicorp/raft's
// RecoverCluster), so it is never done silently.
func (m *Member) forceNewCluster(rc *raft.Config, snaps raft.SnapshotStore) error {
	m.log.Error("FORCE NEW CLUSTER: rewriting the raft configuration to this member alone; every other member is dropped and must rejoin with an empty data dir",
		"name", m.cfg.Name, "raft_addr", m.raftAddr, "applied_index", m.fsm.AppliedIndex())
	cfg := raft.Configuration{Servers: []raft.Server{{ID: rc.LocalID, Address: raft.ServerAddress(m.raftAddr), Suffrage: raft.Voter}}}
	if err := raft.RecoverCluster(rc, m.fsm, m.raftLog, m.logStore, snaps, m.transport, cfg); err != nil {
		return fmt.Errorf("force new cluster: %w", err)
	}
	m.log.Error("FORCE NEW CLUSTER: done; this member is now the only voter",
		"applied_index", m.fsm.AppliedIndex(), "revision", m.fsm.Revision())
	return nil
}
