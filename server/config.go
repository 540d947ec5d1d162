package server

import (
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kvd-io/kvd/etcdapi"
	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/member"
)

// Config configures a member and the API it serves: the member's own
// settings (member.Config, embedded), and where and how it serves. The zero
// value of each field is described on it; DefaultConfig fills in the
// defaults kvd's daemon uses.
type Config struct {
	member.Config

	// ClientAddr is the address the gRPC API listens on. Port 0 picks a free
	// port (see Server.ClientAddr). When AdvertiseClientAddr is empty, the
	// address it bound is what other members and clients are told, so it
	// must not be a wildcard then.
	ClientAddr string
	// HTTPAddr is where /metrics, /healthz, /readyz, /debug/pprof and the
	// web console (/ui/, see UI) are served; empty turns that listener off.
	HTTPAddr string
	// UI configures the web console on HTTPAddr.
	UI UIConfig
	// MaxRequestBytes bounds the encoded size of one request.
	MaxRequestBytes int
	// MaxTxnOps bounds the compares and the operations of each branch of a
	// transaction (etcd's --max-txn-ops); zero means 128.
	MaxTxnOps int
	// Version is reported by the Status RPC.
	Version string
	// EtcdVersion is the etcd version the etcd API's Status reports
	// (etcdapi.Config.EtcdVersion); empty means etcdapi.DefaultEtcdVersion.
	EtcdVersion string

	// ClientTLS secures the gRPC API (etcd's --cert-file, --key-file,
	// --trusted-ca-file, --client-cert-auth); zero means plaintext. Members
	// call each other on this port too (see PeerTLS).
	ClientTLS TLSConfig
	// PeerTLS secures member-to-member traffic (etcd's --peer-* flags): the
	// raft transport, and the certificate a member presents when it calls
	// another member's client port. Zero means a plaintext raft transport.
	// Every member of a cluster needs the same choice.
	PeerTLS TLSConfig
	// HTTPTLS serves HTTPAddr over HTTPS; zero means plain HTTP.
	HTTPTLS TLSConfig

	// Auth configures authentication (see docs/operations.md, "Users and
	// roles"); the zero value signs tokens with the cluster's secret.
	Auth AuthConfig
}

// AuthConfig configures tokens and password hashing.
type AuthConfig struct {
	// TokenKeyFile holds the key (at least 32 bytes, the same on every
	// member) that signs and verifies tokens (HS256 JWTs); empty means the
	// cluster's secret, drawn when auth is first enabled and replicated.
	TokenKeyFile string
	// TokenTTL is how long a token lasts; zero means 5 minutes.
	TokenTTL time.Duration
	// BcryptCost is the cost of password hashes; zero means 10.
	BcryptCost int
}

// UIConfig configures the web console (package console), served under
// /ui/ on HTTPAddr when that is set. The zero value turns it off;
// DefaultConfig turns it on.
type UIConfig struct {
	// Enabled serves the console.
	Enabled bool
	// ReadOnly refuses every change through the console (it still shows
	// everything the user may read).
	ReadOnly bool
}

// Peer is one founding member: its name and raft address.
type Peer = member.Peer

// DefaultConfig returns the daemon's defaults, tuned for a LAN.
func DefaultConfig() Config {
	return Config{
		Config:          member.DefaultConfig(),
		ClientAddr:      "127.0.0.1:7379",
		UI:              UIConfig{Enabled: true},
		MaxRequestBytes: 1536 * 1024,
		Version:         "dev",
	}
}

// Validate reports the first thing wrong with the config, quoting the bad
// value. It does not change the config.
func (c Config) Validate() error {
	if err := c.Config.Validate(); err != nil {
		return err
	}
	if err := checkHostPort("client address", c.ClientAddr); err != nil {
		return err
	}
	if c.HTTPAddr != "" {
		if err := checkHostPort("http address", c.HTTPAddr); err != nil {
			return err
		}
	}
	if err := c.validateTLS(); err != nil {
		return err
	}
	if c.MaxRequestBytes <= 0 {
		return fmt.Errorf("max request bytes must be positive, got %d", c.MaxRequestBytes)
	}
	if c.MaxTxnOps < 0 || c.MaxTxnOps > fsm.MaxTxnOpsLimit {
		return fmt.Errorf("max txn ops must be between 1 and %d, got %d", fsm.MaxTxnOpsLimit, c.MaxTxnOps)
	}
	if err := (etcdapi.Config{EtcdVersion: c.EtcdVersion}).Validate(); err != nil {
		return err
	}
	if c.Auth.TokenTTL < 0 {
		return fmt.Errorf("auth token TTL must not be negative, got %v", c.Auth.TokenTTL)
	}
	if b := c.Auth.BcryptCost; b != 0 && (b < bcrypt.MinCost || b > bcrypt.MaxCost) {
		return fmt.Errorf("bcrypt cost must be between %d and %d, got %d", bcrypt.MinCost, bcrypt.MaxCost, b)
	}
	return nil
}

func checkHostPort(what, addr string) error {
	if addr == "" {
		return errors.New(what + " is required")
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return fmt.Errorf("%s %q: %w", what, addr, err)
	}
	return nil
}

// ParseInitialCluster parses "name=raftaddr,name=raftaddr,...".
func ParseInitialCluster(s string) ([]Peer, error) { return member.ParseInitialCluster(s) }
