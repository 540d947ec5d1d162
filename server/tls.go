package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"google.golang.org/grpc"

	"github.com/kvd-io/kvd/internal/tlsconfig"
	"github.com/kvd-io/kvd/internal/tlsgrpc"
	"github.com/kvd-io/kvd/member"
)

// TLSConfig secures one of a member's listeners with TLS, from PEM files
// that are reloaded when they change (see package tlsconfig: rotation needs
// no restart and drops no connection). The zero value means plaintext.
type TLSConfig struct {
	// CertFile and KeyFile are the listener's certificate and key; setting
	// them turns TLS on.
	CertFile string
	KeyFile  string
	// TrustedCAFile holds the CAs whose client certificates the listener
	// verifies (and, on the peer side, the CAs that sign the other members'
	// certificates).
	TrustedCAFile string
	// ClientCertAuth refuses clients without a certificate signed by
	// TrustedCAFile.
	ClientCertAuth bool
	// AllowedCN and AllowedHostname (peer side only) accept only member
	// certificates with this common name, or valid for this host name.
	AllowedCN       string
	AllowedHostname string
}

// Enabled reports whether the listener serves TLS.
func (t TLSConfig) Enabled() bool { return t.CertFile != "" }

// validate checks t for the listener named what, whose flags start with
// prefix ("", "peer-" or "http-") in the messages.
func (t TLSConfig) validate(what, prefix string, names bool) error {
	if t.CertFile != "" && t.KeyFile == "" {
		return fmt.Errorf("%s TLS: --%scert-file %q needs --%skey-file", what, prefix, t.CertFile, prefix)
	}
	if t.KeyFile != "" && t.CertFile == "" {
		return fmt.Errorf("%s TLS: --%skey-file %q needs --%scert-file", what, prefix, t.KeyFile, prefix)
	}
	if !t.Enabled() && (t.TrustedCAFile != "" || t.ClientCertAuth) {
		return fmt.Errorf("%s TLS: --%strusted-ca-file and --%sclient-cert-auth need --%scert-file and --%skey-file", what, prefix, prefix, prefix, prefix)
	}
	if t.ClientCertAuth && t.TrustedCAFile == "" {
		return fmt.Errorf("%s TLS: --%sclient-cert-auth needs --%strusted-ca-file to verify client certificates against", what, prefix, prefix)
	}
	if !names && (t.AllowedCN != "" || t.AllowedHostname != "") {
		return fmt.Errorf("%s TLS: allowed names apply to member certificates only", what)
	}
	if (t.AllowedCN != "" || t.AllowedHostname != "") && !t.ClientCertAuth {
		return fmt.Errorf("%s TLS: --%scert-allowed-cn and --%scert-allowed-hostname need --%sclient-cert-auth", what, prefix, prefix, prefix)
	}
	return nil
}

func (c Config) validateTLS() error {
	return errors.Join(
		c.ClientTLS.validate("client", "", false),
		c.PeerTLS.validate("peer", "peer-", true),
		c.HTTPTLS.validate("http", "http-", false),
	)
}

// tlsSetup is the TLS of a member's listeners and of the connections it
// opens to other members; nil fields mean plaintext.
type tlsSetup struct {
	// grpcCreds serve the client API (and the member RPCs on it).
	grpcCreds grpc.ServerOption
	// memberDial are the credentials of connections to other members'
	// client API: forwarded writes, member RPCs, joining.
	memberDial grpc.DialOption
	// memberDialErr says why the last connection to a member's client
	// port failed, for the errors of calls to it.
	memberDialErr func(addr string) error
	raft          *member.RaftTLS
	http          *tls.Config
	// peerCAs verify member certificates on the client port, when members
	// present their peer certificates there (TLS on both ports).
	peerCAs *x509.CertPool
}

func caFiles(files ...string) []string {
	var out []string
	for _, f := range files {
		if f != "" {
			out = append(out, f)
		}
	}
	return out
}

