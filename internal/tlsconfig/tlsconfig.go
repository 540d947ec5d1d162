package tlsconfig

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultCheckInterval is how often, at most, handshakes look for changed
// files when Config.CheckInterval is zero.
const DefaultCheckInterval = time.Second

// Config names the files of one side of TLS and how peers are checked. The
// zero value of each field is described on it.
type Config struct {
	// CertFile and KeyFile are this side's certificate (with any
	// intermediates after it) and its private key, PEM-encoded. Both or
	// neither: a server needs them; a client without them sends no
	// certificate.
	CertFile string
	KeyFile  string
	// CAFiles hold the CA certificates trusted to sign the other side's
	// certificate. A client verifies servers against them (none: the
	// system's roots); a server verifies client certificates against them
	// (none: it asks for no client certificate).
	CAFiles []string
	// ClientCertAuth makes a server refuse clients without a certificate
	// signed by one of CAFiles. Without it, a client certificate is
	// verified only when a client offers one.
	ClientCertAuth bool
	// AllowedCN, when set, makes a server accept only client certificates
	// whose subject common name is exactly this, and a client accept only
	// servers whose certificate has it: between members, both ends of a
	// connection must be members.
	AllowedCN string
	// AllowedHostname, when set, makes a server accept only client
	// certificates valid for this host name (a SAN, as a server's
	// certificate is checked), and a client only servers whose certificate
	// is valid for it too.
	AllowedHostname string
	// CheckInterval is the least time between two looks at the files; zero
	// means DefaultCheckInterval.
	CheckInterval time.Duration
	// Logger is told about reloads and files that fail to reload; nil
	// means slog.Default().
	Logger *slog.Logger
}

// Enabled reports whether the config names any file.
func (c Config) Enabled() bool {
	return c.CertFile != "" || c.KeyFile != "" || len(c.CAFiles) > 0
}

// Validate reports the first thing wrong with the config. It reads no file.
func (c Config) Validate() error {
	if c.CertFile != "" && c.KeyFile == "" {
		return fmt.Errorf("certificate file %q has no key file", c.CertFile)
	}
	if c.KeyFile != "" && c.CertFile == "" {
		return fmt.Errorf("key file %q has no certificate file", c.KeyFile)
	}
	for _, f := range c.CAFiles {
		if f == "" {
			return errors.New("empty CA file name")
		}
	}
	if c.ClientCertAuth && len(c.CAFiles) == 0 {
		return errors.New("client certificate authentication needs a trusted CA file")
	}
	if (c.AllowedCN != "" || c.AllowedHostname != "") && !c.ClientCertAuth {
		return errors.New("an allowed common name or host name needs client certificate authentication")
	}
	if c.CheckInterval < 0 {
		return fmt.Errorf("check interval %s is negative", c.CheckInterval)
	}
	return nil
}

// Source keeps the files of a Config loaded, reloading them when they
// change, and makes tls.Configs from them. It is safe for concurrent use.
type Source struct {
	cfg      Config
	log      *slog.Logger
	interval time.Duration
	files    []string // every file the config names, in a fixed order

	cur atomic.Pointer[material]

	mu        sync.Mutex // held by the one handshake that checks the files
	nextCheck time.Time
	stamps    []stamp
	lastErr   string // the last reload failure logged, so it is logged once
}

// material is what one load of the files produced.
type material struct {
	cert *tls.Certificate // nil when the config names none
	pool *x509.CertPool   // nil when the config names no CA
}

// stamp is what a cheap look at a file sees.
type stamp struct {
	size    int64
	modTime time.Time
}

// New loads the config's files and returns a Source that keeps them
// loaded. It fails when a file cannot be read or parsed, or a key does not
// match its certificate.
func New(cfg Config) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	s := &Source{cfg: cfg, log: cfg.Logger, interval: cfg.CheckInterval}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.interval == 0 {
		s.interval = DefaultCheckInterval
	}
	if cfg.CertFile != "" {
		s.files = append(s.files, cfg.CertFile, cfg.KeyFile)
	}
	s.files = append(s.files, cfg.CAFiles...)
	stamps, err := s.stat()
	if err != nil {
		return nil, err
	}
	m, err := s.load()
	if err != nil {
		return nil, err
	}
	s.stamps = stamps
	s.nextCheck = time.Now().Add(s.interval)
	s.cur.Store(m)
	return s, nil
}

// HasCertificate reports whether the source has a certificate to present.
func (s *Source) HasCertificate() bool { return s.cfg.CertFile != "" }

// Certificate returns the certificate in use (the leaf parsed), for
// tests and for reporting its expiry.
func (s *Source) Certificate() *x509.Certificate {
	m := s.current()
	if m.cert == nil {
		return nil
	}
	return m.cert.Leaf
}

func (s *Source) stat() ([]stamp, error) {
	stamps := make([]stamp, len(s.files))
	for i, f := range s.files {
		fi, err := os.Stat(f)
		if err != nil {
			return nil, err
		}
		stamps[i] = stamp{size: fi.Size(), modTime: fi.ModTime()}
	}
	return stamps, nil
}

