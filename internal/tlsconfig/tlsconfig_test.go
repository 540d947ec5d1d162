package tlsconfig

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/kvd-io/kvd/internal/certgen"
)

// pki is a CA and the files of certificates it issued, in a temp dir.
type pki struct {
	t   *testing.T
	dir string
	ca  *certgen.CA
}

func newPKI(t *testing.T, dir, name string) *pki {
	t.Helper()
	now := time.Now()
	ca, err := certgen.NewCA(name, now.Add(-time.Hour), now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{t: t, dir: dir, ca: ca}
	write(t, filepath.Join(dir, name+".crt"), ca.CertPEM)
	return p
}

func (p *pki) caFile() string { return filepath.Join(p.dir, p.ca.Cert.Subject.CommonName+".crt") }

// issue writes base.crt and base.key, valid now unless notAfter says
// otherwise.
func (p *pki) issue(base, cn string, usage certgen.Usage, notAfter time.Time, hosts ...string) (certFile, keyFile string) {
	p.t.Helper()
	if notAfter.IsZero() {
		notAfter = time.Now().Add(time.Hour)
	}
	cert, key, err := p.ca.Issue(certgen.Request{CommonName: cn, Hosts: hosts, Usage: usage,
		NotBefore: time.Now().Add(-2 * time.Hour), NotAfter: notAfter})
	if err != nil {
		p.t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, base+".crt"), filepath.Join(p.dir, base+".key")
	write(p.t, certFile, cert)
	write(p.t, keyFile, key)
	return certFile, keyFile
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := certgen.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// serve runs a TLS echo listener with cfg and returns its address; the
// errors of its handshakes arrive on the returned channel.
func serve(t *testing.T, cfg *tls.Config) (string, <-chan error) {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	errs := make(chan error, 100)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				tc := c.(*tls.Conn)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				err := tc.HandshakeContext(ctx)
				select {
				case errs <- err:
				default:
				}
				if err == nil {
					_, _ = io.Copy(c, c)
				}
			}()
		}
	}()
	return ln.Addr().String(), errs
}

// dial handshakes with addr and checks the connection with an echo; it
// returns the server's leaf common name.
func dial(addr string, cfg *tls.Config) (*tls.Conn, string, error) {
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, cfg)
	if err != nil {
		return nil, "", err
	}
	if err := echo(c); err != nil {
		c.Close()
		return nil, "", err
	}
	return c, c.ConnectionState().PeerCertificates[0].Subject.CommonName, nil
}

func echo(c net.Conn) error {
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write([]byte("ping")); err != nil {
		return err
	}
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != "ping" {
		return errors.New("echo mismatch")
	}
	return nil
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		{"empty", Config{}, ""},
		{"cert without key", Config{CertFile: "a.crt"}, `certificate file "a.crt" has no key file`},
		{"key without cert", Config{KeyFile: "a.key"}, `key file "a.key" has no certificate file`},
		{"client auth without CA", Config{CertFile: "a", KeyFile: "b", ClientCertAuth: true}, "needs a trusted CA file"},
		{"allowed CN without client auth", Config{CertFile: "a", KeyFile: "b", CAFiles: []string{"c"}, AllowedCN: "x"}, "needs client certificate authentication"},
		{"negative interval", Config{CheckInterval: -time.Second}, "negative"},
		{"full", Config{CertFile: "a", KeyFile: "b", CAFiles: []string{"c"}, ClientCertAuth: true, AllowedHostname: "h"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Validate = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestNewRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir, "ca")
	cert, _ := p.issue("a", "a", certgen.Server, time.Time{}, "localhost")
	_, otherKey := p.issue("b", "b", certgen.Server, time.Time{}, "localhost")
	if _, err := New(Config{CertFile: cert, KeyFile: otherKey}); err == nil {
		t.Fatal("a key that does not match its certificate was accepted")
	}
	if _, err := New(Config{CAFiles: []string{cert + ".missing"}}); err == nil {
		t.Fatal("a missing CA file was accepted")
	}
	garbage := filepath.Join(dir, "garbage.pem")
	write(t, garbage, []byte("not pem"))
	if _, err := New(Config{CAFiles: []string{garbage}}); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("a CA file without certificates: %v", err)
	}
}

