package server

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/fsm"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	peerv1 "github.com/kvd-io/kvd/proto/peer/v1"
)

// A follower forwards each client write to the leader. One call per write
// made two thirds of the writes a gRPC request of their own on the leader
// when clients spread over all members. The forwarder sends a write on its
// own while fewer than forwardSlots calls are in flight; beyond that, writes
// queue and leave together, in one ProposeBatch call, when a slot frees up.
const (
	forwardSlots       = 4
	forwardMaxCommands = 256
)

// errBatchUnsupported tells a caller that the leader does not serve
// ProposeBatch (an older version): nothing was applied; propose alone.
var errBatchUnsupported = errors.New("leader does not accept batched proposals")

type forwarded struct {
	ctx  context.Context
	data []byte
	done chan forwardResult // buffered: the sender never blocks on it
}

type forwardResult struct {
	res any
	err error
}

// forwarder owns the queue of writes waiting for a slot and the goroutines
// that send them; run serves the queue until stop is closed and returns once
// every batch it sent has been answered.
type forwarder struct {
	// one sends a command alone; batch sends several in one call (see
	// Server.forwardBatch); local applies one on this member, when it turns
	// out to be the leader.
	one   func(ctx context.Context, data []byte) (any, error)
	batch func(ctx context.Context, cmds [][]byte) []forwardResult
	local func(ctx context.Context, data []byte) (any, error)

	reqs     chan *forwarded
	slots    chan struct{}
	maxBytes int
	timeout  time.Duration // of a batch call whose callers have no deadline
	stop     <-chan struct{}
	wg       sync.WaitGroup

	queued func() // called when a write joins the queue; tests set it
}

func newForwarder(s *Server, stop <-chan struct{}) *forwarder {
	return &forwarder{
		one:      s.forwardOne,
		batch:    s.forwardBatch,
		local:    s.applyEncoded,
		reqs:     make(chan *forwarded, 1024),
		slots:    make(chan struct{}, forwardSlots),
		maxBytes: s.cfg.MaxRequestBytes,
		timeout:  s.cfg.RequestTimeout,
		stop:     stop,
	}
}

// propose forwards one encoded command and returns the leader's answer.
func (f *forwarder) propose(ctx context.Context, data []byte) (any, error) {
	select {
	case f.slots <- struct{}{}:
		// A slot is free: no queue to join, send at once.
		defer func() { <-f.slots }()
		return f.one(ctx, data)
	default:
	}
	r := &forwarded{ctx: ctx, data: data, done: make(chan forwardResult, 1)}
	select {
	case f.reqs <- r:
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: gave up before the write was queued for the leader: %w", ErrNotApplied, ctx.Err())
	case <-f.stop:
		return nil, ErrStopped
	}
	if f.queued != nil {
		f.queued()
	}
	select {
	case out := <-r.done:
		switch {
		case errors.Is(out.err, errSelfIsLeader):
			return f.local(ctx, data) // this member won the election meanwhile
		case errors.Is(out.err, errBatchUnsupported):
			return f.one(ctx, data)
		}
		return out.res, out.err
	case <-ctx.Done():
		return nil, fmt.Errorf("%w: waiting for the leader: %w", ErrOutcomeUnknown, ctx.Err())
	case <-f.stop:
		return nil, ErrStopped
	}
}

// run gathers queued writes into batches, one per free slot.
func (f *forwarder) run() {
	defer f.wg.Wait()
	var carry *forwarded // took the queue's next write, but it did not fit
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case first = <-f.reqs:
			case <-f.stop:
				return
			}
		}
		select {
		case f.slots <- struct{}{}:
		case <-f.stop:
			first.done <- forwardResult{err: ErrStopped}
			return
		}
		batch, size := []*forwarded{first}, len(first.data)
	drain:
		for len(batch) < forwardMaxCommands {
			select {
			case r := <-f.reqs:
				if size+len(r.data) > f.maxBytes {
					carry = r
					break drain
				}
				batch, size = append(batch, r), size+len(r.data)
			default:
				break drain
			}
		}
		// A caller that gave up has reported an unknown outcome; not
		// sending its write is one of the outcomes that allows.
		batch = slices.DeleteFunc(batch, func(r *forwarded) bool { return r.ctx.Err() != nil })
		if len(batch) == 0 {
			<-f.slots
			continue
		}
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer func() { <-f.slots }()
			f.send(batch)
		}()
	}
}

