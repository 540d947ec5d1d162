// Package servertest builds in-process kvd clusters for tests: real members
// (package server) with real gRPC on loopback, joined by hashicorp/raft's
// in-memory transport so that tests can partition and heal them. The
// members run with fast raft timers (the constants below), so a cluster
// elects its first leader, and a new one after a failure, within a second.
package servertest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kvd-io/kvd/internal/poll"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/server"
)

// The raft timers members start with, half the daemon's LAN defaults
// (member.DefaultConfig), so that tests of elections, failovers and lease
// expiry do not wait seconds for each. They are no shorter because the
// tests run on loaded machines under the race detector: there a leader was
// seen to go 300 to 370ms without its followers' answers while all were
// healthy, and a shorter leader lease then deposes it in the middle of a
// test. Tests that reason about time (a lease's minimum TTL, how soon a
// leader is replaced) derive their bounds from these. WithConfig may change
// them.
const (
	// HeartbeatTimeout is how long a follower goes without hearing from the
	// leader before it stands for election.
	HeartbeatTimeout = 500 * time.Millisecond
	// ElectionTimeout is how long a candidate waits for votes.
	ElectionTimeout = 500 * time.Millisecond
	// LeaderLeaseTimeout is how long a leader goes without hearing from a
	// quorum before it steps down: the daemon's own.
	LeaderLeaseTimeout = 500 * time.Millisecond
	// CommitTimeout is how long raft waits before it sends a heartbeat that
	// carries the commit index when nothing else does.
	CommitTimeout = 5 * time.Millisecond
)

// StartTimeout bounds how long New and Start wait for a leader that serves.
const StartTimeout = 30 * time.Second

// Cluster is a set of in-process members.
type Cluster struct {
	t       reporter
	base    server.Config
	edit    func(name string, cfg *server.Config) // per member, at every start; may be nil
	dir     string                                // the members' data directories are in it
	ownDir  bool                                  // Close removes dir (Start made it)
	mu      sync.Mutex
	members map[string]*Member
	names   []string
}

// reporter is how a cluster fails: the test's testing.TB for New; for
// Start, which has no test, a panic (see Start).
type reporter interface {
	Helper()
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
}

// Member is one member of a Cluster.
type Member struct {
	Name    string
	Dir     string
	Server  *server.Server // nil while stopped
	addr    raft.ServerAddress
	trans   *raft.InmemTransport
	conn    *grpc.ClientConn
	clientA string
}

// Option changes the config members start with.
type Option func(*options)

type options struct {
	base server.Config
	edit []func(name string, cfg *server.Config)
}

// WithConfig applies fn to every member's config.
func WithConfig(fn func(*server.Config)) Option {
	return func(o *options) { fn(&o.base) }
}

// WithMemberConfig applies fn to a member's config each time it starts,
// after everything else is set (its RaftTransport included, which fn may
// wrap): for members that differ from the others.
func WithMemberConfig(fn func(name string, cfg *server.Config)) Option {
	return func(o *options) { o.edit = append(o.edit, fn) }
}

// newOptions is the config members start with: the server defaults with
// loopback listeners on free ports and the fast raft timers above, then
// opts.
func newOptions(verbose bool, opts []Option) options {
	base := server.DefaultConfig()
	base.ClientAddr = "127.0.0.1:0"
	base.HTTPAddr = "127.0.0.1:0"
	base.RequestTimeout = 5 * time.Second
	base.HeartbeatTimeout = HeartbeatTimeout
	base.ElectionTimeout = ElectionTimeout
	base.LeaderLeaseTimeout = LeaderLeaseTimeout
	base.CommitTimeout = CommitTimeout
	if verbose {
		base.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	} else {
		base.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	o := options{base: base}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

// New starts an n-member cluster and waits until it has a leader ready to
// serve. Members are stopped when the test ends.
func New(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	c := build(t, t.TempDir(), n, newOptions(testing.Verbose(), opts))
	t.Cleanup(c.Close)
	for _, name := range c.names {
		c.Start(name)
	}
	c.WaitReady(StartTimeout)
	return c
}

// Start starts an n-member cluster outside a test (in an Example, say) and
// waits until it has a leader ready to serve. The caller must Close it,
// which also removes its data. A method that would fail the test of a
// cluster built by New panics instead on a cluster built by Start.
func Start(n int, opts ...Option) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "servertest-")
	if err != nil {
		return nil, err
	}
	c := build(panicReporter{}, dir, n, newOptions(false, opts))
	c.ownDir = true
	for _, name := range c.names {
		if err := c.startMember(name, nil); err != nil {
			c.Close()
			return nil, err
		}
	}
	if _, err := c.leader(StartTimeout, c.names); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// panicReporter fails a cluster that has no test by panicking.
type panicReporter struct{}

func (panicReporter) Helper() {}
func (panicReporter) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("servertest: "+format, args...))
}
func (panicReporter) Errorf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "servertest: "+format+"\n", args...)
}

