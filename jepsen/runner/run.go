package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/jepsen/cluster"
	"github.com/kvd-io/kvd/jepsen/history"
	"github.com/kvd-io/kvd/jepsen/nemesis"
	"github.com/kvd-io/kvd/jepsen/workload"
)

// The cluster the runner builds is what the nemeses act on.
var _ nemesis.Cluster = (*cluster.Cluster)(nil)

// Meta is config.json: the configuration plus what identifies the run.
type Meta struct {
	Config
	Members   []string  `json:"members"`
	Started   time.Time `json:"started"`
	GitCommit string    `json:"git_commit,omitempty"`
	GitDirty  bool      `json:"git_dirty,omitempty"`
	GoVersion string    `json:"go_version,omitempty"`
}

// Run runs one test and returns its analysed result. The error is for a
// harness failure (the cluster could not be built, the directory could not
// be written); a run that found anomalies returns a Result that says so.
// ctx cancellation (SIGINT) stops the run early and tears everything down.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	wl, err := newWorkload(cfg)
	if err != nil {
		return nil, err
	}
	families, err := nemesis.Parse(cfg.Nemesis)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(cfg.OutDir), 0o755); err != nil {
		return nil, err
	}
	if err := os.Mkdir(cfg.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("run directory: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Budget())
	defer cancel()

	hlog, err := os.Create(filepath.Join(cfg.OutDir, "harness.log"))
	if err != nil {
		return nil, err
	}
	defer hlog.Close()
	start := time.Now()
	var logMu sync.Mutex
	logf := func(format string, args ...any) {
		msg := fmt.Sprintf(format, args...)
		logMu.Lock()
		fmt.Fprintf(hlog, "%8.3fs %s\n", time.Since(start).Seconds(), msg)
		logMu.Unlock()
		if cfg.Logf != nil {
			cfg.Logf("%s", msg)
		}
	}

	meta := Meta{Config: cfg, Started: start.UTC(), GoVersion: goVersion()}
	meta.GitCommit, meta.GitDirty = gitCommit()
	for i := 1; i <= cfg.Nodes; i++ {
		meta.Members = append(meta.Members, cluster.NodeName(i))
	}
	if err := writeJSON(filepath.Join(cfg.OutDir, "config.json"), meta); err != nil {
		return nil, err
	}

	ccfg := cluster.DefaultConfig()
	ccfg.Nodes, ccfg.KvdBin, ccfg.Dir, ccfg.Logf = cfg.Nodes, cfg.KvdBin, cfg.OutDir, logf
	ccfg.Subnet, ccfg.Bridge, ccfg.Prefix, ccfg.Iptables = cfg.Subnet, cfg.Bridge, cfg.Prefix, cfg.Iptables
	ccfg.KvdArgs = append([]string(nil), cfg.KvdArgs...)
	ccfg.TLS, ccfg.Auth = cfg.TLS, cfg.Auth
	if cfg.UnsafeLocalReads {
		ccfg.KvdArgs = append(ccfg.KvdArgs, "--unsafe-local-reads")
	}
	logf("run %s: workload %s, nemesis %s, %d nodes, seed %d", cfg.OutDir, cfg.Workload, cfg.Nemesis, cfg.Nodes, cfg.Seed)
	c, err := cluster.Setup(ctx, ccfg)
	if err != nil {
		return nil, err
	}
	tornDown := false
	teardown := func() error {
		if tornDown {
			return nil
		}
		tornDown = true
		logf("tearing down")
		return c.Teardown()
	}
	defer func() {
		if err := teardown(); err != nil {
			logf("teardown: %v", err)
		}
	}()

	rec, err := history.NewRecorder(filepath.Join(cfg.OutDir, "history.jsonl"), time.Now())
	if err != nil {
		return nil, err
	}
	defer rec.Close()
	if cw, ok := wl.(workload.Clocked); ok {
		cw.SetClock(rec.Since)
	}
	nlog, err := os.Create(filepath.Join(cfg.OutDir, "nemesis.log"))
	if err != nil {
		return nil, err
	}
	defer nlog.Close()

	t := &test{cfg: cfg, c: c, wl: wl, rec: rec, nlog: nlog, logf: logf,
		rng: rand.New(rand.NewSource(cfg.Seed))}
	t.nextProcess.Store(int64(cfg.Concurrency))
	runErr := t.run(ctx, families)
	if err := rec.Close(); err != nil {
		runErr = errors.Join(runErr, err)
	}
	if err := teardown(); err != nil {
		runErr = errors.Join(runErr, err)
	}
	if runErr != nil {
		logf("run error: %v", runErr)
	}
	logf("checking %d events", len(rec.Events()))
	res, err := Analyze(meta, rec.Events(), cfg.OutDir)
	if err != nil {
		return nil, errors.Join(runErr, err)
	}
	if runErr != nil {
		res.Problems = append(res.Problems, "harness: "+runErr.Error())
		if res.Verdict == "valid" {
			res.Verdict, res.Valid = "unknown", false
		}
	}
	if err := writeJSON(filepath.Join(cfg.OutDir, "results.json"), res); err != nil {
		return res, err
	}
	if res.Valid && !cfg.KeepData {
		_ = os.RemoveAll(filepath.Join(cfg.OutDir, "data"))
	}
	logf("verdict: %s %s", res.Verdict, strings.Join(res.Problems, "; "))
	return res, nil
}

func newWorkload(cfg Config) (workload.Workload, error) {
	switch cfg.Workload {
	case "register":
		rc := workload.DefaultRegisterConfig()
		rc.Keys, rc.OpsPerKey = cfg.Keys, cfg.OpsPerKey
		return workload.NewRegister(rc), nil
	case "watch":
		wc := workload.DefaultWatchConfig()
		wc.Keys = cfg.Keys
		return workload.NewWatch(wc), nil
	}
	return workload.New(cfg.Workload)
}

// test is one run in progress.
type test struct {
	cfg         Config
	c           *cluster.Cluster
	wl          workload.Workload
	rec         *history.Recorder
	nlog        io.Writer
	logf        func(string, ...any)
	rng         *rand.Rand // the nemesis goroutine's only
	nextProcess atomic.Int64
}

func (t *test) newProcess() int { return int(t.nextProcess.Add(1)) }

func (t *test) control(f, value string, typ history.Type, fault nemesis.Fault, nem string, err error) history.Event {
	e := history.Event{Type: typ, Process: history.ControlProcess, F: f, Nemesis: nem, Nodes: fault.Nodes}
	if value != "" {
		e.Value = history.Str(value)
	}
	if err != nil {
		e.Error = err.Error()
	}
	e = t.rec.Record(e)
	return e
}

func (t *test) phase(name string) {
	e := t.control(history.FPhase, name, history.Info, nemesis.Fault{}, "", nil)
	t.logf("phase %s at %.1fs", name, float64(e.Time)/1e9)
}

func (t *test) nemesisLog(e history.Event, msg string) {
	fmt.Fprintf(t.nlog, "%9.3fs %s\n", float64(e.Time)/1e9, msg)
	t.logf("nemesis: %s", msg)
}

// run drives the phases. Errors are harness problems.
func (t *test) run(ctx context.Context, families []nemesis.Family) error {
	sched := nemesis.NewSchedule(families, t.rng)
	loadCtx, stopLoad := context.WithCancel(ctx)
	defer stopLoad()
	var wg sync.WaitGroup
	lim := newLimiter(loadCtx, t.cfg.Rate)
	endpoints := t.c.Endpoints()
	members := t.c.Nodes()

	env := workload.FinalEnv{
		Members:    endpoints,
		Record:     t.rec.Record,
		NewProcess: t.newProcess,
		OpTimeout:  5 * time.Second,
		NewClient:  func(eps ...string) (*client.Client, error) { return client.New(t.c.ClientConfig(eps...)) },
	}
	if o, ok := t.wl.(workload.Observer); ok {
		if err := o.Observe(ctx, env); err != nil {
			return err
		}
	}

	t.phase(history.PhaseWarmup)
	for i := 0; i < t.cfg.Concurrency; i++ {
		var eps []string
		for j := range members {
			eps = append(eps, endpoints[members[(i+j)%len(members)]])
		}
		pinned := ""
		if t.cfg.ClientEndpoints == "one" {
			eps, pinned = eps[:1], members[i%len(members)]
		}
		cli, err := client.New(t.c.ClientConfig(eps...))
		if err != nil {
			return err
		}
		wg.Add(1)
		go func(id int, cli *client.Client, seed int64) {
			defer wg.Done()
			defer cli.Close()
			t.worker(loadCtx, id, pinned, cli, lim, rand.New(rand.NewSource(seed)))
		}(i, cli, t.cfg.Seed+int64(i)+1)
	}

	loadStart := time.Now()
	var errs []error
	if sleep(ctx, t.cfg.Warmup) && sched != nil {
		t.phase(history.PhaseFaults)
		for ctx.Err() == nil && time.Since(loadStart)+t.cfg.FaultDuration <= t.cfg.TimeLimit {
			n := sched.Next()
			// The fault's window opens when its injection begins: a
			// membership change or a leader transfer takes a while, and
			// what the clients see meanwhile belongs to the fault.
			t.control(history.FStart, "", history.Invoke, nemesis.Fault{}, n.Name(), nil)
			fault, err := n.Start(ctx, t.c, t.rng)
			typ, verb := history.Info, "start"
			switch {
			case errors.Is(err, nemesis.ErrSkipped):
				// Refused by kvd as unsafe, or not applicable now:
				// logged, not a harness error.
				typ, verb = history.Fail, "skip"
			case err != nil:
				typ = history.Fail
				errs = append(errs, fmt.Errorf("%s: start: %w", n.Name(), err))
			}
			e := t.control(history.FStart, fault.Description, typ, fault, n.Name(), err)
			t.nemesisLog(e, fmt.Sprintf("%s %s: %s%s", verb, n.Name(), fault.Description, errSuffix(err)))
			sleep(ctx, t.cfg.FaultDuration)
			hctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			err = n.Heal(hctx, t.c)
			cancel()
			typ, note := history.Info, "healed"
			if err != nil {
				typ = history.Fail
				errs = append(errs, fmt.Errorf("%s: heal: %w", n.Name(), err))
			}
			if r, ok := n.(nemesis.Reporter); ok {
				if s := r.Report(); s != "" {
					note += ": " + s
				}
			}
			e = t.control(history.FStop, note, typ, fault, n.Name(), err)
			t.nemesisLog(e, fmt.Sprintf("stop %s: %s%s", n.Name(), note, errSuffix(err)))
			t.incidents(n, fault)
			sleep(ctx, min(t.cfg.HealDuration, t.cfg.TimeLimit-time.Since(loadStart)))
		}
	}
	sleep(ctx, t.cfg.TimeLimit-time.Since(loadStart))

	// Final heal: every nemesis, then the cluster as a whole.
	hctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	for _, n := range sched.All() {
		if err := n.Heal(hctx, t.c); err != nil {
			errs = append(errs, fmt.Errorf("final heal %s: %w", n.Name(), err))
		}
		if r, ok := n.(nemesis.Reporter); ok {
			if s := r.Report(); s != "" {
				t.logf("final heal %s: %s", n.Name(), s)
			}
		}
		t.incidents(n, nemesis.Fault{})
	}
	if err := t.c.HealAll(hctx); err != nil {
		errs = append(errs, fmt.Errorf("final heal: %w", err))
	}
	cancel()
	t.phase(history.PhaseFinal)
	sleep(ctx, t.cfg.FinalPhase)
	stopLoad()
	wg.Wait()
	t.phase(history.PhaseQuiet)
	sleep(ctx, t.cfg.Quiet)

	// Health: one leader, everyone at the same applied index.
	hctx, cancel = context.WithTimeout(ctx, t.cfg.RecoveryTimeout)
	desc, err := t.c.WaitHealthy(hctx)
	cancel()
	if err != nil {
		t.control(history.FHealth, err.Error(), history.Fail, nemesis.Fault{}, "", nil)
		t.logf("health: cluster did not recover within %s: %v", t.cfg.RecoveryTimeout, err)
	} else {
		t.control(history.FHealth, desc, history.OK, nemesis.Fault{}, "", nil)
		t.logf("health: %s", desc)
	}

	t.phase(history.PhaseReads)
	fctx, cancel := context.WithTimeout(ctx, t.cfg.RecoveryTimeout)
	err = t.wl.Final(fctx, env)
	cancel()
	if err != nil {
		t.logf("final reads: %v", err) // the checker reports the missing reads
	}
	t.phase(history.PhaseDone)
	if ctx.Err() != nil {
		errs = append(errs, fmt.Errorf("run stopped early: %w", context.Cause(ctx)))
	}
	return errors.Join(errs...)
}

// incidents records what kvd did wrong that the nemesis saw.
func (t *test) incidents(n nemesis.Nemesis, fault nemesis.Fault) {
	o, ok := n.(nemesis.Observer)
	if !ok {
		return
	}
	for _, inc := range o.Incidents() {
		e := t.control(history.FIncident, inc, history.Fail, fault, n.Name(), nil)
		t.nemesisLog(e, fmt.Sprintf("INCIDENT %s: %s", n.Name(), inc))
	}
}

func errSuffix(err error) string {
	if err != nil {
		return " (error: " + err.Error() + ")"
	}
	return ""
}

// worker is one logical client: it takes a token, invokes the next
// operation, records the outcome, and after an info continues under a new
// process, as its old operation may still be in flight. pinned names the
// one member the client talks to, if it does.
func (t *test) worker(ctx context.Context, id int, pinned string, cli *client.Client, lim *limiter, rng *rand.Rand) {
	proc := id
	for lim.wait(ctx) {
		op := t.wl.Next(rng)
		op.Type, op.Process, op.Node = history.Invoke, proc, pinned
		inv := t.rec.Record(op)
		octx, cancel := context.WithTimeout(context.Background(), t.cfg.OpTimeout)
		c := t.wl.Apply(octx, cli, inv)
		cancel()
		c.Process = proc
		t.rec.Record(c)
		if c.Type == history.Info {
			proc = t.newProcess()
		}
	}
}

// limiter hands out tokens at a fixed rate; tokens nobody waits for are
// dropped, so the rate is a ceiling.
type limiter struct{ c chan struct{} }

func newLimiter(ctx context.Context, rate float64) *limiter {
	l := &limiter{c: make(chan struct{}, 1)}
	interval := time.Duration(float64(time.Second) / rate)
	go func() {
		tk := time.NewTicker(interval)
		defer tk.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tk.C:
				select {
				case l.c <- struct{}{}:
				default:
				}
			}
		}
	}()
	return l
}

// wait takes a token; false when ctx ended.
func (l *limiter) wait(ctx context.Context) bool {
	select {
	case <-ctx.Done():
		return false
	case <-l.c:
		return ctx.Err() == nil
	}
}

// sleep waits for d or until ctx ends; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-tm.C:
		return true
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func gitCommit() (string, bool) {
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return "", false
	}
	st, _ := exec.Command("git", "status", "--porcelain").Output()
	return strings.TrimSpace(string(out)), len(strings.TrimSpace(string(st))) > 0
}

func goVersion() string {
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}
