// Command kvd runs one member of a kvd cluster.
//
// With no flags it starts a single-member cluster on 127.0.0.1 with its data
// in ./kvd-data. Every flag can also be set with the environment variable
// KVD_<FLAG> (upper case, dashes as underscores), and in a YAML config file
// named by --config (see config.go). Precedence: flag > environment > config
// file > default.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
	"time"

	"github.com/kvd-io/kvd/etcdapi"
	"github.com/kvd-io/kvd/member"
	"github.com/kvd-io/kvd/server"
)

// exitRemoved is the exit status of a member removed from its cluster.
const exitRemoved = 3

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "kvd:", err)
		if errors.Is(err, member.ErrRemoved) {
			// Distinct, so that a supervisor can stop restarting a member
			// that will never serve again (systemd: RestartPreventExitStatus).
			os.Exit(exitRemoved)
		}
		os.Exit(1)
	}
}

// defaultGCPercent is kvd's garbage collection target when GOGC is not set.
// A member's live heap is small (the data lives in memory-mapped bbolt files,
// outside the heap) but it allocates at a high rate per request, so Go's
// default of 100 makes it collect often: at 100 the collector took 5-11% of
// a member's CPU under put load. 400 trades some tens of MiB of heap for
// most of that CPU.
const defaultGCPercent = 400

// tuneGC applies defaultGCPercent unless the operator set GOGC.
func tuneGC(log *slog.Logger) {
	if _, set := os.LookupEnv("GOGC"); set {
		return
	}
	debug.SetGCPercent(defaultGCPercent)
	log.Debug("garbage collection target set", "gogc", defaultGCPercent)
}

// options are kvd's command-line settings.
type options struct {
	cfg            server.Config
	initialCluster string
	join           string
	logLevel       string
	logFormat      string
	shutdownWait   time.Duration
	showVersion    bool
	configFile     string
	authTokenTTL   int
}

