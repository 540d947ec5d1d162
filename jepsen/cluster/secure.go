package cluster

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/internal/certgen"
	"github.com/kvd-io/kvd/internal/poll"
)

// A secure cluster (Config.TLS, Config.Auth) runs as production clusters
// should: mutual TLS on the client and the peer ports, with member and
// client certificates from two CAs (a client certificate must not pass for
// a member: see docs/operations.md), and authentication on, the workload's
// clients logged in as WorkloadUser, which may read and write only the
// workload's keys (WorkloadPrefix); the harness's own clients (status,
// membership changes, leader transfers) log in as root.

// WorkloadUser is the user the workload's clients log in as with
// Config.Auth; WorkloadPrefix the keys its role may read and write.
const (
	WorkloadUser   = "jepsen"
	WorkloadPrefix = "jepsen/"
	rootUser       = "root"
)

// security holds what clients need to reach a secure cluster.
type security struct {
	clientTLS *tls.Config // nil without Config.TLS
	rootPW    string      // "" without Config.Auth
	userPW    string
}

// prepareSecurity makes the certificates (with Config.TLS) under
// Dir/certs, returns each member's TLS flags, and draws the passwords
// (with Config.Auth).
func (c *Cluster) prepareSecurity() (map[int][]string, error) {
	args := map[int][]string{}
	if c.cfg.Auth {
		c.sec.rootPW, c.sec.userPW = randomPassword(), randomPassword()
	}
	if !c.cfg.TLS {
		return args, nil
	}
	dir := filepath.Join(c.cfg.Dir, "certs")
	now := time.Now()
	from, to := now.Add(-time.Hour), now.Add(24*time.Hour)
	clientCA, err := certgen.NewCA("jepsen client CA", from, to)
	if err != nil {
		return nil, err
	}
	peerCA, err := certgen.NewCA("jepsen peer CA", from, to)
	if err != nil {
		return nil, err
	}
	write := func(ca *certgen.CA, base string, req certgen.Request) (cert, key string, err error) {
		req.NotBefore, req.NotAfter = from, to
		certPEM, keyPEM, err := ca.Issue(req)
		if err != nil {
			return "", "", err
		}
		cert, key = filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
		if err := certgen.WriteFile(key, keyPEM, 0o600); err != nil {
			return "", "", err
		}
		return cert, key, certgen.WriteFile(cert, certPEM, 0o644)
	}
	clientCAFile, peerCAFile := filepath.Join(dir, "client-ca.crt"), filepath.Join(dir, "peer-ca.crt")
	for file, ca := range map[string]*certgen.CA{clientCAFile: clientCA, peerCAFile: peerCA} {
		if err := certgen.WriteFile(file, ca.CertPEM, 0o644); err != nil {
			return nil, err
		}
	}
	for i := 1; i <= c.cfg.Nodes; i++ {
		name := NodeName(i)
		req := certgen.Request{CommonName: name, Hosts: []string{c.cfg.IP(i), name}, Usage: certgen.Server | certgen.Client}
		cert, key, err := write(clientCA, name, req)
		if err != nil {
			return nil, err
		}
		peerCert, peerKey, err := write(peerCA, name+"-peer", req)
		if err != nil {
			return nil, err
		}
		args[i] = []string{
			"--cert-file", cert, "--key-file", key, "--trusted-ca-file", clientCAFile, "--client-cert-auth",
			"--peer-cert-file", peerCert, "--peer-key-file", peerKey, "--peer-trusted-ca-file", peerCAFile, "--peer-client-cert-auth",
		}
	}
	// The clients' certificate names no user: with auth on, only a
	// password identifies a caller.
	cert, key, err := write(clientCA, "client", certgen.Request{CommonName: "jepsen-client", Usage: certgen.Client})
	if err != nil {
		return nil, err
	}
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		return nil, fmt.Errorf("cluster: client certificate: %w", err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(clientCA.Cert)
	c.sec.clientTLS = &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	return args, nil
}

func randomPassword() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// ClientConfig is the configuration of a workload client of endpoints:
// TLS with the client certificate (Config.TLS), logged in as WorkloadUser
// (Config.Auth).
func (c *Cluster) ClientConfig(endpoints ...string) client.Config {
	cfg := client.Config{Endpoints: endpoints, DialTimeout: time.Second, TLS: c.sec.clientTLS}
	if c.cfg.Auth {
		cfg.Username, cfg.Password = WorkloadUser, c.sec.userPW
	}
	return cfg
}

// rootConfig is the configuration of the harness's own clients: as
// ClientConfig, logged in as root.
func (c *Cluster) rootConfig(endpoints ...string) client.Config {
	cfg := c.ClientConfig(endpoints...)
	if c.cfg.Auth {
		cfg.Username, cfg.Password = rootUser, c.sec.rootPW
	}
	return cfg
}

// enableAuth creates root and WorkloadUser, with read and write on
// WorkloadPrefix, and turns authentication on, through a client without
// credentials (auth is still off), retrying what the new cluster refuses
// while its members publish their features.
func (c *Cluster) enableAuth(ctx context.Context, endpoints []string) error {
	cli, err := client.New(client.Config{Endpoints: endpoints, DialTimeout: time.Second, TLS: c.sec.clientTLS})
	if err != nil {
		return err
	}
	defer cli.Close()
	steps := []struct {
		what string
		do   func(ctx context.Context) error
	}{
		{"add root", func(ctx context.Context) error { _, err := cli.UserAdd(ctx, rootUser, c.sec.rootPW); return err }},
		{"grant root", func(ctx context.Context) error { _, err := cli.UserGrantRole(ctx, rootUser, rootUser); return err }},
		{"add role", func(ctx context.Context) error { _, err := cli.RoleAdd(ctx, WorkloadUser); return err }},
		{"grant the prefix", func(ctx context.Context) error {
			_, err := cli.RoleGrantPermission(ctx, WorkloadUser, WorkloadPrefix, client.PrefixEnd(WorkloadPrefix), client.PermReadWrite)
			return err
		}},
		{"add the workload user", func(ctx context.Context) error {
			_, err := cli.UserAdd(ctx, WorkloadUser, c.sec.userPW)
			return err
		}},
		{"grant its role", func(ctx context.Context) error {
			_, err := cli.UserGrantRole(ctx, WorkloadUser, WorkloadUser)
			return err
		}},
		{"enable", func(ctx context.Context) error { _, err := cli.AuthEnable(ctx); return err }},
	}
	for _, s := range steps {
		var last error
		err := poll.Until(ctx, 200*time.Millisecond, func() error {
			octx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			last = s.do(octx)
			if status.Code(last) == codes.AlreadyExists {
				last = nil // an earlier attempt was applied, its answer lost
			}
			return last
		})
		if err != nil {
			return fmt.Errorf("cluster: auth: %s: %w", s.what, errors.Join(err, last))
		}
	}
	// The mode proves what it claims: the workload's user is refused
	// outside its prefix, and the client certificate alone is nobody.
	for _, probe := range []struct {
		what string
		cfg  client.Config
		code codes.Code
	}{
		{"the workload user writes outside " + WorkloadPrefix, c.ClientConfig(endpoints...), codes.PermissionDenied},
		{"a client with a certificate and no password writes", client.Config{Endpoints: endpoints, DialTimeout: time.Second, TLS: c.sec.clientTLS}, codes.PermissionDenied},
	} {
		pc, err := client.New(probe.cfg)
		if err != nil {
			return err
		}
		var got error
		err = poll.Until(ctx, 200*time.Millisecond, func() error {
			octx, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			_, got = pc.Put(octx, "outside-"+WorkloadPrefix+"probe", "x")
			if code := status.Code(got); code == probe.code || code == codes.Unauthenticated {
				return nil
			}
			return fmt.Errorf("answered %v", got)
		})
		pc.Close()
		if err != nil {
			return fmt.Errorf("cluster: auth: %s: %w", probe.what, err)
		}
	}
	c.cfg.logf("auth enabled: workload clients log in as %q (read and write on %q), the harness as root", WorkloadUser, WorkloadPrefix)
	return nil
}
