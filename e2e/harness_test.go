package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kvd-io/kvd/internal/poll"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds kvd, kvctl and kvdutil once per test binary run.
func binaries(t *testing.T) (kvd, kvctl, kvdutil string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "kvd-e2e-bin")
		if buildErr != nil {
			return
		}
		for _, pkg := range []string{"kvd", "kvctl", "kvdutil"} {
			cmd := exec.Command("go", "build", "-race", "-o", filepath.Join(binDir, pkg), "github.com/kvd-io/kvd/cmd/"+pkg)
			if out, err := cmd.CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("build %s: %v\n%s", pkg, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "kvd"), filepath.Join(binDir, "kvctl"), filepath.Join(binDir, "kvdutil")
}

func TestMain(m *testing.M) {
	if os.Getenv(lockHolderEnv) != "" {
		os.Exit(runLockHolder()) // this process is a test's lock holder
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

var (
	portsMu sync.Mutex
	// handedOut holds every port freePorts returned, so that tests running
	// in parallel never get the same one while a kvd has yet to bind it.
	handedOut = map[int]bool{}
)

// freePorts returns n distinct loopback ports that were free a moment ago
// and that no other test of this run was given.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	portsMu.Lock()
	defer portsMu.Unlock()
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for len(ports) < n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l) // held until all n are picked, so none repeats
		if p := l.Addr().(*net.TCPAddr).Port; !handedOut[p] {
			handedOut[p] = true
			ports = append(ports, p)
		}
	}
	return ports
}

// node is one kvd process.
type node struct {
	name, dir, clientAddr, raftAddr, httpAddr string
	args                                      []string
	logPath                                   string
	cmd                                       *exec.Cmd
	exited                                    chan struct{}
}

// cluster is a set of kvd processes on loopback.
type cluster struct {
	t          *testing.T
	kvdBin     string
	kvctlBin   string
	kvdutilBin string
	nodes      []*node
	conns      map[string]*grpc.ClientConn
	connsMu    sync.Mutex
	kvctlArgs  []string // before the command's own, in every kvctl run
}

// clusterOptions changes what newClusterWith starts.
type clusterOptions struct {
	// nodeArgs, when set, returns more kvd flags for the founding member
	// named name (n1, n2, ...).
	nodeArgs func(name string) []string
	// kvctlArgs are given to every kvctl the harness runs, such as the
	// TLS flags a TLS cluster needs.
	kvctlArgs []string
}

func newCluster(t *testing.T, n int) *cluster {
	t.Helper()
	return newClusterWith(t, n, clusterOptions{})
}

func newClusterWith(t *testing.T, n int, opts clusterOptions) *cluster {
	t.Helper()
	kvd, kvctl, kvdutil := binaries(t)
	c := &cluster{t: t, kvdBin: kvd, kvctlBin: kvctl, kvdutilBin: kvdutil, conns: map[string]*grpc.ClientConn{}, kvctlArgs: opts.kvctlArgs}
	ports := freePorts(t, 3*n)
	dir := t.TempDir()
	var initial []string
	for i := 0; i < n; i++ {
		nd := &node{
			name:       fmt.Sprintf("n%d", i+1),
			clientAddr: fmt.Sprintf("127.0.0.1:%d", ports[3*i]),
			raftAddr:   fmt.Sprintf("127.0.0.1:%d", ports[3*i+1]),
			httpAddr:   fmt.Sprintf("127.0.0.1:%d", ports[3*i+2]),
		}
		nd.dir = filepath.Join(dir, nd.name)
		nd.logPath = filepath.Join(dir, nd.name+".log")
		initial = append(initial, nd.name+"="+nd.raftAddr)
		c.nodes = append(c.nodes, nd)
	}
	for _, nd := range c.nodes {
		nd.args = []string{"--name", nd.name, "--data-dir", nd.dir, "--client-addr", nd.clientAddr,
			"--raft-addr", nd.raftAddr, "--http-addr", nd.httpAddr, "--initial-cluster", strings.Join(initial, ",")}
		if opts.nodeArgs != nil {
			nd.args = append(nd.args, opts.nodeArgs(nd.name)...)
		}
		c.start(nd)
	}
	t.Cleanup(func() {
		for _, nd := range c.nodes {
			c.kill(nd)
		}
		for _, conn := range c.conns {
			conn.Close()
		}
		if t.Failed() {
			for _, nd := range c.nodes {
				b, _ := os.ReadFile(nd.logPath)
				t.Logf("---- log of %s (last 3000 bytes) ----\n%s", nd.name, tail(b, 3000))
			}
		}
	})
	return c
}

