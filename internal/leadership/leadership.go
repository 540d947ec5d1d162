// Package leadership confirms that a raft leader still leads, for
// linearizable reads, counting only followers' answers to messages the leader
// sent after the confirmation began.
//
// # Why raft's VerifyLeader is not enough
//
// hashicorp/raft's VerifyLeader registers a future with every follower's
// replication goroutine and counts it confirmed by that follower as soon as
// any successful AppendEntries answer from it is processed, including the
// answer to a message that was sent before the future was registered. A
// leader that stalls (SIGSTOP, a VM freeze, a long GC pause, a slow disk)
// with heartbeats in flight finds their old "success" answers waiting in its
// sockets when it resumes. If a read registers its verification first, those
// answers confirm it, although the other members have since elected a new
// leader and acknowledged newer writes: the read is stale.
//
// # What counts instead
//
// A Confirmer wraps the leader's raft transport. Every AppendEntries call
// (raft's heartbeats among them) is stamped with the number of confirmation
// rounds begun when it was sent. A follower's answer counts for round r only
// when the call was stamped r or later, so it left after round r began, and
// when the follower answered in the leader's own term, so at that moment it
// followed this leader and had voted for no newer one. An answer in a newer
// term ends every round of older terms at once, so that the read is refused
// without waiting for its deadline. A round is confirmed
// when such answers come from enough voters that, with the leader itself,
// they form a quorum. Since terms only grow, no leader of a newer term can
// have committed anything before the round began: any write acknowledged
// before then is within the leader's commit index. This is etcd's ReadIndex
// rule, which ties heartbeat answers to the read's request context.
//
// Raft sends heartbeats on its own every HeartbeatTimeout/10; a round asks
// for one at once (the caller's nudge, raft's VerifyLeader, whose own verdict
// is ignored).
package leadership

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hashicorp/raft"
)

// ErrNotConfirmed is returned when a round ends (its context is done)
// before a quorum confirmed it.
var ErrNotConfirmed = errors.New("leadership not confirmed by a quorum")

// Confirmer tracks followers' answers to the leader's AppendEntries calls
// and confirms rounds with them. One Confirmer serves one member for its
// whole life; its zero value is not usable, use New.
type Confirmer struct {
	rounds atomic.Uint64 // rounds begun; a call is stamped with it

	mu sync.Mutex
	// acks holds, per follower, the newest answer that proves it was in
	// some term: that term and the stamp of the call it answered.
	acks map[raft.ServerID]ack
	// newest is the newest term any follower answered with.
	newest uint64
	// leading reports whether this member still leads in a term; nil means
	// it always does (tests).
	leading func(term uint64) bool
	// changed is closed (and replaced) whenever acks or newest changes.
	changed chan struct{}
}

type ack struct {
	term  uint64
	stamp uint64
}

// newer reports whether a is a later proof than b.
func (a ack) newer(b ack) bool {
	return a.term > b.term || a.term == b.term && a.stamp > b.stamp
}

// New returns a Confirmer with no answers recorded. leading reports
// whether this member still leads in a term; rounds of a term it no longer
// leads end when LeadershipChanged is called. nil means always.
func New(leading func(term uint64) bool) *Confirmer {
	return &Confirmer{acks: map[raft.ServerID]ack{}, changed: make(chan struct{}), leading: leading}
}

// Round is one confirmation in progress, begun by Begin.
type Round struct {
	c     *Confirmer
	id    uint64
	term  uint64
	self  raft.ServerID
	voter []raft.ServerID
}

// Begin starts a round for a leader (self) in term, whose configuration has
// the given voters. Only calls sent after Begin returns can confirm it. The
// caller then asks raft to send heartbeats now and waits with Wait.
func (c *Confirmer) Begin(term uint64, self raft.ServerID, voters []raft.ServerID) *Round {
	return &Round{c: c, id: c.rounds.Add(1), term: term, self: self, voter: voters}
}

// Rounds returns how many rounds have begun.
func (c *Confirmer) Rounds() uint64 { return c.rounds.Load() }

