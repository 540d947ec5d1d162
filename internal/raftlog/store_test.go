package raftlog

import (
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// heldStore is an in-memory log whose StoreLogs can be held, to see what
// Store does while a write is on its way to disk.
type heldStore struct {
	*raft.InmemStore

	mu      sync.Mutex
	held    chan struct{} // while non-nil, StoreLogs waits for it to close
	calls   [][]uint64    // the indexes of every StoreLogs call
	failErr error
	entered chan struct{} // receives each time StoreLogs starts (the first hundred not taken)
}

func newHeldStore() *heldStore {
	return &heldStore{InmemStore: raft.NewInmemStore(), entered: make(chan struct{}, 100)}
}

func (h *heldStore) hold() {
	h.mu.Lock()
	h.held = make(chan struct{})
	h.mu.Unlock()
}

func (h *heldStore) release() {
	h.mu.Lock()
	if h.held != nil {
		close(h.held)
		h.held = nil
	}
	h.mu.Unlock()
}

func (h *heldStore) StoreLogs(logs []*raft.Log) error {
	select {
	case h.entered <- struct{}{}:
	default: // nobody waits for this many
	}
	h.mu.Lock()
	held, failErr := h.held, h.failErr
	var idx []uint64
	for _, l := range logs {
		idx = append(idx, l.Index)
	}
	h.calls = append(h.calls, idx)
	h.mu.Unlock()
	if held != nil {
		<-held
	}
	if failErr != nil {
		return failErr
	}
	return h.InmemStore.StoreLogs(logs)
}

func (h *heldStore) callIndexes() [][]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([][]uint64(nil), h.calls...)
}

func entries(from, to uint64) []*raft.Log {
	var ls []*raft.Log
	for i := from; i <= to; i++ {
		ls = append(ls, &raft.Log{Index: i, Term: 1, Type: raft.LogCommand, Data: []byte{byte(i)}})
	}
	return ls
}

// newStore returns a Store over under with cfg's other settings, closed
// when the test ends.
func newStore(t *testing.T, under *heldStore, cfg Config) *Store {
	t.Helper()
	cfg.Log = under
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		under.release()
		_ = s.Close()
	})
	return s
}

func waitEntered(t *testing.T, h *heldStore) {
	t.Helper()
	select {
	case <-h.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("no write reached the underlying store")
	}
}

func waitDurable(t *testing.T, s *Store, index uint64) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- s.WaitDurable(index) }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("WaitDurable(%d): %v", index, err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("index %d not durable; durable is %d", index, s.Durable())
	}
}

func TestValidate(t *testing.T) {
	if _, err := New(Config{}); err == nil {
		t.Fatal("New accepted a config without a log store")
	}
}

func TestLeaderStoresInBackground(t *testing.T) {
	under := newHeldStore()
	var leading atomic.Bool
	leading.Store(true)
	s := newStore(t, under, Config{Leading: leading.Load})

	under.hold()
	if err := s.StoreLogs(entries(1, 3)); err != nil {
		t.Fatal(err)
	}
	waitEntered(t, under)
	// The write is held: the entries are readable but not durable.
	if got := s.Durable(); got != 0 {
		t.Fatalf("durable %d while the write is held, want 0", got)
	}
	if last, _ := s.LastIndex(); last != 3 {
		t.Fatalf("last index %d, want 3", last)
	}
	if first, _ := s.FirstIndex(); first != 1 {
		t.Fatalf("first index %d, want 1", first)
	}
	var l raft.Log
	if err := s.GetLog(2, &l); err != nil || l.Data[0] != 2 {
		t.Fatalf("GetLog(2) = %+v, %v", l, err)
	}
	if err := s.GetLog(4, &l); !errors.Is(err, raft.ErrLogNotFound) {
		t.Fatalf("GetLog(4) = %v, want ErrLogNotFound", err)
	}

	// Entries stored meanwhile go to disk together, in one write.
	if err := s.StoreLogs(entries(4, 4)); err != nil {
		t.Fatal(err)
	}
	if err := s.StoreLogs(entries(5, 6)); err != nil {
		t.Fatal(err)
	}
	under.release()
	waitDurable(t, s, 6)
	calls := under.callIndexes()
	if len(calls) != 2 || len(calls[0]) != 3 || len(calls[1]) != 3 || calls[1][0] != 4 || calls[1][2] != 6 {
		t.Fatalf("writes %v, want [1 2 3] then [4 5 6]", calls)
	}
	if err := s.GetLog(5, &l); err != nil || l.Data[0] != 5 {
		t.Fatalf("GetLog(5) after the write = %+v, %v", l, err)
	}
}