// addNode creates a node (not started) that joins the cluster through the
// client addresses of the given members, with extra kvd flags.
func (c *cluster) addNode(name string, join []*node, extra ...string) *node {
	c.t.Helper()
	ports := freePorts(c.t, 3)
	nd := &node{
		name:       name,
		clientAddr: fmt.Sprintf("127.0.0.1:%d", ports[0]),
		raftAddr:   fmt.Sprintf("127.0.0.1:%d", ports[1]),
		httpAddr:   fmt.Sprintf("127.0.0.1:%d", ports[2]),
	}
	base := filepath.Dir(c.nodes[0].dir)
	nd.dir = filepath.Join(base, name)
	nd.logPath = filepath.Join(base, name+".log")
	var addrs []string
	for _, j := range join {
		addrs = append(addrs, j.clientAddr)
	}
	nd.args = append([]string{"--name", name, "--data-dir", nd.dir, "--client-addr", nd.clientAddr,
		"--raft-addr", nd.raftAddr, "--http-addr", nd.httpAddr, "--join", strings.Join(addrs, ",")}, extra...)
	c.nodes = append(c.nodes, nd)
	return nd
}

// endpointsOf joins the client addresses of nodes.
func endpointsOf(nodes ...*node) string {
	var eps []string
	for _, nd := range nodes {
		eps = append(eps, nd.clientAddr)
	}
	return strings.Join(eps, ",")
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

func (c *cluster) start(nd *node) {
	c.t.Helper()
	logf, err := os.OpenFile(nd.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(c.kvdBin, nd.args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		c.t.Fatalf("start %s: %v", nd.name, err)
	}
	nd.cmd = cmd
	nd.exited = make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(nd.exited)
	}()
}

// kill sends SIGKILL and waits for the process to be gone.
func (c *cluster) kill(nd *node) {
	if nd.cmd == nil {
		return
	}
	_ = nd.cmd.Process.Signal(syscall.SIGKILL)
	<-nd.exited
	nd.cmd = nil
}

func (c *cluster) endpoints() string {
	var eps []string
	for _, nd := range c.nodes {
		eps = append(eps, nd.clientAddr)
	}
	return strings.Join(eps, ",")
}

func (c *cluster) kv(nd *node) kvv1.KVServiceClient {
	c.connsMu.Lock()
	defer c.connsMu.Unlock()
	conn, ok := c.conns[nd.clientAddr]
	if !ok {
		var err error
		conn, err = grpc.NewClient(nd.clientAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			c.t.Fatal(err)
		}
		c.conns[nd.clientAddr] = conn
	}
	return kvv1.NewKVServiceClient(conn)
}

// kvctl runs the CLI against the given endpoints and returns its stdout.
func (c *cluster) kvctl(stdin string, endpoints string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	full := append(append([]string{"--endpoints", endpoints}, c.kvctlArgs...), args...)
	cmd := exec.CommandContext(ctx, c.kvctlBin, full...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.Stdin = strings.NewReader(stdin)
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("kvctl %v: %v: %s", args, err, errb.String())
	}
	return out.String(), nil
}

// kvdutil runs the offline tool and returns its stdout.
func (c *cluster) kvdutil(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, c.kvdutilBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("kvdutil %v: %v: %s", args, err, errb.String())
	}
	return out.String(), nil
}

// status is one entry of `kvctl endpoint status -w json`.
type memberStatus struct {
	Endpoint     string `json:"endpoint"`
	Name         string `json:"name"`
	Leader       string `json:"leader"`
	IsLeader     bool   `json:"is_leader"`
	Term         uint64 `json:"term"`
	CommitIndex  uint64 `json:"commit_index"`
	AppliedIndex uint64 `json:"applied_index"`
	Revision     int64  `json:"revision"`
}

func (c *cluster) statuses(endpoints string) ([]memberStatus, error) {
	out, err := c.kvctl("", endpoints, "endpoint", "status", "-w", "json")
	if err != nil {
		return nil, err
	}
	var st []memberStatus
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		return nil, fmt.Errorf("decode %q: %w", out, err)
	}
	return st, nil
}

// waitLeader waits until every running node agrees on one leader and the
// leader serves a linearizable read; it returns the leader's node.
func (c *cluster) waitLeader(timeout time.Duration, running []*node) *node {
	c.t.Helper()
	var eps []string
	for _, nd := range running {
		eps = append(eps, nd.clientAddr)
	}
	var leader *node
	eventually(c.t, timeout, func() error {
		st, err := c.statuses(strings.Join(eps, ","))
		if err != nil {
			return err
		}
		name := st[0].Leader
		for _, s := range st {
			if s.Leader == "" || s.Leader != name {
				return fmt.Errorf("no agreed leader: %+v", st)
			}
		}
		for _, nd := range running {
			if nd.name == name {
				leader = nd
			}
		}
		if leader == nil {
			return fmt.Errorf("leader %s is not among the running nodes", name)
		}
		_, err = c.kvctl("", leader.clientAddr, "get", "e2e-probe")
		return err
	})
	return leader
}

// eventually polls fn until it returns nil, failing the test with fn's
// last error after timeout. Its checks run kvctl, so it polls less often
// than poll.Interval.
func eventually(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := poll.Until(ctx, 50*time.Millisecond, fn); err != nil {
		t.Fatalf("%v", err)
	}
}