func TestMutualTLSAndRefusals(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir, "ca")
	other := newPKI(t, dir, "other-ca")
	srvCert, srvKey := p.issue("server", "server", certgen.Server, time.Time{}, "127.0.0.1", "localhost")
	cliCert, cliKey := p.issue("client", "client", certgen.Client, time.Time{})
	expCert, expKey := p.issue("expired", "expired", certgen.Client, time.Now().Add(-time.Hour))
	strangerCert, strangerKey := other.issue("stranger", "stranger", certgen.Client, time.Time{})

	srv, err := New(Config{CertFile: srvCert, KeyFile: srvKey, CAFiles: []string{p.caFile()}, ClientCertAuth: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	scfg, err := srv.ServerConfig()
	if err != nil {
		t.Fatal(err)
	}
	addr, serverErrs := serve(t, scfg)
	client := func(cert, key, ca string) *tls.Config {
		t.Helper()
		cfg := Config{CertFile: cert, KeyFile: key, Logger: quiet()}
		if ca != "" {
			cfg.CAFiles = []string{ca}
		}
		s, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		return s.ClientConfig("127.0.0.1")
	}

	c, cn, err := dial(addr, client(cliCert, cliKey, p.caFile()))
	if err != nil {
		t.Fatalf("valid client: %v", err)
	}
	c.Close()
	if cn != "server" {
		t.Fatalf("server presented %q", cn)
	}
	if err := <-serverErrs; err != nil {
		t.Fatalf("server side of the valid handshake: %v", err)
	}

	tests := []struct {
		name       string
		cfg        *tls.Config
		clientHint string // in the client's explained error
		serverHint string // in the server's explained error
	}{
		{"unknown CA of the server", client(cliCert, cliKey, other.caFile()), "signed by a CA this end does not trust", "client refused"},
		{"client of an unknown CA", client(strangerCert, strangerKey, p.caFile()), "does not trust the CA that signed this client's certificate", "signed by a CA this end does not trust"},
		{"expired client", client(expCert, expKey, p.caFile()), "expired", "expired"},
		{"no client certificate", client("", "", p.caFile()), "requires a client certificate", "requires a client certificate"},
		{"wrong server name", func() *tls.Config {
			c := client(cliCert, cliKey, p.caFile())
			c.ServerName = "kvd.example.com"
			return c
		}(), "not valid for the name dialed", "client refused"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, _, err := dial(addr, tt.cfg)
			if err == nil {
				c.Close()
				t.Fatal("handshake succeeded")
			}
			if got := Explain(ClientSide, err).Error(); !strings.Contains(got, tt.clientHint) {
				t.Errorf("client error %q, want it to say %q", got, tt.clientHint)
			}
			if !CertificateRefused(Explain(ClientSide, err)) {
				t.Errorf("CertificateRefused(%v) = false on the client side", err)
			}
			select {
			case serr := <-serverErrs:
				if got := Explain(ServerSide, serr); got == nil || !strings.Contains(got.Error(), tt.serverHint) {
					t.Errorf("server error %v, want it to say %q", got, tt.serverHint)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("server saw no handshake")
			}
		})
	}

	t.Run("plaintext client", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, _ = c.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"))
		serr := <-serverErrs
		if got := Explain(ServerSide, serr); got == nil || !strings.Contains(got.Error(), "does not speak TLS") {
			t.Fatalf("server error %v", got)
		}
	})
}

