package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/internal/tlsconfig"
)

// envPrefix prefixes the environment variable of each global flag:
// --endpoints is KVCTL_ENDPOINTS, --dial-timeout is KVCTL_DIAL_TIMEOUT. A flag
// given on the command line wins over its variable.
const envPrefix = "KVCTL_"

// Output formats of -w/--write-out.
const (
	formatSimple = "simple"
	formatJSON   = "json"
	formatTable  = "table"
)

// globalOptions holds the global flags and the process's streams. One value
// is built per command tree and shared by its commands; nothing lives in
// package variables.
type globalOptions struct {
	in        io.Reader
	out       io.Writer
	errOut    io.Writer
	lookupEnv func(string) (string, bool)

	endpoints      []string
	writeOut       string
	dialTimeout    time.Duration
	commandTimeout time.Duration
	consistency    string
	unaryCalls     bool

	// TLS flags (etcdctl's names) and the config they make.
	caCert             string
	cert               string
	key                string
	insecureSkipVerify bool
	tls                *tls.Config

	// --user name[:password] and --password (etcdctl's).
	user     string
	password string
}

// newRootCmd builds kvctl's command tree around the given streams, reading
// defaults for unset global flags from the process environment.
func newRootCmd(stdin io.Reader, stdout, stderr io.Writer) *cobra.Command {
	return newRootCmdWithEnv(stdin, stdout, stderr, os.LookupEnv)
}

// newRootCmdWithEnv is newRootCmd with the environment given as a lookup
// function, for tests.
func newRootCmdWithEnv(stdin io.Reader, stdout, stderr io.Writer, lookupEnv func(string) (string, bool)) *cobra.Command {
	g := &globalOptions{in: stdin, out: stdout, errOut: stderr, lookupEnv: lookupEnv}
	root := &cobra.Command{
		Use:   "kvctl",
		Short: "A command line client for kvd",
		Long: `kvctl is the command line client of kvd, a Raft-replicated key-value store
with etcd v3 semantics. Its commands and output follow etcdctl.

Every global flag can also be set with an environment variable named after it:
KVCTL_ENDPOINTS, KVCTL_WRITE_OUT, KVCTL_DIAL_TIMEOUT, KVCTL_COMMAND_TIMEOUT,
KVCTL_CONSISTENCY, KVCTL_UNARY_CALLS, KVCTL_CACERT, KVCTL_CERT, KVCTL_KEY,
KVCTL_INSECURE_SKIP_TLS_VERIFY, KVCTL_USER, KVCTL_PASSWORD. A flag on the command line wins over its variable.

TLS is used when an endpoint is https://host:port or a TLS flag is given:
--cacert verifies the members' certificates (default: the system's roots),
--cert and --key are presented to members that require client certificates.`,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return g.complete(cmd.Root().PersistentFlags())
		},
	}
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	g.bindFlags(root.PersistentFlags())

	// Each command lives in its own file; adding one is a file and a line.
	root.AddCommand(
		newPutCmd(g),
		newGetCmd(g),
		newDelCmd(g),
		newTxnCmd(g),
		newMemberCmd(g),
		newEndpointCmd(g),
		newLeaderCmd(g),
		newSnapshotCmd(g),
		newCheckCmd(g),
		newBenchCmd(g),
		newWatchCmd(g),
		newCompactionCmd(g),
		newAlarmCmd(g),
		newDefragCmd(g),
		newLeaseCmd(g),
		newLockCmd(g),
		newElectCmd(g),
		newAuthCmd(g),
		newUserCmd(g),
		newRoleCmd(g),
	)
	return root
}

func (g *globalOptions) bindFlags(fs *pflag.FlagSet) {
	fs.StringSliceVar(&g.endpoints, "endpoints", []string{"127.0.0.1:7379"}, "comma-separated gRPC endpoints (host:port)")
	fs.StringVarP(&g.writeOut, "write-out", "w", formatSimple, "output format: simple, json or table")
	fs.DurationVar(&g.dialTimeout, "dial-timeout", 2*time.Second, "how long to wait for an endpoint to accept a connection")
	fs.BoolVar(&g.unaryCalls, "unary-calls", false, "send each request as a unary gRPC call instead of on the endpoint's shared stream")
	fs.DurationVar(&g.commandTimeout, "command-timeout", 5*time.Second, "timeout of a command's requests (per endpoint for endpoint commands)")
	fs.StringVar(&g.consistency, "consistency", "l", "read consistency: l (linearizable) or s (serializable)")
	fs.StringVar(&g.caCert, "cacert", "", "verify members' TLS certificates with this CA bundle (PEM); turns TLS on")
	fs.StringVar(&g.cert, "cert", "", "TLS client certificate (PEM), for members that require one; needs --key")
	fs.StringVar(&g.key, "key", "", "key of --cert (PEM)")
	fs.StringVar(&g.user, "user", "", "user name[:password] to authenticate as (asks for the password on a terminal when it is not given)")
	fs.StringVar(&g.password, "password", "", "password of --user (when the name holds a colon)")
	fs.BoolVar(&g.insecureSkipVerify, "insecure-skip-tls-verify", false, "TLS without verifying the members' certificates (testing only: anyone on the path can read and change the traffic)")
}

