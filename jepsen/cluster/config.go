package cluster

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// Config describes the cluster to run.
type Config struct {
	// Nodes is the number of members, named n1..nN. 1 to 200.
	Nodes int
	// KvdBin is the kvd binary every member runs. It must be static
	// (CGO_ENABLED=0): `ip netns exec` keeps the root filesystem, but a
	// static binary also works inside a container later. Required.
	KvdBin string
	// KvdArgs are extra flags for every member, after the ones the cluster
	// sets (--name, --data-dir, --client-addr, --raft-addr,
	// --initial-cluster). Nil means none.
	KvdArgs []string
	// Dir holds data/<node> and logs/<node>.log. Required.
	Dir string
	// Subnet is the first three octets of the private /24, e.g. "10.213.0".
	Subnet string
	// Bridge is the bridge's name in the root namespace.
	Bridge string
	// Prefix starts every namespace (<Prefix>-n1) and veth (<Prefix>v1) name.
	Prefix string
	// ClientPort and RaftPort are the ports each member listens on.
	ClientPort, RaftPort int
	// Iptables is the iptables command, in the root namespace (for the
	// FORWARD rule) and in the members' namespaces (for partitions).
	Iptables string
	// StartTimeout bounds how long Setup waits for the new cluster to elect
	// a leader that every member follows.
	StartTimeout time.Duration
	// TLS runs the members with mutual TLS on the client and the peer
	// ports, with certificates the cluster makes under Dir/certs; Auth
	// turns authentication on once the cluster is up (see secure.go).
	TLS, Auth bool
	// LockPath is a lock file held from Setup to Teardown.
	LockPath string
	// Logf receives progress messages; nil discards them.
	Logf func(format string, args ...any)
}

// DefaultConfig returns a five-member cluster on 10.213.0.0/24. KvdBin and
// Dir must still be set.
func DefaultConfig() Config {
	return Config{
		Nodes:        5,
		Subnet:       "10.213.0",
		Bridge:       "kvdj0",
		Prefix:       "kvdj",
		ClientPort:   7379,
		RaftPort:     7380,
		Iptables:     "iptables",
		StartTimeout: 30 * time.Second,
		LockPath:     "/run/kvd-jepsen.lock",
	}
}

// Validate reports the first problem with c, quoting the bad value. It does
// not change c.
func (c Config) Validate() error {
	if c.Nodes < 1 || c.Nodes > 200 {
		return fmt.Errorf("cluster: nodes must be in 1..200, got %d", c.Nodes)
	}
	if c.KvdBin == "" {
		return errors.New("cluster: kvd binary is required")
	}
	if c.Dir == "" {
		return errors.New("cluster: directory is required")
	}
	if ip := net.ParseIP(c.Subnet + ".1").To4(); ip == nil || !ip.IsPrivate() {
		return fmt.Errorf("cluster: subnet %q must be three octets of a private IPv4 /24, like 10.213.0", c.Subnet)
	}
	// Interface names are at most 15 bytes: <Prefix>v<N> must fit.
	if c.Prefix == "" || len(c.Prefix)+1+3 > 15 || c.Bridge == "" || len(c.Bridge) > 15 {
		return fmt.Errorf("cluster: prefix %q and bridge %q must be non-empty and short enough for interface names", c.Prefix, c.Bridge)
	}
	if c.ClientPort <= 0 || c.RaftPort <= 0 || c.ClientPort == c.RaftPort || c.ClientPort > 65535 || c.RaftPort > 65535 {
		return fmt.Errorf("cluster: ports %d and %d must be distinct and in 1..65535", c.ClientPort, c.RaftPort)
	}
	if c.Iptables == "" {
		return errors.New("cluster: iptables command is required")
	}
	if c.StartTimeout <= 0 {
		return fmt.Errorf("cluster: start timeout must be positive, got %s", c.StartTimeout)
	}
	return nil
}

// IP returns member i's address (i from 1).
func (c Config) IP(i int) string { return fmt.Sprintf("%s.%d", c.Subnet, 10+i) }

// bridgeIP is the root namespace's address on the bridge.
func (c Config) bridgeIP() string { return c.Subnet + ".1" }

// Namespace returns member i's network namespace.
func (c Config) Namespace(i int) string { return fmt.Sprintf("%s-n%d", c.Prefix, i) }

func (c Config) veth(i int) string { return fmt.Sprintf("%sv%d", c.Prefix, i) }

// NodeName returns member i's name.
func NodeName(i int) string { return fmt.Sprintf("n%d", i) }

func (c Config) logf(format string, args ...any) {
	if c.Logf != nil {
		c.Logf(format, args...)
	}
}

// IsRoot reports whether the harness can manage namespaces.
func IsRoot() bool { return os.Geteuid() == 0 }
