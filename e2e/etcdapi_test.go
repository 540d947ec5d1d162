package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The harness of the tests that run etcd's own tools (etcdctl) against
// kvd's etcd v3 API. The same tests run against real etcd when
// KVD_E2E_ETCD names an etcd binary: that checks the tests themselves,
// since whatever etcd prints is by definition what the tools expect.

const (
	// etcdctlEnv names the etcdctl binary (make unit sets it to the one
	// `make etcdctl` builds). Unset, ../bin/etcdctl is used if it exists.
	etcdctlEnv = "KVD_E2E_ETCDCTL"
	// etcdEnv, when set, names an etcd binary to run the tests against
	// instead of kvd.
	etcdEnv = "KVD_E2E_ETCD"
)

// etcdctlBinary returns the etcdctl to run, or skips the test when none was
// built. A binary named by KVD_E2E_ETCDCTL must exist: make unit sets it
// after building one, so a missing file there is a broken build, not an
// opted-out test.
func etcdctlBinary(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(etcdctlEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", etcdctlEnv, p, err)
		}
		return p
	}
	p, err := filepath.Abs(filepath.Join("..", "bin", "etcdctl"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("etcdctl is not built (%s): run `make etcdctl`, or set %s (make test builds it)", p, etcdctlEnv)
	}
	return p
}

// etcdAPICluster is three members that serve etcd's v3 API on their client
// addresses.
type etcdAPICluster struct {
	// kind is "kvd" or "etcd".
	kind string
	// endpoints are the members' client addresses (host:port), in the
	// order of names.
	endpoints []string
	names     []string
	// kvd is the kvd cluster; nil when the members are etcd.
	kvd *cluster
	// kills SIGKILLs member i and waits for it to be gone.
	kill func(i int)
}

// newEtcdAPICluster starts three kvd members, or three etcd members when
// KVD_E2E_ETCD is set. A kvd cluster has a leader when it returns.
func newEtcdAPICluster(t *testing.T) *etcdAPICluster {
	t.Helper()
	if bin := os.Getenv(etcdEnv); bin != "" {
		return startEtcd(t, bin, 3)
	}
	// bcrypt's least cost: every etcdctl --user authenticates, and the
	// race-detector build of kvd takes about a second per password check
	// at the default cost.
	c := newClusterWith(t, 3, clusterOptions{nodeArgs: func(string) []string { return []string{"--bcrypt-cost", "4"} }})
	c.waitLeader(60*time.Second, c.nodes)
	ec := &etcdAPICluster{kind: "kvd", kvd: c, kill: func(i int) { c.kill(c.nodes[i]) }}
	for _, nd := range c.nodes {
		ec.endpoints = append(ec.endpoints, nd.clientAddr)
		ec.names = append(ec.names, nd.name)
	}
	return ec
}

// leader returns the index of the leader: kvd's, or the first member of
// an etcd cluster (whose leader the harness does not look up).
func (ec *etcdAPICluster) leader(t *testing.T) int {
	t.Helper()
	if ec.kvd == nil {
		return 0
	}
	ld := ec.kvd.waitLeader(60*time.Second, ec.kvd.nodes)
	return slices.Index(ec.kvd.nodes, ld)
}

// waitServing waits until each member takes a write through etcdctl: all
// of them serve the etcd API and the cluster has a leader.
func (ec *etcdAPICluster) waitServing(t *testing.T, ctl *etcdctl) {
	t.Helper()
	eventually(t, 60*time.Second, func() error {
		for _, ep := range ec.endpoints {
			if _, err := ctl.at(ep).run("", "put", "/e2e/ready", ep); err != nil {
				return err
			}
		}
		return nil
	})
}

