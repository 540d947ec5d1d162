package client

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"google.golang.org/grpc"
)

// Defaults applied by New to the zero values of Config.
const (
	// DefaultDialTimeout is the time New's client waits for an endpoint's
	// connection to become ready before it moves on to the next endpoint.
	DefaultDialTimeout = 5 * time.Second
	// DefaultRetryBackoff is the first wait after every endpoint failed in a
	// retryable way.
	DefaultRetryBackoff = 50 * time.Millisecond
	// DefaultMaxRetryBackoff caps the wait between rounds of retries.
	DefaultMaxRetryBackoff = time.Second
)

// Config configures a Client. The zero value of every field but Endpoints
// means its default.
type Config struct {
	// Endpoints are the members' gRPC API addresses as host:port, or as
	// https://host:port (TLS) or http://host:port (plaintext). At least one
	// is required; duplicates are rejected, and all must use the same
	// scheme. Requests go to the first endpoint until it fails, then to the
	// next.
	Endpoints []string

	// TLS, when set, connects with TLS using this config: its RootCAs
	// verify the members' certificates (nil: the system's roots) and its
	// Certificates are presented to members that require client
	// certificates. Its ServerName, when empty, is the endpoint's host.
	// Nil means plaintext, unless the endpoints are https://, which means
	// TLS with the system's roots. A refused handshake fails requests with
	// an error that says why (unknown CA, expired, wrong name, ...).
	TLS *tls.Config

	// DialTimeout bounds how long the client waits for one endpoint's
	// connection to become ready before it tries the next endpoint. Zero means
	// DefaultDialTimeout. A call's context bounds it too.
	DialTimeout time.Duration

	// RetryBackoff is the first wait after a round in which every endpoint
	// failed in a retryable way; it doubles after each such round. Zero means
	// DefaultRetryBackoff.
	RetryBackoff time.Duration

	// MaxRetryBackoff caps the wait between rounds. Zero means
	// DefaultMaxRetryBackoff, or RetryBackoff when that is larger. It must not
	// be less than RetryBackoff.
	MaxRetryBackoff time.Duration

	// UnaryCalls sends every request as a unary gRPC call of its own. By
	// default, gets, puts, deletes and transactions up to 256 KiB share one
	// long-lived stream per endpoint (KVService.Stream), which costs client
	// and member a fraction of the CPU of a call per request; the semantics,
	// errors and retries are the same either way. Larger requests, and
	// endpoints that do not serve the stream, always get unary calls.
	UnaryCalls bool

	// Username and Password, when Username is set, authenticate the client
	// (AuthService.Authenticate) before its first request, and again before
	// the token expires or when a member refuses it; the token goes with
	// every call as the gRPC metadata "token", as etcd's clients send it.
	// Empty means no user: the members' client certificate authentication
	// (TLS) identifies the client, or nothing does.
	Username string
	Password string

	// DialOptions are appended to the client's own gRPC dial options
	// (transport credentials from TLS and a connect backoff derived from
	// DialTimeout), so they can override them. Nil means none.
	DialOptions []grpc.DialOption
}

// DefaultConfig returns a Config for the given endpoints with every default
// spelled out.
func DefaultConfig(endpoints ...string) Config {
	return Config{
		Endpoints:       endpoints,
		DialTimeout:     DefaultDialTimeout,
		RetryBackoff:    DefaultRetryBackoff,
		MaxRetryBackoff: DefaultMaxRetryBackoff,
	}
}

// ErrInvalidConfig is wrapped by every error Validate returns.
var ErrInvalidConfig = errors.New("invalid client config")

// Validate reports the first problem with c, quoting the bad value. It does
// not change c.
func (c Config) Validate() error {
	if len(c.Endpoints) == 0 {
		return fmt.Errorf("%w: no endpoints", ErrInvalidConfig)
	}
	seen := make(map[string]bool, len(c.Endpoints))
	schemes := map[string]bool{}
	for _, ep := range c.Endpoints {
		scheme, addr := splitScheme(ep)
		if err := validateEndpoint(ep, scheme, addr); err != nil {
			return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
		}
		if seen[addr] {
			return fmt.Errorf("%w: endpoint %q is listed twice", ErrInvalidConfig, ep)
		}
		seen[addr] = true
		schemes[scheme] = true
	}
	if schemes["https"] && schemes["http"] {
		return fmt.Errorf("%w: endpoints mix https:// and http://: a client talks TLS to all or to none", ErrInvalidConfig)
	}
	if schemes["http"] && c.TLS != nil {
		return fmt.Errorf("%w: http:// endpoints are plaintext but TLS is set: use https://host:port or host:port", ErrInvalidConfig)
	}
	if c.Password != "" && c.Username == "" {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errNoUser)
	}
	if c.DialTimeout < 0 {
		return fmt.Errorf("%w: DialTimeout %v is negative", ErrInvalidConfig, c.DialTimeout)
	}
	if c.RetryBackoff < 0 {
		return fmt.Errorf("%w: RetryBackoff %v is negative", ErrInvalidConfig, c.RetryBackoff)
	}
	if c.MaxRetryBackoff < 0 {
		return fmt.Errorf("%w: MaxRetryBackoff %v is negative", ErrInvalidConfig, c.MaxRetryBackoff)
	}
	eff := c.withDefaults()
	if eff.MaxRetryBackoff < eff.RetryBackoff {
		return fmt.Errorf("%w: MaxRetryBackoff %v is less than RetryBackoff %v",
			ErrInvalidConfig, eff.MaxRetryBackoff, eff.RetryBackoff)
	}
	return nil
}

// splitScheme splits an endpoint into its scheme ("https", "http" or "")
// and its host:port.
func splitScheme(ep string) (scheme, addr string) {
	if s, rest, ok := strings.Cut(ep, "://"); ok {
		return s, rest
	}
	return "", ep
}

func validateEndpoint(ep, scheme, addr string) error {
	if ep == "" {
		return errors.New("empty endpoint")
	}
	if strings.Contains(ep, "://") && scheme != "https" && scheme != "http" {
		return fmt.Errorf("endpoint %q: want host:port, https://host:port or http://host:port", ep)
	}
	if strings.ContainsAny(addr, "/?#") {
		return fmt.Errorf("endpoint %q: want host:port, https://host:port or http://host:port, without a path", ep)
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("endpoint %q: want host:port: %w", ep, err)
	}
	if host == "" || port == "" {
		return fmt.Errorf("endpoint %q: want host:port", ep)
	}
	return nil
}

// withDefaults returns a copy of c with zero values replaced by defaults.
func (c Config) withDefaults() Config {
	if c.DialTimeout == 0 {
		c.DialTimeout = DefaultDialTimeout
	}
	if c.RetryBackoff == 0 {
		c.RetryBackoff = DefaultRetryBackoff
	}
	if c.MaxRetryBackoff == 0 {
		c.MaxRetryBackoff = max(DefaultMaxRetryBackoff, c.RetryBackoff)
	}
	return c
}
