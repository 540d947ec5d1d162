package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// profileResult is a perf profile of kvd's leader during one workload.
type profileResult struct {
	w         workload
	leader    string
	run       measurement
	samples   string
	symbols   []share // hottest symbols, self time
	pkgs      []share // self time summed by Go package (or kernel)
	inclusive []share // time in and under the frames of interest
}

type share struct {
	name string
	pct  float64
}

// framesOfInterest are the frames whose inclusive time (the frame and what it
// calls) the profile reports: where a write and a read spend the leader's CPU.
var framesOfInterest = []string{
	"google.golang.org/grpc.(*Server).handleStream",
	"github.com/kvd-io/kvd/server.(*kvService).Put",
	"github.com/kvd-io/kvd/server.(*kvService).Range",
	"github.com/hashicorp/raft.(*Raft).dispatchLogs",
	"github.com/hashicorp/raft-boltdb/v2.(*BoltStore).StoreLogs",
	"github.com/hashicorp/raft.(*Raft).replicate",
	"github.com/hashicorp/raft-boltdb/v2.(*BoltStore).GetLog",
	"github.com/hashicorp/raft.(*Raft).runFSM",
	"github.com/kvd-io/kvd/fsm.(*FSM).ApplyBatch",
	"go.etcd.io/bbolt.(*Tx).Commit",
	"go.etcd.io/bbolt.fdatasync",
	"runtime.gcBgMarkWorker",
	"runtime.mallocgc",
	"schedule",
}

// profiles reruns each workload of profiled on kvd while perf samples the
// leader's stacks.
func (r *runner) profiles(ctx context.Context) ([]*profileResult, error) {
	var out []*profileResult
	for _, w := range profiled(r.o.quick) {
		p, err := r.profile(ctx, w)
		if err != nil {
			return out, err
		}
		out = append(out, p)
	}
	return out, nil
}

// profiled are the workloads profiled: the write path under load, and the
// read path, which is CPU-bound.
func profiled(quick bool) []workload {
	ws := []workload{
		{name: "put, 100 clients / 10 conns", op: "put", clients: 100, conns: 10, total: 30000},
		{name: "get serializable, 100 clients / 10 conns", op: "get", consistency: "s", clients: 100, conns: 10, total: 50000},
	}
	if quick {
		for i := range ws {
			ws[i].total /= 10
		}
	}
	return ws
}

func (r *runner) profile(ctx context.Context, w workload) (*profileResult, error) {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return nil, errors.New("perf is not installed")
	}
	leader, err := r.kvd.leaderMember(ctx)
	if err != nil {
		return nil, err
	}
	data := filepath.Join(r.o.dir, fmt.Sprintf("kvd-leader-%s-%s.perf.data", w.op, w.consistency))
	rec := exec.Command(perf, "record", "-F", "999", "-g", "-p", strconv.Itoa(leader.cmd.Process.Pid), "-o", data)
	var recErr bytes.Buffer
	rec.Stdout, rec.Stderr = &recErr, &recErr
	if err := rec.Start(); err != nil {
		return nil, err
	}
	time.Sleep(500 * time.Millisecond) // let perf attach
	r.logf("kvd:  %s, with perf on the leader %s", w.name, leader.name)
	m, runErr := r.runKVD(ctx, w, r.kvd.endpoints())
	_ = rec.Process.Signal(syscall.SIGINT)
	waitErr := rec.Wait()
	if runErr != nil {
		return nil, runErr
	}
	if waitErr != nil && !strings.Contains(waitErr.Error(), "interrupt") {
		r.logf("perf record: %v: %s", waitErr, recErr.String())
	}
	res := &profileResult{w: w, leader: leader.name, run: m}
	report := func(children string) (string, error) {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		out, err := exec.CommandContext(rctx, perf, "report", "-i", data, "--stdio", children,
			"--sort", "symbol", "-g", "none").Output()
		if err != nil {
			return "", fmt.Errorf("perf report: %w", err)
		}
		return string(out), nil
	}
	self, err := report("--no-children")
	if err != nil {
		return nil, err
	}
	res.samples, res.symbols, res.pkgs = parsePerfReport(self)
	incl, err := report("--children")
	if err != nil {
		return nil, err
	}
	res.inclusive = inclusiveShares(incl, framesOfInterest)
	return res, nil
}