// TestCertificateRefusedIsNotANetworkError checks that the errors a retry
// may cure are not taken for refused certificates (the refused ones are
// checked in TestMutualTLSAndRefusals).
func TestCertificateRefusedIsNotANetworkError(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
	}{
		{"nil", nil},
		{"connection refused", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}},
		{"hung up", io.EOF},
		{"plaintext refused", PlaintextRefused(io.EOF)},
		{"server does not speak TLS", Explain(ClientSide, tls.RecordHeaderError{Msg: "first record does not look like a TLS handshake"})},
		{"handshake failure alert", tls.AlertError(40)},
		{"internal error alert", &net.OpError{Op: "remote error", Err: alertInternal(80)}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if CertificateRefused(tt.err) {
				t.Errorf("CertificateRefused(%v) = true", tt.err)
			}
		})
	}
	if !CertificateRefused(&net.OpError{Op: "remote error", Err: alertInternal(alertUnknownCA)}) {
		t.Error("a remote unknown-CA alert is not a refused certificate")
	}
	if !CertificateRefused(fmt.Errorf("wrapped: %w", x509.UnknownAuthorityError{})) {
		t.Error("a wrapped unknown-authority error is not a refused certificate")
	}
}

// alertInternal stands for crypto/tls's unexported alert type (a uint8
// that is an error), as remote errors carry it.
type alertInternal uint8

func (a alertInternal) Error() string { return tls.AlertError(a).Error() }

func TestAllowedNames(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir, "ca")
	srvCert, srvKey := p.issue("server", "n1", certgen.Server|certgen.Client, time.Time{}, "127.0.0.1", "n1.kvd")
	goodCert, goodKey := p.issue("n2", "n2", certgen.Server|certgen.Client, time.Time{}, "127.0.0.1", "n2.kvd")
	badCert, badKey := p.issue("intruder", "intruder", certgen.Server|certgen.Client, time.Time{}, "127.0.0.1", "evil.example")
	for _, tt := range []struct {
		name string
		cfg  Config
	}{
		{"cn", Config{AllowedCN: "n2"}},
		{"hostname", Config{AllowedHostname: "n2.kvd"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := tt.cfg
			cfg.CertFile, cfg.KeyFile, cfg.CAFiles, cfg.ClientCertAuth, cfg.Logger = srvCert, srvKey, []string{p.caFile()}, true, quiet()
			srv, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			scfg, _ := srv.ServerConfig()
			addr, serverErrs := serve(t, scfg)
			good, _ := New(Config{CertFile: goodCert, KeyFile: goodKey, CAFiles: []string{p.caFile()}})
			c, _, err := dial(addr, good.ClientConfig("127.0.0.1"))
			if err != nil {
				t.Fatalf("allowed peer refused: %v", err)
			}
			c.Close()
			<-serverErrs
			bad, _ := New(Config{CertFile: badCert, KeyFile: badKey, CAFiles: []string{p.caFile()}})
			if c, _, err := dial(addr, bad.ClientConfig("127.0.0.1")); err == nil {
				c.Close()
				t.Fatal("a peer with another name was accepted")
			}
			if serr := <-serverErrs; !errors.Is(serr, ErrNotAllowed) {
				t.Fatalf("server error %v, want ErrNotAllowed", serr)
			}

			// The dialing side checks the names too: a member that allows
			// n2 only refuses the server n1, and accepts one that is n2.
			dialer := tt.cfg
			dialer.CertFile, dialer.KeyFile, dialer.CAFiles, dialer.ClientCertAuth, dialer.Logger = goodCert, goodKey, []string{p.caFile()}, true, quiet()
			strict, err := New(dialer)
			if err != nil {
				t.Fatal(err)
			}
			c, _, err = dial(addr, strict.ClientConfig("127.0.0.1"))
			if err == nil {
				c.Close()
				t.Fatal("a client that allows n2 only accepted the server n1")
			}
			if !errors.Is(err, ErrNotAllowed) || !strings.Contains(err.Error(), "server certificate not allowed") || !CertificateRefused(err) {
				t.Fatalf("client error %v, want a server certificate not allowed", err)
			}
			<-serverErrs
			n2Srv, err := New(Config{CertFile: goodCert, KeyFile: goodKey, Logger: quiet()})
			if err != nil {
				t.Fatal(err)
			}
			n2cfg, _ := n2Srv.ServerConfig()
			n2Addr, _ := serve(t, n2cfg)
			c, _, err = dial(n2Addr, strict.ClientConfig("127.0.0.1"))
			if err != nil {
				t.Fatalf("a client that allows n2 refused the server n2: %v", err)
			}
			c.Close()
		})
	}
}

