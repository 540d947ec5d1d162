package proposal

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/fsm"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
)

// errStopped is the buffer's Config.Stopped in these tests.
var errStopped = errors.New("member is stopping")

func newBuffer(t *testing.T, log *fakeLog, batchable bool) *Buffer {
	t.Helper()
	b, err := New(Config{Apply: log.apply, Batchable: func() bool { return batchable }, Observe: log.observe,
		Spawn: func(f func()) { go f() }, Stopped: errStopped})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeFuture is an ApplyFuture the test answers.
type fakeFuture struct {
	done chan struct{}
	err  error
	resp any
}

func (f *fakeFuture) Error() error  { <-f.done; return f.err }
func (f *fakeFuture) Response() any { return f.resp }
func (f *fakeFuture) Index() uint64 { return 0 }

// fakeLog stands in for raft: it records each appended entry and answers it
// when the test releases it, with what apply would return for it.
type fakeLog struct {
	t       *testing.T
	mu      sync.Mutex
	entries [][]byte
	futures []*fakeFuture
	added   chan struct{}
	fail    error // answered to every entry when set
	sizes   []int // proposals per entry, as the queue reported them
}

func (l *fakeLog) observe(proposals int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.sizes = append(l.sizes, proposals)
}

func newFakeLog(t *testing.T) *fakeLog {
	return &fakeLog{t: t, added: make(chan struct{}, 1024)}
}

func (l *fakeLog) apply(data []byte) raft.ApplyFuture {
	f := &fakeFuture{done: make(chan struct{})}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.entries = append(l.entries, data)
	l.futures = append(l.futures, f)
	l.added <- struct{}{}
	return f
}

// waitEntries waits until n entries have been appended.
func (l *fakeLog) waitEntries(n int) {
	l.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		l.mu.Lock()
		got := len(l.entries)
		l.mu.Unlock()
		if got >= n {
			return
		}
		select {
		case <-l.added:
		case <-deadline:
			l.t.Fatalf("%d entries appended, want %d", got, n)
		}
	}
}

// release answers entry i: each command's result is "ok <payload>", or a
// domain error for a payload starting with "bad".
func (l *fakeLog) release(i int) {
	l.t.Helper()
	l.mu.Lock()
	data, f := l.entries[i], l.futures[i]
	l.mu.Unlock()
	if l.fail != nil {
		f.err = l.fail
	} else {
		f.resp = l.result(data)
	}
	close(f.done)
}

func (l *fakeLog) result(data []byte) any {
	cmd := decodeCommand(l.t, data)
	if cmd.GetType() == fsmv1.CommandType_COMMAND_TYPE_BATCH {
		batch := &fsmv1.CommandBatch{}
		if err := proto.Unmarshal(cmd.GetPayload(), batch); err != nil {
			l.t.Fatal(err)
		}
		out := make(fsm.BatchResult, len(batch.GetCommands()))
		for i, c := range batch.GetCommands() {
			out[i] = l.result(c)
		}
		return out
	}
	if p := string(cmd.GetPayload()); strings.HasPrefix(p, "bad") {
		return fmt.Errorf("refused %s", p)
	} else {
		return "ok " + p
	}
}

// payloads lists the payloads an entry carries: one, or a batch's.
func (l *fakeLog) payloads(i int) []string {
	l.mu.Lock()
	data := l.entries[i]
	l.mu.Unlock()
	cmd := decodeCommand(l.t, data)
	if cmd.GetType() != fsmv1.CommandType_COMMAND_TYPE_BATCH {
		return []string{string(cmd.GetPayload())}
	}
	batch := &fsmv1.CommandBatch{}
	if err := proto.Unmarshal(cmd.GetPayload(), batch); err != nil {
		l.t.Fatal(err)
	}
	var out []string
	for _, c := range batch.GetCommands() {
		out = append(out, string(decodeCommand(l.t, c).GetPayload()))
	}
	return out
}

func decodeCommand(t *testing.T, data []byte) *fsmv1.Command {
	t.Helper()
	cmd := &fsmv1.Command{}
	if err := proto.Unmarshal(data, cmd); err != nil {
		t.Fatalf("entry is not a command: %v", err)
	}
	return cmd
}

// command encodes a put-typed command whose payload is s (the queue never
// looks inside).
func command(s string) []byte {
	data, err := proto.Marshal(&fsmv1.Command{Type: fsmv1.CommandType_COMMAND_TYPE_PUT, Payload: []byte(s)})
	if err != nil {
		panic(err)
	}
	return data
}

type outcome struct {
	res any
	err error
}

// startQueue runs a buffer over log until the test ends.
func startQueue(t *testing.T, log *fakeLog, batchable bool) *Buffer {
	q := newBuffer(t, log, batchable)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); q.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		<-done
	})
	return q
}