var (
	rePerfLine    = regexp.MustCompile(`^\s+([0-9.]+)%\s+\[(.)\]\s+(.+?)(?:\s+-\s+-)?\s*$`)
	rePerfSamples = regexp.MustCompile(`(?m)^# Samples: (\S+)`)
)

// parsePerfReport reads `perf report --stdio --no-children --sort symbol -g
// none`: the sample count, the symbols by self time, and the same summed by
// Go package, kernel symbols as one "kernel".
func parsePerfReport(text string) (samples string, symbols, pkgs []share) {
	if m := rePerfSamples.FindStringSubmatch(text); m != nil {
		samples = m[1]
	}
	byPkg := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		m := rePerfLine.FindStringSubmatch(sc.Text())
		if m == nil {
			continue
		}
		pct, _ := strconv.ParseFloat(m[1], 64)
		sym := m[3]
		symbols = append(symbols, share{sym, pct})
		pkg := "kernel"
		if m[2] != "k" {
			pkg = goPackage(sym)
		}
		byPkg[pkg] += pct
	}
	for p, v := range byPkg {
		pkgs = append(pkgs, share{p, v})
	}
	slices.SortFunc(pkgs, func(a, b share) int {
		return cmp.Or(cmp.Compare(b.pct, a.pct), cmp.Compare(a.name, b.name))
	})
	return samples, symbols, pkgs
}

// goPackage returns the package path of a Go symbol such as
// go.etcd.io/bbolt.(*Tx).Commit or runtime.mallocgc.
func goPackage(sym string) string {
	slash := strings.LastIndex(sym, "/")
	rest := sym[slash+1:]
	if dot := strings.Index(rest, "."); dot > 0 {
		return sym[:slash+1] + rest[:dot]
	}
	return sym
}

var rePerfChildren = regexp.MustCompile(`^\s+([0-9.]+)%\s+([0-9.]+)%\s+\[(.)\]\s+(.+?)(?:\s+-\s+-)?\s*$`)

// inclusiveShares picks the frames of `perf report --children` output, in
// the order of frames, that are present.
func inclusiveShares(text string, frames []string) []share {
	found := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		if m := rePerfChildren.FindStringSubmatch(sc.Text()); m != nil {
			if _, seen := found[m[4]]; !seen {
				found[m[4]], _ = strconv.ParseFloat(m[1], 64)
			}
		}
	}
	var out []share
	for _, f := range frames {
		if pct, ok := found[f]; ok {
			out = append(out, share{f, pct})
		}
	}
	return out
}

func (p *profileResult) markdown() string {
	var b strings.Builder
	fmt.Fprintf(&b, "\n### CPU profile of the kvd leader (%s) during %s\n\n", p.leader, p.w.name)
	fmt.Fprintf(&b, "perf record -F 999 -g on the leader, %s samples; that run: %.0f req/s, p50 %.2f ms, p99 %.2f ms.\n\n",
		p.samples, p.run.rps, p.run.p50, p.run.p99)
	fmt.Fprintf(&b, "Time in and under frames of interest (%% of the leader's samples):\n\n| frame | inclusive %% |\n|---|--:|\n")
	for _, s := range p.inclusive {
		fmt.Fprintf(&b, "| `%s` | %.1f |\n", s.name, s.pct)
	}
	fmt.Fprintf(&b, "\nSelf time by package (top 12):\n\n| package | self %% |\n|---|--:|\n")
	for _, s := range p.pkgs[:min(12, len(p.pkgs))] {
		fmt.Fprintf(&b, "| %s | %.1f |\n", s.name, s.pct)
	}
	fmt.Fprintf(&b, "\nHottest symbols (top 15):\n\n| symbol | self %% |\n|---|--:|\n")
	for _, s := range p.symbols[:min(15, len(p.symbols))] {
		fmt.Fprintf(&b, "| `%s` | %.1f |\n", s.name, s.pct)
	}
	return b.String()
}