func TestFollowerStoresSynchronously(t *testing.T) {
	under := newHeldStore()
	var leading atomic.Bool
	s := newStore(t, under, Config{Leading: leading.Load})
	if err := s.StoreLogs(entries(1, 2)); err != nil {
		t.Fatal(err)
	}
	if got := s.Durable(); got != 2 {
		t.Fatalf("durable %d after a follower's StoreLogs returned, want 2", got)
	}
	if last, _ := under.LastIndex(); last != 2 {
		t.Fatalf("underlying last index %d, want 2", last)
	}
}

// A configuration entry is written before StoreLogs returns even on the
// leader, together with everything pending before it.
func TestConfigurationEntriesAreSynchronous(t *testing.T) {
	under := newHeldStore()
	var leading atomic.Bool
	leading.Store(true)
	s := newStore(t, under, Config{Leading: leading.Load})
	under.hold()
	if err := s.StoreLogs(entries(1, 1)); err != nil {
		t.Fatal(err)
	}
	waitEntered(t, under)
	cfg := &raft.Log{Index: 2, Term: 1, Type: raft.LogConfiguration}
	returned := make(chan error, 1)
	go func() { returned <- s.StoreLogs([]*raft.Log{cfg}) }()
	select {
	case err := <-returned:
		t.Fatalf("StoreLogs of a configuration entry returned (%v) while the write before it was held", err)
	case <-time.After(50 * time.Millisecond):
	}
	under.release()
	if err := <-returned; err != nil {
		t.Fatal(err)
	}
	if got := s.Durable(); got != 2 {
		t.Fatalf("durable %d after a configuration entry was stored, want 2", got)
	}
}

func TestDeleteRange(t *testing.T) {
	under := newHeldStore()
	var leading atomic.Bool
	leading.Store(true)
	s := newStore(t, under, Config{Leading: leading.Load})
	if err := s.StoreLogs(entries(1, 10)); err != nil {
		t.Fatal(err)
	}
	waitDurable(t, s, 10)

	// Compaction deletes old entries; the durable index stays.
	if err := s.DeleteRange(1, 4); err != nil {
		t.Fatal(err)
	}
	if got := s.Durable(); got != 10 {
		t.Fatalf("durable %d after deleting a prefix, want 10", got)
	}

	// A pending write reaches disk before a deletion.
	under.hold()
	if err := s.StoreLogs(entries(11, 12)); err != nil {
		t.Fatal(err)
	}
	waitEntered(t, under)
	leading.Store(false)
	deleted := make(chan error, 1)
	go func() { deleted <- s.DeleteRange(9, 12) }()
	under.release()
	if err := <-deleted; err != nil {
		t.Fatal(err)
	}
	// A new leader's log conflicted from index 9: what is left is durable up
	// to 8, and the log is rewritten from there.
	if got := s.Durable(); got != 8 {
		t.Fatalf("durable %d after deleting the suffix from 9, want 8", got)
	}
	if last, _ := s.LastIndex(); last != 8 {
		t.Fatalf("last index %d, want 8", last)
	}
	if err := s.StoreLogs(entries(9, 9)); err != nil {
		t.Fatal(err)
	}
	if got := s.Durable(); got != 9 {
		t.Fatalf("durable %d, want 9", got)
	}
}

