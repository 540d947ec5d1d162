// Package lease keeps a member's lease clocks: when each lease expires, as
// the leader sees it. The leases themselves (id, TTL, attached keys) are
// replicated state in package fsm; a Lessor mirrors the ids and TTLs from
// the applied log (Granted, Revoked, Checkpointed) and, on the leader only
// (Promote), times them.
//
// Nothing here deletes anything: the member asks Expired which leases ran
// out and proposes their revocation through the log, so every member deletes
// the same keys at the same revision. The rules that keep a lease from
// expiring early:
//
//   - A new leader extends every lease before expiring any: a lease's clock
//     restarts at Promote, at its full TTL (or its checkpointed remaining
//     TTL) plus the extension (the member passes the election timeout),
//     however little the old leader had left on it.
//   - A renewal is refused for a lease whose time is up, even if its
//     revocation has not been applied yet: an expired lease stays expired.
//   - Long leases (TTL above the checkpoint interval) have their remaining
//     TTL recorded in the log every interval (Checkpoints), so that a leader
//     change does not restart them at their full TTL; a renewal of a lease
//     with a recorded remaining TTL asks the member to clear it (through the
//     log) before answering.
package lease

import (
	"container/heap"
	"errors"
	"math"
	"sync"
	"time"
)

var (
	// ErrNotPrimary: this lessor does not time leases; this member is not
	// the leader (or has not finished becoming it).
	ErrNotPrimary = errors.New("not the leader's lessor")
	// ErrNotFound: no such lease, or its time is up.
	ErrNotFound = errors.New("lease not found")
)

// Config configures a Lessor.
type Config struct {
	// CheckpointInterval is how often the remaining TTL of a lease whose
	// TTL exceeds it is checkpointed. Zero means DefaultCheckpointInterval.
	CheckpointInterval time.Duration
	// RetryRevoke is how long after proposing a revocation Expired offers
	// the lease again, should the revocation not have been applied by then
	// (it failed, or leadership moved and came back). Zero means 3 s.
	RetryRevoke time.Duration
	// Now is the clock; nil means time.Now. Tests set it.
	Now func() time.Time
	// UnsafeExpireEarly breaks the lessor on purpose: a lease's clock runs
	// out after a quarter of its TTL, and a new leader does not extend it.
	// It exists only so that the jepsen suite can show that its lease and
	// lock checkers catch early expiry; members set it only in a build with
	// -tags kvd_unsafe.
	UnsafeExpireEarly bool
}

// DefaultCheckpointInterval is etcd's: five minutes.
const DefaultCheckpointInterval = 5 * time.Minute

