package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// syncBuffer is a bytes.Buffer that a running command writes while the test
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// running is kvctl running in-process until stopped, as with Ctrl-C.
type running struct {
	out, errOut syncBuffer
	cancel      context.CancelFunc
	done        chan error
}

// startKvctl runs kvctl in the background with stdin; stop ends it.
func startKvctl(t *testing.T, stdin string, args ...string) *running {
	t.Helper()
	r := &running{done: make(chan error, 1)}
	cmd := newRootCmdWithEnv(strings.NewReader(stdin), &r.out, &r.errOut, func(string) (string, bool) { return "", false })
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	r.cancel = cancel
	go func() { r.done <- cmd.ExecuteContext(ctx) }()
	t.Cleanup(func() { _ = r.stop() })
	return r
}

// stop interrupts kvctl and returns its error.
func (r *running) stop() error {
	r.cancel()
	err, ok := <-r.done
	if ok {
		close(r.done)
	}
	return err
}

// waitOutput waits until kvctl has printed want on stdout, exactly.
func (r *running) waitOutput(t *testing.T, want string) {
	t.Helper()
	waitUntil(t, func() bool { return r.out.String() == want }, func() string {
		return "stdout " + strconvQuote(r.out.String()) + ", want " + strconvQuote(want) + "; stderr " + strconvQuote(r.errOut.String())
	})
}

func strconvQuote(s string) string { b, _ := json.Marshal(s); return string(b) }

// waitUntil polls cond, failing the test with what() after a while.
func waitUntil(t *testing.T, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out: %s", what())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitWatchers waits until f has received n watch create requests.
func waitWatchers(t *testing.T, f *fakeKVD, n int) {
	t.Helper()
	waitUntil(t, func() bool { return len(f.creates()) >= n }, func() string { return "watchers were not created" })
}

func TestWatchCommand(t *testing.T) {
	f := newFakeKVD("n1", 1)
	ep := serveFake(t, f)
	mustRun(t, ep, "", "put", "k1", "v0") // revision 2

	r := startKvctl(t, "", "--endpoints", ep, "watch", "k", "--prefix", "--prev-kv")
	waitWatchers(t, f, 1)
	mustRun(t, ep, "", "put", "k1", "v1")   // 3
	mustRun(t, ep, "", "put", "other", "x") // 4
	mustRun(t, ep, "", "del", "k1")         // 5
	mustRun(t, ep, "", "put", "k2", "v2")   // 6
	r.waitOutput(t, "PUT\nk1\nv0\nk1\nv1\nDELETE\nk1\nv1\nk1\n\nPUT\nk2\nv2\n")
	if err := r.stop(); err != nil {
		t.Errorf("interrupted watch: %v", err)
	}
	// share_responses: the SDK always asks (shared watch responses).
	want := &kvv1.WatchCreateRequest{Key: []byte("k"), RangeEnd: []byte("l"), PrevKv: true, ShareResponses: true}
	got := proto.CloneOf(f.creates()[0])
	got.WatchId = 0
	if !proto.Equal(got, want) {
		t.Errorf("create request %v, want %v", got, want)
	}

	// A range end, --rev and --progress-notify reach the request.
	r = startKvctl(t, "", "--endpoints", ep, "watch", "k1", "k3", "--rev", "3", "--progress-notify")
	r.waitOutput(t, "PUT\nk1\nv1\nDELETE\nk1\n\nPUT\nk2\nv2\n")
	if err := r.stop(); err != nil {
		t.Error(err)
	}
	want = &kvv1.WatchCreateRequest{Key: []byte("k1"), RangeEnd: []byte("k3"), StartRevision: 3, ProgressNotify: true, ShareResponses: true}
	got = proto.CloneOf(f.creates()[1])
	got.WatchId = 0
	if !proto.Equal(got, want) {
		t.Errorf("create request %v, want %v", got, want)
	}
}

func TestWatchJSON(t *testing.T) {
	f := newFakeKVD("n1", 1)
	ep := serveFake(t, f)
	mustRun(t, ep, "", "put", "k", "a") // 2
	mustRun(t, ep, "", "put", "k", "b") // 3

	r := startKvctl(t, "", "--endpoints", ep, "-w", "json", "watch", "k", "--rev", "2", "--prev-kv")
	waitUntil(t, func() bool { return strings.Count(r.out.String(), "\n") == 2 }, func() string { return r.out.String() })
	if err := r.stop(); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(r.out.String(), "\n"), "\n")
	var docs []jsonWatch
	for _, l := range lines {
		var d jsonWatch
		if err := json.Unmarshal([]byte(l), &d); err != nil {
			t.Fatalf("decode %q: %v", l, err)
		}
		docs = append(docs, d)
	}
	if len(docs) != 2 || docs[0].Header.Revision != 2 || docs[0].Events[0].Type != "PUT" || string(docs[0].Events[0].KV.Value) != "a" ||
		docs[0].Events[0].PrevKV != nil || string(docs[1].Events[0].PrevKV.Value) != "a" || docs[1].ProgressNotify || docs[1].Canceled {
		t.Errorf("json output:\n%s", r.out.String())
	}
	if !strings.Contains(lines[0], `"type":"PUT","kv":{"key":"aw==",`) {
		t.Errorf("first document %s", lines[0])
	}
}