func build(t reporter, dir string, n int, o options) *Cluster {
	c := &Cluster{t: t, base: o.base, dir: dir, members: map[string]*Member{}}
	if len(o.edit) > 0 {
		c.edit = func(name string, cfg *server.Config) {
			for _, fn := range o.edit {
				fn(name, cfg)
			}
		}
	}
	var peers []server.Peer
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("m%d", i)
		m := &Member{Name: name, Dir: filepath.Join(dir, name), addr: raft.ServerAddress(name + ":raft")}
		c.members[name] = m
		c.names = append(c.names, name)
		peers = append(peers, server.Peer{Name: name, RaftAddr: string(m.addr)})
	}
	c.base.InitialCluster = peers
	return c
}

// Endpoints returns the client addresses of the running members, in the
// order of Names: what a client.Config needs.
func (c *Cluster) Endpoints() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var eps []string
	for _, name := range c.names {
		if m := c.members[name]; m.Server != nil {
			eps = append(eps, m.clientA)
		}
	}
	return eps
}

// Names returns the members' names in order.
func (c *Cluster) Names() []string { return append([]string(nil), c.names...) }

// Member returns a member by name.
func (c *Cluster) Member(name string) *Member {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[name]
}

// Start starts (or restarts) a stopped member on its data directory.
func (c *Cluster) Start(name string) { c.StartWith(name, nil) }

// Join starts a new member with an empty data directory that joins the
// cluster through the running members' client addresses.
func (c *Cluster) Join(name string, learner bool) *Member {
	c.t.Helper()
	c.mu.Lock()
	var join []string
	for _, n := range c.names {
		if m := c.members[n]; m.Server != nil {
			join = append(join, m.Server.ClientAddr())
		}
	}
	m := &Member{Name: name, Dir: filepath.Join(c.dir, name), addr: raft.ServerAddress(name + ":raft")}
	c.members[name] = m
	c.names = append(c.names, name)
	c.mu.Unlock()
	c.StartWith(name, func(cfg *server.Config) {
		cfg.InitialCluster = nil
		cfg.Join = join
		cfg.JoinAsLearner = learner
	})
	return m
}

// Wipe deletes a stopped member's data directory.
func (c *Cluster) Wipe(name string) {
	c.t.Helper()
	m := c.Member(name)
	if m.Server != nil {
		c.t.Fatalf("wipe running member %s", name)
	}
	if err := os.RemoveAll(m.Dir); err != nil {
		c.t.Fatalf("%v", err)
	}
}

// StartWith starts a stopped member, letting edit change its config first.
// TryStart starts a stopped member and returns the error that kept it
// from starting, for a test that expects one.
func (c *Cluster) TryStart(name string) error { return c.startMember(name, nil) }

func (c *Cluster) StartWith(name string, edit func(*server.Config)) {
	c.t.Helper()
	if err := c.startMember(name, edit); err != nil {
		c.t.Fatalf("%v", err)
	}
}

func (c *Cluster) startMember(name string, edit func(*server.Config)) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.members[name]
	if m.Server != nil {
		return fmt.Errorf("member %s is already running", name)
	}
	_, m.trans = raft.NewInmemTransport(m.addr)
	for _, o := range c.members {
		if o != m && o.Server != nil {
			m.trans.Connect(o.addr, o.trans)
			o.trans.Connect(m.addr, m.trans)
		}
	}
	cfg := c.base
	cfg.Name = name
	cfg.DataDir = m.Dir
	cfg.RaftTransport = m.trans
	if m.clientA != "" {
		cfg.ClientAddr = m.clientA // keep the address across restarts
	}
	if edit != nil {
		edit(&cfg)
	}
	if c.edit != nil {
		c.edit(name, &cfg)
	}
	srv, err := server.New(cfg)
	if err != nil {
		return fmt.Errorf("start member %s: %w", name, err)
	}
	conn, err := grpc.NewClient(srv.ClientAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return errors.Join(fmt.Errorf("dial member %s: %w", name, err), srv.Shutdown(ctx))
	}
	m.Server = srv
	m.clientA = srv.ClientAddr()
	m.conn = conn
	return nil
}

// Stop shuts a member down cleanly.
func (c *Cluster) Stop(name string) {
	c.t.Helper()
	c.mu.Lock()
	m := c.members[name]
	srv := m.Server
	m.Server = nil
	for _, o := range c.members {
		if o != m && o.trans != nil {
			o.trans.Disconnect(m.addr)
		}
	}
	c.mu.Unlock()
	if srv == nil {
		return
	}
	_ = m.conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		c.t.Errorf("stop member %s: %v", name, err)
	}
}

