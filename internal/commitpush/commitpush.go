// Package commitpush tells a raft leader's followers its new commit index
// as soon as it advances, rather than with raft's next append.
//
// # Why
//
// hashicorp/raft sends the leader's commit index only inside AppendEntries
// calls that carry entries, or in an empty one that each follower's
// replication goroutine sends after CommitTimeout of quiet; its heartbeats
// carry none. So when writes pause, followers apply the last one
// CommitTimeout to twice that after the leader acknowledged it, and so do
// the watchers, serializable reads and lock waiters served by them.
//
// # How
//
// A Pusher wraps the leader's transport and watches every AppendEntries
// call raft sends to a follower and every answer. From the answers in the
// leader's current term it keeps, per follower, the newest entry the
// follower confirmed having (index and term). When the leader's state
// machine is about to apply index n (Committed), the Pusher sends each
// follower that has not been told min(n, that entry's index) an
// AppendEntries with no entries, whose previous entry is that confirmed
// entry and whose commit index is min(n, its index).
//
// # Why this is safe
//
// The call is one the leader could have sent itself in its term: the
// follower accepts it only if it is in that term and its own entry at the
// previous index has the leader's term there, and then, by raft's log
// matching property, its log equals the leader's up to that index. It
// then commits up to at most that index, which is no higher than n,
// committed on the leader, and (Committed is called after the entry is on
// the leader's disk, see package raftlog) durable there. A follower that
// moved to a newer term, or whose log does not match, refuses the call and
// nothing changes. The answers to these calls are seen by nothing in raft.
package commitpush

import (
	"sync"

	"github.com/hashicorp/raft"
)

// Pusher watches a leader's appends and pushes its commit index to the
// followers. Its zero value is not usable; use New.
type Pusher struct {
	// leading reports whether this member leads now; pushes happen only
	// then.
	leading func() bool

	// trans sends the pushes: the transport the Pusher wraps.
	trans raft.Transport

	mu     sync.Mutex
	peers  map[raft.ServerID]*follower
	closed bool
}

// follower is what the leader knows of one follower in its current term.
type follower struct {
	addr   raft.ServerAddress
	header raft.RPCHeader
	leader []byte // the request's deprecated Leader field, as raft sets it
	term   uint64 // term of the newest call raft sent it

	// matchIndex and matchTerm name the newest entry the follower
	// confirmed having in term (0 when none yet).
	matchIndex, matchTerm uint64
	// told is the highest commit index the follower must have learned
	// from a call in term that it accepts.
	told uint64
	// want is the leader's newest commit index to push.
	want uint64
	// sending is set while a goroutine pushes to it.
	sending bool
}

// New returns a Pusher that pushes only while leading reports true.
func New(leading func() bool) *Pusher {
	return &Pusher{leading: leading, peers: map[raft.ServerID]*follower{}}
}

// Committed tells the Pusher that the leader's log is committed and
// durable on its disk up to index. Call it before the state machine
// applies index (the leader answers the write after that), never for an
// index that is not both.
func (p *Pusher) Committed(index uint64) {
	if !p.leading() {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for id, f := range p.peers {
		if index > f.want {
			f.want = index
		}
		p.kickLocked(id, f)
	}
}

// Close stops all pushes not yet begun.
func (p *Pusher) Close() {
	p.mu.Lock()
	p.closed = true
	p.mu.Unlock()
}

// target is the commit index to push to f now, 0 for none.
func (f *follower) target() uint64 {
	t := min(f.want, f.matchIndex)
	if t <= f.told {
		return 0
	}
	return t
}

// kickLocked starts a push to f unless one runs (it will see f's new
// state) or there is nothing to push. The caller holds p.mu.
func (p *Pusher) kickLocked(id raft.ServerID, f *follower) {
	if f.sending || p.closed || f.target() == 0 {
		return
	}
	f.sending = true
	go p.push(id, f)
}

// push sends f what it has not been told, until there is nothing left.
func (p *Pusher) push(id raft.ServerID, f *follower) {
	for {
		p.mu.Lock()
		t := f.target()
		if t == 0 || p.closed || !p.leading() {
			f.sending = false
			p.mu.Unlock()
			return
		}
		req := &raft.AppendEntriesRequest{
			RPCHeader:         f.header,
			Term:              f.term,
			PrevLogEntry:      f.matchIndex,
			PrevLogTerm:       f.matchTerm,
			LeaderCommitIndex: t,
		}
		//lint:ignore SA1019 raft 1.7 still sends and reads it; a push carries what raft's own call carried
		req.Leader = f.leader
		addr := f.addr
		f.told = t // a failed push is not retried; raft's next append tells it
		p.mu.Unlock()

		var resp raft.AppendEntriesResponse
		err := p.trans.AppendEntries(id, addr, req, &resp)
		p.answered(id, req, &resp, err)
	}
}

// sent records a call raft sends to follower id.
func (p *Pusher) sent(id raft.ServerID, addr raft.ServerAddress, req *raft.AppendEntriesRequest) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.peers[id]
	if f == nil {
		f = &follower{}
		p.peers[id] = f
	}
	if req.Term != f.term {
		if req.Term < f.term {
			return
		}
		// A new term: nothing confirmed in the old one counts.
		*f = follower{term: req.Term, want: f.want, sending: f.sending}
	}
	f.addr = addr
	f.header = req.RPCHeader
	f.leader = req.Leader //lint:ignore SA1019 kept to send it back as raft does (see push)
	// If the follower accepts the call, it commits at least up to the
	// lower of the commit index and the last entry the call names.
	last := req.PrevLogEntry
	if n := len(req.Entries); n > 0 {
		last = req.Entries[n-1].Index
	}
	if c := min(req.LeaderCommitIndex, last); c > f.told {
		f.told = c
	}
}