// TestRotation replaces the server's certificate and the trusted CA on disk:
// new handshakes use the new files, a connection made before keeps working,
// and a half-done rotation (a certificate whose key is not there yet) keeps
// the old pair in use.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	p := newPKI(t, dir, "ca")
	srvCert, srvKey := p.issue("server", "server-v1", certgen.Server, time.Time{}, "127.0.0.1")
	cliCert, cliKey := p.issue("client", "client", certgen.Client, time.Time{})
	caFile := filepath.Join(dir, "trusted.crt")
	write(t, caFile, p.ca.CertPEM)

	srv, err := New(Config{CertFile: srvCert, KeyFile: srvKey, CAFiles: []string{caFile}, ClientCertAuth: true,
		CheckInterval: time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	scfg, _ := srv.ServerConfig()
	addr, _ := serve(t, scfg)
	cli, err := New(Config{CertFile: cliCert, KeyFile: cliKey, CAFiles: []string{caFile}, CheckInterval: time.Millisecond, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	old, cn, err := dial(addr, cli.ClientConfig("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	if cn != "server-v1" {
		t.Fatalf("server presented %q", cn)
	}

	// Half a rotation: the new certificate without its key.
	newCert, newKey, err := p.ca.Issue(certgen.Request{CommonName: "server-v2", Hosts: []string{"127.0.0.1"}, Usage: certgen.Server,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	write(t, srvCert, newCert)
	waitFor(t, func() error {
		c, cn, err := dial(addr, cli.ClientConfig("127.0.0.1"))
		if err != nil {
			return err
		}
		c.Close()
		if cn != "server-v1" {
			return errors.New("half-rotated pair served: " + cn)
		}
		return nil
	})
	write(t, srvKey, newKey)
	waitFor(t, func() error {
		c, cn, err := dial(addr, cli.ClientConfig("127.0.0.1"))
		if err != nil {
			return err
		}
		c.Close()
		if cn != "server-v2" {
			return errors.New("still " + cn)
		}
		return nil
	})
	if err := echo(old); err != nil {
		t.Fatalf("connection made before the rotation: %v", err)
	}

	// A new CA: the client's new certificate is refused until the server
	// trusts the new CA too, then accepted without a restart.
	p2 := newPKI(t, dir, "ca-2")
	cli2Cert, cli2Key := p2.issue("client2", "client2", certgen.Client, time.Time{})
	cli2, err := New(Config{CertFile: cli2Cert, KeyFile: cli2Key, CAFiles: []string{caFile}})
	if err != nil {
		t.Fatal(err)
	}
	if c, _, err := dial(addr, cli2.ClientConfig("127.0.0.1")); err == nil {
		c.Close()
		t.Fatal("a certificate of a CA not yet trusted was accepted")
	}
	write(t, caFile, append(append([]byte{}, p.ca.CertPEM...), p2.ca.CertPEM...))
	waitFor(t, func() error {
		c, _, err := dial(addr, cli2.ClientConfig("127.0.0.1"))
		if err != nil {
			return err
		}
		return c.Close()
	})
	if got := srv.Certificate().Subject.CommonName; got != "server-v2" {
		t.Fatalf("Certificate() = %q", got)
	}
}

func waitFor(t *testing.T, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met in 20s: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestMain(m *testing.M) { os.Exit(m.Run()) }
