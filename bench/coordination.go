package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/client/concurrency"
)

// clientState is what one client of a lease or lock run holds across its
// requests: the lease it renews, or its session and mutex.
type clientState struct {
	lease   client.Lease
	leaseID client.LeaseID
	session *concurrency.Session
	mutex   *concurrency.Mutex
}

// releaseTimeout bounds the clean-up after a run (revoking the leases,
// closing the sessions), which must not hang a finished run.
const releaseTimeout = 10 * time.Second

// prepare sets up, before the clock starts, what each client needs: a lease
// of LeaseTTL seconds (OpLeaseKeepAlive), or a session and a mutex on
// LockName (OpLock), on the client's connection. Other workloads need
// nothing: the states are nil.
func (r *Runner) prepare(ctx context.Context) ([]*clientState, error) {
	states := make([]*clientState, r.cfg.Clients)
	if r.cfg.Op != OpLeaseKeepAlive && r.cfg.Op != OpLock {
		return states, nil
	}
	errs := make([]error, len(states))
	var wg sync.WaitGroup
	for i := range states {
		wg.Go(func() {
			states[i], errs[i] = r.prepareOne(ctx, r.conns[i%len(r.conns)])
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return states, fmt.Errorf("setting up the clients: %w", err)
	}
	return states, nil
}

func (r *Runner) prepareOne(ctx context.Context, kv client.KV) (*clientState, error) {
	switch r.cfg.Op {
	case OpLeaseKeepAlive:
		if r.cfg.RequestTimeout > 0 {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, r.cfg.RequestTimeout)
			defer cancel()
		}
		l, ok := kv.(client.Lease)
		if !ok {
			return nil, fmt.Errorf("%w: %s needs connections that implement client.Lease, not %T", ErrInvalidConfig, r.cfg.Op, kv)
		}
		g, err := l.Grant(ctx, r.cfg.leaseTTL())
		if err != nil {
			return nil, fmt.Errorf("grant a lease: %w", err)
		}
		return &clientState{lease: l, leaseID: g.Id}, nil
	default: // OpLock
		c, ok := kv.(*client.Client)
		if !ok {
			return nil, fmt.Errorf("%w: %s needs *client.Client connections, not %T", ErrInvalidConfig, r.cfg.Op, kv)
		}
		// The session lives as long as the run's context (release closes it
		// before): a request timeout would end it after the first requests.
		s, err := concurrency.NewSession(c, concurrency.WithTTL(r.cfg.sessionTTL()), concurrency.WithContext(ctx))
		if err != nil {
			return nil, fmt.Errorf("open a session: %w", err)
		}
		return &clientState{session: s, mutex: concurrency.NewMutex(s, r.cfg.lockName())}, nil
	}
}

// release revokes the leases and closes the sessions prepare made, so that
// a run leaves nothing behind on the cluster.
func (r *Runner) release(states []*clientState) {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for _, st := range states {
		if st == nil {
			continue
		}
		wg.Go(func() {
			switch {
			case st.session != nil:
				_ = st.session.Close()
			case st.lease != nil:
				_, _ = st.lease.Revoke(ctx, st.leaseID)
			}
		})
	}
	wg.Wait()
}

// lockCycle takes the mutex, runs the critical section and unlocks. The
// critical section is what etcd's "stm --stm-locker lock-client" runs with
// its defaults (one key, no write): a linearizable read of key and a
// transaction that commits only if the key has not changed since, with no
// operations. The latency is the whole cycle, as etcd's report counts it.
func (r *Runner) lockCycle(ctx context.Context, kv client.KV, st *clientState, key string) error {
	if err := st.mutex.Lock(ctx); err != nil {
		return err
	}
	err := criticalSection(ctx, kv, key)
	// Unlock even when the section failed or ctx ended, so that the other
	// clients are not left waiting for this session's TTL.
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), releaseTimeout)
	defer cancel()
	return errors.Join(err, st.mutex.Unlock(uctx))
}

func criticalSection(ctx context.Context, kv client.KV, key string) error {
	g, err := kv.Get(ctx, key)
	if err != nil {
		return err
	}
	var rev int64
	if len(g.Kvs) > 0 {
		rev = g.Kvs[0].ModRevision
	}
	_, err = kv.Txn(ctx).If(client.Compare(client.ModRevision(key), "<", rev+1)).Commit()
	return err
}
