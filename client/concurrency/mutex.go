package concurrency

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kvd-io/kvd/client"
)

// ErrLocked: TryLock found the lock held.
var ErrLocked = errors.New("concurrency: mutex: locked by another session")

// Mutex is a lock over a key prefix, held through a Session (see the package
// documentation for what that guarantees, and the fencing token). A Mutex is
// for one goroutine at a time; make one per holder.
type Mutex struct {
	s      *Session
	prefix string

	mu    sync.Mutex
	key   string
	rev   int64
	hdr   *client.ResponseHeader
	owned bool
}

// NewMutex returns a lock over prefix, for session s.
func NewMutex(s *Session, prefix string) *Mutex {
	return &Mutex{s: s, prefix: prefix + "/"}
}

// TryLock takes the lock if nobody holds it, and fails with ErrLocked
// otherwise, without waiting.
func (m *Mutex) TryLock(ctx context.Context) error {
	owner, _, err := m.enqueue(ctx)
	if err != nil {
		return err
	}
	if owner {
		return nil
	}
	// Leave the queue again.
	if _, err := m.s.Client().Delete(ctx, m.Key()); err != nil {
		return fmt.Errorf("concurrency: leave the lock's queue: %w", err)
	}
	m.reset()
	return ErrLocked
}

// Lock waits until it holds the lock, ctx ends, or the session ends. If it
// fails after joining the queue, it leaves the queue again. Once it returns
// nil, Token is the lock's fencing token.
func (m *Mutex) Lock(ctx context.Context) error {
	owner, ahead, err := m.enqueue(ctx)
	if err != nil {
		return err
	}
	if owner {
		return nil
	}
	c := m.s.Client()
	// Wait for those ahead, or for the session to end.
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(m.s.Ctx(), cancel)
	defer stop()
	if ahead != "" {
		// The queue was read as the key joined it: wait for the one
		// just ahead before reading it again.
		err = waitDelete(wctx, c, ahead, m.rev)
	}
	var resp *client.GetResponse
	if err == nil {
		resp, err = waitDeletes(wctx, c, m.prefix, m.rev-1, m.key)
	}
	if err == nil {
		if !stillThere(resp, m.rev) {
			err = ErrSessionExpired
		}
		if err == nil {
			m.mu.Lock()
			m.hdr, m.owned = resp.GetHeader(), true
			m.mu.Unlock()
			return nil
		}
	}
	if m.s.Ctx().Err() != nil && ctx.Err() == nil {
		err = ErrSessionExpired
	}
	m.leave()
	return err
}

// enqueue writes the session's key under the prefix unless it is there
// already (a session holds one place), and reports whether it is first.
// When it joined the queue just now behind others, ahead is the key just
// ahead of its own, read in the same transaction: Lock waits for that one
// without reading the queue first.
func (m *Mutex) enqueue(ctx context.Context) (owner bool, ahead string, err error) {
	select {
	case <-m.s.Done():
		return false, "", ErrSessionExpired
	default:
	}
	s := m.s
	key := keyFor(m.prefix, s.Lease())
	resp, err := s.Client().Txn(ctx).
		If(client.Compare(client.CreateRevision(key), "=", 0)).
		Then(lastCreated(m.prefix), client.OpPut(key, "", client.WithLease(s.Lease())), firstCreated(m.prefix)).
		Else(client.OpGet(key), firstCreated(m.prefix)).
		Commit()
	if err != nil {
		return false, "", err
	}
	rs := resp.GetResponses()
	rev := resp.GetHeader().GetRevision()
	var first []*client.KeyValue
	if resp.GetSucceeded() {
		if len(rs) != 3 {
			return false, "", fmt.Errorf("concurrency: enqueue answered %d results, want 3", len(rs))
		}
		if kvs := rs[0].GetResponseRange().GetKvs(); len(kvs) > 0 {
			ahead = string(kvs[0].GetKey())
		}
		first = rs[2].GetResponseRange().GetKvs()
	} else {
		if len(rs) != 2 {
			return false, "", fmt.Errorf("concurrency: enqueue answered %d results, want 2", len(rs))
		}
		kvs := rs[0].GetResponseRange().GetKvs()
		if len(kvs) == 0 {
			return false, "", ErrSessionExpired // deleted between compare and read: cannot be, but never trust it
		}
		rev = kvs[0].GetCreateRevision()
		first = rs[1].GetResponseRange().GetKvs()
	}
	owner = len(first) == 0 || first[0].GetCreateRevision() == rev
	m.mu.Lock()
	m.key, m.rev = key, rev
	if owner {
		m.hdr, m.owned = resp.GetHeader(), true
	}
	m.mu.Unlock()
	return owner, ahead, nil
}

// leave deletes the session's key after a failed Lock, on a context of its
// own: the caller's may have ended.
func (m *Mutex) leave() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(m.s.TTL())*time.Second)
	defer cancel()
	_, _ = m.s.Client().Delete(ctx, m.Key()) // on failure, the lease's expiry deletes it
	m.reset()
}

func (m *Mutex) reset() {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.key, m.rev, m.hdr, m.owned = "", 0, nil, false
}

// Unlock releases the lock by deleting the session's key.
func (m *Mutex) Unlock(ctx context.Context) error {
	key := m.Key()
	if key == "" {
		return nil
	}
	if _, err := m.s.Client().Delete(ctx, key); err != nil {
		return err
	}
	m.reset()
	return nil
}

// Key returns the session's key in the lock's queue ("" when not queued).
func (m *Mutex) Key() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.key
}

// Token returns the lock's fencing token: the create revision of the
// holder's key. Each acquisition of the lock has a larger token than every
// earlier one. Zero when the lock is not held.
func (m *Mutex) Token() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.owned {
		return 0
	}
	return m.rev
}

// Header returns the header of the response that confirmed the lock.
func (m *Mutex) Header() *client.ResponseHeader {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hdr
}

// IsOwner is a compare that holds while this Mutex holds the lock: its key
// exists with the create revision it was acquired with. Guard a write to kvd
// with it, in a transaction, to apply it only while the lock is held.
func (m *Mutex) IsOwner() client.Cmp {
	m.mu.Lock()
	defer m.mu.Unlock()
	return client.Compare(client.CreateRevision(m.key), "=", m.rev)
}
