package server

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
func (s *Server) watchLeadership() {
	for {
		select {
		case <-s.stop:
			return
		case isLeader := <-s.leaderCh:
			s.metrics.LeaderChanged()
			if !isLeader {
				s.readyTerm.Store(0)
				s.confirm.LeadershipChanged()
				s.log.Info("lost leadership")
				continue
			}
			s.log.Info("became leader", "term", s.raft.CurrentTerm())
			s.startTerm()
		}
	}
}

// startTerm proposes LeaderStart until it is applied or this member is no
// longer the leader of the term it started in.
func (s *Server) startTerm() {
	term := s.raft.CurrentTerm()
	backoff := 10 * time.Millisecond
	for s.raft.State() == raft.Leader && s.raft.CurrentTerm() == term {
		cfg := s.raft.GetConfiguration()
		if err := cfg.Error(); err != nil {
			s.log.Warn("read raft configuration", "error", err)
		}
		cmd := &fsmv1.LeaderStart{
			Term:      term,
			Leader:    s.attributes(),
			ClusterId: clusterIDFor(cfg.Configuration()),
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
		_, err := s.applyLocal(ctx, fsmv1.CommandType_COMMAND_TYPE_LEADER_START, cmd)
		cancel()
		if err == nil {
			if s.raft.CurrentTerm() == term {
				s.readyTerm.Store(term)
				s.log.Info("leader ready", "term", term, "applied_index", s.fsm.AppliedIndex())
			}
			return
		}
		s.log.Warn("propose leader start", "term", term, "error", err)
		select {
		case <-s.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Second)
	}
}

// attributes are what this member publishes about itself.
func (s *Server) attributes() *fsmv1.MemberAttributes {
	return &fsmv1.MemberAttributes{Name: s.cfg.Name, ClientAddr: s.clientAddr, Features: fsm.Features()}
}

// publishSelf makes sure the state records this member's client address and
// features, so that other members can forward to it and list it, and know
// what it can apply. It checks on a timer and
// proposes (through the leader) whenever the record is missing or stale.
func (s *Server) publishSelf() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		if !s.published() {
			ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
			_, err := s.propose(ctx, fsmv1.CommandType_COMMAND_TYPE_PUBLISH_MEMBER, s.attributes())
			cancel()
			if err != nil {
				s.log.Debug("publish member attributes", "error", err)
			}
		}
		select {
		case <-s.stop:
			return
		case <-tick.C:
		}
	}
}

func (s *Server) published() bool {
	members, err := s.fsm.Members()
	if err != nil {
		return false
	}
	m, ok := members[s.cfg.Name]
	return ok && proto.Equal(m, s.attributes())
}
