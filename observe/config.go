package observe

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"
)

const (
	// DefaultAddr is the address the observability server listens on when
	// Config.Addr is empty.
	DefaultAddr = "127.0.0.1:7381"
	// DefaultReadyWait is how long /readyz waits for the member to catch up
	// when Config.ReadyWait is zero.
	DefaultReadyWait = time.Second
)

// The http.Server's timeouts. writeTimeout must exceed both the longest
// ReadyWait and a default 30-second pprof CPU profile.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 10 * time.Second
	writeTimeout      = time.Minute
	idleTimeout       = 2 * time.Minute
)

// Config configures the observability server. The zero value is usable: each
// field says what its zero value means.
type Config struct {
	// Addr is the host:port to listen on; port 0 picks a free port (see
	// Server.Addr). Empty means DefaultAddr.
	Addr string
	// ReadyWait bounds how long /readyz waits for the member to apply up to
	// the commit index before answering 503. Zero means DefaultReadyWait. It
	// must be shorter than the HTTP write timeout (one minute).
	ReadyWait time.Duration
	// Logger receives the server's logs; nil means slog.Default().
	Logger *slog.Logger
	// TLS, when set, serves HTTPS with this config (its handshake failures
	// are logged as the server's errors); nil means plain HTTP.
	TLS *tls.Config
	// UI, when set, is served under /ui/ (the web console, package
	// console), and / redirects to it; nil means neither is served.
	UI http.Handler
}

// DefaultConfig returns the defaults that the zero value also means, spelled
// out.
func DefaultConfig() Config {
	return Config{Addr: DefaultAddr, ReadyWait: DefaultReadyWait}
}

// Validate reports the first thing wrong with the config, quoting the bad
// value. It does not change the config.
func (c Config) Validate() error {
	if c.Addr != "" {
		_, port, err := net.SplitHostPort(c.Addr)
		if err != nil {
			return fmt.Errorf("observe: address %q: want host:port: %w", c.Addr, err)
		}
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return fmt.Errorf("observe: address %q: port %q must be a number from 0 to 65535", c.Addr, port)
		}
	}
	if c.ReadyWait < 0 || c.ReadyWait >= writeTimeout {
		return fmt.Errorf("observe: ready wait %v must be from 0 to below the HTTP write timeout %v", c.ReadyWait, writeTimeout)
	}
	return nil
}

// withDefaults returns a copy of c with its zero values replaced.
func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.ReadyWait == 0 {
		c.ReadyWait = DefaultReadyWait
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