// submitted submits each payload with the given deadline, in order,
// waiting until each is queued or appended before the next, and returns
// channels of their outcomes, each of which fails the test if its callback
// is called twice.
func submitted(t *testing.T, q *Buffer, log *fakeLog, deadline time.Time, payloads ...string) []chan outcome {
	t.Helper()
	out := make([]chan outcome, len(payloads))
	for i, p := range payloads {
		out[i] = make(chan outcome, 2)
		data := command(p)
		var calls sync.Mutex
		n := 0
		q.Submit(data, deadline, func(res any, err error) {
			calls.Lock()
			n++
			if n > 1 {
				t.Errorf("%q called back %d times", p, n)
			}
			calls.Unlock()
			out[i] <- outcome{res, err}
		})
		if !log.sawProposal(q, data) {
			t.Fatalf("submitted %q is neither queued nor appended", p)
		}
	}
	return out
}

// proposeAsync proposes each payload on a goroutine of its own, in order,
// waiting until each is queued or appended before the next, and returns
// their outcomes.
func proposeAsync(ctx context.Context, q *Buffer, log *fakeLog, payloads ...string) []chan outcome {
	log.t.Helper()
	out := make([]chan outcome, len(payloads))
	for i, p := range payloads {
		out[i] = make(chan outcome, 1)
		data := command(p)
		go func() {
			res, err := q.Propose(ctx, data)
			out[i] <- outcome{res, err}
		}()
		deadline := time.Now().Add(10 * time.Second)
		for !log.sawProposal(q, data) {
			if time.Now().After(deadline) {
				log.t.Fatalf("proposal %q was neither queued nor appended", p)
			}
			time.Sleep(time.Millisecond)
		}
	}
	return out
}

// sawProposal reports whether data is in q's queue, or was appended alone
// or in a batch.
func (l *fakeLog) sawProposal(q *Buffer, data []byte) bool {
	q.mu.Lock()
	for _, p := range q.queue {
		if string(p.data) == string(data) {
			q.mu.Unlock()
			return true
		}
	}
	q.mu.Unlock()
	l.mu.Lock()
	n := len(l.entries)
	l.mu.Unlock()
	want := string(decodeCommand(l.t, data).GetPayload())
	for i := range n {
		for _, got := range l.payloads(i) {
			if got == want {
				return true
			}
		}
	}
	return false
}

// queueBehind starts a queue whose first entry ("first") is in flight while
// payloads are proposed, then lets that entry commit. The payloads are then
// in the queue or being appended; it returns the log, and their outcomes.
func queueBehind(t *testing.T, batchable bool, payloads ...string) (*fakeLog, []chan outcome) {
	t.Helper()
	log := newFakeLog(t)
	q := startQueue(t, log, batchable)
	ctx := context.Background()
	first := proposeAsync(ctx, q, log, "first")
	log.waitEntries(1)
	rest := proposeAsync(ctx, q, log, payloads...)
	log.release(0)
	if o := <-first[0]; o.err != nil || o.res != "ok first" {
		t.Fatalf("first: %v, %v", o.res, o.err)
	}
	log.mu.Lock()
	entry := log.entries[0]
	log.mu.Unlock()
	if cmd := decodeCommand(t, entry); cmd.GetType() == fsmv1.CommandType_COMMAND_TYPE_BATCH {
		t.Fatal("a lone proposal was wrapped in a batch")
	}
	return log, rest
}

func TestBufferGroupsWhatQueuesDuringACommit(t *testing.T) {
	// While the first entry is being committed, three more queue up.
	log, rest := queueBehind(t, true, "b", "bad c", "d")
	log.waitEntries(2)
	if got := log.payloads(1); strings.Join(got, ",") != "b,bad c,d" {
		t.Fatalf("second entry carries %q, want b, bad c and d in order", got)
	}
	log.release(1)
	want := []outcome{{"ok b", nil}, {nil, errors.New("refused bad c")}, {"ok d", nil}}
	for i, ch := range rest {
		o := <-ch
		if fmt.Sprint(o.res) != fmt.Sprint(want[i].res) || fmt.Sprint(o.err) != fmt.Sprint(want[i].err) {
			t.Errorf("proposal %d: got (%v, %v), want (%v, %v)", i, o.res, o.err, want[i].res, want[i].err)
		}
	}
	// The queue reports an entry's proposals after appending it and before
	// answering them, so once every answer is in, so are the reports.
	log.mu.Lock()
	if fmt.Sprint(log.sizes) != "[1 3]" {
		t.Errorf("reported proposals per entry %v, want [1 3]", log.sizes)
	}
	log.mu.Unlock()
}

