package rpc

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/watch"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// electionService serves kv.v1.ElectionService: the recipe of the SDK's
// Election, run inside the member (recipe.go).
type electionService struct {
	kvv1.UnimplementedElectionServiceServer
	q     *queue
	authz *authz
}

// ErrInvalidLeaderKey: Proclaim or Resign with a leader key that Campaign
// cannot have returned.
var ErrInvalidLeaderKey = errors.New("invalid leader key")

// checkLeaderKey validates a leader key from a client.
func checkLeaderKey(l *kvv1.LeaderKey) error {
	switch {
	case l == nil:
		return fmt.Errorf("%w: it is missing", ErrInvalidLeaderKey)
	case len(l.GetName()) == 0:
		return fmt.Errorf("%w: %w", ErrInvalidLeaderKey, ErrEmptyName)
	case !bytes.HasPrefix(l.GetKey(), queuePrefix(l.GetName())):
		return fmt.Errorf("%w: key %q is not under %q", ErrInvalidLeaderKey, l.GetKey(), queuePrefix(l.GetName()))
	case l.GetRev() <= 0:
		return fmt.Errorf("%w: revision %d is not positive", ErrInvalidLeaderKey, l.GetRev())
	}
	return nil
}

// Campaign joins the election with the caller's lease and proposal, waits
// to lead, and answers with the leader key. A lease that is already a
// candidate keeps its place and takes the new proposal. If the wait fails,
// the candidate's key is deleted again.
func (e *electionService) Campaign(ctx context.Context, req *kvv1.CampaignRequest) (*kvv1.CampaignResponse, error) {
	if err := checkQueue(req.GetName(), req.GetLease()); err != nil {
		return nil, err
	}
	p, err := e.q.join(ctx, req.GetName(), req.GetLease(), req.GetValue())
	if err != nil {
		return nil, err
	}
	if p.held != nil && !bytes.Equal(p.held.GetValue(), req.GetValue()) {
		if _, err := e.q.kv.Put(ctx, &kvv1.PutRequest{Key: p.key, Value: req.GetValue(), IgnoreLease: true}); err != nil {
			return nil, err
		}
	}
	hdr, err := e.q.waitFirst(ctx, p)
	if err != nil {
		e.q.leaveUnlessDraining(p, err)
		return nil, err
	}
	return &kvv1.CampaignResponse{Header: hdr, Leader: &kvv1.LeaderKey{
		Name: req.GetName(), Key: p.key, Rev: p.rev, Lease: req.GetLease(),
	}}, nil
}

// Proclaim puts the new proposal if the leader key is still the same
// generation of the key: then it still leads, since keys created later
// queue behind it.
func (e *electionService) Proclaim(ctx context.Context, req *kvv1.ProclaimRequest) (*kvv1.ProclaimResponse, error) {
	l := req.GetLeader()
	if err := checkLeaderKey(l); err != nil {
		return nil, err
	}
	resp, err := e.q.kv.Txn(ctx, &kvv1.TxnRequest{
		Compare: []*kvv1.Compare{createRevIs(l.GetKey(), l.GetRev())},
		Success: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestPut{RequestPut: &kvv1.PutRequest{
			Key: l.GetKey(), Value: req.GetValue(), Lease: l.GetLease(),
		}}}},
	})
	if err != nil {
		return nil, err
	}
	if !resp.GetSucceeded() {
		return nil, fmt.Errorf("%w: %q (revision %d) no longer exists", ErrElectionNotLeader, l.GetKey(), l.GetRev())
	}
	return &kvv1.ProclaimResponse{Header: resp.GetHeader()}, nil
}

// Leader reads the oldest key of the election, linearizably.
func (e *electionService) Leader(ctx context.Context, req *kvv1.LeaderRequest) (*kvv1.LeaderResponse, error) {
	if len(req.GetName()) == 0 {
		return nil, ErrEmptyName
	}
	prefix := queuePrefix(req.GetName())
	resp, err := e.q.kv.Range(ctx, &kvv1.RangeRequest{Key: prefix, RangeEnd: fsm.PrefixEnd(prefix),
		SortTarget: kvv1.RangeRequest_SORT_TARGET_CREATE, SortOrder: kvv1.RangeRequest_SORT_ORDER_ASCEND, Limit: 1})
	if err != nil {
		return nil, err
	}
	if len(resp.GetKvs()) == 0 {
		return nil, fmt.Errorf("%w in %q", ErrElectionNoLeader, req.GetName())
	}
	return &kvv1.LeaderResponse{Header: resp.GetHeader(), Kv: resp.GetKvs()[0]}, nil
}

