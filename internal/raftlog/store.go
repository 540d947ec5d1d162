// Package raftlog lets a raft leader write its log to disk while it
// replicates it, without anything treating an entry as committed before it is
// on disk on a quorum.
//
// hashicorp/raft's leader appends new entries to its own log (a bbolt commit,
// two fdatasyncs) before it sends them to followers, so every write waits for
// two disk commits in a row: the leader's, then a follower's. Raft does not
// need that order (Ongaro's thesis, section 10.2.1, and etcd's leader writes
// in parallel too); it needs only that nothing counts an entry as committed
// until it is on disk on a quorum. The library counts the leader's copy as
// soon as StoreLogs returns, so on the leader Store returns at once and
// writes in the background, and three gates keep the promise instead:
//
//   - The state machine (Store.FSM) applies an entry only once this member's
//     copy is on disk. Applying is what answers the client and what reads see.
//   - The commit index the leader sends followers (Store.Transport) is capped
//     at its durable index, so no follower applies an entry the leader could
//     still lose.
//   - Configuration entries are written synchronously, because the library
//     starts the next membership change as soon as one commits.
//
// An entry the library commits while the leader's copy is still being
// written is therefore held back everywhere until that copy is on disk, at
// which point it is on disk on the leader and on the followers whose
// acknowledgements committed it. If the leader crashes first the entry may be
// lost, but no client was answered and no member applied it.
//
// Followers write synchronously, as before: their acknowledgement promises
// the leader that the entries are on disk.
package raftlog

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
)

// ErrClosed is returned once Close has been called.
var ErrClosed = errors.New("raft log closed")

// Config configures a Store.
type Config struct {
	// Log is the durable store the entries are written to.
	Log raft.LogStore
	// Leading reports whether this member is the raft leader. raft calls
	// StoreLogs from its main goroutine, which is also the one that changes
	// its state, so the answer is exact at that moment. Nil means never, and
	// every write is synchronous.
	Leading func() bool
	// OnFailure is called once, from the writer goroutine, when a background
	// write fails. raft then believes it holds entries that are not on disk,
	// so the member must stop; the default panics.
	OnFailure func(error)
	// Observer is told how long writes and the state machine's waits for
	// them took; nil: nobody.
	Observer Observer
}

// Observer receives the store's timings. Its methods are called on the
// goroutines that write the log and apply it, so they must not block.
type Observer interface {
	// ObserveLogAppend is told of each write to Config.Log and how long it
	// took: background when it wrote entries the leader had queued, not
	// when StoreLogs waited for it (a follower's append, a configuration
	// change).
	ObserveLogAppend(d time.Duration, background bool)
	// ObserveLogDurableWait is told, for each batch of entries the state
	// machine is about to apply, how long it waited for this member's copy
	// to reach the disk: zero when it was there already. It is above zero
	// only on a leader whose own append finished after a follower's
	// acknowledgement had committed the entry.
	ObserveLogDurableWait(d time.Duration)
}

type nopObserver struct{}

func (nopObserver) ObserveLogAppend(time.Duration, bool) {}
func (nopObserver) ObserveLogDurableWait(time.Duration)  {}

// Validate reports whether c can be used.
func (c Config) Validate() error {
	if c.Log == nil {
		return errors.New("raftlog: no log store")
	}
	return nil
}

func (c Config) withDefaults() Config {
	if c.Leading == nil {
		c.Leading = func() bool { return false }
	}
	if c.OnFailure == nil {
		c.OnFailure = func(err error) { panic(fmt.Sprintf("raftlog: %v", err)) }
	}
	if c.Observer == nil {
		c.Observer = nopObserver{}
	}
	return c
}

// Store is a raft.LogStore that, on the leader, writes in the background.
// Entries not yet written are served from memory.
type Store struct {
	cfg Config

	// writeMu is held for every write to cfg.Log, so writes and deletes
	// reach it in the order raft made them.
	writeMu sync.Mutex

	mu       sync.Mutex
	pending  []*raft.Log   // stored by StoreLogs but not yet written, in index order
	advanced chan struct{} // closed and replaced when durable moves, err is set or the store closes
	err      error         // a background write failed; the store is unusable
	closed   bool

	closeOnce sync.Once
	closeErr  error

	// durable is the last index of the most recent completed write: every
	// entry at or below it is on disk.
	durable atomic.Uint64

	wake chan struct{}
	stop chan struct{}
	done chan struct{}

	// beforeWait, when set (by tests, before any use), is called each time
	// WaitDurable is about to block.
	beforeWait func()
}

// New returns a Store over cfg.Log and starts its writer; Close stops it.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	last, err := cfg.Log.LastIndex()
	if err != nil {
		return nil, fmt.Errorf("raftlog: read last index: %w", err)
	}
	s := &Store{
		cfg:      cfg.withDefaults(),
		advanced: make(chan struct{}),
		wake:     make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	s.durable.Store(last)
	go s.run()
	return s, nil
}

// run writes pending entries until Close. Entries stored while a write is in
// progress go to disk together in the next one.
func (s *Store) run() {
	defer close(s.done)
	for {
		select {
		case <-s.stop:
			return
		case <-s.wake:
		}
		s.writeMu.Lock()
		_ = s.writePending() // a failure is reported through OnFailure
		s.writeMu.Unlock()
	}
}

// Durable returns the index up to which this member's log is on disk.
func (s *Store) Durable() uint64 { return s.durable.Load() }

// WaitDurable blocks until every entry up to index is on disk. It fails only
// if a background write failed or the store was closed first.
func (s *Store) WaitDurable(index uint64) error {
	for {
		if s.durable.Load() >= index {
			return nil
		}
		s.mu.Lock()
		err, ch := s.unusable(), s.advanced
		s.mu.Unlock()
		if s.durable.Load() >= index {
			return nil
		}
		if err != nil {
			return err
		}
		if s.beforeWait != nil {
			s.beforeWait()
		}
		<-ch
	}
}