func TestBufferWithoutBatchesGivesEachProposalAnEntry(t *testing.T) {
	log, rest := queueBehind(t, false, "b", "c")
	log.waitEntries(3)
	for i, want := range []string{"first", "b", "c"} {
		if got := log.payloads(i); len(got) != 1 || got[0] != want {
			t.Errorf("entry %d carries %q, want only %q", i, got, want)
		}
	}
	log.release(1)
	log.release(2)
	for i, ch := range rest {
		if o := <-ch; o.err != nil || o.res != "ok "+[]string{"b", "c"}[i] {
			t.Errorf("proposal %d: %v, %v", i, o.res, o.err)
		}
	}
}

func TestBufferCapsABatch(t *testing.T) {
	big := strings.Repeat("x", MaxBatchBytes/3)
	payloads := []string{"1" + big, "2" + big, "3" + big, "4" + big}
	log, rest := queueBehind(t, true, payloads...)
	log.waitEntries(2)
	if got := len(log.payloads(1)); got != 2 {
		t.Fatalf("the first batch carries %d proposals of a third of the cap each, want 2", got)
	}
	log.release(1)
	log.waitEntries(3)
	if got := len(log.payloads(2)); got != 2 {
		t.Fatalf("the second batch carries %d proposals, want the other 2", got)
	}
	log.release(2)
	for i, ch := range rest {
		if o := <-ch; o.err != nil || o.res != "ok "+payloads[i] {
			t.Errorf("proposal %d: err %v", i, o.err)
		}
	}
}

func TestBufferWithdrawsAProposalWhoseContextEndsInTheQueue(t *testing.T) {
	log := newFakeLog(t)
	q := startQueue(t, log, true)

	first := proposeAsync(context.Background(), q, log, "a")
	log.waitEntries(1)
	ctx, cancel := context.WithCancel(context.Background())
	queued := proposeAsync(ctx, q, log, "withdrawn")
	cancel()
	o := <-queued[0]
	if !errors.Is(o.err, ErrNotApplied) || !errors.Is(o.err, context.Canceled) {
		t.Fatalf("queued proposal whose context ended: %v, want ErrNotApplied and Canceled", o.err)
	}
	// One already appended is in raft's hands: its outcome is unknown.
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	inLog := proposeAsync(ctx2, q, log, "in log")
	log.release(0)
	<-first[0]
	log.waitEntries(2)
	cancel2()
	if o := <-inLog[0]; !errors.Is(o.err, ErrOutcomeUnknown) {
		t.Fatalf("appended proposal whose context ended: %v, want ErrOutcomeUnknown", o.err)
	}
	log.release(1)
	if got := log.payloads(1); len(got) != 1 || got[0] != "in log" {
		t.Errorf("second entry carries %q; the withdrawn proposal must not reach the log", got)
	}
}

func TestBufferAnswersRaftErrorsToTheWholeBatch(t *testing.T) {
	log, rest := queueBehind(t, true, "b", "c")
	log.waitEntries(2)
	log.fail = raft.ErrLeadershipLost
	log.release(1)
	for i, ch := range rest {
		if o := <-ch; !errors.Is(o.err, ErrOutcomeUnknown) || !errors.Is(o.err, raft.ErrLeadershipLost) {
			t.Errorf("proposal %d: %v, want ErrOutcomeUnknown from a lost leadership", i, o.err)
		}
	}
}

func TestBufferRefusesProposalsOnceStopped(t *testing.T) {
	log := newFakeLog(t)
	q := newBuffer(t, log, true)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); q.Run(ctx) }()

	first := proposeAsync(context.Background(), q, log, "a")
	log.waitEntries(1)
	queued := proposeAsync(context.Background(), q, log, "b")
	stop()
	log.release(0) // Run finishes the entry it is committing, then stops
	<-done
	if o := <-first[0]; o.err != nil {
		t.Errorf("the entry in flight at stop: %v", o.err)
	}
	if o := <-queued[0]; !errors.Is(o.err, ErrNotApplied) || !errors.Is(o.err, errStopped) {
		t.Errorf("queued at stop: %v, want ErrNotApplied and the buffer's stop error", o.err)
	}
	if _, err := q.Propose(context.Background(), command("late")); !errors.Is(err, ErrNotApplied) {
		t.Errorf("proposed after stop: %v, want ErrNotApplied", err)
	}
	if n := len(log.entries); n != 1 {
		t.Errorf("%d entries appended, want only the one in flight at stop", n)
	}
}

