package history

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Recorder appends events to history.jsonl and keeps them in memory. It is
// safe for concurrent use. Each event is stamped and indexed under one lock,
// so indexes, times and the file's order agree.
type Recorder struct {
	start time.Time

	mu     sync.Mutex
	events []Event
	f      *os.File
	w      *bufio.Writer
	err    error
	closed bool
}

// NewRecorder creates (truncates) path and returns a recorder whose clock
// starts at start.
func NewRecorder(path string, start time.Time) (*Recorder, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	return &Recorder{start: start, f: f, w: bufio.NewWriterSize(f, 64<<10)}, nil
}

// Since returns the run's clock: nanoseconds since start, monotonic.
func (r *Recorder) Since() int64 { return time.Since(r.start).Nanoseconds() }

// Record stamps e with the next index and the current time, appends it and
// returns the stamped copy.
func (r *Recorder) Record(e Event) Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.Index = len(r.events)
	e.Time = r.Since()
	r.events = append(r.events, e)
	if r.closed || r.err != nil {
		return e
	}
	b, err := json.Marshal(e)
	if err == nil {
		b = append(b, '\n')
		_, err = r.w.Write(b)
	}
	if err != nil {
		r.err = fmt.Errorf("history: write: %w", err)
	}
	return e
}

// Flush writes buffered events to the file.
func (r *Recorder) Flush() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return r.err
	}
	if err := r.w.Flush(); err != nil && r.err == nil {
		r.err = fmt.Errorf("history: flush: %w", err)
	}
	return r.err
}

// Events returns a copy of the events recorded so far.
func (r *Recorder) Events() []Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]Event(nil), r.events...)
}

// Close flushes and closes the file. Events recorded later are kept in
// memory only. Close is idempotent.
func (r *Recorder) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return r.err
	}
	r.closed = true
	err := errors.Join(r.err, r.w.Flush(), r.f.Close())
	if err != nil {
		r.err = fmt.Errorf("history: close: %w", err)
	}
	return r.err
}

// Read parses a history written by a Recorder.
func Read(rd io.Reader) ([]Event, error) {
	var events []Event
	sc := bufio.NewScanner(rd)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	for line := 1; sc.Scan(); line++ {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("history: line %d: %w", line, err)
		}
		events = append(events, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	return events, nil
}

// ReadFile parses the history at path.
func ReadFile(path string) ([]Event, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("history: %w", err)
	}
	defer f.Close()
	return Read(f)
}