func (c Config) withDefaults() Config {
	if c.CheckpointInterval <= 0 {
		c.CheckpointInterval = DefaultCheckpointInterval
	}
	if c.RetryRevoke <= 0 {
		c.RetryRevoke = 3 * time.Second
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

// Lease is a lease as the state records it.
type Lease struct {
	ID  int64
	TTL int64 // seconds granted
	// RemainingTTL is the remaining TTL the last checkpoint recorded, in
	// seconds; zero when none is recorded.
	RemainingTTL int64
}

// Checkpoint is a lease's remaining TTL to record in the log.
type Checkpoint struct {
	ID           int64
	RemainingTTL int64
}

// Lessor times leases. It is safe for concurrent use.
type Lessor struct {
	cfg Config

	mu      sync.Mutex
	leases  map[int64]*entry
	primary bool
	// expiries orders the timed leases by expiry, checkpoints by next
	// checkpoint; both only while primary.
	expiries    entryHeap
	checkpoints entryHeap
}

type entry struct {
	Lease
	expiry time.Time // while primary; once expired, when to retry its revocation
	// expired is set once the primary found its time up: it is never
	// renewed again, whatever expiry says.
	expired      bool
	checkpointAt time.Time // next checkpoint while primary; zero: none due
	expiryIdx    int       // in expiries; -1: not in it
	checkpntIdx  int       // in checkpoints; -1: not in it
}

// New returns a lessor that is not primary and knows no lease.
func New(cfg Config) *Lessor {
	cfg = cfg.withDefaults()
	return &Lessor{
		cfg:         cfg,
		leases:      make(map[int64]*entry),
		expiries:    entryHeap{less: func(a, b *entry) bool { return a.expiry.Before(b.expiry) }, idx: func(e *entry) *int { return &e.expiryIdx }},
		checkpoints: entryHeap{less: func(a, b *entry) bool { return a.checkpointAt.Before(b.checkpointAt) }, idx: func(e *entry) *int { return &e.checkpntIdx }},
	}
}

// Reset replaces every lease with ls: at start, and after the state was
// replaced by a snapshot. A primary lessor starts their clocks afresh, as
// Promote does with no extension.
func (l *Lessor) Reset(ls []Lease) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.leases = make(map[int64]*entry, len(ls))
	l.expiries.clear()
	l.checkpoints.clear()
	now := l.cfg.Now()
	for _, le := range ls {
		e := &entry{Lease: le, expiryIdx: -1, checkpntIdx: -1}
		l.leases[le.ID] = e
		if l.primary {
			l.startClock(e, now, 0)
		}
	}
}

// Granted records a lease the log granted. On a primary lessor its clock
// starts now, at its full TTL.
func (l *Lessor) Granted(id, ttl int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if old, ok := l.leases[id]; ok {
		l.drop(old)
	}
	e := &entry{Lease: Lease{ID: id, TTL: ttl}, expiryIdx: -1, checkpntIdx: -1}
	l.leases[id] = e
	if l.primary {
		l.startClock(e, l.cfg.Now(), 0)
	}
}

// Revoked forgets a lease the log revoked.
func (l *Lessor) Revoked(id int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.leases[id]; ok {
		l.drop(e)
		delete(l.leases, id)
	}
}

// Checkpointed records the remaining TTL a checkpoint wrote (zero:
// cleared). It does not move a primary lessor's clock: the primary
// proposed it.
func (l *Lessor) Checkpointed(id, remaining int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.leases[id]; ok {
		e.RemainingTTL = remaining
	}
}

// Promote makes the lessor primary: every lease's clock starts now, at its
// checkpointed remaining TTL (its full TTL when none is recorded) plus
// extend. The member calls it once it leads and has applied every entry of
// earlier terms, so that it knows every lease.
func (l *Lessor) Promote(extend time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.primary = true
	l.expiries.clear()
	l.checkpoints.clear()
	now := l.cfg.Now()
	for _, e := range l.leases {
		l.startClock(e, now, extend)
	}
}

// Demote stops timing leases: this member no longer leads.
func (l *Lessor) Demote() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.primary = false
	l.expiries.clear()
	l.checkpoints.clear()
}

// Primary reports whether the lessor times leases.
func (l *Lessor) Primary() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.primary
}

// startClock sets e to expire after its remaining (or full) TTL plus
// extend from now, and schedules its checkpoints. l.mu is held.
func (l *Lessor) startClock(e *entry, now time.Time, extend time.Duration) {
	e.expired = false
	left := e.TTL
	if e.RemainingTTL > 0 && e.RemainingTTL < left {
		left = e.RemainingTTL
	}
	if l.cfg.UnsafeExpireEarly {
		extend = 0
	}
	e.expiry = now.Add(extend + l.clock(left))
	l.expiries.put(e)
	l.scheduleCheckpoint(e, now)
}

// scheduleCheckpoint schedules e's next checkpoint, if its TTL is long
// enough to need one. l.mu is held.
func (l *Lessor) scheduleCheckpoint(e *entry, now time.Time) {
	if seconds(e.TTL) <= l.cfg.CheckpointInterval {
		l.checkpoints.remove(e)
		e.checkpointAt = time.Time{}
		return
	}
	e.checkpointAt = now.Add(l.cfg.CheckpointInterval)
	l.checkpoints.put(e)
}

// drop takes e off both heaps. l.mu is held.
func (l *Lessor) drop(e *entry) {
	l.expiries.remove(e)
	l.checkpoints.remove(e)
}

// Renew restarts a lease's clock at its full TTL and returns the TTL.
// clearCheckpoint is true when the state records a remaining TTL for it:
// the caller must clear that through the log before it tells the client
// the lease was renewed, or a new leader would restart the lease at the
// old remaining TTL. It fails with ErrNotPrimary on a lessor that is not
// primary, ErrNotFound for a lease it does not know or whose time is up.
func (l *Lessor) Renew(id int64) (ttl int64, clearCheckpoint bool, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary {
		return 0, false, ErrNotPrimary
	}
	e, ok := l.leases[id]
	now := l.cfg.Now()
	if !ok || e.expired || !e.expiry.After(now) {
		return 0, false, ErrNotFound
	}
	e.expiry = now.Add(l.clock(e.TTL))
	l.expiries.put(e)
	l.scheduleCheckpoint(e, now)
	return e.TTL, e.RemainingTTL > 0, nil
}

