package rpc

import (
	"context"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// lockService serves kv.v1.LockService: the recipe of the SDK's Mutex, run
// inside the member (recipe.go).
type lockService struct {
	kvv1.UnimplementedLockServiceServer
	q *queue
}

// Lock joins the lock's queue with the caller's lease, waits to be first,
// and answers with the key and its create revision, the fencing token. A
// lease that already queues keeps its place (a retried Lock does not lose
// it). If the wait fails, the key is deleted again.
func (l *lockService) Lock(ctx context.Context, req *kvv1.LockRequest) (*kvv1.LockResponse, error) {
	if err := checkQueue(req.GetName(), req.GetLease()); err != nil {
		return nil, err
	}
	p, err := l.q.join(ctx, req.GetName(), req.GetLease(), nil)
	if err != nil {
		return nil, err
	}
	hdr, err := l.q.waitFirst(ctx, p)
	if err != nil {
		l.q.leaveUnlessDraining(p, err)
		return nil, err
	}
	return &kvv1.LockResponse{Header: hdr, Key: p.key, CreateRevision: p.rev}, nil
}

// Unlock deletes the lock's key.
func (l *lockService) Unlock(ctx context.Context, req *kvv1.UnlockRequest) (*kvv1.UnlockResponse, error) {
	resp, err := l.q.kv.DeleteRange(ctx, &kvv1.DeleteRangeRequest{Key: req.GetKey()})
	if err != nil {
		return nil, err
	}
	return &kvv1.UnlockResponse{Header: resp.GetHeader()}, nil
}