func parseFlags(args []string, stderr io.Writer, getenv func(string) string) (*options, error) {
	o := &options{cfg: server.DefaultConfig()}
	o.cfg.Name = "default"
	fs := flag.NewFlagSet("kvd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.cfg.Name, "name", o.cfg.Name, "member name, unique in the cluster")
	fs.StringVar(&o.cfg.DataDir, "data-dir", o.cfg.DataDir, "directory for the member's data")
	fs.StringVar(&o.cfg.ClientAddr, "client-addr", o.cfg.ClientAddr, "address the gRPC API listens on")
	fs.StringVar(&o.cfg.RaftAddr, "raft-addr", o.cfg.RaftAddr, "address the raft transport listens on")
	fs.StringVar(&o.cfg.HTTPAddr, "http-addr", o.cfg.HTTPAddr, "address for /metrics, /healthz, /readyz, /debug/pprof and the web console /ui/ (empty: off)")
	fs.BoolVar(&o.cfg.UI.Enabled, "ui", o.cfg.UI.Enabled, "serve the web console under /ui/ on --http-addr")
	fs.BoolVar(&o.cfg.UI.ReadOnly, "ui-read-only", false, "the web console shows but never changes keys")
	fs.StringVar(&o.cfg.AdvertiseClientAddr, "advertise-client-addr", "", "API address told to clients and members (default: --client-addr)")
	fs.StringVar(&o.cfg.AdvertiseRaftAddr, "advertise-raft-addr", "", "raft address told to members (default: --raft-addr)")
	fs.StringVar(&o.initialCluster, "initial-cluster", "", "founding voters of a new cluster: name=raftaddr,name=raftaddr,... (same on every founding member)")
	fs.StringVar(&o.join, "join", "", "client addresses of members of an existing cluster to join: addr,addr,... (needs an empty data dir)")
	fs.BoolVar(&o.cfg.JoinAsLearner, "learner", false, "join as a non-voting learner, to be promoted with 'kvctl member promote'")
	fs.BoolVar(&o.cfg.ForceNewCluster, "force-new-cluster", false, "DISASTER RECOVERY: make this member the only voter of a new cluster, keeping its data")
	fs.Uint64Var(&o.cfg.SnapshotThreshold, "snapshot-threshold", o.cfg.SnapshotThreshold, "log entries since the last snapshot that trigger a new one")
	fs.DurationVar(&o.cfg.SnapshotInterval, "snapshot-interval", o.cfg.SnapshotInterval, "how often the snapshot threshold is checked")
	fs.Uint64Var(&o.cfg.TrailingLogs, "snapshot-trailing-logs", o.cfg.TrailingLogs, "log entries kept after a snapshot for followers that lag a little")
	fs.IntVar(&o.cfg.SnapshotRetain, "snapshot-retain", o.cfg.SnapshotRetain, "snapshots kept on disk")
	fs.IntVar(&o.cfg.MaxRequestBytes, "max-request-bytes", o.cfg.MaxRequestBytes, "largest request accepted, in bytes")
	fs.DurationVar(&o.cfg.RequestTimeout, "request-timeout", o.cfg.RequestTimeout, "timeout of a request whose client set none")
	fs.StringVar(&o.cfg.AutoCompactionMode, "auto-compaction-mode", "periodic", "periodic: keep --auto-compaction-retention of history (a duration, or hours); revision: keep that many revisions")
	fs.StringVar(&o.cfg.AutoCompactionRetention, "auto-compaction-retention", "0", "history to keep for automatic compaction; 0 turns it off")
	fs.DurationVar(&o.cfg.WatchProgressInterval, "watch-progress-notify-interval", o.cfg.WatchProgressInterval, "how often idle watchers that asked for it get a progress notification")
	fs.IntVar(&o.cfg.MaxTxnOps, "max-txn-ops", 128, "most compares, and most operations per branch, in one transaction")
	fs.StringVar(&o.cfg.EtcdVersion, "etcd-version", etcdapi.DefaultEtcdVersion, "etcd version the etcd API's Status reports (3.y.z); clients such as kube-apiserver turn features off below 3.5.13")
	fs.Int64Var(&o.cfg.QuotaBackendBytes, "quota-backend-bytes", 0, "state file size beyond which the member raises a NOSPACE alarm and refuses writes that grow it; 0 means 2 GiB")
	fs.DurationVar(&o.cfg.LeaseCheckpointInterval, "lease-checkpoint-interval", 5*time.Minute, "how often the leader records the remaining TTL of leases longer than this, so that a new leader does not restart them at their full TTL")
	fs.DurationVar(&o.cfg.HeartbeatTimeout, "heartbeat-timeout", o.cfg.HeartbeatTimeout, "raft heartbeat timeout")
	fs.DurationVar(&o.cfg.ElectionTimeout, "election-timeout", o.cfg.ElectionTimeout, "raft election timeout")
	// TLS, with etcd's flag names (see docs/operations.md).
	fs.StringVar(&o.cfg.ClientTLS.CertFile, "cert-file", "", "TLS certificate of the client API (PEM); turns TLS on for it")
	fs.StringVar(&o.cfg.ClientTLS.KeyFile, "key-file", "", "TLS key of --cert-file (PEM)")
	fs.StringVar(&o.cfg.ClientTLS.TrustedCAFile, "trusted-ca-file", "", "CA certificates that sign client certificates (PEM)")
	fs.BoolVar(&o.cfg.ClientTLS.ClientCertAuth, "client-cert-auth", false, "refuse API clients without a certificate signed by --trusted-ca-file")
	fs.StringVar(&o.cfg.PeerTLS.CertFile, "peer-cert-file", "", "TLS certificate for member-to-member traffic (PEM); turns TLS on for the raft transport")
	fs.StringVar(&o.cfg.PeerTLS.KeyFile, "peer-key-file", "", "TLS key of --peer-cert-file (PEM)")
	fs.StringVar(&o.cfg.PeerTLS.TrustedCAFile, "peer-trusted-ca-file", "", "CA certificates that sign members' certificates (PEM)")
	fs.BoolVar(&o.cfg.PeerTLS.ClientCertAuth, "peer-client-cert-auth", false, "refuse members without a certificate signed by --peer-trusted-ca-file")
	fs.StringVar(&o.cfg.PeerTLS.AllowedCN, "peer-cert-allowed-cn", "", "accept only member certificates with this common name")
	fs.StringVar(&o.cfg.PeerTLS.AllowedHostname, "peer-cert-allowed-hostname", "", "accept only member certificates valid for this host name")
	fs.StringVar(&o.cfg.HTTPTLS.CertFile, "http-cert-file", "", "TLS certificate of the --http-addr listener (PEM); turns HTTPS on for it")
	fs.StringVar(&o.cfg.HTTPTLS.KeyFile, "http-key-file", "", "TLS key of --http-cert-file (PEM)")
	// Authentication, with etcd's flag names (see docs/operations.md).
	fs.StringVar(&o.cfg.Auth.TokenKeyFile, "auth-token-key-file", "", "key (32 bytes or more, the same on every member) that signs tokens (HS256 JWTs); empty: the cluster's secret drawn at the first auth enable")
	fs.IntVar(&o.authTokenTTL, "auth-token-ttl", 300, "lifetime of a token, in seconds")
	fs.IntVar(&o.cfg.Auth.BcryptCost, "bcrypt-cost", 10, "cost of the bcrypt hash of passwords (4 to 31)")
	fs.StringVar(&o.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "text", "text or json")
	fs.DurationVar(&o.shutdownWait, "shutdown-timeout", 10*time.Second, "how long in-flight requests may finish on SIGINT/SIGTERM")
	fs.BoolVar(&o.showVersion, "version", false, "print the version and exit")
	fs.StringVar(&o.configFile, "config", "", "YAML file of settings keyed by flag name (see deploy/kvd.yaml); flags and KVD_* variables win over it")
	// Hidden in spirit: release builds refuse it (see server.Config).
	fs.BoolVar(&o.cfg.UnsafeLocalReads, "unsafe-local-reads", false, "TESTING ONLY, needs a kvd_unsafe build: serve linearizable reads from local state")
	fs.BoolVar(&o.cfg.UnsafeVerifyLeader, "unsafe-verify-leader", false, "TESTING ONLY, needs a kvd_unsafe build: confirm reads' leadership with raft's VerifyLeader, which a resumed leader can pass with stale answers")
	fs.IntVar(&o.cfg.UnsafeWatchDropEvery, "unsafe-watch-drop-every", 0, "TESTING ONLY, needs a kvd_unsafe build: drop every Nth event sent to watchers")
	fs.BoolVar(&o.cfg.UnsafeEarlyLeaseExpiry, "unsafe-early-lease-expiry", false, "TESTING ONLY, needs a kvd_unsafe build: expire leases after a quarter of their TTL, without a new leader's extension")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if err := applyEnv(fs, getenv); err != nil {
		return nil, err
	}
	if err := applyConfigFile(fs, o.configFile); err != nil {
		return nil, err
	}
	peers, err := server.ParseInitialCluster(o.initialCluster)
	if err != nil {
		return nil, err
	}
	o.cfg.InitialCluster = peers
	if o.authTokenTTL <= 0 {
		return nil, fmt.Errorf("--auth-token-ttl %d: want a positive number of seconds", o.authTokenTTL)
	}
	o.cfg.Auth.TokenTTL = time.Duration(o.authTokenTTL) * time.Second
	for _, a := range strings.Split(o.join, ",") {
		if a = strings.TrimSpace(a); a != "" {
			o.cfg.Join = append(o.cfg.Join, a)
		}
	}
	o.cfg.Version = version
	return o, nil
}

// applyEnv sets every flag not given on the command line from KVD_<FLAG>.
func applyEnv(fs *flag.FlagSet, getenv func(string) string) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var err error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] || err != nil {
			return
		}
		env := "KVD_" + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if v := getenv(env); v != "" {
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", env, v, e)
			}
		}
	})
	return err
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: l}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}

