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
	// Log is the durable store the entries end up in.
	Log raft.LogStore
	// Dir is the directory of the journal. Empty: no journal, and every
	// append is written to Log before it counts as durable.
	Dir string
	// Leading reports whether this member is the raft leader. raft calls
	// StoreLogs from its main goroutine, which is also the one that changes
	// its state, so the answer is exact at that moment. Nil means never, and
	// every write is synchronous.
	Leading func() bool
	// OnFailure is called once, from the goroutine that found it, when a
	// background write fails. raft then believes it holds entries that are
	// not on disk, so the member must stop; the default panics.
	OnFailure func(error)
	// Observer is told how long writes and the state machine's waits for
	// them took; nil: nobody.
	Observer Observer
	// CheckpointInterval is how long journaled entries may wait before a
	// checkpoint copies them into Log (default 100ms), and CheckpointBytes
	// how much the journal may hold before one starts sooner (default 4
	// MiB). Longer and larger mean fewer, bigger bbolt commits, and more
	// entries held in memory and replayed after a crash.
	CheckpointInterval time.Duration
	CheckpointBytes    int64
}

// Observer receives the store's timings. Its methods are called on the
// goroutines that write the log and apply it, so they must not block.
type Observer interface {
	// ObserveLogAppend is told of each append made durable and how long it
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
	// ObserveLogCheckpoint is told of each checkpoint: how many journaled
	// entries it wrote into the log store, and how long that took.
	ObserveLogCheckpoint(d time.Duration, entries int)
}

type nopObserver struct{}

func (nopObserver) ObserveLogAppend(time.Duration, bool)    {}
func (nopObserver) ObserveLogDurableWait(time.Duration)     {}
func (nopObserver) ObserveLogCheckpoint(time.Duration, int) {}

// Validate reports whether c can be used.
func (c Config) Validate() error {
	if c.Log == nil {
		return errors.New("raftlog: no log store")
	}
	if c.CheckpointInterval < 0 || c.CheckpointBytes < 0 {
		return errors.New("raftlog: negative checkpoint interval or size")
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
	if c.CheckpointInterval == 0 {
		c.CheckpointInterval = 100 * time.Millisecond
	}
	if c.CheckpointBytes == 0 {
		c.CheckpointBytes = 4 << 20
	}
	return c
}

// maxJournaled bounds the journaled entries held in memory because they are
// not in the log store yet: beyond it, appends wait for a checkpoint. (A
// variable so that tests can make it small.)
var maxJournaled = 64 << 20

// Store is a raft.LogStore that makes appends durable through a journal and,
// on the leader, in the background. Entries not yet in the log store are
// served from memory.
type Store struct {
	cfg Config
	j   *journal // nil without a journal

	// ckptMu serialises checkpoints, deletions and Close. It is taken
	// before writeMu.
	ckptMu sync.Mutex
	// writeMu is held for every append, so that appends and deletions reach
	// the disk in the order raft made them.
	writeMu sync.Mutex

	mu sync.Mutex
	// mem holds the entries that are not in cfg.Log, in index order: those
	// at or below durable are in the journal, the rest (the leader's queue)
	// on no disk yet.
	mem []*raft.Log
	// journaled is the size of the entries' data in mem that are in the
	// journal: what a checkpoint can take out of memory.
	journaled int
	advanced  chan struct{} // closed and replaced when durable moves, mem shrinks, err is set or the store closes
	err       error         // a background write failed; the store is unusable
	closed    bool

	closeOnce sync.Once
	closeErr  error

	// durable is the last index of the most recent completed append: every
	// entry at or below it is on disk.
	durable atomic.Uint64
	// journalBytes and journalSince describe the active journal file: how
	// much it holds and since when (unix nanoseconds) it holds anything.
	journalBytes atomic.Int64
	journalSince atomic.Int64

	wake     chan struct{} // the leader queued entries
	ckptWake chan struct{} // the journal took its first entries, or grew past CheckpointBytes
	stop     chan struct{}
	done     sync.WaitGroup

	// beforeWait, when set (by tests, before any use), is called each time
	// WaitDurable is about to block, and afterCheckpointWrite each time a
	// checkpoint has written entries into cfg.Log but not yet emptied
	// their journal file.
	beforeWait           func()
	afterCheckpointWrite func()
}

// New returns a Store over cfg.Log and starts its writer; Close stops it.
// With a journal, New first writes whatever the journal holds into cfg.Log,
// so a member that crashed finds its log whole.
func New(cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Store{
		cfg:      cfg.withDefaults(),
		advanced: make(chan struct{}),
		wake:     make(chan struct{}, 1),
		ckptWake: make(chan struct{}, 1),
		stop:     make(chan struct{}),
	}
	if cfg.Dir != "" {
		if err := s.openJournal(); err != nil {
			return nil, err
		}
	}
	last, err := cfg.Log.LastIndex()
	if err != nil {
		s.closeJournal()
		return nil, fmt.Errorf("raftlog: read last index: %w", err)
	}
	s.durable.Store(last)
	s.done.Add(1)
	go s.run()
	if s.j != nil {
		s.done.Add(1)
		go s.checkpoints()
	}
	return s, nil
}

// openJournal opens the journal and replays it into cfg.Log.
func (s *Store) openJournal() error {
	j, logs, err := openJournal(s.cfg.Dir)
	if err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	for len(logs) > 0 {
		n := replayChunk(logs)
		if err := s.cfg.Log.StoreLogs(logs[:n]); err != nil {
			j.close()
			return fmt.Errorf("raftlog: replay journal entries %d-%d: %w", logs[0].Index, logs[n-1].Index, err)
		}
		logs = logs[n:]
	}
	if err := j.resetAll(); err != nil {
		j.close()
		return fmt.Errorf("raftlog: %w", err)
	}
	s.j = j
	return nil
}

// replayChunk returns how many of logs to write in one commit: up to 16 MiB.
func replayChunk(logs []*raft.Log) int {
	size := 0
	for i, l := range logs {
		size += len(l.Data)
		if size > 16<<20 && i > 0 {
			return i
		}
	}
	return len(logs)
}

func (s *Store) closeJournal() {
	if s.j != nil {
		_ = s.j.close()
	}
}

// run writes queued entries until Close. Entries queued while a write is in
// progress go to disk together in the next one.
func (s *Store) run() {
	defer s.done.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-s.wake:
		}
		if !s.waitRoom() {
			return
		}
		s.writeMu.Lock()
		_ = s.writePending() // a failure is reported through OnFailure
		s.writeMu.Unlock()
	}
}

