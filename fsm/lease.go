package fsm

import (
	"errors"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/kvd-io/kvd/internal/mvcc"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Leases in the state machine: a grant creates the record, a revoke deletes
// it and its keys (one revision, reported to the feed like any delete), a
// checkpoint records remaining TTLs. Expiry itself is the leader's business
// (package member): it proposes the revoke.

// ErrInvalidLease: a grant without a positive id and TTL.
var ErrInvalidLease = errors.New("invalid lease")

func validateLeaseGrant(g *fsmv1.LeaseGrant) error {
	if g.GetId() <= 0 || g.GetTtl() <= 0 {
		return fmt.Errorf("%w: id %d, ttl %d", ErrInvalidLease, g.GetId(), g.GetTtl())
	}
	return nil
}

func (w *writer) leaseGrant(g *fsmv1.LeaseGrant) (any, error) {
	if w.noSpace() {
		return ErrNoSpace, nil
	}
	if err := w.kv.GrantLease(g.GetId(), g.GetTtl()); err != nil {
		if errors.Is(err, mvcc.ErrLeaseExists) {
			return err, nil
		}
		return nil, err
	}
	w.leases = append(w.leases, LeaseEvent{ID: g.GetId(), TTL: g.GetTtl()})
	return &kvv1.LeaseGrantResponse{Header: &kvv1.ResponseHeader{Revision: w.kv.Revision()}, Id: g.GetId(), Ttl: g.GetTtl()}, nil
}

func (w *writer) leaseRevoke(r *fsmv1.LeaseRevoke) (any, error) {
	t := w.kv.Begin()
	if _, err := t.RevokeLease(r.GetId()); err != nil {
		if errors.Is(err, mvcc.ErrLeaseNotFound) {
			return err, nil
		}
		return nil, err
	}
	w.collect(t)
	w.leases = append(w.leases, LeaseEvent{ID: r.GetId(), Revoked: true})
	return &kvv1.LeaseRevokeResponse{Header: &kvv1.ResponseHeader{Revision: w.kv.Revision()}}, nil
}

func (w *writer) leaseCheckpoint(c *fsmv1.LeaseCheckpoint) (any, error) {
	for _, l := range c.GetLeases() {
		ok, err := w.kv.CheckpointLease(l.GetId(), l.GetRemainingTtl())
		if err != nil {
			return nil, err
		}
		if ok {
			w.leases = append(w.leases, LeaseEvent{ID: l.GetId(), Checkpoint: true, RemainingTTL: l.GetRemainingTtl()})
		}
	}
	return nil, nil
}

// Lease returns a lease's record; ok is false when it does not exist.
func (f *FSM) Lease(id int64) (l mvcc.Lease, ok bool, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		l, ok, err = f.kv.Read(tx).Lease(id)
		return err
	})
	return l, ok, err
}

// Leases returns every lease, by id.
func (f *FSM) Leases() (ls []mvcc.Lease, err error) {
	err = f.viewCommitted(func(tx *bolt.Tx) error {
		ls, err = f.kv.Read(tx).Leases()
		return err
	})
	return ls, err
}

// LeaseKeys returns the keys attached to a lease, in key order.
func (f *FSM) LeaseKeys(id int64) (keys [][]byte, err error) {
	err = f.view(func(tx *bolt.Tx) error {
		keys, err = f.kv.Read(tx).LeaseKeys(id)
		return err
	})
	return keys, err
}