// send proposes a batch and hands each write its outcome.
func (f *forwarder) send(batch []*forwarded) {
	// The call lives as long as the most patient caller; each caller stops
	// waiting at its own deadline.
	deadline := time.Now().Add(f.timeout)
	for _, r := range batch {
		if dl, ok := r.ctx.Deadline(); ok && dl.After(deadline) {
			deadline = dl
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	cmds := make([][]byte, len(batch))
	for i, r := range batch {
		cmds[i] = r.data
	}
	results := f.batch(ctx, cmds)
	for i, r := range batch {
		r.done <- results[i]
	}
}

// forwardOne sends one encoded command to the leader and relays its answer.
func (s *Server) forwardOne(ctx context.Context, data []byte) (any, error) {
	conn, leader, err := s.leaderConn(ctx)
	if errors.Is(err, errSelfIsLeader) {
		return s.applyEncoded(ctx, data) // this member won the election meanwhile
	}
	if err != nil {
		return nil, err
	}
	resp, err := peerv1.NewPeerServiceClient(conn).Propose(ctx, &peerv1.ProposeRequest{Command: data})
	if err != nil {
		s.peerFailed(conn, err)
		return nil, relayError(leader, err)
	}
	return decodeForwardedResult(resp.GetResult())
}

// forwardBatch sends encoded commands to the leader in one call and returns
// one outcome per command; a failure of the call is every command's outcome.
func (s *Server) forwardBatch(ctx context.Context, cmds [][]byte) []forwardResult {
	out := make([]forwardResult, len(cmds))
	fill := func(err error) []forwardResult {
		for i := range out {
			out[i] = forwardResult{err: err}
		}
		return out
	}
	conn, leader, err := s.leaderConn(ctx)
	if err != nil {
		return fill(err) // errSelfIsLeader included: the callers apply locally
	}
	// Results can be large (a transaction's ranges); several of them must
	// fit in one answer.
	resp, err := peerv1.NewPeerServiceClient(conn).ProposeBatch(ctx, &peerv1.ProposeBatchRequest{Commands: cmds},
		grpc.MaxCallRecvMsgSize(batchRecvLimit))
	if status.Code(err) == codes.Unimplemented {
		return fill(errBatchUnsupported)
	}
	if err != nil {
		s.peerFailed(conn, err)
		return fill(relayError(leader, err))
	}
	if len(resp.GetOutcomes()) != len(cmds) {
		return fill(fmt.Errorf("%w: leader %s answered %d outcomes for %d commands", ErrOutcomeUnknown, leader, len(resp.GetOutcomes()), len(cmds)))
	}
	for i, o := range resp.GetOutcomes() {
		if len(o.GetError()) > 0 {
			out[i] = forwardResult{err: relayError(leader, decodeStatus(o.GetError()))}
			continue
		}
		out[i].res, out[i].err = decodeForwardedResult(o.GetResult())
	}
	return out
}

// batchRecvLimit bounds the answer to one ProposeBatch call.
const batchRecvLimit = 256 << 20

func decodeForwardedResult(b []byte) (any, error) {
	result := &fsmv1.Result{}
	if err := proto.Unmarshal(b, result); err != nil {
		return nil, fmt.Errorf("%w: decode leader's result: %w", ErrOutcomeUnknown, err)
	}
	return fsm.DecodeResult(result), nil
}