// Close writes what is pending and stops the writer. It does not close
// cfg.Log, which belongs to the caller.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		<-s.done
		s.writeMu.Lock()
		s.closeErr = s.writePending()
		s.writeMu.Unlock()
		s.mu.Lock()
		s.closed = true
		s.signalLocked()
		s.mu.Unlock()
	})
	return s.closeErr
}

// StoreLog stores one entry; see StoreLogs.
func (s *Store) StoreLog(l *raft.Log) error { return s.StoreLogs([]*raft.Log{l}) }

// StoreLogs stores entries. On the leader it returns before they are on disk
// (see the package doc), unless they change the configuration; everywhere
// else they are on disk when it returns.
func (s *Store) StoreLogs(logs []*raft.Log) error {
	if len(logs) == 0 {
		return nil
	}
	if s.cfg.Leading() && !changesConfiguration(logs) && s.queue(logs) {
		select {
		case s.wake <- struct{}{}:
		default:
		}
		return nil
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.writePending(); err != nil {
		return err
	}
	s.mu.Lock()
	err := s.unusable()
	s.mu.Unlock()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := s.cfg.Log.StoreLogs(logs); err != nil {
		return err
	}
	s.cfg.Observer.ObserveLogAppend(time.Since(start), false)
	s.setDurable(logs[len(logs)-1].Index)
	return nil
}

// queue adds logs to the pending entries. It declines (and the caller writes
// synchronously) when they do not follow the pending ones, which raft's
// leader never does, or when the store cannot be used, so that the error is
// returned.
func (s *Store) queue(logs []*raft.Log) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unusable() != nil {
		return false
	}
	if n := len(s.pending); n > 0 && logs[0].Index != s.pending[n-1].Index+1 {
		return false
	}
	s.pending = append(s.pending, logs...)
	return true
}

// writePending writes every pending entry in one call. The caller holds
// writeMu, so nothing else writes or deletes meanwhile; StoreLogs may add
// entries behind the ones being written.
func (s *Store) writePending() error {
	s.mu.Lock()
	batch := s.pending
	s.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	start := time.Now()
	if err := s.cfg.Log.StoreLogs(batch); err != nil {
		err = fmt.Errorf("write log entries %d-%d: %w", batch[0].Index, batch[len(batch)-1].Index, err)
		s.fail(err)
		return err
	}
	s.mu.Lock()
	// Entries leave pending only now that they can be read from cfg.Log.
	if len(s.pending) == len(batch) {
		s.pending = nil
	} else {
		s.pending = s.pending[len(batch):]
	}
	s.mu.Unlock()
	s.cfg.Observer.ObserveLogAppend(time.Since(start), true)
	s.setDurable(batch[len(batch)-1].Index)
	return nil
}

// setDurable records the last index of a completed write. It is the exact
// index, not the highest seen: after a conflicting suffix was deleted, the
// log may be rewritten from a lower index.
func (s *Store) setDurable(index uint64) {
	s.mu.Lock()
	s.durable.Store(index)
	s.signalLocked()
	s.mu.Unlock()
}

// fail makes the store unusable and reports err, once.
func (s *Store) fail(err error) {
	s.mu.Lock()
	first := s.err == nil
	if first {
		s.err = err
		s.signalLocked()
	}
	s.mu.Unlock()
	if first {
		s.cfg.OnFailure(err)
	}
}

// unusable returns why the store cannot be used, if it cannot. The caller
// holds mu.
func (s *Store) unusable() error {
	if s.err != nil {
		return s.err
	}
	if s.closed {
		return ErrClosed
	}
	return nil
}

// signalLocked wakes everyone in WaitDurable. The caller holds mu.
func (s *Store) signalLocked() {
	close(s.advanced)
	s.advanced = make(chan struct{})
}

// DeleteRange deletes entries min..max once the pending ones are written.
// Deleting the newest entries (raft does, when a new leader's log conflicts
// with this member's) lowers the durable index to what is left.
func (s *Store) DeleteRange(min, max uint64) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.writePending(); err != nil {
		return err
	}
	last, err := s.cfg.Log.LastIndex()
	if err != nil {
		return err
	}
	if err := s.cfg.Log.DeleteRange(min, max); err != nil {
		return err
	}
	if max >= last && min > 0 && s.durable.Load() >= min {
		s.setDurable(min - 1)
	}
	return nil
}

// GetLog returns the entry at index, from memory if it is not written yet.
func (s *Store) GetLog(index uint64, out *raft.Log) error {
	s.mu.Lock()
	if n := len(s.pending); n > 0 && index >= s.pending[0].Index && index <= s.pending[n-1].Index {
		*out = *s.pending[index-s.pending[0].Index]
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	// An entry that left pending after the check above is already in
	// cfg.Log: entries leave pending only once they are written.
	return s.cfg.Log.GetLog(index, out)
}

// FirstIndex returns the first index in the log, 0 if it is empty.
func (s *Store) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock() // held so that no pending entry is written meanwhile
	first, err := s.cfg.Log.FirstIndex()
	if err != nil || first != 0 || len(s.pending) == 0 {
		return first, err
	}
	return s.pending[0].Index, nil
}

// LastIndex returns the last index in the log, written or not.
func (s *Store) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.pending); n > 0 {
		return s.pending[n-1].Index, nil
	}
	return s.cfg.Log.LastIndex()
}

func changesConfiguration(logs []*raft.Log) bool {
	for _, l := range logs {
		if l.Type == raft.LogConfiguration {
			return true
		}
	}
	return false
}