// answered records a follower's answer to a call (raft's or a push): if it
// accepted the call in the call's term, it has the call's last entry.
func (p *Pusher) answered(id raft.ServerID, req *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse, err error) {
	if err != nil || !resp.Success || resp.Term != req.Term {
		return
	}
	index, term := req.PrevLogEntry, req.PrevLogTerm
	if n := len(req.Entries); n > 0 {
		index, term = req.Entries[n-1].Index, req.Entries[n-1].Term
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	f := p.peers[id]
	if f == nil || f.term != req.Term || index <= f.matchIndex {
		return
	}
	f.matchIndex, f.matchTerm = index, term
	// A follower that confirms an entry the leader has meanwhile
	// committed learns so now.
	p.kickLocked(id, f)
}

// Transport returns t watched by the Pusher, for raft to send through; the
// Pusher sends its pushes through t. It keeps t's optional interfaces that
// raft looks for (pre-vote, close).
func (p *Pusher) Transport(t raft.Transport) raft.Transport {
	p.trans = t
	wt := &watchedTransport{Transport: t, p: p}
	if pv, ok := t.(raft.WithPreVote); ok {
		return &watchedPreVoteTransport{watchedTransport: wt, preVote: pv}
	}
	return wt
}

type watchedTransport struct {
	raft.Transport
	p *Pusher
}

func (t *watchedTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	t.p.sent(id, target, args)
	err := t.Transport.AppendEntries(id, target, args, resp)
	t.p.answered(id, args, resp, err)
	return err
}

// AppendEntriesPipeline watches the pipeline's calls and answers. Raft
// reads the answers from the pipeline's Consumer; a goroutine passes them
// on after noting them.
func (t *watchedTransport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	inner, err := t.Transport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	wp := &watchedPipeline{
		AppendPipeline: inner,
		p:              t.p,
		id:             id,
		target:         target,
		out:            make(chan raft.AppendFuture, cap(inner.Consumer())),
		done:           make(chan struct{}),
	}
	go wp.forward()
	return wp, nil
}

// Close closes the wrapped transport if it can be closed, as raft would
// without the wrapper.
func (t *watchedTransport) Close() error {
	if c, ok := t.Transport.(raft.WithClose); ok {
		return c.Close()
	}
	return nil
}

type watchedPreVoteTransport struct {
	*watchedTransport
	preVote raft.WithPreVote
}

func (t *watchedPreVoteTransport) RequestPreVote(id raft.ServerID, target raft.ServerAddress, args *raft.RequestPreVoteRequest, resp *raft.RequestPreVoteResponse) error {
	return t.preVote.RequestPreVote(id, target, args, resp)
}

type watchedPipeline struct {
	raft.AppendPipeline
	p      *Pusher
	id     raft.ServerID
	target raft.ServerAddress
	out    chan raft.AppendFuture

	closeOnce sync.Once
	done      chan struct{}
}

func (w *watchedPipeline) AppendEntries(args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) (raft.AppendFuture, error) {
	w.p.sent(w.id, w.target, args)
	return w.AppendPipeline.AppendEntries(args, resp)
}

func (w *watchedPipeline) Consumer() <-chan raft.AppendFuture { return w.out }

func (w *watchedPipeline) Close() error {
	w.closeOnce.Do(func() { close(w.done) })
	return w.AppendPipeline.Close()
}

// forward notes each answer and hands it to raft, in order.
func (w *watchedPipeline) forward() {
	in := w.AppendPipeline.Consumer()
	for {
		select {
		case fut := <-in:
			// The transport hands a future over once answered, so Error
			// does not block.
			w.p.answered(w.id, fut.Request(), fut.Response(), fut.Error())
			select {
			case w.out <- fut:
			case <-w.done:
				return
			}
		case <-w.done:
			return
		}
	}
}

var (
	_ raft.WithClose   = (*watchedTransport)(nil)
	_ raft.WithPreVote = (*watchedPreVoteTransport)(nil)
)

// FSM returns fsm with Committed called before each apply. Wrap it inside
// whatever makes an entry wait until it is on the leader's disk (package
// raftlog's gated state machine), so that Committed only hears of durable
// entries.
func (p *Pusher) FSM(fsm raft.BatchingFSM) raft.BatchingFSM {
	return &pushingFSM{BatchingFSM: fsm, p: p}
}

type pushingFSM struct {
	raft.BatchingFSM
	p *Pusher
}

func (f *pushingFSM) ApplyBatch(logs []*raft.Log) []any {
	if len(logs) > 0 {
		f.p.Committed(logs[len(logs)-1].Index)
	}
	return f.BatchingFSM.ApplyBatch(logs)
}

func (f *pushingFSM) Apply(l *raft.Log) any {
	f.p.Committed(l.Index)
	return f.BatchingFSM.Apply(l)
}
