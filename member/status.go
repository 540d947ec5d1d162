package member

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kvd-io/kvd/internal/memberid"
	"github.com/kvd-io/kvd/internal/raftlog"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Status is what a member says of itself (MaintenanceService.Status).
type Status struct {
	Name            string
	LeaderName      string // empty when no leader is known
	LeaderID        uint64 // 0 when no leader is known
	RaftState       string // Leader, Follower, Candidate, Shutdown
	RaftTerm        uint64
	CommitIndex     uint64
	AppliedIndex    uint64
	Revision        int64
	CompactRevision int64
	DBSize          int64 // the state file's size
	DBSizeInUse     int64 // the part of it that holds data
	IsLearner       bool
}

// Status returns the member's view of itself, at once, from local state.
func (m *Member) Status() (Status, error) {
	stats, err := m.fsm.Stats()
	if err != nil {
		return Status{}, err
	}
	size, inUse, err := m.fsm.DBSize()
	if err != nil {
		return Status{}, err
	}
	_, leaderID := m.raft.LeaderWithID()
	st := Status{
		Name:            m.cfg.Name,
		LeaderName:      string(leaderID),
		RaftState:       m.raft.State().String(),
		RaftTerm:        m.raft.CurrentTerm(),
		CommitIndex:     m.raft.CommitIndex(),
		AppliedIndex:    stats.AppliedIndex,
		Revision:        stats.Revision,
		CompactRevision: m.fsm.CompactRevision(),
		DBSize:          size,
		DBSizeInUse:     inUse,
		IsLearner:       m.IsLearner(),
	}
	if leaderID != "" {
		st.LeaderID = memberid.FromName(string(leaderID))
	}
	return st, nil
}

// Header describes this member for a response at revision rev.
func (m *Member) Header(rev int64) *kvv1.ResponseHeader {
	return &kvv1.ResponseHeader{ClusterId: m.ClusterID(), MemberId: m.id, Revision: rev, RaftTerm: m.raft.CurrentTerm()}
}

// What the member shows of itself to its metrics and probes (it implements
// observe.Source).

// RaftState returns raft's state: Leader, Follower, Candidate or Shutdown.
func (m *Member) RaftState() string { return m.raft.State().String() }

// RaftTerm returns the current raft term.
func (m *Member) RaftTerm() uint64 { return m.raft.CurrentTerm() }

// CommitIndex returns the raft commit index this member knows of.
func (m *Member) CommitIndex() uint64 { return m.raft.CommitIndex() }

// LastLogIndex returns the index of the newest entry in this member's log.
func (m *Member) LastLogIndex() uint64 { return m.raft.LastIndex() }

// DBSizeBytes returns the size of the state database file.
func (m *Member) DBSizeBytes() int64 {
	st, err := m.fsm.Stats()
	if err != nil {
		return 0
	}
	return st.DBSize
}

// Revision returns the store's current revision, as reads see it. It reads
// no database: a read of the database commits the state machine's open
// write batch, and response headers (every lease renewal's among them) ask
// for it.
func (m *Member) Revision() int64 { return m.fsm.VisibleRevision() }

// KnownLeader reports whether this member knows a leader.
func (m *Member) KnownLeader() bool {
	_, id := m.raft.LeaderWithID()
	return id != ""
}

// IsLearner reports whether this member is a non-voting member.
func (m *Member) IsLearner() bool {
	cfg, _, err := m.configuration()
	if err != nil {
		return false
	}
	for _, srv := range cfg.Servers {
		if string(srv.ID) == m.cfg.Name {
			return srv.Suffrage != raft.Voter
		}
	}
	return false
}

// AppliedIndex is the highest index whose effect reads can see: raft's
// no-op entries count once everything before them is applied.
func (m *Member) AppliedIndex() uint64 {
	applied := m.fsm.AppliedIndex()
	if commit := m.raft.CommitIndex(); commit > applied && m.onlyRaftEntries(applied+1, commit) {
		return commit
	}
	return applied
}

// Range reads this member's state as it is (a serializable read). For a
// linearizable one, Linearize first.
func (m *Member) Range(req *kvv1.RangeRequest) (*kvv1.RangeResponse, error) {
	return m.fsm.Range(req)
}

// ReadTxn answers a read-only txn from this member's state as it is, like
// Range; for a linearizable one, Linearize first.
func (m *Member) ReadTxn(req *kvv1.TxnRequest) (*kvv1.TxnResponse, error) {
	return m.fsm.ReadTxn(req)
}

// Backup writes a consistent copy of the state database to w (see
// fsm.FSM.Backup).
func (m *Member) Backup(w io.Writer, size func(int64)) (int64, error) {
	return m.fsm.Backup(w, size)
}

// HashKV hashes the store up to rev (see fsm.FSM.HashKV).
func (m *Member) HashKV(rev int64) (hash uint32, hashRev, compactRev int64, err error) {
	return m.fsm.HashKV(rev)
}

// Defragment rewrites this member's state file without its free space,
// while the member goes on serving (see fsm.FSM.Defragment), and returns the
// file's size before and after. It then gives back the raft log file's free
// space too: a snapshot trims the log to raft's trailing entries, and the
// file is rewritten with what is left (raftlog.File.Compact), which holds
// the log's reads and writes for as long as the copy takes.
func (m *Member) Defragment(ctx context.Context) (before, after int64, err error) {
	before, after, err = m.fsm.Defragment(ctx)
	if err != nil {
		return before, after, err
	}
	if err := m.compactRaftLog(ctx); err != nil {
		return before, after, fmt.Errorf("state defragmented; raft log: %w", err)
	}
	return before, after, nil
}

// compactRaftLog trims the raft log with a snapshot and rewrites its file
// when at least half of it is free pages.
func (m *Member) compactRaftLog(ctx context.Context) error {
	if err := m.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		// The file can still give back what earlier snapshots trimmed.
		m.log.Warn("defragment: cannot snapshot to trim the raft log", "error", err)
	}
	size, inUse, err := m.logStore.Size()
	if err != nil {
		return err
	}
	if inUse > size/2 {
		return nil
	}
	start := time.Now()
	before, after, err := m.logStore.Compact(ctx)
	if err != nil {
		if errors.Is(err, raftlog.ErrFileClosed) {
			// The log cannot be written any more: stop, as for any
			// failure to write it.
			m.log.Error("cannot reopen the raft log after compacting it; stopping", "error", err)
			panic(fmt.Sprintf("raft log: %v", err))
		}
		return err
	}
	m.log.Info("compacted the raft log file", "bytes_before", before, "bytes_after", after, "took", time.Since(start).Round(time.Millisecond))
	return nil
}
