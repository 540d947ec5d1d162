package cluster

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/internal/poll"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Cluster is a running set of kvd members, one per namespace. Its methods
// are safe for concurrent use.
type Cluster struct {
	cfg    Config
	nodes  []*node
	byName map[string]*node
	lock   *os.File
	status *client.Client            // for Status RPCs, one connection per member
	admin  *client.Client            // membership changes and leader transfers, sent like any SDK user would
	direct map[string]*client.Client // one client per member, that talks to it alone
	sec    security                  // certificates and passwords of a secure cluster

	partMu sync.Mutex // serializes partition changes
}

// Setup removes what an earlier run left behind, builds the network,
// starts every member and waits until they agree on a leader. On error it
// tears down what it built.
func Setup(ctx context.Context, cfg Config) (c *Cluster, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !IsRoot() {
		return nil, errors.New("cluster: network namespaces need root")
	}
	lock, err := acquireLock(cfg.LockPath)
	if err != nil {
		return nil, err
	}
	c = &Cluster{cfg: cfg, lock: lock, byName: map[string]*node{}, direct: map[string]*client.Client{}}
	defer func() {
		if err != nil {
			_ = c.Teardown()
			c = nil
		}
	}()
	if err := Cleanup(ctx, cfg); err != nil {
		return c, err
	}
	if err := cfg.setupNetwork(ctx); err != nil {
		return c, err
	}
	for _, dir := range []string{filepath.Join(cfg.Dir, "data"), filepath.Join(cfg.Dir, "logs"), filepath.Join(cfg.Dir, "certs")} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return c, fmt.Errorf("cluster: %w", err)
		}
	}
	tlsArgs, err := c.prepareSecurity()
	if err != nil {
		return c, err
	}
	var initial []string
	for i := 1; i <= cfg.Nodes; i++ {
		initial = append(initial, fmt.Sprintf("%s=%s:%d", NodeName(i), cfg.IP(i), cfg.RaftPort))
	}
	var endpoints []string
	for i := 1; i <= cfg.Nodes; i++ {
		n := &node{
			index:      i,
			name:       NodeName(i),
			ns:         cfg.Namespace(i),
			ip:         cfg.IP(i),
			clientAddr: fmt.Sprintf("%s:%d", cfg.IP(i), cfg.ClientPort),
			raftAddr:   fmt.Sprintf("%s:%d", cfg.IP(i), cfg.RaftPort),
			dataDir:    filepath.Join(cfg.Dir, "data", NodeName(i)),
			logPath:    filepath.Join(cfg.Dir, "logs", NodeName(i)+".log"),
			bin:        cfg.KvdBin,
			tlsArgs:    tlsArgs[i],
		}
		n.args = slices.Concat(n.ownArgs(), []string{"--initial-cluster", strings.Join(initial, ",")}, n.tlsArgs, cfg.KvdArgs)
		c.nodes = append(c.nodes, n)
		c.byName[n.name] = n
		endpoints = append(endpoints, n.clientAddr)
	}
	if err := c.openClients(endpoints); err != nil {
		return c, err
	}
	for _, n := range c.nodes {
		if err := n.start(); err != nil {
			return c, err
		}
	}
	cfg.logf("started %d members on %s.0/24; waiting for a leader", cfg.Nodes, cfg.Subnet)
	wctx, cancel := context.WithTimeout(ctx, cfg.StartTimeout)
	defer cancel()
	h, err := c.WaitHealthy(wctx)
	if err != nil {
		return c, fmt.Errorf("cluster: the new cluster did not become healthy within %s (is bridged traffic filtered? see the package doc): %w", cfg.StartTimeout, err)
	}
	if cfg.Auth {
		if err := c.enableAuth(wctx, endpoints); err != nil {
			return c, err
		}
		// Opened again, the clients log in now that auth is on.
		c.closeClients()
		if err := c.openClients(endpoints); err != nil {
			return c, err
		}
	}
	cfg.logf("cluster ready: %s", h)
	return c, nil
}