func TestWatchCompacted(t *testing.T) {
	f := newFakeKVD("n1", 1)
	ep := serveFake(t, f)
	for _, v := range []string{"a", "b", "c"} {
		mustRun(t, ep, "", "put", "k", v) // 2, 3, 4
	}
	if out := mustRun(t, ep, "", "compaction", "3"); out != "compacted revision 3\n" {
		t.Errorf("compaction printed %q", out)
	}
	stdout, _, err := runKvctl(t, nil, "", "--endpoints", ep, "watch", "k", "--rev", "2")
	if err == nil || !strings.Contains(err.Error(), "the history it needs has been compacted (compact revision 3)") ||
		!strings.Contains(err.Error(), "required revision has been compacted") {
		t.Errorf("watch from a compacted revision: %v", err)
	}
	if stdout != "" {
		t.Errorf("stdout %q", stdout)
	}
	stdout, _, err = runKvctl(t, nil, "", "--endpoints", ep, "-w", "json", "watch", "k", "--rev", "2")
	var d jsonWatch
	if err == nil || json.Unmarshal([]byte(stdout), &d) != nil || !d.Canceled || d.CompactRevision != 3 {
		t.Errorf("json: %q, %v", stdout, err)
	}
}

func TestWatchExec(t *testing.T) {
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no sh")
	}
	f := newFakeKVD("n1", 1)
	ep := serveFake(t, f)
	r := startKvctl(t, "", "--endpoints", ep, "watch", "k", "--",
		"sh", "-c", `echo "$ETCD_WATCH_REVISION $ETCD_WATCH_EVENT_TYPE $ETCD_WATCH_KEY $ETCD_WATCH_VALUE"`)
	waitWatchers(t, f, 1)
	mustRun(t, ep, "", "put", "k", "hello world") // 2
	mustRun(t, ep, "", "del", "k")                // 3
	r.waitOutput(t, "PUT\nk\nhello world\n"+`2 "PUT" "k" "hello world"`+"\nDELETE\nk\n\n"+`3 "DELETE" "k" ""`+"\n")
	if err := r.stop(); err != nil {
		t.Error(err)
	}

	// A command that fails ends the watch.
	_, _, err := runKvctl(t, nil, "", "--endpoints", ep, "watch", "k", "--rev", "2", "--", "false")
	if err == nil || !strings.Contains(err.Error(), `command ["false"] failed`) {
		t.Errorf("failing command: %v", err)
	}
}

func TestWatchInteractive(t *testing.T) {
	f := newFakeKVD("n1", 1)
	ep := serveFake(t, f)
	stdin := "watch a\n\nwatch --prefix b --prev-kv\nbogus\nwatch\nwatch --rev x a\nprogress\n"
	r := startKvctl(t, stdin, "--endpoints", ep, "watch", "-i")
	waitUntil(t, func() bool { return strings.Count(r.out.String(), "progress notify: 1\n") == 2 },
		func() string { return r.out.String() + r.errOut.String() })
	mustRun(t, ep, "", "put", "a", "1")   // 2
	mustRun(t, ep, "", "put", "b/x", "2") // 3
	waitUntil(t, func() bool {
		out := r.out.String()
		return strings.Contains(out, "PUT\na\n1\n") && strings.Contains(out, "PUT\nb/x\n2\n")
	}, func() string { return r.out.String() })
	if err := r.stop(); err != nil {
		t.Errorf("interrupted: %v", err)
	}
	if n := len(f.creates()); n != 2 {
		t.Errorf("%d watchers, want 2", n)
	}
	for _, want := range []string{
		`Invalid command "bogus" (only watch and progress are supported)`,
		`Invalid command "watch" (watch needs a key and an optional range end, got 0 arguments)`,
		`Invalid command "watch --rev x a" (invalid argument "x" for "--rev" flag`,
	} {
		if !strings.Contains(r.errOut.String(), want) {
			t.Errorf("stderr lacks %q:\n%s", want, r.errOut.String())
		}
	}

	// Without a watch, the end of stdin ends the command.
	if _, _, err := runKvctl(t, nil, "progress\n", "--endpoints", ep, "watch", "-i"); err != nil {
		t.Errorf("stdin with no watch: %v", err)
	}
}

