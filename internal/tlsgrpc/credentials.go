package tlsgrpc

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"sync"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kvd-io/kvd/internal/tlsconfig"
)

// ClientCredentials are gRPC transport credentials for the dialing side
// that explain TLS failures (see tlsconfig.Explain) and remember, per target, why the
// last connection failed, so that a caller that sees only "connection
// failed" can say why (LastError).
type ClientCredentials struct {
	// config returns the TLS config of one connection; nil means plaintext.
	config func(serverName string) *tls.Config
	last   *lastErrors
}

var _ credentials.TransportCredentials = (*ClientCredentials)(nil)

// NewClientCredentials returns credentials whose connections use the
// config config returns for the dialed host; a Source's ClientConfig, so
// that every new connection uses the files loaded then.
func NewClientCredentials(config func(serverName string) *tls.Config) *ClientCredentials {
	return &ClientCredentials{config: config, last: &lastErrors{m: map[string]error{}}}
}

// NewStaticClientCredentials returns credentials whose connections use a
// clone of cfg (its ServerName, when empty, set to the dialed host).
func NewStaticClientCredentials(cfg *tls.Config) *ClientCredentials {
	return NewClientCredentials(func(serverName string) *tls.Config {
		c := cfg.Clone()
		if c.ServerName == "" {
			c.ServerName = serverName
		}
		if len(c.Certificates) == 1 && c.GetClientCertificate == nil {
			// Present it even to a server that names other CAs (crypto/tls
			// would send none): "unknown CA" is a clearer refusal than
			// "certificate required".
			cert := &c.Certificates[0]
			c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert, nil }
		}
		return c
	})
}

// NewPlaintextCredentials returns credentials for plaintext connections that
// explain a server hanging up at once (as a TLS server does to a plaintext
// client).
func NewPlaintextCredentials() *ClientCredentials {
	return &ClientCredentials{last: &lastErrors{m: map[string]error{}}}
}

// LastError returns why the last connection to target failed, nil when it
// did not or it is not known.
func (c *ClientCredentials) LastError(target string) error { return c.last.get(target) }

// ClientHandshake implements credentials.TransportCredentials.
func (c *ClientCredentials) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if c.config == nil {
		conn, info, err := insecure.NewCredentials().ClientHandshake(ctx, authority, raw)
		if err != nil {
			return nil, nil, err
		}
		return &watchedConn{Conn: conn, plaintext: true, target: authority, last: c.last}, info, nil
	}
	host, _, err := net.SplitHostPort(authority)
	if err != nil {
		host = authority
	}
	cfg := c.config(host)
	// gRPC verifies the name it is given, not the config's ServerName:
	// give it the one the caller asked for.
	verifyAs := authority
	if cfg.ServerName != "" && cfg.ServerName != host {
		verifyAs = cfg.ServerName
	}
	conn, info, err := credentials.NewTLS(cfg).ClientHandshake(ctx, verifyAs, raw)
	if err != nil {
		err = tlsconfig.Explain(tlsconfig.ClientSide, err)
		c.last.set(authority, err)
		return nil, nil, err
	}
	// The last error is cleared by the first byte the server sends, not
	// here: with TLS 1.3 the server may still refuse the certificate.
	return &watchedConn{Conn: conn, target: authority, last: c.last}, info, nil
}

// ServerHandshake implements credentials.TransportCredentials; these
// credentials are for clients only.
func (c *ClientCredentials) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("tlsconfig: client credentials cannot accept connections")
}

// Info implements credentials.TransportCredentials.
func (c *ClientCredentials) Info() credentials.ProtocolInfo {
	if c.config == nil {
		return insecure.NewCredentials().Info()
	}
	return credentials.NewTLS(&tls.Config{}).Info()
}

// Clone implements credentials.TransportCredentials; the clone shares the
// record of last errors.
func (c *ClientCredentials) Clone() credentials.TransportCredentials {
	cp := *c
	return &cp
}

// OverrideServerName implements credentials.TransportCredentials (deprecated
// by gRPC; unused).
func (c *ClientCredentials) OverrideServerName(string) error {
	return errors.New("tlsconfig: OverrideServerName is not supported")
}

// watchedConn records the first read's failure of a connection whose
// handshake went through: with TLS 1.3 a server refuses a client's
// certificate only after the client finished its handshake, and a TLS
// server hangs up on a plaintext client without a word.
type watchedConn struct {
	net.Conn
	plaintext bool
	target    string
	last      *lastErrors
	once      sync.Once
	readAny   bool
}

func (w *watchedConn) Read(p []byte) (int, error) {
	n, err := w.Conn.Read(p)
	if n > 0 && !w.readAny {
		w.readAny = true
		w.last.set(w.target, nil) // the server answered: connected
	}
	if err != nil && !w.readAny {
		w.once.Do(func() {
			var e error
			switch {
			case !w.plaintext:
				e = tlsconfig.Explain(tlsconfig.ClientSide, err)
				var explained *tlsconfig.Error
				if !errors.As(e, &explained) {
					return
				}
			case tlsconfig.ClosedBeforeAnswer(err):
				e = tlsconfig.PlaintextRefused(err)
			default:
				return
			}
			w.last.set(w.target, e)
			err = e
		})
	}
	return n, err
}

// lastErrors is the last connection failure per target.
type lastErrors struct {
	mu sync.Mutex
	m  map[string]error
}

func (l *lastErrors) set(target string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		delete(l.m, target)
	} else {
		l.m[target] = err
	}
}

func (l *lastErrors) get(target string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.m[target]
}

// ServerCredentials returns gRPC transport credentials for a listener with
// cfg (see Source.ServerConfig) that log every refused handshake with its
// explanation (rate-limited: a port scanner or a misconfigured client in a
// retry loop must not flood the log).
func ServerCredentials(cfg *tls.Config, log *slog.Logger, listener string) credentials.TransportCredentials {
	return &serverCredentials{TransportCredentials: credentials.NewTLS(cfg), log: tlsconfig.NewRefusalLog(log, listener)}
}

type serverCredentials struct {
	credentials.TransportCredentials
	log *tlsconfig.RefusalLog
}

func (s *serverCredentials) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := s.TransportCredentials.ServerHandshake(raw)
	if err != nil {
		err = tlsconfig.Explain(tlsconfig.ServerSide, err)
		s.log.Refused(raw.RemoteAddr(), err)
	}
	return conn, info, err
}

func (s *serverCredentials) Clone() credentials.TransportCredentials {
	return &serverCredentials{TransportCredentials: s.TransportCredentials.Clone(), log: s.log}
}
