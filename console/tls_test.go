package console_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/cookiejar"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/internal/certgen"
	"github.com/kvd-io/kvd/internal/poll"
	"github.com/kvd-io/kvd/server"
)

// TestConsoleOverTLS runs the console of a cluster with mutual TLS on the
// client, peer and HTTP ports, one CA for all: the console reaches every
// member's Status over the members' TLS, and its own calls are a plain
// client's, never a member's. (Presenting the member's certificate to its
// client port would make them a member's, which authorization trusts
// beyond any user: with auth on, a page without a session would then read
// everything.)
func TestConsoleOverTLS(t *testing.T) {
	dir := t.TempDir()
	ca, err := certgen.NewCA("console-test-ca", time.Now().Add(-time.Hour), time.Now().Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := certgen.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.crt", ca.CertPEM)
	issue := func(base, cn string, usage certgen.Usage, hosts ...string) (string, string) {
		cert, key, err := ca.Issue(certgen.Request{CommonName: cn, Hosts: hosts, Usage: usage, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return write(base+".crt", cert), write(base+".key", key)
	}
	names := []string{"n1", "n2", "n3"}
	var addrs []string
	for range 2 * len(names) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close()
	}
	var peers []server.Peer
	for i, n := range names {
		peers = append(peers, server.Peer{Name: n, RaftAddr: addrs[2*i+1]})
	}
	var servers []*server.Server
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, s := range servers {
			_ = s.Shutdown(ctx)
		}
	})
	for i, n := range names {
		sc, sk := issue(n+"-server", n, certgen.Server|certgen.Client, "127.0.0.1", "localhost")
		pc, pk := issue(n+"-peer", n, certgen.Server|certgen.Client, "127.0.0.1", "localhost")
		cfg := server.DefaultConfig()
		cfg.Name, cfg.DataDir = n, filepath.Join(dir, n)
		cfg.ClientAddr, cfg.RaftAddr, cfg.HTTPAddr = addrs[2*i], addrs[2*i+1], "127.0.0.1:0"
		cfg.InitialCluster = peers
		cfg.HeartbeatTimeout, cfg.ElectionTimeout, cfg.LeaderLeaseTimeout = 500*time.Millisecond, 500*time.Millisecond, 500*time.Millisecond
		cfg.Auth.BcryptCost = bcrypt.MinCost
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
		cfg.ClientTLS = server.TLSConfig{CertFile: sc, KeyFile: sk, TrustedCAFile: caFile, ClientCertAuth: true}
		cfg.PeerTLS = server.TLSConfig{CertFile: pc, KeyFile: pk, TrustedCAFile: caFile, ClientCertAuth: true}
		cfg.HTTPTLS = server.TLSConfig{CertFile: sc, KeyFile: sk}
		srv, err := server.New(cfg)
		if err != nil {
			t.Fatalf("start %s: %v", n, err)
		}
		servers = append(servers, srv)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca.CertPEM)
	cf, kf := issue("client", "client", certgen.Client)
	cert, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	var eps []string
	for _, s := range servers {
		eps = append(eps, s.ClientAddr())
	}
	cli, err := client.New(client.Config{Endpoints: eps, TLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()

	jar, _ := cookiejar.New(nil)
	p := &consolePage{t: t, base: "https://" + servers[0].HTTPAddr(), http: &http.Client{
		Jar: jar, Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}},
	}}
	var cl struct {
		Members []struct {
			Name   string `json:"name"`
			Status *struct {
				RaftState string `json:"raft_state"`
			} `json:"status"`
			Error string `json:"error"`
		} `json:"members"`
	}
	err = poll.Within(30*time.Second, func() error {
		cl.Members = nil
		if code := p.do("GET", "/ui/api/cluster", nil, &cl, true); code != http.StatusOK {
			return fmt.Errorf("GET /ui/api/cluster: %d", code)
		}
		for _, m := range cl.Members {
			if m.Status == nil {
				return fmt.Errorf("%s did not answer: %s", m.Name, m.Error)
			}
		}
		if len(cl.Members) != 3 {
			return fmt.Errorf("%d members listed", len(cl.Members))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the console over TLS does not show three answering members: %v (%+v)", err, cl)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for _, step := range []func() error{
		func() error { _, err := cli.Put(ctx, "/secret", "s"); return err },
		func() error { _, err := cli.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	var e apiErr
	if code := p.do("GET", "/ui/api/keys?prefix=", nil, &e, true); code != http.StatusUnauthorized {
		t.Fatalf("a page without a session read keys with auth on: %d %+v; the console's calls must not be a member's", code, e)
	}
	var ch change
	if code := p.do("POST", "/ui/api/key", map[string]any{"k": b64("/secret"), "value": "x", "expect": 0}, &ch, false); code != http.StatusUnauthorized {
		t.Fatalf("a page without a session wrote with auth on: %d %+v", code, ch)
	}
	req, _ := http.NewRequest("POST", p.base+"/ui/api/login", strings.NewReader(`{"user":"root","password":"rootpw"}`))
	req.Header.Set("X-KVD-Console", "1")
	resp, err := p.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 1 || !resp.Cookies()[0].Secure {
		t.Fatalf("login as root over HTTPS: %d, cookies %v: want one Secure cookie", resp.StatusCode, resp.Cookies())
	}
	if code := p.do("GET", "/ui/api/keys?prefix=", nil, nil, true); code != http.StatusOK {
		t.Fatalf("keys as root over HTTPS: %d", code)
	}
}
