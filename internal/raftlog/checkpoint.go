package raftlog

import (
	"fmt"
	"time"

	"github.com/hashicorp/raft"
)

// wakeCheckpoint tells the checkpointer to look at the journal.
func (s *Store) wakeCheckpoint() {
	select {
	case s.ckptWake <- struct{}{}:
	default:
	}
}

// checkpoints copies journaled entries into cfg.Log until Close: once the
// active journal file has held entries for CheckpointInterval, or sooner when
// it holds CheckpointBytes or memory is full.
func (s *Store) checkpoints() {
	defer s.done.Done()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.ckptWake:
		}
		for {
			wait := s.checkpointDue()
			if wait <= 0 {
				break
			}
			timer.Reset(wait)
			select {
			case <-s.stop:
				return
			case <-s.ckptWake:
				if !timer.Stop() {
					<-timer.C
				}
			case <-timer.C:
			}
		}
		if err := s.checkpoint(); err != nil {
			s.fail(err)
			return
		}
	}
}

// checkpointDue returns how long the next checkpoint may wait: zero or less
// when it is due now.
func (s *Store) checkpointDue() time.Duration {
	s.mu.Lock()
	full := s.journaled > maxJournaled
	s.mu.Unlock()
	if full || s.journalBytes.Load() >= s.cfg.CheckpointBytes {
		return 0
	}
	since := s.journalSince.Load()
	return s.cfg.CheckpointInterval - time.Since(time.Unix(0, since))
}

// checkpoint switches appends to the empty journal file, writes the entries
// of the other one into cfg.Log in one call, and empties that file. Only the
// switch holds up appends.
func (s *Store) checkpoint() error {
	s.ckptMu.Lock()
	defer s.ckptMu.Unlock()
	s.writeMu.Lock()
	if s.j.activeBytes() == 0 {
		s.writeMu.Unlock()
		return nil
	}
	old, first, last, gen := s.j.switchActive()
	s.journalBytes.Store(0)
	s.writeMu.Unlock()

	s.mu.Lock()
	var batch []*raft.Log
	if len(s.mem) > 0 && s.mem[0].Index == first && s.mem[len(s.mem)-1].Index >= last {
		batch = s.mem[:last-first+1]
	}
	s.mu.Unlock()
	if batch == nil {
		return fmt.Errorf("raftlog: checkpoint of entries %d-%d: they are not all in memory", first, last)
	}
	start := time.Now()
	if err := s.cfg.Log.StoreLogs(batch); err != nil {
		return fmt.Errorf("raftlog: checkpoint of entries %d-%d: %w", first, last, err)
	}
	if s.afterCheckpointWrite != nil {
		s.afterCheckpointWrite()
	}
	if err := s.j.reset(old, gen); err != nil {
		return fmt.Errorf("raftlog: checkpoint: %w", err)
	}
	s.dropMem(last)
	s.cfg.Observer.ObserveLogCheckpoint(time.Since(start), len(batch))
	return nil
}

// flushJournal writes every journaled entry into cfg.Log and empties both
// journal files. The caller holds ckptMu and writeMu. The leader may queue
// entries meanwhile (queue takes only mu, and raft compacts the log on
// another goroutine than the one that appends): those are on no disk yet,
// so they stay in memory for the writer.
func (s *Store) flushJournal() error {
	s.mu.Lock()
	batch := s.mem[:len(s.mem)-len(s.unwrittenLocked())]
	s.mu.Unlock()
	if len(batch) > 0 {
		start := time.Now()
		if err := s.cfg.Log.StoreLogs(batch); err != nil {
			return fmt.Errorf("raftlog: write journaled entries %d-%d: %w", batch[0].Index, batch[len(batch)-1].Index, err)
		}
		s.cfg.Observer.ObserveLogCheckpoint(time.Since(start), len(batch))
	}
	if err := s.j.resetAll(); err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	s.journalBytes.Store(0)
	if len(batch) > 0 {
		s.dropMem(batch[len(batch)-1].Index)
	}
	return nil
}