// Close stops every member, and removes the cluster's data when Start
// made it.
func (c *Cluster) Close() {
	for _, name := range c.names {
		c.Stop(name)
	}
	if c.ownDir {
		if err := os.RemoveAll(c.dir); err != nil {
			c.t.Errorf("remove %s: %v", c.dir, err)
		}
	}
}

// Conn returns the test's gRPC connection to the member.
func (m *Member) Conn() *grpc.ClientConn { return m.conn }

// KV returns a KV client connected to the member only.
func (c *Cluster) KV(name string) kvv1.KVServiceClient {
	return kvv1.NewKVServiceClient(c.Member(name).conn)
}

// Maintenance returns a Maintenance client connected to the member only.
func (c *Cluster) Maintenance(name string) kvv1.MaintenanceServiceClient {
	return kvv1.NewMaintenanceServiceClient(c.Member(name).conn)
}

// Cluster returns a Cluster-service client connected to the member only.
func (c *Cluster) ClusterClient(name string) kvv1.ClusterServiceClient {
	return kvv1.NewClusterServiceClient(c.Member(name).conn)
}

// Isolate cuts the raft traffic between the named members and the others,
// both ways. The gRPC APIs stay reachable from the test.
func (c *Cluster) Isolate(names ...string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	in := map[string]bool{}
	for _, n := range names {
		in[n] = true
	}
	for _, a := range c.members {
		for _, b := range c.members {
			if a != b && in[a.Name] != in[b.Name] && a.trans != nil {
				a.trans.Disconnect(b.addr)
			}
		}
	}
}

// Cut stops raft traffic from one member to another, in that direction
// only: from's requests (appends, heartbeats, votes) no longer reach to,
// while to's requests still reach from and are answered.
func (c *Cluster) Cut(from, to string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	a, b := c.members[from], c.members[to]
	if a != nil && b != nil && a.trans != nil {
		a.trans.Disconnect(b.addr)
	}
}

// Heal restores raft traffic between every pair of running members.
func (c *Cluster) Heal() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, a := range c.members {
		for _, b := range c.members {
			if a != b && a.Server != nil && b.Server != nil {
				a.trans.Connect(b.addr, b.trans)
			}
		}
	}
}

// Leader returns the name of the member that leads and answers
// linearizable reads, among the given candidates (all members if none),
// waiting up to timeout.
func (c *Cluster) Leader(timeout time.Duration, among ...string) string {
	c.t.Helper()
	if len(among) == 0 {
		among = c.Names()
	}
	leader, err := c.leader(timeout, among)
	if err != nil {
		c.t.Fatalf("%v", err)
	}
	return leader
}

func (c *Cluster) leader(timeout time.Duration, among []string) (string, error) {
	var leader string
	err := poll.Within(timeout, func() error {
		for _, name := range among {
			m := c.Member(name)
			if m.Server == nil || !m.Server.IsLeader() {
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_, err := c.KV(name).Range(ctx, &kvv1.RangeRequest{Key: []byte("servertest-probe")})
			cancel()
			if err != nil {
				return fmt.Errorf("leader %s not serving: %w", name, err)
			}
			leader = name
			return nil
		}
		return fmt.Errorf("no leader among %v", among)
	})
	return leader, err
}

// WaitReady waits until the cluster has a leader that serves reads.
func (c *Cluster) WaitReady(timeout time.Duration) string {
	c.t.Helper()
	return c.Leader(timeout)
}

// WaitConverged waits until every running member has applied the same index
// and holds the same state hash, and fails the test otherwise.
func (c *Cluster) WaitConverged(timeout time.Duration) {
	c.t.Helper()
	c.Eventually(timeout, func() error {
		var (
			first     string
			wantIdx   uint64
			wantHash  uint32
			haveFirst bool
		)
		for _, name := range c.names {
			m := c.Member(name)
			if m.Server == nil {
				continue
			}
			idx := m.Server.FSM().AppliedIndex()
			h, err := m.Server.FSM().Hash()
			if err != nil {
				return err
			}
			if !haveFirst {
				first, wantIdx, wantHash, haveFirst = name, idx, h, true
				continue
			}
			if idx != wantIdx || h != wantHash {
				return fmt.Errorf("%s at index %d hash %08x, %s at index %d hash %08x", first, wantIdx, wantHash, name, idx, h)
			}
		}
		return nil
	})
}

// Eventually retries fn until it returns nil or timeout passes, then fails
// the test with fn's last error.
func (c *Cluster) Eventually(timeout time.Duration, fn func() error) {
	c.t.Helper()
	poll.Eventually(c.t, timeout, fn)
}