// newTLSSetup loads the config's TLS files.
//
// Members call each other on the client port (forwarded writes, member
// RPCs, joining), so with TLS on it that port also trusts the peer CA, and
// a member presents its peer certificate there (its client-port
// certificate when it has no peer one) and verifies the other member's
// client-port certificate against both CAs.
func newTLSSetup(cfg Config, log *slog.Logger) (*tlsSetup, error) {
	var s tlsSetup
	if ct := cfg.ClientTLS; ct.Enabled() {
		src, err := tlsconfig.New(tlsconfig.Config{
			CertFile: ct.CertFile, KeyFile: ct.KeyFile,
			CAFiles:        caFiles(ct.TrustedCAFile, cfg.PeerTLS.TrustedCAFile),
			ClientCertAuth: ct.ClientCertAuth,
			Logger:         log.With("listener", "client"),
		})
		if err != nil {
			return nil, fmt.Errorf("client TLS: %w", err)
		}
		sc, err := src.ServerConfig("h2")
		if err != nil {
			return nil, fmt.Errorf("client TLS: %w", err)
		}
		s.grpcCreds = grpc.Creds(tlsgrpc.ServerCredentials(sc, log, "client"))

		dialCert, dialKey := cfg.PeerTLS.CertFile, cfg.PeerTLS.KeyFile
		if dialCert == "" {
			dialCert, dialKey = ct.CertFile, ct.KeyFile
		}
		dial, err := tlsconfig.New(tlsconfig.Config{
			CertFile: dialCert, KeyFile: dialKey,
			CAFiles: caFiles(ct.TrustedCAFile, cfg.PeerTLS.TrustedCAFile),
			Logger:  log.With("listener", "member client"),
		})
		if err != nil {
			return nil, fmt.Errorf("TLS to other members' client port: %w", err)
		}
		creds := tlsgrpc.NewClientCredentials(dial.ClientConfig)
		s.memberDial = grpc.WithTransportCredentials(creds)
		s.memberDialErr = creds.LastError
	}
	if pt := cfg.PeerTLS; pt.Enabled() {
		src, err := tlsconfig.New(tlsconfig.Config{
			CertFile: pt.CertFile, KeyFile: pt.KeyFile,
			CAFiles:        caFiles(pt.TrustedCAFile),
			ClientCertAuth: pt.ClientCertAuth,
			AllowedCN:      pt.AllowedCN, AllowedHostname: pt.AllowedHostname,
			Logger: log.With("listener", "raft"),
		})
		if err != nil {
			return nil, fmt.Errorf("peer TLS: %w", err)
		}
		sc, err := src.ServerConfig()
		if err != nil {
			return nil, fmt.Errorf("peer TLS: %w", err)
		}
		s.raft = &member.RaftTLS{Server: sc, Client: src.ClientConfig}
		if cfg.ClientTLS.Enabled() && pt.TrustedCAFile != "" {
			pem, err := os.ReadFile(pt.TrustedCAFile)
			if err != nil {
				return nil, fmt.Errorf("peer TLS: %w", err)
			}
			s.peerCAs = x509.NewCertPool()
			if !s.peerCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("peer TLS: no certificate in %s", pt.TrustedCAFile)
			}
		}
	}
	if ht := cfg.HTTPTLS; ht.Enabled() {
		src, err := tlsconfig.New(tlsconfig.Config{
			CertFile: ht.CertFile, KeyFile: ht.KeyFile,
			CAFiles:        caFiles(ht.TrustedCAFile),
			ClientCertAuth: ht.ClientCertAuth,
			Logger:         log.With("listener", "http"),
		})
		if err != nil {
			return nil, fmt.Errorf("http TLS: %w", err)
		}
		if s.http, err = src.ServerConfig("http/1.1"); err != nil {
			return nil, fmt.Errorf("http TLS: %w", err)
		}
	}
	return &s, nil
}
