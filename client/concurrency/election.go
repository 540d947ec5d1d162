package concurrency

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/kvd-io/kvd/client"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

var (
	// ErrElectionNotLeader: Proclaim or Resign by a session that does not
	// lead.
	ErrElectionNotLeader = errors.New("concurrency: election: not leader")
	// ErrElectionNoLeader: Leader found nobody leading.
	ErrElectionNoLeader = errors.New("concurrency: election: no leader")
)

// Election is a leader election over a key prefix, through a Session: the
// campaigner whose key is oldest leads, and its key's value is its
// proposal. An Election is for one goroutine at a time.
type Election struct {
	s      *Session
	prefix string

	mu      sync.Mutex
	key     string // the leader's key, once Campaign succeeded
	rev     int64  // its create revision
	hdr     *client.ResponseHeader
	leading bool
}

// NewElection returns an election over prefix, for session s.
func NewElection(s *Session, prefix string) *Election {
	return &Election{s: s, prefix: prefix + "/"}
}

// ResumeElection returns an election that already leads with key and its
// create revision rev (as Key and Rev reported them), for session s.
func ResumeElection(s *Session, prefix, key string, rev int64) *Election {
	return &Election{s: s, prefix: prefix + "/", key: key, rev: rev, leading: true}
}

// Campaign joins the election with val and waits until it leads, ctx ends,
// or the session ends. If it fails after joining, it leaves again. A
// session that is already a candidate keeps its place, with val as its
// proposal.
func (e *Election) Campaign(ctx context.Context, val string) error {
	select {
	case <-e.s.Done():
		return ErrSessionExpired
	default:
	}
	c := e.s.Client()
	key := keyFor(e.prefix, e.s.Lease())
	resp, err := c.Txn(ctx).
		If(client.Compare(client.CreateRevision(key), "=", 0)).
		Then(client.OpPut(key, val, client.WithLease(e.s.Lease()))).
		Else(client.OpGet(key)).
		Commit()
	if err != nil {
		return err
	}
	rev := resp.GetHeader().GetRevision()
	if !resp.GetSucceeded() {
		kvs := resp.GetResponses()[0].GetResponseRange().GetKvs()
		if len(kvs) == 0 {
			return ErrSessionExpired
		}
		rev = kvs[0].GetCreateRevision()
		if string(kvs[0].GetValue()) != val {
			if _, err := c.Put(ctx, key, val, client.WithIgnoreLease()); err != nil {
				return err
			}
		}
	}
	e.mu.Lock()
	e.key, e.rev = key, rev
	e.mu.Unlock()

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(e.s.Ctx(), cancel)
	defer stop()
	got, err := waitDeletes(wctx, c, e.prefix, rev-1, key)
	if err == nil {
		if !stillThere(got, rev) {
			err = ErrSessionExpired
		}
		if err == nil {
			e.mu.Lock()
			e.hdr, e.leading = got.GetHeader(), true
			e.mu.Unlock()
			return nil
		}
	}
	if e.s.Ctx().Err() != nil && ctx.Err() == nil {
		err = ErrSessionExpired
	}
	e.leave(key, rev)
	return err
}

// leave deletes the candidate's key after a failed Campaign.
func (e *Election) leave(key string, rev int64) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(e.s.TTL())*time.Second)
	defer cancel()
	_, _ = e.s.Client().Txn(ctx).
		If(client.Compare(client.CreateRevision(key), "=", rev)).
		Then(client.OpDelete(key)).
		Commit() // on failure, the lease's expiry deletes it
	e.mu.Lock()
	e.key, e.rev, e.hdr, e.leading = "", 0, nil, false
	e.mu.Unlock()
}

// Proclaim changes the leader's proposal, without an election. It fails
// with ErrElectionNotLeader unless this session still leads.
func (e *Election) Proclaim(ctx context.Context, val string) error {
	e.mu.Lock()
	key, rev, leading := e.key, e.rev, e.leading
	e.mu.Unlock()
	if !leading {
		return ErrElectionNotLeader
	}
	resp, err := e.s.Client().Txn(ctx).
		If(client.Compare(client.CreateRevision(key), "=", rev)).
		Then(client.OpPut(key, val, client.WithLease(e.s.Lease()))).
		Commit()
	if err != nil {
		return err
	}
	if !resp.GetSucceeded() {
		e.mu.Lock()
		e.key, e.rev, e.leading = "", 0, false
		e.mu.Unlock()
		return ErrElectionNotLeader
	}
	e.mu.Lock()
	e.hdr = resp.GetHeader()
	e.mu.Unlock()
	return nil
}

