package etcdapi

import (
	"context"

	"github.com/kvd-io/kvd/etcdapi/proto/v3lockpb"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/rpc"
)

// lockServer serves etcd's v3lockpb.Lock over kvd's LockService. The
// two queue holders alike (keys name/<lease in hex>, the oldest holds),
// as does clientv3's concurrency.Mutex, so the three exclude each other.
type lockServer struct {
	v3lockpb.UnimplementedLockServer
	l rpc.Local
}

// Lock waits until the lease holds the lock. Unlike etcd's, which grants
// a lease of its own (60 s, never renewed) when none is given, it needs
// the caller's lease: a lock that outlives its client by a minute
// surprises more than a refusal.
func (s *lockServer) Lock(ctx context.Context, r *v3lockpb.LockRequest) (*v3lockpb.LockResponse, error) {
	resp, err := s.l.Lock(ctx, &kvv1.LockRequest{Name: r.GetName(), Lease: r.GetLease()})
	if err != nil {
		return nil, err
	}
	return &v3lockpb.LockResponse{Header: header(resp.GetHeader()), Key: resp.GetKey()}, nil
}

// Unlock deletes the lock's key; a key that is gone already is fine.
func (s *lockServer) Unlock(ctx context.Context, r *v3lockpb.UnlockRequest) (*v3lockpb.UnlockResponse, error) {
	resp, err := s.l.Unlock(ctx, &kvv1.UnlockRequest{Key: r.GetKey()})
	if err != nil {
		return nil, err
	}
	return &v3lockpb.UnlockResponse{Header: header(resp.GetHeader())}, nil
}