// Remaining returns a lease's granted TTL and what is left of it, in whole
// seconds rounded up (ErrNotPrimary, ErrNotFound as Renew).
func (l *Lessor) Remaining(id int64) (granted, remaining int64, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary {
		return 0, 0, ErrNotPrimary
	}
	e, ok := l.leases[id]
	now := l.cfg.Now()
	if !ok || e.expired || !e.expiry.After(now) {
		return 0, 0, ErrNotFound
	}
	return e.TTL, ceilSeconds(e.expiry.Sub(now)), nil
}

// Expired returns up to limit leases whose time is up and whose revocation
// has not been proposed in the last RetryRevoke, and notes that it is being
// proposed now. A lessor that is not primary returns none.
func (l *Lessor) Expired(limit int) []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary {
		return nil
	}
	now := l.cfg.Now()
	var ids []int64
	for len(ids) < limit && l.expiries.Len() > 0 {
		e := l.expiries.entries[0]
		if e.expiry.After(now) {
			break
		}
		// It stays expired (Renew refuses it) and comes up again after
		// RetryRevoke, should its revocation never be applied.
		e.expired = true
		e.expiry = now.Add(l.cfg.RetryRevoke)
		l.expiries.put(e)
		l.checkpoints.remove(e)
		ids = append(ids, e.ID)
	}
	return ids
}

// Checkpoints returns up to limit leases whose checkpoint is due, with
// their remaining TTL, and schedules their next. A lessor that is not
// primary returns none.
func (l *Lessor) Checkpoints(limit int) []Checkpoint {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.primary {
		return nil
	}
	now := l.cfg.Now()
	var out []Checkpoint
	for len(out) < limit && l.checkpoints.Len() > 0 {
		e := l.checkpoints.entries[0]
		if e.checkpointAt.After(now) {
			break
		}
		left := ceilSeconds(e.expiry.Sub(now))
		if left <= 0 {
			l.checkpoints.remove(e)
			continue // expiring: Expired deals with it
		}
		out = append(out, Checkpoint{ID: e.ID, RemainingTTL: left})
		e.checkpointAt = now.Add(l.cfg.CheckpointInterval)
		l.checkpoints.put(e)
	}
	return out
}

// Len returns how many leases the lessor knows.
func (l *Lessor) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.leases)
}

// clock is how long a lease of ttl seconds lives on this lessor's clock:
// its TTL, or a quarter of it when the lessor is broken on purpose.
func (l *Lessor) clock(ttl int64) time.Duration {
	if l.cfg.UnsafeExpireEarly {
		return seconds(ttl) / 4
	}
	return seconds(ttl)
}

func seconds(s int64) time.Duration {
	if s > int64(math.MaxInt64/time.Second) {
		return math.MaxInt64
	}
	return time.Duration(s) * time.Second
}

func ceilSeconds(d time.Duration) int64 {
	if d <= 0 {
		return 0
	}
	return int64((d + time.Second - 1) / time.Second)
}

// entryHeap is a heap of entries under less, each knowing its index.
type entryHeap struct {
	entries []*entry
	less    func(a, b *entry) bool
	idx     func(*entry) *int
}

func (h *entryHeap) Len() int           { return len(h.entries) }
func (h *entryHeap) Less(i, j int) bool { return h.less(h.entries[i], h.entries[j]) }
func (h *entryHeap) Swap(i, j int) {
	h.entries[i], h.entries[j] = h.entries[j], h.entries[i]
	*h.idx(h.entries[i]) = i
	*h.idx(h.entries[j]) = j
}
func (h *entryHeap) Push(x any) {
	e := x.(*entry)
	*h.idx(e) = len(h.entries)
	h.entries = append(h.entries, e)
}
func (h *entryHeap) Pop() any {
	n := len(h.entries) - 1
	e := h.entries[n]
	h.entries[n] = nil
	h.entries = h.entries[:n]
	*h.idx(e) = -1
	return e
}

// put adds e, or fixes its place if it is in already.
func (h *entryHeap) put(e *entry) {
	if i := *h.idx(e); i >= 0 {
		heap.Fix(h, i)
		return
	}
	heap.Push(h, e)
}

func (h *entryHeap) remove(e *entry) {
	if i := *h.idx(e); i >= 0 {
		heap.Remove(h, i)
	}
}

func (h *entryHeap) clear() {
	for _, e := range h.entries {
		*h.idx(e) = -1
	}
	h.entries = h.entries[:0]
}