// startEtcd runs n etcd members on loopback until the test ends.
func startEtcd(t *testing.T, bin string, n int) *etcdAPICluster {
	t.Helper()
	ports := freePorts(t, 2*n)
	dir := t.TempDir()
	ec := &etcdAPICluster{kind: "etcd"}
	var initial []string
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("e%d", i+1)
		ec.names = append(ec.names, name)
		ec.endpoints = append(ec.endpoints, fmt.Sprintf("127.0.0.1:%d", ports[2*i]))
		initial = append(initial, fmt.Sprintf("%s=http://127.0.0.1:%d", name, ports[2*i+1]))
	}
	var kills []func()
	ec.kill = func(i int) { kills[i]() }
	for i, name := range ec.names {
		logPath := filepath.Join(dir, name+".log")
		logf, err := os.Create(logPath)
		if err != nil {
			t.Fatal(err)
		}
		peer := fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1])
		cmd := exec.Command(bin, "--name", name, "--data-dir", filepath.Join(dir, name),
			"--listen-client-urls", "http://"+ec.endpoints[i], "--advertise-client-urls", "http://"+ec.endpoints[i],
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new", "--log-level", "error")
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatalf("start etcd %s: %v", name, err)
		}
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
		kills = append(kills, func() { _ = cmd.Process.Signal(syscall.SIGKILL); <-done })
		t.Cleanup(func() {
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
			if t.Failed() {
				b, _ := os.ReadFile(logPath)
				t.Logf("---- log of etcd %s (last 3000 bytes) ----\n%s", name, tail(b, 3000))
			}
		})
	}
	return ec
}

// etcdctl runs etcdctl processes against a set of endpoints.
type etcdctl struct {
	bin       string
	endpoints []string
	// extra flags before each command's own, such as --user.
	extra []string
}

// at returns an etcdctl that talks to the given endpoints only.
func (e *etcdctl) at(endpoints ...string) *etcdctl {
	c := *e
	c.endpoints = endpoints
	return &c
}

// as returns an etcdctl that authenticates as user:password.
func (e *etcdctl) as(userPassword string) *etcdctl {
	c := *e
	c.extra = append(append([]string(nil), e.extra...), "--user", userPassword)
	return &c
}

func (e *etcdctl) command(ctx context.Context, args ...string) *exec.Cmd {
	full := append([]string{"--endpoints", strings.Join(e.endpoints, ","), "--dial-timeout", "5s", "--command-timeout", "30s"}, e.extra...)
	return exec.CommandContext(ctx, e.bin, append(full, args...)...)
}

// ctlError is a failed etcdctl run: its exit code and what it printed.
type ctlError struct {
	args   []string
	code   int
	stdout string
	stderr string
	err    error
}

func (e *ctlError) Error() string {
	return fmt.Sprintf("etcdctl %s: %v (exit %d)\nstdout: %s\nstderr: %s", strings.Join(e.args, " "), e.err, e.code, e.stdout, tail([]byte(e.stderr), 2000))
}

// run runs one etcdctl command with stdin and returns its stdout; an error
// is a *ctlError.
func (e *etcdctl) run(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := e.command(ctx, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Stdin = strings.NewReader(stdin)
	if err := cmd.Run(); err != nil {
		return out.String(), &ctlError{args: args, code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errb.String(), err: err}
	}
	return out.String(), nil
}

// ok runs a command that must succeed and returns its stdout.
func (e *etcdctl) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, err := e.run("", args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// want runs a command that must succeed and print exactly want.
func (e *etcdctl) want(t *testing.T, want string, args ...string) {
	t.Helper()
	if got := e.ok(t, args...); got != want {
		t.Fatalf("etcdctl %s printed\n%q\nwant\n%q", strings.Join(args, " "), got, want)
	}
}

// fails runs a command that must fail with an error containing msg (etcd's
// error text, which clients match) and returns the error.
func (e *etcdctl) fails(t *testing.T, msg string, args ...string) *ctlError {
	t.Helper()
	out, err := e.run("", args...)
	if err == nil {
		t.Fatalf("etcdctl %s succeeded, printing %q; want an error with %q", strings.Join(args, " "), out, msg)
	}
	ce := err.(*ctlError)
	if !regexp.MustCompile(`(?m)^Error: .*` + regexp.QuoteMeta(msg)).MatchString(ce.stderr) {
		t.Fatalf("etcdctl %s: want an error with %q, got %v", strings.Join(args, " "), msg, err)
	}
	return ce
}

// lines is a long-running etcdctl (watch, lock, elect) whose stdout is read
// line by line.
type lines struct {
	t      *testing.T
	args   []string
	cmd    *exec.Cmd
	cancel context.CancelFunc
	ch     chan string   // stdout's lines; closed at EOF
	done   chan struct{} // closed once the process was waited for
	err    error         // the exit error, set before done is closed
	stderr *syncBuffer
	seen   []string
}

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

// start runs etcdctl in the background until it exits or is stopped, at
// the latest when the test ends.
func (e *etcdctl) start(t *testing.T, args ...string) *lines {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	l := &lines{t: t, args: args, cmd: e.command(ctx, args...), cancel: cancel, ch: make(chan string, 4096), done: make(chan struct{}), stderr: &syncBuffer{}}
	l.cmd.Stderr = l.stderr
	out, err := l.cmd.StdoutPipe()
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if err := l.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			l.ch <- sc.Text()
		}
		close(l.ch)
		l.err = l.cmd.Wait() // after the last read from the pipe, as exec requires
		close(l.done)
	}()
	t.Cleanup(l.stop)
	return l
}

