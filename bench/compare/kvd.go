package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/kvd-io/kvd/client"
)

// kvdMember is one kvd process of the cluster.
type kvdMember struct {
	name, clientAddr, raftAddr, dataDir, logPath string

	cmd    *exec.Cmd
	exited chan struct{}
}

// kvdCluster is three kvd members on loopback, on ports distinct from
// etcd's: clients on 31379, 32379, 33379, raft on 31380, 32380, 33380.
type kvdCluster struct {
	bin     string
	dir     string
	members []*kvdMember
	// sec, when set, runs the members with its TLS flags and has the
	// harness's clients use its TLS and credentials (security.go).
	sec *secSetup
	// extraArgs are further flags for every member.
	extraArgs []string
}

// clientConfig is the configuration of the harness's clients of endpoints.
func (c *kvdCluster) clientConfig(endpoints []string) client.Config {
	cfg := client.Config{Endpoints: endpoints, DialTimeout: time.Second}
	if c.sec != nil {
		cfg.TLS = c.sec.clientTLS
		cfg.Username, cfg.Password = c.sec.user, c.sec.password
	}
	return cfg
}

func newKVDCluster(bin, dir string) *kvdCluster {
	c := &kvdCluster{bin: bin, dir: dir}
	for i := 1; i <= 3; i++ {
		c.members = append(c.members, &kvdMember{
			name:       fmt.Sprintf("n%d", i),
			clientAddr: fmt.Sprintf("127.0.0.1:3%d379", i),
			raftAddr:   fmt.Sprintf("127.0.0.1:3%d380", i),
			dataDir:    filepath.Join(dir, fmt.Sprintf("n%d", i)),
			logPath:    filepath.Join(dir, fmt.Sprintf("n%d.log", i)),
		})
	}
	return c
}

func (c *kvdCluster) endpoints() string {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.clientAddr)
	}
	return strings.Join(eps, ",")
}

func (c *kvdCluster) ports() []string {
	var ps []string
	for _, m := range c.members {
		ps = append(ps, m.clientAddr, m.raftAddr)
	}
	return ps
}

func (c *kvdCluster) initialCluster() string {
	var ps []string
	for _, m := range c.members {
		ps = append(ps, m.name+"="+m.raftAddr)
	}
	return strings.Join(ps, ",")
}

// start starts every member on empty data dirs and waits until it serves.
func (c *kvdCluster) start(ctx context.Context) error {
	if err := os.RemoveAll(c.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(c.dir, 0o755); err != nil {
		return err
	}
	for _, m := range c.members {
		if err := c.startMember(m); err != nil {
			return err
		}
	}
	return c.waitServing(ctx, c.endpoints(), 30*time.Second)
}

func (c *kvdCluster) startMember(m *kvdMember) error {
	log, err := os.OpenFile(m.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	args := []string{"--name", m.name, "--data-dir", m.dataDir,
		"--client-addr", m.clientAddr, "--raft-addr", m.raftAddr,
		"--initial-cluster", c.initialCluster(), "--log-level", "warn"}
	if c.sec != nil {
		args = append(args, c.sec.memberArgs[m.name]...)
	}
	args = append(args, c.extraArgs...)
	cmd := exec.Command(c.bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("start kvd %s: %w", m.name, err)
	}
	m.cmd, m.exited = cmd, make(chan struct{})
	go func() {
		_ = cmd.Wait()
		log.Close()
		close(m.exited)
	}()
	return nil
}

// stopMember stops m with SIGTERM, and SIGKILL after 15 seconds.
func stopMember(m *kvdMember) error {
	if m.cmd == nil {
		return nil
	}
	defer func() { m.cmd = nil }()
	select {
	case <-m.exited:
		return nil
	default:
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
		return nil
	case <-time.After(15 * time.Second):
		_ = m.cmd.Process.Kill()
		<-m.exited
		return fmt.Errorf("kvd %s did not stop within 15s of SIGTERM; killed", m.name)
	}
}

func (c *kvdCluster) stop() error {
	var errs []error
	for _, m := range c.members {
		errs = append(errs, stopMember(m))
	}
	return errors.Join(errs...)
}

// waitServing waits until a linearizable get of a missing key succeeds
// through endpoints.
func (c *kvdCluster) waitServing(ctx context.Context, endpoints string, limit time.Duration) error {
	cli, err := client.New(c.clientConfig(strings.Split(endpoints, ",")))
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		rctx, rcancel := context.WithTimeout(ctx, time.Second)
		_, err := cli.Get(rctx, "bench-compare-ready")
		rcancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("kvd at %s did not serve within %v: %w (logs in %s)", endpoints, limit, err, c.dir)
		}
		select {
		case <-ctx.Done():
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// leader returns the name of the member that leads.
func (c *kvdCluster) leader(ctx context.Context) (string, error) {
	m, err := c.leaderMember(ctx)
	if err != nil {
		return "", err
	}
	return m.name, nil
}

func (c *kvdCluster) leaderMember(ctx context.Context) (*kvdMember, error) {
	cli, err := client.New(c.clientConfig(strings.Split(c.endpoints(), ",")))
	if err != nil {
		return nil, err
	}
	defer cli.Close()
	for _, m := range c.members {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, err := cli.Status(sctx, m.clientAddr)
		cancel()
		if err == nil && st.IsLeader() {
			return m, nil
		}
	}
	return nil, errors.New("kvd: no member is the leader")
}

// cpu returns the CPU time the members have used so far (a restarted
// member's count starts again).
func (c *kvdCluster) cpu() time.Duration {
	var t time.Duration
	for _, m := range c.members {
		if m.cmd != nil {
			t += procCPU(m.cmd.Process.Pid)
		}
	}
	return t
}

// pids returns the pids of the running members.
func (c *kvdCluster) pids() []int {
	var pids []int
	for _, m := range c.members {
		if m.cmd != nil {
			pids = append(pids, m.cmd.Process.Pid)
		}
	}
	return pids
}

// checkPortsFree fails when another process listens on one of addrs.
func checkPortsFree(addrs []string) error {
	for _, a := range addrs {
		l, err := net.Listen("tcp", a)
		if err != nil {
			return fmt.Errorf("port %s is taken (another cluster running?): %w", a, err)
		}
		l.Close()
	}
	return nil
}