// Resign gives up leadership, letting the next candidate lead. Resigning
// when not leading does nothing.
func (e *Election) Resign(ctx context.Context) error {
	e.mu.Lock()
	key, rev, leading := e.key, e.rev, e.leading
	e.mu.Unlock()
	if !leading {
		return nil
	}
	resp, err := e.s.Client().Txn(ctx).
		If(client.Compare(client.CreateRevision(key), "=", rev)).
		Then(client.OpDelete(key)).
		Commit()
	if err != nil {
		return err
	}
	e.mu.Lock()
	e.key, e.rev, e.hdr, e.leading = "", 0, resp.GetHeader(), false
	e.mu.Unlock()
	return nil
}

// Leader returns the current leader's key and proposal, or
// ErrElectionNoLeader.
func (e *Election) Leader(ctx context.Context) (*client.GetResponse, error) {
	resp, err := e.s.Client().Get(ctx, e.prefix, append([]client.OpOption{client.WithPrefix()}, client.WithFirstCreate()...)...)
	if err != nil {
		return nil, err
	}
	if len(resp.GetKvs()) == 0 {
		return resp, ErrElectionNoLeader
	}
	return resp, nil
}

// Observe follows the election: it sends the leader (key and proposal)
// each time a new leader is elected or the leader proclaims a new proposal,
// until ctx ends; then it closes the channel. It sends nothing while there
// is no leader. A reader that falls behind makes Observe wait: it does not
// skip.
func (e *Election) Observe(ctx context.Context) <-chan client.GetResponse {
	ch := make(chan client.GetResponse)
	go e.observe(ctx, ch)
	return ch
}

func (e *Election) observe(ctx context.Context, ch chan<- client.GetResponse) {
	defer close(ch)
	c := e.s.Client()
	send := func(r client.GetResponse) bool {
		select {
		case ch <- r:
			return true
		case <-ctx.Done():
			return false
		}
	}
	for ctx.Err() == nil {
		resp, err := e.Leader(ctx)
		var leaderKey string
		var leaderRev int64
		switch {
		case errors.Is(err, ErrElectionNoLeader):
			// Wait for the first candidate's key.
			kv, err := nextPut(ctx, c, e.prefix, resp.GetHeader().GetRevision())
			if err != nil {
				if !retry(ctx) {
					return
				}
				continue
			}
			leaderKey, leaderRev = string(kv.GetKey()), kv.GetModRevision()
			if !send(leaderResponse(resp.GetHeader(), kv)) {
				return
			}
		case err != nil:
			if !retry(ctx) {
				return
			}
			continue
		default:
			kv := resp.GetKvs()[0]
			leaderKey, leaderRev = string(kv.GetKey()), resp.GetHeader().GetRevision()
			if !send(*resp) {
				return
			}
		}
		// Follow the leader's key until it is deleted.
		if !e.followLeader(ctx, leaderKey, leaderRev, send) {
			return
		}
	}
}

// followLeader sends each new proposal of the leader's key after rev, and
// returns true once the key is deleted (false when ctx ended).
func (e *Election) followLeader(ctx context.Context, key string, rev int64, send func(client.GetResponse) bool) bool {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range e.s.Client().Watch(wctx, key, client.WithRev(rev+1)) {
		if wr.Err() != nil {
			return ctx.Err() == nil // read the leader again
		}
		for _, ev := range wr.Events {
			if ev.GetType() == client.EventTypeDelete {
				return true
			}
			if !send(leaderResponse(wr.Header, ev.GetKv())) {
				return false
			}
		}
	}
	return ctx.Err() == nil
}

// nextPut waits for the first key put under prefix after rev.
func nextPut(ctx context.Context, c *client.Client, prefix string, rev int64) (*client.KeyValue, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for wr := range c.Watch(wctx, prefix, client.WithPrefix(), client.WithRev(rev+1)) {
		if err := wr.Err(); err != nil {
			return nil, err
		}
		for _, ev := range wr.Events {
			if ev.GetType() == client.EventTypePut {
				return ev.GetKv(), nil
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return nil, errWatchEnded
}

// leaderResponse is a get response holding the leader's key-value.
func leaderResponse(hdr *client.ResponseHeader, kv *client.KeyValue) client.GetResponse {
	return client.GetResponse{RangeResponse: &kvv1.RangeResponse{Header: hdr, Kvs: []*client.KeyValue{kv}, Count: 1}}
}

// retry waits a little before Observe reads again after an error; false
// when ctx ended.
func retry(ctx context.Context) bool {
	t := time.NewTimer(100 * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Key returns the leader's key, once Campaign succeeded.
func (e *Election) Key() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.key
}

// Rev returns the create revision of the leader's key, once Campaign
// succeeded: like a mutex's token, it grows with each leader.
func (e *Election) Rev() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.rev
}

// Header returns the header of the last response that changed this
// session's leadership.
func (e *Election) Header() *client.ResponseHeader {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.hdr
}