// waitRoom waits while the journaled entries held in memory exceed
// maxJournaled, so that a log store slower than the journal slows appends
// down instead of filling memory. It returns false when the store stops
// first.
func (s *Store) waitRoom() bool {
	if s.j == nil {
		return true
	}
	for {
		s.mu.Lock()
		full, ch := s.journaled > maxJournaled && s.unusable() == nil, s.advanced
		s.mu.Unlock()
		if !full {
			return true
		}
		s.wakeCheckpoint()
		select {
		case <-s.stop:
			return false
		case <-ch:
		}
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

// Close writes what is pending, copies the journal into cfg.Log and empties
// it, and stops the writers. It does not close cfg.Log, which belongs to the
// caller.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.stop)
		s.done.Wait()
		s.ckptMu.Lock()
		s.writeMu.Lock()
		s.closeErr = s.writePending()
		if s.j != nil {
			if s.closeErr == nil {
				s.closeErr = s.flushJournal()
			}
			s.closeErr = errors.Join(s.closeErr, s.j.close())
		}
		s.writeMu.Unlock()
		s.ckptMu.Unlock()
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
	if !s.waitRoom() {
		return ErrClosed
	}
	if s.j != nil && s.startsPastMem(logs[0].Index) {
		if err := s.flushBeforeGap(); err != nil {
			return err
		}
	}
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.writePending(); err != nil {
		return err
	}
	s.mu.Lock()
	err := s.unusable()
	if err == nil && s.j != nil {
		if n := len(s.mem); n > 0 && logs[0].Index != s.mem[n-1].Index+1 {
			err = fmt.Errorf("raftlog: entry %d does not follow entry %d", logs[0].Index, s.mem[n-1].Index)
		}
	}
	s.mu.Unlock()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := s.appendDurably(logs); err != nil {
		if s.j != nil {
			// The journal file may now hold well-formed records past its
			// tail that the next append only partly overwrites, and a
			// replay would bring them back: the member must stop.
			s.fail(err)
		}
		return err
	}
	if s.j != nil {
		s.mu.Lock()
		s.addToMemLocked(logs)
		s.mu.Unlock()
	}
	s.cfg.Observer.ObserveLogAppend(time.Since(start), false)
	s.setDurable(logs[len(logs)-1].Index)
	return nil
}

// startsPastMem reports whether index leaves a gap after the entries in
// memory.
func (s *Store) startsPastMem(index uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.mem)
	return n > 0 && index > s.mem[n-1].Index+1
}

// flushBeforeGap empties memory into cfg.Log before an append that leaves a
// gap, so that memory holds one run of entries. raft appends past a gap
// after installing a snapshot, when its compaction kept the older entries
// (it keeps TrailingLogs of them); cfg.Log, like raft-boltdb, holds a gap.
func (s *Store) flushBeforeGap() error {
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.writePending(); err != nil {
		return err
	}
	return s.flushJournalOrFail()
}

// flushJournalOrFail is flushJournal for an append or a deletion: if it
// fails, memory, the journal and cfg.Log may disagree on what the log holds,
// so the store becomes unusable.
func (s *Store) flushJournalOrFail() error {
	err := s.flushJournal()
	if err != nil {
		s.fail(err)
	}
	return err
}

