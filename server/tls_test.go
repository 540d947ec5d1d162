package server_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/internal/certgen"
	"github.com/kvd-io/kvd/server"
)

// testPKI is a CA and the certificates of a test cluster, in a directory.
type testPKI struct {
	t   *testing.T
	dir string
	ca  *certgen.CA
}

func newTestPKI(t *testing.T, name string) *testPKI {
	t.Helper()
	ca, err := certgen.NewCA(name, time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	p := &testPKI{t: t, dir: t.TempDir(), ca: ca}
	writeFile(t, p.caFile(), ca.CertPEM)
	return p
}

func (p *testPKI) caFile() string { return filepath.Join(p.dir, "ca.crt") }

// issue writes base.crt and base.key; a zero notAfter means an hour from now.
func (p *testPKI) issue(base, cn string, usage certgen.Usage, notAfter time.Time, hosts ...string) (string, string) {
	p.t.Helper()
	if notAfter.IsZero() {
		notAfter = time.Now().Add(time.Hour)
	}
	cert, key, err := p.ca.Issue(certgen.Request{CommonName: cn, Hosts: hosts, Usage: usage, NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter})
	if err != nil {
		p.t.Fatal(err)
	}
	cf, kf := filepath.Join(p.dir, base+".crt"), filepath.Join(p.dir, base+".key")
	// The key first: a member that looks between the two writes finds a
	// pair that does not match and keeps the old one.
	writeFile(p.t, kf, key)
	writeFile(p.t, cf, cert)
	return cf, kf
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := certgen.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// clientTLS is a client config with a certificate of p (or none) that
// trusts the CA of roots.
func clientTLS(t *testing.T, roots *testPKI, certFile, keyFile string) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(roots.ca.CertPEM)
	cfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	if certFile != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg
}

// syncBuffer collects log output from many goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
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

// tlsCluster is three members on loopback TCP with mutual TLS on the client
// port and on the raft transport.
type tlsCluster struct {
	pki     *testPKI
	servers []*server.Server
	logs    *syncBuffer
}

func freeAddrs(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	var ls []net.Listener
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		out = append(out, l.Addr().String())
	}
	for _, l := range ls {
		l.Close()
	}
	return out
}

func startTLSCluster(t *testing.T) *tlsCluster {
	t.Helper()
	c := &tlsCluster{pki: newTestPKI(t, "kvd-test-ca"), logs: &syncBuffer{}}
	names := []string{"n1", "n2", "n3"}
	addrs := freeAddrs(t, 2*len(names))
	var peers []server.Peer
	for i, n := range names {
		peers = append(peers, server.Peer{Name: n, RaftAddr: addrs[2*i+1]})
	}
	var logOut io.Writer = c.logs
	if testing.Verbose() {
		logOut = io.MultiWriter(c.logs, os.Stderr)
	}
	dataDir := t.TempDir()
	for i, n := range names {
		hosts := []string{"127.0.0.1", "localhost", n}
		sc, sk := c.pki.issue(n+"-server", n, certgen.Server|certgen.Client, time.Time{}, hosts...)
		pc, pk := c.pki.issue(n+"-peer", n, certgen.Server|certgen.Client, time.Time{}, hosts...)
		cfg := server.DefaultConfig()
		cfg.Name = n
		cfg.DataDir = filepath.Join(dataDir, n)
		cfg.ClientAddr = addrs[2*i]
		cfg.RaftAddr = addrs[2*i+1]
		cfg.HTTPAddr = "127.0.0.1:0"
		cfg.InitialCluster = peers
		cfg.Logger = slog.New(slog.NewTextHandler(logOut, &slog.HandlerOptions{Level: slog.LevelInfo})).With("member", n)
		cfg.ClientTLS = server.TLSConfig{CertFile: sc, KeyFile: sk, TrustedCAFile: c.pki.caFile(), ClientCertAuth: true}
		cfg.PeerTLS = server.TLSConfig{CertFile: pc, KeyFile: pk, TrustedCAFile: c.pki.caFile(), ClientCertAuth: true, AllowedHostname: "localhost"}
		cfg.HTTPTLS = server.TLSConfig{CertFile: sc, KeyFile: sk}
		srv, err := server.New(cfg)
		if err != nil {
			t.Fatalf("start %s: %v", n, err)
		}
		c.servers = append(c.servers, srv)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, s := range c.servers {
			_ = s.Shutdown(ctx)
		}
	})
	return c
}

