package workload

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/jepsen/history"
)

// Workload generates operations, performs them, and checks the history.
type Workload interface {
	// Name is the registry name.
	Name() string
	// Next returns the invocation of a new operation: F and its arguments.
	// Called concurrently by every logical client.
	Next(rng *rand.Rand) history.Event
	// Apply performs op through kv and returns its completion: Type (ok,
	// fail or info), F and the result. It records nothing itself. Called
	// concurrently; ctx carries the operation's timeout.
	Apply(ctx context.Context, kv client.KV, op history.Event) history.Event
	// Final runs after every fault was healed, the clients stopped and the
	// cluster agreed on its state: the final reads, if the workload has
	// any.
	Final(ctx context.Context, f FinalEnv) error
	// IsWrite reports whether an operation named f changes the store.
	IsWrite(f string) bool
	// Check checks a history of this workload.
	Check(events []history.Event, opts CheckOptions) (Report, error)
}

// Observer is a workload with observers besides its clients (the watch
// workload's watchers): Observe starts them before the warm-up; they
// record through env and run until Final ends them (or ctx ends).
type Observer interface {
	Observe(ctx context.Context, env FinalEnv) error
}

// Clocked is a workload that records times of its own, measured inside an
// operation (a lock holder's tenure, a lease's deadline). The runner hands
// it the history's clock (nanoseconds since the start of the run) before
// any operation.
type Clocked interface {
	SetClock(now func() int64)
}

// FinalEnv is what final reads (and observers) need.
type FinalEnv struct {
	// Members maps each member's name to its client address.
	Members map[string]string
	// Record records an event in the history.
	Record func(history.Event) history.Event
	// NewProcess returns a process id no client has used.
	NewProcess func() int
	// OpTimeout bounds one read; ctx bounds them all.
	OpTimeout time.Duration
	// NewClient opens a client of endpoints as the workload's clients are
	// (TLS, credentials); nil opens a plaintext one without credentials.
	NewClient func(endpoints ...string) (*client.Client, error)
}

// client opens a client of endpoints with NewClient.
func (e FinalEnv) client(endpoints ...string) (*client.Client, error) {
	if e.NewClient == nil {
		return client.New(client.Config{Endpoints: endpoints, DialTimeout: time.Second})
	}
	return e.NewClient(endpoints...)
}

// CheckOptions tune a workload's checker.
type CheckOptions struct {
	// Members lists every member, all of which must answer final reads.
	Members []string
	// Timeout bounds a linearizability check; a check that runs out is
	// inconclusive.
	Timeout time.Duration
	// HTMLPath, if set, receives porcupine's visualization.
	HTMLPath string
}

// Report is a checker's verdict, for results.json.
type Report struct {
	// Verdict is "valid", "invalid" or "unknown" (inconclusive).
	Verdict  string   `json:"verdict"`
	Problems []string `json:"problems,omitempty"`
	// Details is the checker's own result.
	Details any `json:"details"`
}

// New returns the workload called name.
func New(name string) (Workload, error) {
	switch name {
	case "register":
		return NewRegister(DefaultRegisterConfig()), nil
	case "set":
		return NewSet(DefaultSetPrefix), nil
	case "watch":
		return NewWatch(DefaultWatchConfig()), nil
	case "lock":
		return NewLock(DefaultLockConfig()), nil
	case "lease":
		return NewLease(DefaultLeaseConfig()), nil
	}
	return nil, fmt.Errorf("unknown workload %q; known: %s", name, strings.Join(Names(), ", "))
}

// Names lists the supported workloads.
func Names() []string {
	n := []string{"register", "set", "watch", "lock", "lease"}
	sort.Strings(n)
	return n
}

// Classify maps an operation's error to its outcome. A nil error is ok.
// Reads change nothing, so a read that did not succeed is a fail whatever
// the error. A write is a fail only when it certainly did not take effect:
// kvd marked the error as not applied (apierr.IsNotApplied, which the
// client also sets when no endpoint was ready, so nothing was sent), or the
// request was refused as invalid (InvalidArgument, NotFound, OutOfRange,
// FailedPrecondition). Everything else (Unknown, DeadlineExceeded,
// Unavailable without the mark, Canceled, connection errors) is info.
func Classify(err error, read bool) history.Type {
	switch {
	case err == nil:
		return history.OK
	case read:
		return history.Fail
	case apierr.IsNotApplied(err):
		return history.Fail
	}
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.InvalidArgument, codes.NotFound, codes.OutOfRange, codes.FailedPrecondition:
			return history.Fail
		}
	}
	return history.Info
}

// completion builds the completion of op for err.
func completion(op history.Event, err error, read bool) history.Event {
	c := history.Event{Type: Classify(err, read), F: op.F, Key: op.Key}
	if err != nil {
		c.Error = err.Error()
	}
	return c
}

// readEveryMember runs a workload's final read on each member in name
// order and reports the members whose read failed.
func readEveryMember(env FinalEnv, read func(name string) error) error {
	var failed []string
	for _, name := range sortedNames(env.Members) {
		if err := read(name); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %v", name, err))
		}
	}
	if len(failed) > 0 {
		return fmt.Errorf("final reads failed: %s", strings.Join(failed, "; "))
	}
	return nil
}

func sortedNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