// Wait returns nil once a quorum of the round's voters, the leader included
// when it is a voter, has been shown to be in the round's term after the
// round began. It returns ErrNotConfirmed when a follower answers in a newer
// term (another leader has been elected, or is being), and ErrNotConfirmed
// wrapping ctx's error when ctx ends first.
func (r *Round) Wait(ctx context.Context) error {
	for {
		r.c.mu.Lock()
		ok, have, need := r.confirmedLocked()
		newest := r.c.newest
		changed := r.c.changed
		r.c.mu.Unlock()
		if ok {
			return nil
		}
		if newest > r.term {
			return fmt.Errorf("%w (term %d): a follower answered in term %d", ErrNotConfirmed, r.term, newest)
		}
		if r.c.leading != nil && !r.c.leading(r.term) {
			return fmt.Errorf("%w (term %d): this member no longer leads", ErrNotConfirmed, r.term)
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("%w (term %d: %d of %d voters): %w", ErrNotConfirmed, r.term, have, need, ctx.Err())
		}
	}
}

// confirmedLocked counts the voters that confirm the round. The caller
// holds c.mu.
func (r *Round) confirmedLocked() (ok bool, have, need int) {
	need = len(r.voter)/2 + 1
	for _, v := range r.voter {
		if v == r.self {
			have++ // the caller checked its own term when it began
			continue
		}
		a := r.c.acks[v]
		if a.term == r.term && a.stamp >= r.id {
			have++
		}
	}
	return have >= need, have, need
}

// record notes that follower id answered a call stamped stamp while in term.
func (c *Confirmer) record(id raft.ServerID, term, stamp uint64) {
	a := ack{term: term, stamp: stamp}
	c.mu.Lock()
	defer c.mu.Unlock()
	if !a.newer(c.acks[id]) {
		return
	}
	c.acks[id] = a
	c.changedLocked()
}

// sawTerm notes that a follower answered in term, newer than the leader's.
func (c *Confirmer) sawTerm(term uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if term > c.newest {
		c.newest = term
		c.changedLocked()
	}
}

// LeadershipChanged wakes the rounds in progress to check whether this
// member still leads in their term, so that the rounds of a leader that
// stepped down end now rather than at their deadline. It only speeds up a
// refusal: no round is ever confirmed because of it.
func (c *Confirmer) LeadershipChanged() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.changedLocked()
}

func (c *Confirmer) changedLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Transport returns t with every AppendEntries call observed, for raft to
// send through. It keeps t's optional interfaces that raft looks for
// (pre-vote, close).
func (c *Confirmer) Transport(t raft.Transport) raft.Transport {
	ct := &countedTransport{Transport: t, c: c}
	if pv, ok := t.(raft.WithPreVote); ok {
		return &countedPreVoteTransport{countedTransport: ct, preVote: pv}
	}
	return ct
}

type countedTransport struct {
	raft.Transport
	c *Confirmer
}

// AppendEntries stamps the call before it leaves and records the answer.
// A follower answers with its own term: the leader's when it accepted the
// leader's term (whether or not its log matched), a newer one when it has
// moved on. Only the first proves anything.
//
// Pipelined appends (AppendEntriesPipeline) pass through uncounted: a
// round's heartbeats suffice, and they are never pipelined.
func (t *countedTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	stamp := t.c.rounds.Load()
	err := t.Transport.AppendEntries(id, target, args, resp)
	switch {
	case err != nil:
	case resp.Term == args.Term:
		t.c.record(id, resp.Term, stamp)
	case resp.Term > args.Term:
		t.c.sawTerm(resp.Term)
	}
	return err
}

// Close closes the wrapped transport if it can be closed, as raft would
// without the wrapper.
func (t *countedTransport) Close() error {
	if c, ok := t.Transport.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}

// countedPreVoteTransport is a countedTransport over a transport that
// supports pre-vote; raft enables pre-vote only when its transport has the
// method.
type countedPreVoteTransport struct {
	*countedTransport
	preVote raft.WithPreVote
}

func (t *countedPreVoteTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return t.preVote.RequestPreVote(id, target, args, resp)
}

var (
	_ raft.WithClose   = (*countedTransport)(nil)
	_ raft.WithPreVote = (*countedPreVoteTransport)(nil)
)