func (s *Source) load() (*material, error) {
	m := &material{}
	if s.cfg.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load certificate %s and key %s: %w", s.cfg.CertFile, s.cfg.KeyFile, err)
		}
		m.cert = &cert // LoadX509KeyPair fills in Leaf
	}
	if len(s.cfg.CAFiles) > 0 {
		m.pool = x509.NewCertPool()
		for _, f := range s.cfg.CAFiles {
			pemBytes, err := os.ReadFile(f)
			if err != nil {
				return nil, fmt.Errorf("load trusted CA: %w", err)
			}
			if !m.pool.AppendCertsFromPEM(pemBytes) {
				return nil, fmt.Errorf("load trusted CA %s: no PEM certificate in it", f)
			}
		}
	}
	return m, nil
}

// current returns the loaded material, first reloading it if the check
// interval has passed and a file changed. Only one handshake checks at a
// time; the others go on with what is loaded.
func (s *Source) current() *material {
	m := s.cur.Load()
	if !s.mu.TryLock() {
		return m
	}
	defer s.mu.Unlock()
	now := time.Now()
	if now.Before(s.nextCheck) {
		return m
	}
	s.nextCheck = now.Add(s.interval)
	stamps, err := s.stat()
	if err == nil && sameStamps(stamps, s.stamps) {
		return m
	}
	var nm *material
	if err == nil {
		nm, err = s.load()
	}
	if err != nil {
		// A rotation in progress (one of the files replaced, not yet the
		// other) fails here; keep the old files and look again later.
		if msg := err.Error(); msg != s.lastErr {
			s.lastErr = msg
			s.log.Warn("TLS files changed but cannot be loaded; still using the previous ones", "err", err)
		}
		return m
	}
	s.lastErr = ""
	s.stamps = stamps
	if sameMaterial(m, nm) {
		return m
	}
	s.cur.Store(nm)
	attrs := []any{"files", s.files}
	if nm.cert != nil {
		attrs = append(attrs, "subject", nm.cert.Leaf.Subject.CommonName, "not_after", nm.cert.Leaf.NotAfter)
	}
	s.log.Info("TLS files reloaded", attrs...)
	return nm
}

func sameStamps(a, b []stamp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].size != b[i].size || !a[i].modTime.Equal(b[i].modTime) {
			return false
		}
	}
	return true
}

// sameMaterial reports whether a reload found what was loaded already (a
// file touched but not changed).
func sameMaterial(a, b *material) bool {
	if (a.cert == nil) != (b.cert == nil) || (a.pool == nil) != (b.pool == nil) {
		return false
	}
	if a.cert != nil && !bytes.Equal(a.cert.Certificate[0], b.cert.Certificate[0]) {
		return false
	}
	return a.pool == nil || a.pool.Equal(b.pool)
}

// ServerConfig returns the config of a listener that presents the current
// certificate and verifies client certificates as the Config says. Each
// handshake gets the files loaded then. nextProtos are the ALPN protocols
// it offers ("h2" for gRPC, none for raft).
func (s *Source) ServerConfig(nextProtos ...string) (*tls.Config, error) {
	if !s.HasCertificate() {
		return nil, errors.New("a TLS listener needs a certificate and key file")
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			return s.serverConfig(nextProtos), nil
		},
	}, nil
}

func (s *Source) serverConfig(nextProtos []string) *tls.Config {
	m := s.current()
	c := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		NextProtos:   nextProtos,
		Certificates: []tls.Certificate{*m.cert},
	}
	if m.pool != nil {
		c.ClientCAs = m.pool
		c.ClientAuth = tls.VerifyClientCertIfGiven
	}
	if s.cfg.ClientCertAuth {
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	if s.restrictsNames() {
		c.VerifyConnection = func(cs tls.ConnectionState) error { return s.checkAllowed("client", cs) }
	}
	return c
}

func (s *Source) restrictsNames() bool { return s.cfg.AllowedCN != "" || s.cfg.AllowedHostname != "" }

// ErrNotAllowed is wrapped by the error of a handshake whose peer's
// certificate is valid but names someone this end does not allow.
var ErrNotAllowed = errors.New("certificate not allowed")

// checkAllowed runs after the chain is verified: the certificate of the
// other end (whose: "client" or "server") must also carry the allowed
// common name or host name.
func (s *Source) checkAllowed(whose string, cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%s %w: no certificate", whose, ErrNotAllowed)
	}
	leaf := cs.PeerCertificates[0]
	if s.cfg.AllowedCN != "" && leaf.Subject.CommonName != s.cfg.AllowedCN {
		return fmt.Errorf("%s %w: common name %q, want %q", whose, ErrNotAllowed, leaf.Subject.CommonName, s.cfg.AllowedCN)
	}
	if s.cfg.AllowedHostname != "" {
		if err := leaf.VerifyHostname(s.cfg.AllowedHostname); err != nil {
			return fmt.Errorf("%s %w: not valid for host %q: %w", whose, ErrNotAllowed, s.cfg.AllowedHostname, err)
		}
	}
	return nil
}

// ClientConfig returns the config of one connection to serverName: it
// presents the current certificate (if any), verifies the server against
// the current CAs (none: the system's roots) and, with AllowedCN or
// AllowedHostname, refuses a server certificate without that name.
func (s *Source) ClientConfig(serverName string) *tls.Config {
	m := s.current()
	c := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: serverName,
		RootCAs:    m.pool,
	}
	if m.cert != nil {
		// Always present it, even when the server names CAs it does not
		// come from (crypto/tls would then send none): "unknown CA" is a
		// clearer refusal than "certificate required".
		cert := m.cert
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
	}
	if s.restrictsNames() {
		c.VerifyConnection = func(cs tls.ConnectionState) error { return s.checkAllowed("server", cs) }
	}
	return c
}