func (l *lines) name() string { return "etcdctl " + strings.Join(l.args, " ") }

// next returns the next line, failing the test when the process ends first
// or prints nothing within timeout.
func (l *lines) next(timeout time.Duration) string {
	l.t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case got, ok := <-l.ch:
		if !ok {
			l.t.Fatalf("%s ended after printing %q\nstderr: %s", l.name(), l.seen, tail([]byte(l.stderr.String()), 2000))
		}
		l.seen = append(l.seen, got)
		return got
	case <-timer.C:
		l.t.Fatalf("%s printed nothing more within %v (lines so far %q)\nstderr: %s", l.name(), timeout, l.seen, tail([]byte(l.stderr.String()), 2000))
		return ""
	}
}

// expect reads the next len(want) lines, which must be want, within
// timeout for each.
func (l *lines) expect(timeout time.Duration, want ...string) {
	l.t.Helper()
	for _, w := range want {
		if got := l.next(timeout); got != w {
			l.t.Fatalf("%s printed %q, want %q (lines so far %q, want %q)", l.name(), got, w, l.seen, want)
		}
	}
}

// quiet fails the test if the command prints a line or ends within d: it
// waits (for a lock, for leadership) and must go on waiting. This is the
// one place a test waits for a duration: it checks that nothing happens.
func (l *lines) quiet(d time.Duration) {
	l.t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case got, ok := <-l.ch:
		if ok {
			l.t.Fatalf("%s printed %q while it should still wait", l.name(), got)
		}
		l.t.Fatalf("%s ended while it should still wait\nstderr: %s", l.name(), l.stderr.String())
	case <-timer.C:
	}
}

// exit waits up to timeout for the process to exit by itself and returns
// its exit error; what it printed meanwhile goes to seen.
func (l *lines) exit(timeout time.Duration) error {
	l.t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-l.ch:
			if ok {
				l.seen = append(l.seen, line)
				continue
			}
			<-l.done
			return l.err
		case <-timer.C:
			l.t.Fatalf("%s did not exit within %v (lines so far %q)", l.name(), timeout, l.seen)
			return nil
		}
	}
}

// interrupt sends SIGINT, on which etcdctl lock and elect give up what they
// hold, and waits for the process to exit.
func (l *lines) interrupt(timeout time.Duration) error {
	l.t.Helper()
	_ = l.cmd.Process.Signal(syscall.SIGINT)
	return l.exit(timeout)
}

// stop kills the process if it still runs.
func (l *lines) stop() {
	defer l.cancel()
	select {
	case <-l.done:
		return
	default:
	}
	_ = l.cmd.Process.Signal(syscall.SIGKILL)
	for range l.ch {
	}
	<-l.done
}