// openClients opens the harness's clients, as root.
func (c *Cluster) openClients(endpoints []string) (err error) {
	if c.status, err = client.New(c.rootConfig(endpoints...)); err != nil {
		return fmt.Errorf("cluster: status client: %w", err)
	}
	if c.admin, err = client.New(c.rootConfig(endpoints...)); err != nil {
		return fmt.Errorf("cluster: admin client: %w", err)
	}
	for _, n := range c.nodes {
		if c.direct[n.name], err = client.New(c.rootConfig(n.clientAddr)); err != nil {
			return fmt.Errorf("cluster: client of %s: %w", n.name, err)
		}
	}
	return nil
}

func (c *Cluster) closeClients() {
	for _, cl := range append([]*client.Client{c.status, c.admin}, slices.Collect(maps.Values(c.direct))...) {
		if cl != nil {
			_ = cl.Close()
		}
	}
	c.status, c.admin, c.direct = nil, nil, map[string]*client.Client{}
}

// acquireLock takes an exclusive lock on path, or fails at once when
// another run holds it.
func acquireLock(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("cluster: lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("cluster: another jepsen run holds %s: %w", path, err)
	}
	return f, nil
}

// Teardown kills every member and removes the network. It is idempotent and
// keeps going after errors, returning them all.
func (c *Cluster) Teardown() error {
	var errs []error
	for _, n := range c.nodes {
		if err := n.kill(); err != nil {
			errs = append(errs, err)
		}
	}
	c.closeClients()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := Cleanup(ctx, c.cfg); err != nil {
		errs = append(errs, err)
	}
	if c.lock != nil {
		_ = os.Remove(c.cfg.LockPath) // before unlocking, so no other run holds a lock on a removed file
		_ = syscall.Flock(int(c.lock.Fd()), syscall.LOCK_UN)
		c.lock.Close()
		c.lock = nil
	}
	return errors.Join(errs...)
}

// Nodes returns the members' names, n1..nN.
func (c *Cluster) Nodes() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.name
	}
	return out
}

// Endpoints maps each member to its client address.
func (c *Cluster) Endpoints() map[string]string {
	out := map[string]string{}
	for _, n := range c.nodes {
		out[n.name] = n.clientAddr
	}
	return out
}

// Config returns the cluster's configuration.
func (c *Cluster) Config() Config { return c.cfg }

func (c *Cluster) node(name string) (*node, error) {
	n, ok := c.byName[name]
	if !ok {
		return nil, fmt.Errorf("cluster: no member %q", name)
	}
	return n, nil
}

// Kill sends SIGKILL to a member and waits until it is gone.
func (c *Cluster) Kill(name string) error {
	n, err := c.node(name)
	if err != nil {
		return err
	}
	return n.kill()
}

// Start starts a member that is not running on its data directory.
func (c *Cluster) Start(name string) error {
	n, err := c.node(name)
	if err != nil {
		return err
	}
	return n.start()
}

// Pause sends SIGSTOP to a member.
func (c *Cluster) Pause(name string) error {
	n, err := c.node(name)
	if err != nil {
		return err
	}
	return n.pause()
}

// Resume sends SIGCONT to a paused member.
func (c *Cluster) Resume(name string) error {
	n, err := c.node(name)
	if err != nil {
		return err
	}
	return n.resume()
}

// Partition replaces the network rules: member a drops every packet from
// each member in grudge[a]. An empty grudge heals the network.
func (c *Cluster) Partition(ctx context.Context, grudge map[string][]string) error {
	c.partMu.Lock()
	defer c.partMu.Unlock()
	if err := c.flushLocked(ctx); err != nil {
		return err
	}
	for a, peers := range grudge {
		n, err := c.node(a)
		if err != nil {
			return err
		}
		for _, b := range peers {
			p, err := c.node(b)
			if err != nil {
				return err
			}
			if err := c.cfg.iptablesIn(ctx, n.index, "-A", "INPUT", "-s", p.ip, "-j", "DROP"); err != nil {
				return fmt.Errorf("cluster: partition: %w", err)
			}
		}
	}
	return nil
}

// HealNetwork removes every partition rule.
func (c *Cluster) HealNetwork(ctx context.Context) error {
	c.partMu.Lock()
	defer c.partMu.Unlock()
	return c.flushLocked(ctx)
}

