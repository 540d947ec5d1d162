package leadership

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// followers answers AppendEntries as followers in the given terms would.
// A follower in hold answers only once its channel is closed: a message in
// flight while the leader stalls.
type followers struct {
	raft.Transport // nil: only AppendEntries is called
	term           map[raft.ServerID]uint64
	hold           map[raft.ServerID]chan struct{}
	held           chan raft.ServerID // told of each call that waits in hold
}

func (f *followers) AppendEntries(id raft.ServerID, _ raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	known, ok := f.term[id]
	if !ok {
		return errors.New("unreachable")
	}
	term := max(known, args.Term) // a follower adopts a newer term
	if h := f.hold[id]; h != nil {
		f.held <- id
		<-h
	}
	resp.Term = term
	resp.Success = term == args.Term
	return nil
}

func heartbeat(t raft.Transport, id raft.ServerID, term uint64) error {
	var resp raft.AppendEntriesResponse
	return t.AppendEntries(id, raft.ServerAddress(id), &raft.AppendEntriesRequest{Term: term}, &resp)
}

func wait(r *Round, d time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return r.Wait(ctx)
}

var three = []raft.ServerID{"a", "b", "c"}

func TestAnswersAfterTheRoundBeganConfirmIt(t *testing.T) {
	c := New(nil)
	tr := c.Transport(&followers{term: map[raft.ServerID]uint64{"b": 5, "c": 5}})
	r := c.Begin(5, "a", three)
	if err := heartbeat(tr, "b", 5); err != nil {
		t.Fatal(err)
	}
	if err := wait(r, 5*time.Second); err != nil {
		t.Fatalf("leader plus one follower in its term is a quorum of three: %v", err)
	}
}

// The stale read of issue 21: answers to heartbeats sent before a round
// began arrive after it began, from followers that have since moved to a
// newer term. They must not confirm the round.
func TestAnswersToEarlierMessagesDoNotConfirm(t *testing.T) {
	c := New(nil)
	held := make(chan struct{})
	f := &followers{term: map[raft.ServerID]uint64{"b": 5, "c": 5}, hold: map[raft.ServerID]chan struct{}{"b": held, "c": held},
		held: make(chan raft.ServerID, 2)}
	tr := c.Transport(f)
	done := make(chan error, 2)
	for _, id := range []raft.ServerID{"b", "c"} {
		go func() { done <- heartbeat(tr, id, 5) }() // sent, answered in term 5, not yet delivered
	}
	// Both heartbeats are stamped once they are in flight.
	<-f.held
	<-f.held
	r := c.Begin(5, "a", three)
	close(held) // the old answers arrive now, after the round began
	for range 2 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
	if err := wait(r, 100*time.Millisecond); !errors.Is(err, ErrNotConfirmed) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a round confirmed by answers to messages sent before it began: %v", err)
	}
	// The followers have moved on: new heartbeats are refused in term 6,
	// and that ends the round at once, long before its deadline.
	f.term["b"], f.term["c"] = 6, 6
	f.hold = nil
	if err := heartbeat(tr, "b", 5); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := wait(r, time.Minute); !errors.Is(err, ErrNotConfirmed) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("round of term 5 after a follower answered in term 6: %v, want ErrNotConfirmed at once", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("refusal took %s", d)
	}
	// Elected again in term 7, the leader is confirmed by fresh answers.
	r = c.Begin(7, "a", three)
	if err := heartbeat(tr, "c", 7); err != nil {
		t.Fatal(err)
	}
	if err := wait(r, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}