func TestCompactionCommand(t *testing.T) {
	f := newFakeKVD("n1", 1)
	ep := serveFake(t, f)
	for range 4 {
		mustRun(t, ep, "", "put", "k", "v") // 2 to 5
	}
	if out := mustRun(t, ep, "", "compaction", "3"); out != "compacted revision 3\n" {
		t.Errorf("compaction printed %q", out)
	}
	out := mustRun(t, ep, "", "-w", "json", "compaction", "4", "--physical")
	if out != `{"header":{"cluster_id":100,"member_id":1,"revision":5,"raft_term":3},"revision":4}`+"\n" {
		t.Errorf("json compaction printed %q", out)
	}
	f.mu.Lock()
	got := f.compactions
	f.mu.Unlock()
	if len(got) != 2 || got[0].Revision != 3 || got[0].Physical || got[1].Revision != 4 || !got[1].Physical {
		t.Errorf("compactions %v", got)
	}
	for _, tt := range []struct{ rev, want string }{
		{"99", "required revision is a future revision"},
		{"2", "required revision has been compacted"},
	} {
		if _, _, err := runKvctl(t, nil, "", "--endpoints", ep, "compaction", tt.rev); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("compaction %s: %v, want %q", tt.rev, err, tt.want)
		}
	}
}

func TestDefragCommand(t *testing.T) {
	f1, f2 := newFakeKVD("n1", 1), newFakeKVD("n2", 2)
	ep1, ep2 := serveFake(t, f1), serveFake(t, f2)
	out := mustRun(t, ep1+","+ep2, "", "defrag")
	want := regexp.MustCompile(`^Finished defragmenting member ` + regexp.QuoteMeta(ep1) + ` \(20 kB -> 12 kB\) in [0-9.]+[µm]?s\n` +
		`Finished defragmenting member ` + regexp.QuoteMeta(ep2) + ` \(20 kB -> 12 kB\) in [0-9.]+[µm]?s\n$`)
	if !want.MatchString(out) {
		t.Errorf("defrag printed %q", out)
	}

	f2.mu.Lock()
	f2.defragErr = errBrokenPipe
	f2.mu.Unlock()
	stdout, stderr, err := runKvctl(t, nil, "", "--endpoints", ep1+","+ep2, "-w", "json", "defrag")
	if err == nil || !strings.Contains(err.Error(), "failed to defragment 1 of 2 members") {
		t.Errorf("error %v", err)
	}
	var got []jsonDefrag
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("decode %q: %v (%s)", stdout, err, stderr)
	}
	if len(got) != 2 || got[0].DBSizeBefore != 20480 || got[0].DBSize != 12288 || got[0].Error != "" || got[1].Error == "" {
		t.Errorf("json %s", stdout)
	}
	_, stderr, _ = runKvctl(t, nil, "", "--endpoints", ep2, "defrag")
	if !strings.HasPrefix(stderr, "Failed to defragment member "+ep2+" after ") || !strings.Contains(stderr, "broken pipe") {
		t.Errorf("stderr %q", stderr)
	}

	// --cluster: every member with a client address.
	for _, f := range []*fakeKVD{f1, f2} {
		f.setMembers(&kvv1.Member{Id: 1, Name: "n1", ClientAddr: ep1}, &kvv1.Member{Id: 3, Name: "n3"})
	}
	stdout, stderr, err = runKvctl(t, nil, "", "--endpoints", ep2, "defrag", "--cluster")
	if err != nil || !strings.HasPrefix(stdout, "Finished defragmenting member "+ep1+" ") || strings.Count(stdout, "\n") != 1 ||
		!strings.Contains(stderr, "Skipping member n3") {
		t.Errorf("defrag --cluster: %v, stdout %q, stderr %q", err, stdout, stderr)
	}
}