func run(args []string, stderr io.Writer) error {
	o, err := parseFlags(args, stderr, os.Getenv)
	if err != nil {
		return err
	}
	if o.showVersion {
		fmt.Fprintln(os.Stdout, "kvd", version)
		return nil
	}
	log, err := newLogger(stderr, o.logLevel, o.logFormat)
	if err != nil {
		return err
	}
	o.cfg.Logger = log
	if err := o.cfg.Validate(); err != nil {
		return err
	}
	tuneGC(log)
	if o.cfg.UnsafeLocalReads {
		log.Error("UNSAFE: linearizable reads are served from local state; this member can return stale data")
	}
	if o.cfg.UnsafeWatchDropEvery > 0 {
		log.Error("UNSAFE: watchers lose an event now and then", "drop_every", o.cfg.UnsafeWatchDropEvery)
	}
	if o.cfg.UnsafeVerifyLeader {
		log.Error("UNSAFE: reads' leadership is confirmed with raft's VerifyLeader; a leader resuming from a stall can return stale data")
	}
	if o.cfg.UnsafeEarlyLeaseExpiry {
		log.Error("UNSAFE: leases expire after a quarter of their TTL; kept-alive keys and held locks can be lost")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := server.New(o.cfg)
	if err != nil {
		return err
	}
	var stopped error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", o.shutdownWait)
	case <-srv.Done():
		stopped = srv.Err() // removed from the cluster
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), o.shutdownWait)
	defer cancel()
	return errors.Join(stopped, srv.Shutdown(shutdownCtx))
}