// Resign deletes the leader key if it is still the same generation.
func (e *electionService) Resign(ctx context.Context, req *kvv1.ResignRequest) (*kvv1.ResignResponse, error) {
	l := req.GetLeader()
	if err := checkLeaderKey(l); err != nil {
		return nil, err
	}
	resp, err := e.q.kv.Txn(ctx, &kvv1.TxnRequest{
		Compare: []*kvv1.Compare{createRevIs(l.GetKey(), l.GetRev())},
		Success: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestDeleteRange{RequestDeleteRange: &kvv1.DeleteRangeRequest{Key: l.GetKey()}}}},
	})
	if err != nil {
		return nil, err
	}
	return &kvv1.ResignResponse{Header: resp.GetHeader()}, nil
}

// Observe follows the election: it reads every candidate at one revision,
// then applies the changes after it in revision order, and sends the
// leader whenever a revision changes who leads or what the leader
// proposes. Reading the whole queue (rather than waiting on the leader's
// key alone) is what lets it send every leader in order, a short-lived one
// included.
func (e *electionService) Observe(req *kvv1.ObserveRequest, st kvv1.ElectionService_ObserveServer) error {
	if len(req.GetName()) == 0 {
		return ErrEmptyName
	}
	ctx, stop := e.q.untilDrain(st.Context())
	defer stop()
	prefix := queuePrefix(req.GetName())
	var last *kvv1.KeyValue // the leader last sent
	for {
		err := e.observe(ctx, req, prefix, &last, st)
		if errors.Is(err, errRequeue) {
			continue // read the candidates again
		}
		if err != nil && ctx.Err() != nil {
			if errors.Is(context.Cause(ctx), errDraining) {
				return errDraining // the client observes through another member
			}
			return nil // the client went
		}
		return err
	}
}

// observe reads the candidates and follows them until the stream ends or
// the history it follows is compacted (errRequeue).
func (e *electionService) observe(ctx context.Context, req *kvv1.ObserveRequest, prefix []byte, last **kvv1.KeyValue, st kvv1.ElectionService_ObserveServer) error {
	resp, err := e.q.kv.Range(ctx, &kvv1.RangeRequest{Key: prefix, RangeEnd: fsm.PrefixEnd(prefix)})
	if err != nil {
		return err
	}
	candidates := map[string]*kvv1.KeyValue{}
	for _, kv := range resp.GetKvs() {
		candidates[string(kv.GetKey())] = kv
	}
	send := func(h *kvv1.ResponseHeader) error {
		leader := oldest(candidates)
		if leader == nil || (*last != nil && bytes.Equal((*last).GetKey(), leader.GetKey()) && (*last).GetModRevision() == leader.GetModRevision()) {
			return nil
		}
		*last = leader
		return st.Send(&kvv1.ObserveResponse{Header: h, Kv: leader})
	}
	if err := send(resp.GetHeader()); err != nil {
		return err
	}
	ws := e.q.node.NewWatchStream()
	defer ws.Close()
	if c := callerFrom(ctx); !c.member {
		// As for the Watch service: the hub ends the watch when the
		// caller may no longer read the election's queue.
		ws.Authorize(c.user, nil)
	}
	ws.Watch(&kvv1.WatchCreateRequest{Key: prefix, RangeEnd: fsm.PrefixEnd(prefix), StartRevision: resp.GetHeader().GetRevision() + 1})
	for {
		rs, err := ws.Next(ctx)
		if errors.Is(err, watch.ErrStreamClosed) {
			return errRequeue
		}
		if err != nil {
			return err
		}
		for _, r := range rs {
			switch {
			case r.GetCanceled() && r.GetCompactRevision() > 0:
				return errRequeue
			case r.GetCanceled():
				if _, err := e.authz.checkOp(ctx, req); err != nil {
					return err // the caller lost the right to observe: PermissionDenied
				}
				return fmt.Errorf("watch of the election ended: %s", r.GetCancelReason())
			case len(r.GetEvents()) == 0:
				continue // created, or progress
			}
			// Each response holds the events of one revision.
			for _, ev := range r.GetEvents() {
				if ev.GetType() == kvv1.EventType_EVENT_TYPE_DELETE {
					delete(candidates, string(ev.GetKv().GetKey()))
				} else {
					candidates[string(ev.GetKv().GetKey())] = ev.GetKv()
				}
			}
			if err := send(e.q.node.Header(r.GetHeader().GetRevision())); err != nil {
				return err
			}
		}
	}
}

// oldest is the candidate created first (by key among equals), nil when
// there is none.
func oldest(candidates map[string]*kvv1.KeyValue) *kvv1.KeyValue {
	var first *kvv1.KeyValue
	for _, kv := range candidates {
		if first == nil || kv.GetCreateRevision() < first.GetCreateRevision() ||
			(kv.GetCreateRevision() == first.GetCreateRevision() && bytes.Compare(kv.GetKey(), first.GetKey()) < 0) {
			first = kv
		}
	}
	return first
}