// complete applies environment variables to the global flags that were not
// given, then validates them.
func (g *globalOptions) complete(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		name := envPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		v, ok := g.lookupEnv(name)
		if !ok {
			return
		}
		if serr := fs.Set(f.Name, v); serr != nil {
			err = fmt.Errorf("invalid %s %q: %w", name, v, serr)
		}
	})
	if err != nil {
		return err
	}
	return g.validate()
}

func (g *globalOptions) validate() error {
	var eps []string
	for _, ep := range g.endpoints {
		if ep = strings.TrimSpace(ep); ep != "" {
			eps = append(eps, ep)
		}
	}
	if len(eps) == 0 {
		return fmt.Errorf("no endpoints: set --endpoints or %sENDPOINTS", envPrefix)
	}
	g.endpoints = eps
	switch g.writeOut {
	case formatSimple, formatJSON, formatTable:
	default:
		return fmt.Errorf("invalid --write-out %q: want simple, json or table", g.writeOut)
	}
	switch g.consistency {
	case "l", "s":
	default:
		return fmt.Errorf("invalid --consistency %q: want l (linearizable) or s (serializable)", g.consistency)
	}
	if g.dialTimeout <= 0 {
		return fmt.Errorf("invalid --dial-timeout %v: must be positive", g.dialTimeout)
	}
	if g.commandTimeout <= 0 {
		return fmt.Errorf("invalid --command-timeout %v: must be positive", g.commandTimeout)
	}
	if err := g.buildTLS(); err != nil {
		return err
	}
	if err := g.completeUser(); err != nil {
		return err
	}
	return client.Config{Endpoints: g.endpoints, DialTimeout: g.dialTimeout, TLS: g.tls}.Validate()
}

// completeUser splits --user name:password, and asks for the password on
// the terminal when neither it nor --password gives one.
func (g *globalOptions) completeUser() error {
	if g.user == "" {
		if g.password != "" {
			return errors.New("--password needs --user")
		}
		return nil
	}
	if g.password == "" {
		name, pw, ok := strings.Cut(g.user, ":")
		if ok {
			g.user, g.password = name, pw
		} else {
			var err error
			if g.password, err = g.readPassword("Password", true, false); err != nil {
				return fmt.Errorf("--user %s: %w", g.user, err)
			}
		}
	}
	if g.user == "" {
		return errors.New("--user: empty user name")
	}
	return nil
}

// buildTLS makes the TLS config of the TLS flags, nil when none is given.
func (g *globalOptions) buildTLS() error {
	if g.caCert == "" && g.cert == "" && g.key == "" && !g.insecureSkipVerify {
		for _, ep := range g.endpoints {
			if strings.HasPrefix(ep, "https://") {
				// Also for the addresses the cluster reports (--cluster),
				// which carry no scheme.
				g.tls = &tls.Config{MinVersion: tls.VersionTLS12}
				break
			}
		}
		return nil
	}
	if (g.cert == "") != (g.key == "") {
		return errors.New("--cert and --key go together: give both or neither")
	}
	var cas []string
	if g.caCert != "" {
		cas = []string{g.caCert}
	}
	src, err := tlsconfig.New(tlsconfig.Config{CertFile: g.cert, KeyFile: g.key, CAFiles: cas})
	if err != nil {
		return fmt.Errorf("TLS flags: %w", err)
	}
	g.tls = src.ClientConfig("")
	g.tls.InsecureSkipVerify = g.insecureSkipVerify
	return nil
}

// serializable reports whether reads may be served from a member's local
// state.
func (g *globalOptions) serializable() bool { return g.consistency == "s" }

// newClient returns a client for endpoints, or for every --endpoints when
// none are given.
func (g *globalOptions) newClient(endpoints ...string) (*client.Client, error) {
	if len(endpoints) == 0 {
		endpoints = g.endpoints
	}
	return client.New(client.Config{Endpoints: endpoints, DialTimeout: g.dialTimeout, UnaryCalls: g.unaryCalls, TLS: g.tls,
		Username: g.user, Password: g.password})
}

// commandContext bounds ctx by --command-timeout.
func (g *globalOptions) commandContext(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, g.commandTimeout)
}

// printer returns the printer of --write-out.
func (g *globalOptions) printer() printer {
	return newPrinter(g.writeOut, g.out, g.errOut)
}

// groupCmd returns a command that only groups subcommands, such as member or
// endpoint. Run without a subcommand it prints its help; with an unknown one
// it fails.
func groupCmd(use, short string, subs ...*cobra.Command) *cobra.Command {
	cmd := &cobra.Command{
		Use:   use + " <subcommand>",
		Short: short,
		Args:  cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return fmt.Errorf("unknown command %q for %q", args[0], cmd.CommandPath())
			}
			return cmd.Help()
		},
	}
	cmd.AddCommand(subs...)
	return cmd
}