func (c *Cluster) flushLocked(ctx context.Context) error {
	var errs []error
	for _, n := range c.nodes {
		if err := c.cfg.iptablesIn(ctx, n.index, "-F", "INPUT"); err != nil {
			errs = append(errs, fmt.Errorf("cluster: heal network: %w", err))
		}
	}
	return errors.Join(errs...)
}

// HealAll undoes every fault: it heals the network, resumes paused members
// and starts members that are down.
func (c *Cluster) HealAll(ctx context.Context) error {
	errs := []error{c.HealNetwork(ctx)}
	for _, n := range c.nodes {
		errs = append(errs, n.resume(), n.start())
	}
	return errors.Join(errs...)
}

// Status asks each running member for its status, in parallel, each within
// timeout. Members that did not answer are missing from the map.
func (c *Cluster) Status(ctx context.Context, timeout time.Duration) map[string]*kvv1.StatusResponse {
	var mu sync.Mutex
	out := map[string]*kvv1.StatusResponse{}
	var wg sync.WaitGroup
	for _, n := range c.nodes {
		if !n.running() {
			continue
		}
		wg.Add(1)
		go func(n *node) {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			st, err := c.status.Status(sctx, n.clientAddr)
			if err == nil {
				mu.Lock()
				out[n.name] = st.StatusResponse
				mu.Unlock()
			}
		}(n)
	}
	wg.Wait()
	return out
}

// Leader returns the member that believes it leads in the highest term, or
// an error when no member answered as leader.
func (c *Cluster) Leader(ctx context.Context) (string, error) {
	best, term := "", uint64(0)
	for name, st := range c.Status(ctx, time.Second) {
		if st.GetRaftState() == "Leader" && (best == "" || st.GetRaftTerm() > term) {
			best, term = name, st.GetRaftTerm()
		}
	}
	if best == "" {
		return "", errors.New("cluster: no member answered as leader")
	}
	return best, nil
}

// WaitHealthy waits until every member answers, exactly one leads, all
// follow it, and all have applied the same index and revision. It returns a
// description of that state, or the last problem seen when ctx ends.
func (c *Cluster) WaitHealthy(ctx context.Context) (string, error) {
	start := time.Now()
	var desc string
	err := poll.Until(ctx, 200*time.Millisecond, func() (err error) {
		desc, err = c.healthy(ctx)
		return err
	})
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%s after %s", desc, time.Since(start).Round(time.Millisecond)), nil
}

func (c *Cluster) healthy(ctx context.Context) (string, error) {
	sts := c.Status(ctx, time.Second)
	var missing, leaders []string
	for _, n := range c.nodes {
		st, ok := sts[n.name]
		if !ok {
			missing = append(missing, n.name)
			continue
		}
		if st.GetRaftState() == "Leader" {
			leaders = append(leaders, n.name)
		}
	}
	if len(missing) > 0 {
		return "", fmt.Errorf("no status from %v", missing)
	}
	if len(leaders) != 1 {
		return "", fmt.Errorf("%d members lead: %v", len(leaders), leaders)
	}
	leader := leaders[0]
	applied := map[uint64][]string{}
	revs := map[int64][]string{}
	for name, st := range sts {
		if st.GetLeaderName() != leader {
			return "", fmt.Errorf("%s follows %q, not %s", name, st.GetLeaderName(), leader)
		}
		applied[st.GetAppliedIndex()] = append(applied[st.GetAppliedIndex()], name)
		revs[st.GetHeader().GetRevision()] = append(revs[st.GetHeader().GetRevision()], name)
	}
	if len(applied) != 1 || len(revs) != 1 {
		return "", fmt.Errorf("members differ: applied index %s, revision %s", groups(applied), groups(revs))
	}
	st := sts[leader]
	return fmt.Sprintf("leader %s (term %d), applied index %d and revision %d on all %d members",
		leader, st.GetRaftTerm(), st.GetAppliedIndex(), st.GetHeader().GetRevision(), len(sts)), nil
}

func groups[K comparable](m map[K][]string) string {
	var parts []string
	for k, names := range m {
		slices.Sort(names)
		parts = append(parts, fmt.Sprintf("%v=%v", k, names))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
