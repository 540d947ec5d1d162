package console

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// Defaults for the zero values of Config.
const (
	// DefaultSampleInterval is how often the activity charts get a point.
	DefaultSampleInterval = time.Second
	// DefaultHistory is how much activity the charts keep.
	DefaultHistory = 5 * time.Minute
	// DefaultPageSize is how many entries the key tree shows per page.
	DefaultPageSize = 50
	// DefaultMaxSessions bounds the logged-in sessions a member keeps.
	DefaultMaxSessions = 1000
)

// Config configures the console. Every field but MemberName and API says
// what its zero value means.
type Config struct {
	// MemberName is the name of the member serving the console; required.
	MemberName string
	// API is how the console reaches the member's own gRPC API: dial
	// options that connect to it (an in-process listener, or the client
	// address with the member's TLS settings), with Endpoint as the
	// address the client is given. Required.
	API Dialer
	// Peers are the dial options for the other members' client addresses
	// (the member's TLS settings for member-to-member calls), used only
	// for their MaintenanceService Status, which any caller may ask for.
	// Nil means plaintext.
	Peers []grpc.DialOption
	// ReadOnly refuses every change (create, edit, delete).
	ReadOnly bool
	// Metrics is the member's metrics registry, read for the activity
	// charts; nil means the charts stay empty.
	Metrics prometheus.Gatherer
	// SecureCookies marks the session cookie Secure (the listener serves
	// HTTPS).
	SecureCookies bool
	// SampleInterval is how often the activity charts get a point while a
	// page shows them; zero means DefaultSampleInterval.
	SampleInterval time.Duration
	// History is how much activity the charts keep; zero means
	// DefaultHistory.
	History time.Duration
	// PageSize is the number of entries in one page of the key tree; zero
	// means DefaultPageSize.
	PageSize int
	// MaxSessions bounds the logged-in sessions kept at once; a login
	// beyond it ends the oldest. Zero means DefaultMaxSessions.
	MaxSessions int
	// Logger receives the console's log, including one entry per change;
	// nil means slog.Default().
	Logger *slog.Logger
}

// Dialer says how to reach the member's own API.
type Dialer struct {
	// Endpoint is the address given to the client (host:port).
	Endpoint string
	// DialOptions connect to it.
	DialOptions []grpc.DialOption
}

// Validate reports the first thing wrong with the config, quoting the bad
// value. It does not change the config.
func (c Config) Validate() error {
	if c.MemberName == "" {
		return errors.New("console: the member name is required")
	}
	if c.API.Endpoint == "" {
		return errors.New("console: the endpoint of the member's API is required")
	}
	if c.SampleInterval < 0 || (c.SampleInterval > 0 && c.SampleInterval < 100*time.Millisecond) {
		return fmt.Errorf("console: sample interval %v: want zero (the default) or at least 100ms", c.SampleInterval)
	}
	if c.History < 0 {
		return fmt.Errorf("console: history %v is negative", c.History)
	}
	if c.History > 0 && c.History < c.withDefaults().SampleInterval {
		return fmt.Errorf("console: history %v is shorter than the sample interval %v", c.History, c.withDefaults().SampleInterval)
	}
	if c.PageSize < 0 || c.PageSize > 1000 {
		return fmt.Errorf("console: page size %d: want 0 (the default) to 1000", c.PageSize)
	}
	if c.MaxSessions < 0 {
		return fmt.Errorf("console: max sessions %d is negative", c.MaxSessions)
	}
	return nil
}

// withDefaults returns a copy of c with its zero values replaced.
func (c Config) withDefaults() Config {
	if c.SampleInterval == 0 {
		c.SampleInterval = DefaultSampleInterval
	}
	if c.History == 0 {
		c.History = DefaultHistory
	}
	if c.PageSize == 0 {
		c.PageSize = DefaultPageSize
	}
	if c.MaxSessions == 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
