package runner

import (
	"errors"
	"fmt"
	"time"

	"github.com/kvd-io/kvd/jepsen/nemesis"
	"github.com/kvd-io/kvd/jepsen/workload"
)

// Config is one run's settings. Every field is recorded in config.json.
type Config struct {
	// Workload is one of workload.Names(): "register", "set", "lock" or
	// "lease".
	Workload string `json:"workload"`
	// Nemesis is a comma-separated list of nemesis families or variants
	// (see nemesis.Parse); "none" for a run without faults.
	Nemesis string `json:"nemesis"`
	// Nodes is the cluster size.
	Nodes int `json:"nodes"`
	// TimeLimit is the length of the load phase: warm-up plus fault
	// cycles. The final phase, health check and final reads come after.
	TimeLimit time.Duration `json:"time_limit"`
	// Warmup is the time before the first fault.
	Warmup time.Duration `json:"warmup"`
	// FaultDuration is how long each fault lasts; HealDuration the healthy
	// gap after it.
	FaultDuration time.Duration `json:"fault_duration"`
	HealDuration  time.Duration `json:"heal_duration"`
	// FinalPhase is how long clients keep running after the final heal.
	FinalPhase time.Duration `json:"final_phase"`
	// Quiet is the pause between stopping the clients and the health check.
	Quiet time.Duration `json:"quiet"`
	// RecoveryTimeout bounds the health check and, separately, the final
	// reads. A cluster that is not healthy by then did not recover.
	RecoveryTimeout time.Duration `json:"recovery_timeout"`
	// Concurrency is the number of logical clients.
	Concurrency int `json:"concurrency"`
	// Rate is the total operations per second the clients aim for.
	Rate float64 `json:"rate"`
	// OpTimeout bounds each operation.
	OpTimeout time.Duration `json:"op_timeout"`
	// ClientEndpoints is "all" (each client knows every member, starting
	// with a different one, and fails over) or "one" (each client talks to
	// one member only).
	ClientEndpoints string `json:"client_endpoints"`
	// Keys and OpsPerKey shape the register workload.
	Keys      int `json:"keys"`
	OpsPerKey int `json:"ops_per_key"`
	// Seed drives every random choice of the harness.
	Seed int64 `json:"seed"`
	// OutDir is the run directory; it must not exist yet.
	OutDir string `json:"out_dir"`
	// KvdBin is the static kvd binary to run.
	KvdBin string `json:"kvd_bin"`
	// UnsafeLocalReads passes --unsafe-local-reads to every member (needs
	// a kvd_unsafe build): the negative control.
	UnsafeLocalReads bool `json:"unsafe_local_reads"`
	// TLS runs the cluster with mutual TLS on the client and peer ports;
	// Auth with authentication on, the workload's clients logged in as a
	// user that may only read and write the workload's keys (see
	// cluster.Config).
	TLS  bool `json:"tls"`
	Auth bool `json:"auth"`
	// KvdArgs are more flags for every member.
	KvdArgs []string `json:"kvd_args,omitempty"`
	// CheckTimeout bounds the linearizability check; running out is an
	// inconclusive result, never a pass.
	CheckTimeout time.Duration `json:"check_timeout"`
	// MinWarmupOK is the fewest ok operations before the first fault for
	// the run to count.
	MinWarmupOK int `json:"min_warmup_ok"`
	// KeepData keeps the members' data directories of a valid run (they
	// are always kept when the run is not valid).
	KeepData bool `json:"keep_data"`
	// Subnet, Bridge and Prefix name the network (see cluster.Config).
	Subnet string `json:"subnet"`
	Bridge string `json:"bridge"`
	Prefix string `json:"prefix"`
	// Iptables is the iptables command used inside the members'
	// namespaces and for the host's FORWARD rule.
	Iptables string `json:"iptables"`

	// Logf receives progress messages, besides harness.log; nil means
	// harness.log only.
	Logf func(format string, args ...any) `json:"-"`
}

// DefaultConfig returns the defaults of the jepsen command.
func DefaultConfig() Config {
	return Config{
		Workload:        "register",
		Nemesis:         "partition,kill,pause",
		Nodes:           5,
		TimeLimit:       60 * time.Second,
		Warmup:          5 * time.Second,
		FaultDuration:   8 * time.Second,
		HealDuration:    5 * time.Second,
		FinalPhase:      5 * time.Second,
		Quiet:           2 * time.Second,
		RecoveryTimeout: 30 * time.Second,
		Concurrency:     10,
		Rate:            200,
		OpTimeout:       1500 * time.Millisecond,
		ClientEndpoints: "all",
		Keys:            5,
		OpsPerKey:       40,
		CheckTimeout:    2 * time.Minute,
		MinWarmupOK:     20,
		Subnet:          "10.213.0",
		Bridge:          "kvdj0",
		Prefix:          "kvdj",
		Iptables:        "iptables",
	}
}

// Validate reports the first problem with c, quoting the bad value. It does
// not change c.
func (c Config) Validate() error {
	if _, err := workload.New(c.Workload); err != nil {
		return err
	}
	if _, err := nemesis.Parse(c.Nemesis); err != nil {
		return err
	}
	switch {
	case c.Nodes < 1:
		return fmt.Errorf("nodes must be at least 1, got %d", c.Nodes)
	case c.Concurrency < 1:
		return fmt.Errorf("concurrency must be at least 1, got %d", c.Concurrency)
	case c.Rate <= 0:
		return fmt.Errorf("rate must be positive, got %g", c.Rate)
	case c.OpTimeout <= 0:
		return fmt.Errorf("op timeout must be positive, got %s", c.OpTimeout)
	case c.Warmup <= 0 || c.Warmup >= c.TimeLimit:
		return fmt.Errorf("warm-up %s must be positive and shorter than the time limit %s", c.Warmup, c.TimeLimit)
	case c.FaultDuration <= 0 || c.HealDuration < 0:
		return fmt.Errorf("fault duration %s must be positive and heal duration %s not negative", c.FaultDuration, c.HealDuration)
	case c.FinalPhase <= 0:
		return fmt.Errorf("final phase %s must be positive: recovery is measured in it", c.FinalPhase)
	case c.Quiet < 0 || c.RecoveryTimeout <= 0 || c.CheckTimeout <= 0:
		return fmt.Errorf("quiet %s must not be negative; recovery timeout %s and check timeout %s must be positive", c.Quiet, c.RecoveryTimeout, c.CheckTimeout)
	case c.ClientEndpoints != "all" && c.ClientEndpoints != "one":
		return fmt.Errorf("client endpoints must be all or one, got %q", c.ClientEndpoints)
	case c.Keys < 1 || c.OpsPerKey < 1:
		return fmt.Errorf("keys %d and ops per key %d must be at least 1", c.Keys, c.OpsPerKey)
	case c.MinWarmupOK < 0:
		return fmt.Errorf("min warm-up ok must not be negative, got %d", c.MinWarmupOK)
	case c.OutDir == "":
		return errors.New("out dir is required")
	case c.KvdBin == "":
		return errors.New("kvd binary is required")
	}
	return nil
}

// Budget is the longest a run with c may take, set-up and analysis
// included; Run stops at it.
func (c Config) Budget() time.Duration {
	return c.TimeLimit + c.FinalPhase + c.Quiet + 2*c.RecoveryTimeout + c.CheckTimeout + 2*time.Minute
}
