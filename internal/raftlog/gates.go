package raftlog

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// FSM returns fsm gated so that it applies an entry only once this member's
// copy of it is on disk. raft answers a write when the state machine has
// applied it, so this is what keeps a leader from answering a write it could
// still lose.
func (s *Store) FSM(fsm raft.BatchingFSM) raft.BatchingFSM { return &gatedFSM{BatchingFSM: fsm, s: s} }

type gatedFSM struct {
	raft.BatchingFSM
	s *Store
}

func (g *gatedFSM) ApplyBatch(logs []*raft.Log) []any {
	if len(logs) > 0 {
		g.s.mustBeDurable(logs[len(logs)-1].Index)
	}
	return g.BatchingFSM.ApplyBatch(logs)
}

func (g *gatedFSM) Apply(l *raft.Log) any {
	g.s.mustBeDurable(l.Index)
	return g.BatchingFSM.Apply(l)
}

// mustBeDurable waits until index is on disk. A committed entry that cannot
// be made durable here cannot be applied either, and the state machine has
// no way to skip it, so the member stops, as it does when an apply fails.
func (s *Store) mustBeDurable(index uint64) {
	if s.Durable() >= index {
		s.cfg.Observer.ObserveLogDurableWait(0)
		return
	}
	start := time.Now()
	if err := s.WaitDurable(index); err != nil {
		panic(fmt.Sprintf("raftlog: committed entry %d is not on disk: %v", index, err))
	}
	s.cfg.Observer.ObserveLogDurableWait(time.Since(start))
}

// Transport returns t with the commit index of every append it sends capped
// at this member's durable index, so that a follower never applies an entry
// that is not yet on the leader's disk. Followers learn the rest from the
// next append (raft sends one at least every CommitTimeout), or sooner from
// package commitpush.
func (s *Store) Transport(t raft.Transport) raft.Transport {
	c := &cappedTransport{Transport: t, s: s}
	if pv, ok := t.(raft.WithPreVote); ok {
		return &preVoteTransport{cappedTransport: c, preVote: pv}
	}
	return c
}

type cappedTransport struct {
	raft.Transport
	s *Store
}

func (t *cappedTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	return t.Transport.AppendEntries(id, target, t.s.capCommit(args), resp)
}

func (t *cappedTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	p, err := t.Transport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	return &cappedPipeline{AppendPipeline: p, s: t.s}, nil
}

// Close closes the wrapped transport if it can be closed. raft closes its
// transport on shutdown when it has a Close method, so this keeps doing what
// it did without the wrapper.
func (t *cappedTransport) Close() error {
	if c, ok := t.Transport.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}

// preVoteTransport is a cappedTransport over a transport that supports
// pre-vote; raft enables pre-vote only when its transport has the method.
type preVoteTransport struct {
	*cappedTransport
	preVote raft.WithPreVote
}

func (t *preVoteTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return t.preVote.RequestPreVote(id, target, args, resp)
}

type cappedPipeline struct {
	raft.AppendPipeline
	s *Store
}

func (p *cappedPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	return p.AppendPipeline.AppendEntries(p.s.capCommit(args), resp)
}

// capCommit returns args, or a copy of it whose commit index is no higher
// than what this member has on disk.
func (s *Store) capCommit(args *raft.AppendEntriesRequest) *raft.AppendEntriesRequest {
	durable := s.Durable()
	if args.LeaderCommitIndex <= durable {
		return args
	}
	capped := *args
	capped.LeaderCommitIndex = durable
	return &capped
}

var (
	_ raft.WithClose   = (*cappedTransport)(nil)
	_ raft.WithPreVote = (*preVoteTransport)(nil)
)
