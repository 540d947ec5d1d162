package raftlog

import (
	"sync/atomic"
	"testing"

	"github.com/hashicorp/raft"
)

func TestTransportKeepsPreVoteSupport(t *testing.T) {
	s := newStore(t, newHeldStore(), Config{})
	_, inmem := raft.NewInmemTransport("")
	if _, ok := s.Transport(inmem).(raft.WithPreVote); !ok {
		t.Error("wrapping a transport with pre-vote lost it")
	}
	bare := struct{ raft.Transport }{inmem}
	if _, ok := s.Transport(bare).(raft.WithPreVote); ok {
		t.Error("wrapping a transport without pre-vote claims it")
	}
	if _, ok := s.Transport(bare).(raft.WithClose); !ok {
		t.Error("wrapped transport cannot be closed")
	}
}

func TestCapCommit(t *testing.T) {
	var leading atomic.Bool
	s := newStore(t, newHeldStore(), Config{Leading: leading.Load})
	if err := s.StoreLogs(entries(1, 5)); err != nil {
		t.Fatal(err)
	}
	below := &raft.AppendEntriesRequest{LeaderCommitIndex: 5}
	if got := s.capCommit(below); got != below {
		t.Error("an append within the durable index was copied")
	}
	above := &raft.AppendEntriesRequest{LeaderCommitIndex: 9, Entries: entries(6, 9)}
	got := s.capCommit(above)
	if got.LeaderCommitIndex != 5 || len(got.Entries) != 4 {
		t.Errorf("capped append %+v, want commit 5 and the same entries", got)
	}
	if above.LeaderCommitIndex != 9 {
		t.Error("capCommit changed raft's request")
	}
}
