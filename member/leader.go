package member

import (
	"context"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/fsm"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
)

// watchLeadership reacts to raft's leadership notifications: a member that
// becomes leader proposes LeaderStart, and becomes ready for linearizable
// reads once it is applied.
func (m *Member) watchLeadership() {
	for {
		select {
		case <-m.ctx.Done():
			return
		case isLeader := <-m.leaderCh:
			m.obs.LeaderChanged()
			if !isLeader {
				m.readyTerm.Store(0)
				m.lessor.Demote()
				m.confirm.LeadershipChanged()
				m.log.Info("lost leadership")
				continue
			}
			m.log.Info("became leader", "term", m.raft.CurrentTerm())
			m.startTerm()
		}
	}
}

// startTerm proposes LeaderStart until it is applied or this member is no
// longer the leader of the term it started in.
func (m *Member) startTerm() {
	term := m.raft.CurrentTerm()
	backoff := 10 * time.Millisecond
	for m.raft.State() == raft.Leader && m.raft.CurrentTerm() == term {
		cfg := m.raft.GetConfiguration()
		if err := cfg.Error(); err != nil {
			m.log.Warn("read raft configuration", "error", err)
		}
		cmd := &fsmv1.LeaderStart{
			Term:      term,
			Leader:    m.attributes(),
			ClusterId: clusterIDFor(cfg.Configuration()),
		}
		ctx, cancel := context.WithTimeout(m.ctx, m.cfg.RequestTimeout)
		_, err := m.proposeCommand(ctx, fsmv1.CommandType_COMMAND_TYPE_LEADER_START, cmd)
		cancel()
		if err == nil {
			if m.raft.CurrentTerm() == term {
				// Every lease of earlier terms is known now: time them,
				// each extended by the election timeout so that none
				// expires for want of renewals that the election held up.
				m.lessor.Promote(m.electionTimeout())
				m.readyTerm.Store(term)
				m.log.Info("leader ready", "term", term, "applied_index", m.fsm.AppliedIndex())
			}
			return
		}
		m.log.Warn("propose leader start", "term", term, "error", err)
		select {
		case <-m.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// attributes are what this member publishes about itself.
func (m *Member) attributes() *fsmv1.MemberAttributes {
	return &fsmv1.MemberAttributes{Name: m.cfg.Name, ClientAddr: m.cfg.AdvertiseClientAddr, Features: fsm.Features()}
}

// publishSelf makes sure the state records this member's client address and
// features, so that other members can forward to it and list it, and know
// what it can apply. It checks on a timer and
// proposes (through the leader) whenever the record is missing or stale.
func (m *Member) publishSelf() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if !m.published() {
			ctx, cancel := context.WithTimeout(m.ctx, m.cfg.RequestTimeout)
			cmd, err := fsm.EncodeCommand(fsmv1.CommandType_COMMAND_TYPE_PUBLISH_MEMBER, m.attributes())
			if err == nil {
				_, err = m.Propose(ctx, cmd)
			}
			cancel()
			if err != nil {
				m.log.Debug("publish member attributes", "error", err)
			}
		}
		select {
		case <-m.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (m *Member) published() bool {
	members, err := m.fsm.Members()
	if err != nil {
		return false
	}
	self, ok := members[m.cfg.Name]
	return ok && proto.Equal(self, m.attributes())
}