func TestQuorum(t *testing.T) {
	five := []raft.ServerID{"a", "b", "c", "d", "e"}
	tests := []struct {
		name     string
		self     raft.ServerID
		voters   []raft.ServerID
		answer   []raft.ServerID
		term     uint64 // the followers' term; the round is for term 3
		unreach  bool
		want     bool
		wantHave int
	}{
		{name: "single voter needs nobody", self: "a", voters: []raft.ServerID{"a"}, want: true},
		{name: "five voters, two followers", self: "a", voters: five, answer: []raft.ServerID{"b", "c"}, term: 3, want: true},
		{name: "five voters, one follower", self: "a", voters: five, answer: []raft.ServerID{"b"}, term: 3, want: false},
		{name: "leader not a voter counts only others", self: "x", voters: three, answer: []raft.ServerID{"a", "b"}, term: 3, want: true},
		{name: "leader not a voter, one answer", self: "x", voters: three, answer: []raft.ServerID{"a"}, term: 3, want: false},
		{name: "non-voter answers do not count", self: "a", voters: three, answer: []raft.ServerID{"z"}, term: 3, want: false},
		{name: "followers in a newer term", self: "a", voters: three, answer: []raft.ServerID{"b", "c"}, term: 4, want: false},
		{name: "unreachable followers", self: "a", voters: three, answer: []raft.ServerID{"b", "c"}, term: 3, unreach: true, want: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(nil)
			f := &followers{term: map[raft.ServerID]uint64{}}
			tr := c.Transport(f)
			r := c.Begin(3, tt.self, tt.voters)
			for _, id := range tt.answer {
				if !tt.unreach {
					f.term[id] = tt.term
				}
				_ = heartbeat(tr, id, 3)
			}
			err := wait(r, 50*time.Millisecond)
			if (err == nil) != tt.want {
				t.Fatalf("confirmed = %v, want %v (%v)", err == nil, tt.want, err)
			}
		})
	}
}

// A later round is not confirmed by answers that confirmed an earlier one.
func TestEachRoundNeedsItsOwnAnswers(t *testing.T) {
	c := New(nil)
	tr := c.Transport(&followers{term: map[raft.ServerID]uint64{"b": 2, "c": 2}})
	r1 := c.Begin(2, "a", three)
	_ = heartbeat(tr, "b", 2)
	if err := wait(r1, time.Second); err != nil {
		t.Fatal(err)
	}
	r2 := c.Begin(2, "a", three)
	if err := wait(r2, 50*time.Millisecond); !errors.Is(err, ErrNotConfirmed) {
		t.Fatalf("second round confirmed by the first round's answer: %v", err)
	}
	_ = heartbeat(tr, "c", 2)
	if err := wait(r2, time.Second); err != nil {
		t.Fatal(err)
	}
	if got := c.Rounds(); got != 2 {
		t.Fatalf("Rounds() = %d, want 2", got)
	}
}

// A slow answer to an earlier call does not replace a newer one.
func TestOlderAnswerDoesNotReplaceNewer(t *testing.T) {
	c := New(nil)
	c.record("b", 2, 5)
	c.record("b", 2, 3)
	c.record("b", 1, 9)
	if got := c.acks["b"]; got != (ack{term: 2, stamp: 5}) {
		t.Fatalf("ack = %+v, want term 2 stamp 5", got)
	}
}

type preVote struct{ followers }

func (preVote) RequestPreVote(raft.ServerID, raft.ServerAddress, *raft.RequestPreVoteRequest, *raft.RequestPreVoteResponse) error {
	return nil
}

type closer struct{ followers }

func (closer) Close() error { return errors.New("closed") }

func TestTransportKeepsOptionalInterfaces(t *testing.T) {
	c := New(nil)
	if _, ok := c.Transport(&preVote{}).(raft.WithPreVote); !ok {
		t.Error("pre-vote lost: raft would turn pre-vote off")
	}
	if _, ok := c.Transport(&followers{}).(raft.WithPreVote); ok {
		t.Error("pre-vote claimed for a transport without it")
	}
	if err := c.Transport(&closer{}).(raft.WithClose).Close(); err == nil || err.Error() != "closed" {
		t.Errorf("Close did not reach the wrapped transport: %v", err)
	}
}

func TestSteppingDownEndsRounds(t *testing.T) {
	var leader atomic.Uint64 // the term this member leads; 0: none
	leader.Store(4)
	c := New(func(term uint64) bool { return leader.Load() == term })
	old := c.Begin(4, "a", three)
	leader.Store(0)
	c.LeadershipChanged()
	if err := wait(old, time.Minute); !errors.Is(err, ErrNotConfirmed) || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("round of a term this member stopped leading: %v, want ErrNotConfirmed at once", err)
	}
	// Leading again in a later term, rounds go on as usual, even when a
	// late notice of the earlier step-down wakes them.
	leader.Store(5)
	tr := c.Transport(&followers{term: map[raft.ServerID]uint64{"b": 5}})
	r := c.Begin(5, "a", three)
	c.LeadershipChanged()
	_ = heartbeat(tr, "b", 5)
	if err := wait(r, 5*time.Second); err != nil {
		t.Fatal(err)
	}
}