func (c *tlsCluster) endpoints(scheme string) []string {
	var eps []string
	for _, s := range c.servers {
		eps = append(eps, scheme+s.ClientAddr())
	}
	return eps
}

// goodClient returns an SDK client with a valid certificate.
func (c *tlsCluster) goodClient(t *testing.T, endpoints ...string) *client.Client {
	t.Helper()
	cf, kf := c.pki.issue("client-"+fmt.Sprint(time.Now().UnixNano()), "client", certgen.Client, time.Time{})
	if len(endpoints) == 0 {
		endpoints = c.endpoints("https://")
	}
	cli, err := client.New(client.Config{Endpoints: endpoints, TLS: clientTLS(t, c.pki, cf, kf), DialTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestMutualTLSCluster runs a cluster with mutual TLS on every port: it
// serves valid clients through every member (followers forward to the
// leader over TLS), and refuses plaintext, unknown-CA, expired and
// wrong-name certificates with errors that say so, on both sides.
func TestMutualTLSCluster(t *testing.T) {
	c := startTLSCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// Through each member alone: writes on followers are forwarded over
	// member-to-member TLS.
	for i, s := range c.servers {
		cli := c.goodClient(t, "https://"+s.ClientAddr())
		key := fmt.Sprintf("k%d", i)
		if _, err := cli.Put(ctx, key, "v"); err != nil {
			t.Fatalf("put via %s: %v", s.Name(), err)
		}
		resp, err := cli.Get(ctx, key)
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
			t.Fatalf("get via %s: %v %v", s.Name(), resp, err)
		}
	}
	// Every member applied every write (the raft transport works over TLS).
	cli := c.goodClient(t)
	for _, s := range c.servers {
		s := s
		eventually(t, 30*time.Second, func() error {
			st, err := cli.Status(ctx, s.ClientAddr())
			if err != nil {
				return err
			}
			if st.Header.Revision < 4 {
				return fmt.Errorf("%s at revision %d", s.Name(), st.Header.Revision)
			}
			return nil
		})
	}

	other := newTestPKI(t, "other-ca")
	goodCert, goodKey := c.pki.issue("client-ok", "client", certgen.Client, time.Time{})
	expCert, expKey := c.pki.issue("client-expired", "client", certgen.Client, time.Now().Add(-time.Minute))
	strangerCert, strangerKey := other.issue("stranger", "client", certgen.Client, time.Time{})
	wrongName := clientTLS(t, c.pki, goodCert, goodKey)
	wrongName.ServerName = "kvd.example.com"
	ep := c.servers[0].ClientAddr()
	tests := []struct {
		name      string
		endpoint  string
		tls       *tls.Config
		clientSay string // in the SDK's error
		memberSay string // in the member's log
	}{
		{"plaintext client", "http://" + ep, nil, "does it serve TLS", "does not speak TLS"},
		{"unknown CA of the members", "https://" + ep, clientTLS(t, other, goodCert, goodKey), "signed by a CA this end does not trust", "client refused this member's certificate"},
		{"client certificate of an unknown CA", "https://" + ep, clientTLS(t, c.pki, strangerCert, strangerKey), "does not trust the CA that signed this client's certificate", "signed by a CA this end does not trust"},
		{"expired client certificate", "https://" + ep, clientTLS(t, c.pki, expCert, expKey), "expired", "expired"},
		{"no client certificate", "https://" + ep, clientTLS(t, c.pki, "", ""), "requires a client certificate", "requires a client certificate"},
		{"wrong server name", "https://" + ep, wrongName, "not valid for the name dialed", "client refused this member's certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cli, err := client.New(client.Config{Endpoints: []string{tt.endpoint}, TLS: tt.tls, DialTimeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
			defer rcancel()
			_, err = cli.Get(rctx, "k0")
			if err == nil {
				t.Fatal("request succeeded")
			}
			if !strings.Contains(err.Error(), tt.clientSay) {
				t.Errorf("SDK error %q, want it to say %q", err, tt.clientSay)
			}
			eventually(t, 10*time.Second, func() error {
				for _, line := range strings.Split(c.logs.String(), "\n") {
					if strings.Contains(line, "TLS handshake refused") && strings.Contains(line, tt.memberSay) {
						return nil
					}
				}
				return fmt.Errorf("no member log line saying %q", tt.memberSay)
			})
		})
	}

	// The metrics listener serves HTTPS.
	hc := &tls.Config{RootCAs: clientTLS(t, c.pki, "", "").RootCAs, ServerName: "127.0.0.1"}
	conn, err := tls.Dial("tcp", c.servers[0].HTTPAddr(), hc)
	if err != nil {
		t.Fatalf("HTTPS metrics listener: %v", err)
	}
	conn.Close()
}

// TestTLSRotationUnderLoad replaces every member's client and peer
// certificates on disk while several clients write: no request fails, no
// acknowledged write is lost, and new handshakes get the new certificate.
func TestTLSRotationUnderLoad(t *testing.T) {
	c := startTLSCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	const (
		writers  = 4
		duration = 5 * time.Second
	)
	var (
		acked  sync.Map // key -> value
		nAcked atomic.Int64
		failed atomic.Int64
		firstE atomic.Value
		wg     sync.WaitGroup
	)
	stop := time.Now().Add(duration)
	for w := range writers {
		cli := c.goodClient(t)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Now().Before(stop); i++ {
				key, val := fmt.Sprintf("w%d/%06d", w, i), fmt.Sprintf("v%d", i)
				rctx, rcancel := context.WithTimeout(ctx, 20*time.Second)
				_, err := cli.Put(rctx, key, val)
				rcancel()
				if err != nil {
					failed.Add(1)
					firstE.CompareAndSwap(nil, err)
					continue
				}
				acked.Store(key, val)
				nAcked.Add(1)
			}
		}()
	}
	// Rotate mid-load: new key pairs under the same file names, the
	// subject marked so that handshakes show which one they got.
	time.Sleep(duration / 3) // lets load build up before the rotation; not synchronisation
	for _, s := range c.servers {
		n := s.Name()
		hosts := []string{"127.0.0.1", "localhost", n}
		c.pki.issue(n+"-server", n+"-rotated", certgen.Server|certgen.Client, time.Time{}, hosts...)
		c.pki.issue(n+"-peer", n+"-rotated", certgen.Server|certgen.Client, time.Time{}, hosts...)
	}
	wg.Wait()
	if f := failed.Load(); f > 0 {
		t.Fatalf("%d of %d writes failed during the rotation; first: %v", f, f+nAcked.Load(), firstE.Load())
	}
	if nAcked.Load() < writers {
		t.Fatalf("only %d writes acknowledged", nAcked.Load())
	}
	t.Logf("%d writes acknowledged by %d writers in %s across the rotation, none failed", nAcked.Load(), writers, duration)

	// New handshakes get the new certificate, on the client and the raft
	// ports.
	for _, s := range c.servers {
		for _, addr := range []string{s.ClientAddr(), s.RaftAddr()} {
			cf, kf := c.pki.issue("probe", "probe", certgen.Client|certgen.Server, time.Time{}, "localhost")
			cfg := clientTLS(t, c.pki, cf, kf)
			cfg.ServerName = "127.0.0.1"
			eventually(t, 20*time.Second, func() error {
				conn, err := tls.Dial("tcp", addr, cfg)
				if err != nil {
					return err
				}
				defer conn.Close()
				if cn := conn.ConnectionState().PeerCertificates[0].Subject.CommonName; cn != s.Name()+"-rotated" {
					return fmt.Errorf("%s at %s still presents %q", s.Name(), addr, cn)
				}
				return nil
			})
		}
	}

	// Every acknowledged write is there, read linearizably.
	cli := c.goodClient(t)
	var missing []string
	acked.Range(func(k, v any) bool {
		resp, err := cli.Get(ctx, k.(string))
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != v.(string) {
			missing = append(missing, fmt.Sprintf("%s (%v)", k, err))
		}
		return len(missing) < 10
	})
	if len(missing) > 0 {
		t.Fatalf("acknowledged writes lost: %v", missing)
	}
}

func eventually(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not met within %s: %v", timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