// A submitted proposal is answered by a callback with what Propose would
// return, and shares entries with waiting ones.
func TestBufferCallsSubmittedProposalsBack(t *testing.T) {
	log := newFakeLog(t)
	q := startQueue(t, log, true)
	first := proposeAsync(context.Background(), q, log, "first")
	log.waitEntries(1)
	far := time.Now().Add(time.Minute)
	subs := submitted(t, q, log, far, "b", "bad c")
	waiting := proposeAsync(context.Background(), q, log, "d")
	log.release(0)
	<-first[0]
	log.waitEntries(2)
	if got := log.payloads(1); strings.Join(got, ",") != "b,bad c,d" {
		t.Fatalf("second entry carries %q, want b, bad c and d", got)
	}
	log.release(1)
	want := []outcome{{"ok b", nil}, {nil, errors.New("refused bad c")}}
	for i, ch := range subs {
		if o := <-ch; fmt.Sprint(o.res) != fmt.Sprint(want[i].res) || fmt.Sprint(o.err) != fmt.Sprint(want[i].err) {
			t.Errorf("submitted %d: (%v, %v), want (%v, %v)", i, o.res, o.err, want[i].res, want[i].err)
		}
	}
	if o := <-waiting[0]; o.res != "ok d" {
		t.Errorf("waiting proposal: %v", o)
	}
	if left := q.timers.Len(); left != 0 {
		t.Errorf("%d deadlines still tracked after their proposals were answered", left)
	}
}

// At its deadline a submitted proposal is answered as Propose answers one
// whose context ends: withdrawn if still queued, of unknown outcome once
// appended, and not answered again when its entry commits later.
func TestBufferAnswersSubmittedProposalsAtTheirDeadline(t *testing.T) {
	log := newFakeLog(t)
	q := startQueue(t, log, true)
	first := proposeAsync(context.Background(), q, log, "a")
	log.waitEntries(1)
	start := time.Now()
	queued := submitted(t, q, log, start.Add(50*time.Millisecond), "withdrawn")
	var o outcome
	select {
	case o = <-queued[0]:
	case <-time.After(10 * time.Second):
		t.Fatal("a queued proposal past its deadline was not answered")
	}
	if !errors.Is(o.err, ErrNotApplied) || !errors.Is(o.err, context.DeadlineExceeded) {
		t.Fatalf("queued past its deadline: %v, want ErrNotApplied and DeadlineExceeded", o.err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("answered %v after submitting, for a 50ms deadline", took)
	}

	// Appended (in entry 2) well before its deadline, which then passes
	// while the entry is being committed.
	inLog := submitted(t, q, log, time.Now().Add(2*time.Second), "in log")
	log.release(0)
	<-first[0]
	log.waitEntries(2)
	if o := <-inLog[0]; !errors.Is(o.err, ErrOutcomeUnknown) || !errors.Is(o.err, context.DeadlineExceeded) {
		t.Fatalf("appended past its deadline: %v, want ErrOutcomeUnknown", o.err)
	}
	log.release(1) // its callback must not run again (submitted checks)
	if got := log.payloads(1); len(got) != 1 || got[0] != "in log" {
		t.Errorf("second entry carries %q; the withdrawn proposal must not reach the log", got)
	}
	// Give a second callback the time to show up.
	select {
	case o := <-inLog[0]:
		t.Fatalf("answered again once committed: %v", o)
	case <-time.After(50 * time.Millisecond):
	}
}

func TestBufferRefusesSubmittedProposalsOnceStopped(t *testing.T) {
	log := newFakeLog(t)
	q := newBuffer(t, log, true)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); q.Run(ctx) }()
	first := proposeAsync(context.Background(), q, log, "a")
	log.waitEntries(1)
	queued := submitted(t, q, log, time.Now().Add(time.Minute), "b")
	stop()
	log.release(0)
	<-done
	<-first[0]
	if o := <-queued[0]; !errors.Is(o.err, ErrNotApplied) || !errors.Is(o.err, errStopped) {
		t.Errorf("submitted and queued at stop: %v, want ErrNotApplied and the stop error", o.err)
	}
	late := make(chan error, 1)
	q.Submit(command("late"), time.Now().Add(time.Minute), func(_ any, err error) { late <- err })
	if err := <-late; !errors.Is(err, ErrNotApplied) {
		t.Errorf("submitted after stop: %v, want ErrNotApplied", err)
	}
}

func TestOutcome(t *testing.T) {
	for _, tt := range []struct {
		err  error
		want error
	}{
		{raft.ErrNotLeader, ErrNotApplied},
		{raft.ErrLeadershipTransferInProgress, ErrNotApplied},
		{raft.ErrEnqueueTimeout, ErrNotApplied},
		{raft.ErrLeadershipLost, ErrOutcomeUnknown},
		{raft.ErrRaftShutdown, ErrOutcomeUnknown},
		{errors.New("disk on fire"), ErrOutcomeUnknown},
	} {
		if got := Outcome(tt.err); !errors.Is(got, tt.want) || !errors.Is(got, tt.err) {
			t.Errorf("Outcome(%v) = %v, want %v wrapping it", tt.err, got, tt.want)
		}
	}
	if Outcome(nil) != nil {
		t.Error("Outcome(nil) is not nil")
	}
}