// appendDurably puts logs on disk: in the journal, or without one in
// cfg.Log. The caller holds writeMu.
func (s *Store) appendDurably(logs []*raft.Log) error {
	if s.j == nil {
		return s.cfg.Log.StoreLogs(logs)
	}
	wasEmpty := s.j.activeBytes() == 0
	if err := s.j.append(logs); err != nil {
		return err
	}
	size := 0
	for _, l := range logs {
		size += len(l.Data)
	}
	s.mu.Lock()
	s.journaled += size
	s.mu.Unlock()
	n := s.j.activeBytes()
	s.journalBytes.Store(n)
	if wasEmpty {
		s.journalSince.Store(time.Now().UnixNano())
	}
	if wasEmpty || n >= s.cfg.CheckpointBytes {
		s.wakeCheckpoint()
	}
	return nil
}

// queue adds logs to the leader's queue. It declines (and the caller writes
// synchronously) when they do not follow the entries in memory, which raft's
// leader never does, or when the store cannot be used, so that the error is
// returned.
func (s *Store) queue(logs []*raft.Log) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.unusable() != nil {
		return false
	}
	if n := len(s.mem); n > 0 && logs[0].Index != s.mem[n-1].Index+1 {
		return false
	}
	s.addToMemLocked(logs)
	return true
}

func (s *Store) addToMemLocked(logs []*raft.Log) { s.mem = append(s.mem, logs...) }

// unwritten returns the entries in memory above the durable index. The
// caller holds mu.
func (s *Store) unwrittenLocked() []*raft.Log {
	if len(s.mem) == 0 {
		return nil
	}
	first, durable := s.mem[0].Index, s.durable.Load()
	if durable < first {
		return s.mem
	}
	if n := durable - first + 1; n < uint64(len(s.mem)) {
		return s.mem[n:]
	}
	return nil
}

// writePending writes every queued entry in one append. The caller holds
// writeMu, so nothing else writes or deletes meanwhile; StoreLogs may queue
// entries behind the ones being written.
func (s *Store) writePending() error {
	s.mu.Lock()
	batch := s.unwrittenLocked()
	s.mu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	start := time.Now()
	if err := s.appendDurably(batch); err != nil {
		err = fmt.Errorf("write log entries %d-%d: %w", batch[0].Index, batch[len(batch)-1].Index, err)
		s.fail(err)
		return err
	}
	if s.j == nil {
		// Entries leave memory only now that they can be read from cfg.Log.
		s.dropMem(batch[len(batch)-1].Index)
	}
	s.cfg.Observer.ObserveLogAppend(time.Since(start), true)
	s.setDurable(batch[len(batch)-1].Index)
	return nil
}

// dropMem removes the entries up to index from memory, once they are in
// cfg.Log.
func (s *Store) dropMem(index uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for n < len(s.mem) && s.mem[n].Index <= index {
		if s.j != nil {
			s.journaled -= len(s.mem[n].Data)
		}
		n++
	}
	if n == len(s.mem) {
		s.mem = nil
	} else {
		s.mem = s.mem[n:]
	}
	s.signalLocked()
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

// signalLocked wakes everyone waiting on advanced. The caller holds mu.
func (s *Store) signalLocked() {
	close(s.advanced)
	s.advanced = make(chan struct{})
}

// DeleteRange deletes entries min..max once the queued ones are written.
// Deleting the newest entries (raft does, when a new leader's log conflicts
// with this member's) lowers the durable index to what is left. Entries the
// journal holds are first copied into cfg.Log and the journal emptied, so
// that no replay brings deleted entries back.
func (s *Store) DeleteRange(min, max uint64) error {
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	if err := s.writePending(); err != nil {
		return err
	}
	s.mu.Lock()
	inMem := len(s.mem) > 0 && min <= s.mem[len(s.mem)-1].Index && max >= s.mem[0].Index
	s.mu.Unlock()
	if inMem {
		if err := s.flushJournalOrFail(); err != nil {
			return err
		}
	}
	last, err := s.LastIndex()
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

// GetLog returns the entry at index, from memory if it is not in cfg.Log
// yet.
func (s *Store) GetLog(index uint64, out *raft.Log) error {
	s.mu.Lock()
	if n := len(s.mem); n > 0 && index >= s.mem[0].Index && index <= s.mem[n-1].Index {
		*out = *s.mem[index-s.mem[0].Index]
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	// An entry that left memory after the check above is already in
	// cfg.Log: entries leave memory only once they are written there.
	return s.cfg.Log.GetLog(index, out)
}

// FirstIndex returns the first index in the log, 0 if it is empty.
func (s *Store) FirstIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock() // held so that no entry leaves memory meanwhile
	first, err := s.cfg.Log.FirstIndex()
	if err != nil || first != 0 || len(s.mem) == 0 {
		return first, err
	}
	return s.mem[0].Index, nil
}

// LastIndex returns the last index in the log, on disk or not.
func (s *Store) LastIndex() (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := len(s.mem); n > 0 {
		return s.mem[n-1].Index, nil
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