func TestBackgroundWriteFailure(t *testing.T) {
	under := newHeldStore()
	var leading atomic.Bool
	leading.Store(true)
	failures := make(chan error, 10)
	s := newStore(t, under, Config{Leading: leading.Load, OnFailure: func(err error) { failures <- err }})

	diskErr := errors.New("disk on fire")
	under.mu.Lock()
	under.failErr = diskErr
	under.mu.Unlock()
	if err := s.StoreLogs(entries(1, 1)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-failures:
		if !errors.Is(err, diskErr) {
			t.Fatalf("OnFailure got %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("OnFailure not called")
	}
	if err := s.WaitDurable(1); !errors.Is(err, diskErr) {
		t.Fatalf("WaitDurable = %v, want the write's error", err)
	}
	if err := s.StoreLogs(entries(2, 2)); !errors.Is(err, diskErr) {
		t.Fatalf("StoreLogs after a failure = %v, want the write's error", err)
	}
	if len(failures) != 0 {
		t.Fatal("OnFailure called more than once")
	}
}

func TestCloseWritesPending(t *testing.T) {
	under := newHeldStore()
	var leading atomic.Bool
	leading.Store(true)
	s, err := New(Config{Log: under, Leading: leading.Load})
	if err != nil {
		t.Fatal(err)
	}
	under.hold()
	if err := s.StoreLogs(entries(1, 1)); err != nil {
		t.Fatal(err)
	}
	waitEntered(t, under)
	if err := s.StoreLogs(entries(2, 3)); err != nil {
		t.Fatal(err)
	}
	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	under.release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if last, _ := under.LastIndex(); last != 3 {
		t.Fatalf("underlying last index %d after Close, want 3", last)
	}
	if err := s.WaitDurable(4); !errors.Is(err, ErrClosed) {
		t.Fatalf("WaitDurable past the end after Close = %v, want ErrClosed", err)
	}
	if err := s.StoreLogs(entries(4, 4)); !errors.Is(err, ErrClosed) {
		t.Fatalf("StoreLogs after Close = %v, want ErrClosed", err)
	}
}

// recordingObserver keeps what a Store reports.
type recordingObserver struct {
	mu          sync.Mutex
	appends     []bool // background, per write
	waits       []time.Duration
	checkpoints []int // entries, per checkpoint
}

func (o *recordingObserver) ObserveLogAppend(_ time.Duration, background bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.appends = append(o.appends, background)
}

func (o *recordingObserver) ObserveLogDurableWait(d time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.waits = append(o.waits, d)
}

func (o *recordingObserver) ObserveLogCheckpoint(_ time.Duration, entries int) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.checkpoints = append(o.checkpoints, entries)
}

func (o *recordingObserver) checkpointsSeen() []int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.checkpoints)
}

func (o *recordingObserver) seen() ([]bool, []time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.appends), slices.Clone(o.waits)
}

func TestObserver(t *testing.T) {
	under := newHeldStore()
	var leading atomic.Bool
	leading.Store(true)
	obs := &recordingObserver{}
	s := newStore(t, under, Config{Leading: leading.Load, Observer: obs})
	fsm := s.FSM(&appliedFSM{})

	// The leader's entry is applied only after its write, which the disk
	// holds until the state machine waits for it: it reports the wait.
	waiting := make(chan struct{})
	var once sync.Once
	s.beforeWait = func() { once.Do(func() { close(waiting) }) }
	under.hold()
	if err := s.StoreLogs(entries(1, 1)); err != nil {
		t.Fatal(err)
	}
	waitEntered(t, under)
	released := make(chan struct{})
	go func() {
		defer close(released)
		<-waiting
		under.release()
	}()
	fsm.ApplyBatch(entries(1, 1))
	<-released
	// An entry already on disk is applied without waiting.
	fsm.ApplyBatch(entries(1, 1))
	// A follower's write is synchronous.
	leading.Store(false)
	if err := s.StoreLogs(entries(2, 2)); err != nil {
		t.Fatal(err)
	}

	appends, waits := obs.seen()
	if !slices.Equal(appends, []bool{true, false}) {
		t.Errorf("appends observed (background?) %v, want [true false]", appends)
	}
	if len(waits) != 2 || waits[0] <= 0 || waits[1] != 0 {
		t.Errorf("durable waits %v, want one above zero, then zero", waits)
	}
}
