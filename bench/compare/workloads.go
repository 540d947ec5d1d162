package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/kvd-io/kvd/bench"
)

// The workloads of the bar: 8-byte keys, 256-byte values.
const (
	keySize  = 8
	valSize  = 256
	keySpace = 100000 // puts write keys 0, 1, ... in turn, as etcd's docs do
	getKey   = "bench-key"
)

type workload struct {
	name           string
	op             string // put, get
	consistency    string // l or s, for get
	clients, conns int
	total          int
	targetLeader   bool
	keySpace       int // puts: keys 0..keySpace-1 in turn; zero means the default keySpace
}

// timeout bounds one tool's run of w: five minutes, or a millisecond per
// request for the large loads.
func (w workload) timeout() time.Duration {
	return max(5*time.Minute, time.Duration(w.total)*time.Millisecond)
}

func (w workload) space() int {
	if w.keySpace > 0 {
		return w.keySpace
	}
	return keySpace
}

func workloads(quick bool) []workload {
	ws := []workload{
		{name: "put, 1 client / 1 conn, on the leader", op: "put", clients: 1, conns: 1, total: 3000, targetLeader: true},
		{name: "put, 1 client / 1 conn", op: "put", clients: 1, conns: 1, total: 3000},
		{name: "put, 100 clients / 10 conns", op: "put", clients: 100, conns: 10, total: 30000},
		{name: "put, 1000 clients / 100 conns", op: "put", clients: 1000, conns: 100, total: 50000},
		{name: "get linearizable, 100 clients / 10 conns", op: "get", consistency: "l", clients: 100, conns: 10, total: 50000},
		{name: "get serializable, 100 clients / 10 conns", op: "get", consistency: "s", clients: 100, conns: 10, total: 50000},
	}
	if quick {
		for i := range ws {
			ws[i].total /= 10
		}
	}
	return ws
}

// measurement is one tool's result for one workload.
type measurement struct {
	rps           float64
	p50, p90, p99 float64 // milliseconds
	p999          float64
	errors        int64
	total         int64
	seconds       float64
	serverCPU     time.Duration // the three members, during the run
	clientCPU     time.Duration // the benchmark tool
}

// cpuPerReq returns CPU microseconds per successful request.
func (m measurement) cpuPerReq(cpu time.Duration) float64 {
	ok := m.rps * m.seconds
	if ok <= 0 {
		return 0
	}
	return float64(cpu.Microseconds()) / ok
}

type row struct {
	w         workload
	kvd, etcd measurement
}

type runner struct {
	o    *options
	kvd  *kvdCluster
	etcd *etcdCluster
	logf func(string, ...any)
	// kvctlGlobal are global flags before kvctl bench's (--user), and
	// kvctlEnv variables of its environment (the TLS files).
	kvctlGlobal []string
	kvctlEnv    []string

	getKeyWritten bool
}

// measure runs w on kvd, then on etcd.
func (r *runner) measure(ctx context.Context, w workload) (row, error) {
	out := row{w: w}
	r.logf("kvd:  %s (%d requests)", w.name, w.total)
	cpu0 := r.kvd.cpu()
	m, err := r.runKVD(ctx, w, r.kvd.endpoints())
	if err != nil {
		return out, fmt.Errorf("kvd %s: %w", w.name, err)
	}
	m.serverCPU = r.kvd.cpu() - cpu0
	out.kvd = m
	r.logf("      %.0f req/s, p50 %.3f ms, p99 %.3f ms, %d errors", m.rps, m.p50, m.p99, m.errors)

	r.logf("etcd: %s (%d requests)", w.name, w.total)
	if w.op == "get" && !r.getKeyWritten {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := etcdPut(pctx, strings.Split(etcdEndpoints, ",")[0], getKey, randomValue(valSize))
		cancel()
		if err != nil {
			return out, fmt.Errorf("etcd: write %s: %w", getKey, err)
		}
		r.getKeyWritten = true
	}
	cpu0 = r.etcd.cpu()
	text, clientCPU, err := r.etcd.bench(ctx, w.timeout(), etcdArgs(w)...)
	if err != nil {
		return out, fmt.Errorf("etcd %s: %w", w.name, err)
	}
	serverCPU := r.etcd.cpu() - cpu0
	r.keep(w, "etcd.txt", text)
	if out.etcd, err = parseEtcdReport(text, w.total); err != nil {
		return out, fmt.Errorf("etcd %s: %w\n%s", w.name, err, text)
	}
	out.etcd.serverCPU, out.etcd.clientCPU = serverCPU, clientCPU
	r.logf("      %.0f req/s, p50 %.3f ms, p99 %.3f ms, %d errors", out.etcd.rps, out.etcd.p50, out.etcd.p99, out.etcd.errors)
	return out, nil
}

func kvctlArgs(w workload, endpoints string) []string {
	args := []string{"--endpoints", endpoints, "--command-timeout", "30s", "-w", "json"}
	if w.op == "get" {
		args = append(args, "--consistency", w.consistency)
	}
	args = append(args, "bench", w.op,
		"--clients", strconv.Itoa(w.clients), "--conns", strconv.Itoa(w.conns),
		"--total", strconv.Itoa(w.total), "--key-size", strconv.Itoa(keySize), "--val-size", strconv.Itoa(valSize))
	switch w.op {
	case "put":
		args = append(args, "--key-space", strconv.Itoa(w.space()), "--sequential-keys")
	case "get":
		args = append(args, getKey, "--prefill")
	}
	if w.targetLeader {
		args = append(args, "--target-leader")
	}
	return args
}

func etcdArgs(w workload) []string {
	args := []string{"--precise", "--conns", strconv.Itoa(w.conns), "--clients", strconv.Itoa(w.clients)}
	if w.targetLeader {
		args = append(args, "--target-leader")
	}
	switch w.op {
	case "put":
		args = append(args, "put", "--total", strconv.Itoa(w.total), "--key-size", strconv.Itoa(keySize),
			"--val-size", strconv.Itoa(valSize), "--key-space-size", strconv.Itoa(w.space()), "--sequential-keys")
	case "get":
		args = append(args, "range", getKey, "--consistency", w.consistency, "--total", strconv.Itoa(w.total))
	}
	return args
}

// runKVD runs kvctl bench for w and decodes its JSON summary.
func (r *runner) runKVD(ctx context.Context, w workload, endpoints string) (measurement, error) {
	ctx, cancel := context.WithTimeout(ctx, w.timeout())
	defer cancel()
	cmd := exec.CommandContext(ctx, r.o.kvctlBin, append(slices.Clone(r.kvctlGlobal), kvctlArgs(w, endpoints)...)...)
	if len(r.kvctlEnv) > 0 {
		cmd.Env = append(os.Environ(), r.kvctlEnv...)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return measurement{}, fmt.Errorf("%w: %s", err, strings.TrimSpace(errOut.String()))
	}
	r.keep(w, "kvd.json", out.String())
	var s bench.Summary
	if err := json.Unmarshal(out.Bytes(), &s); err != nil {
		return measurement{}, fmt.Errorf("decode %q: %w", out.String(), err)
	}
	return measurement{rps: s.RequestsPerSec, p50: s.P50Ms, p90: s.P90Ms, p99: s.P99Ms, p999: s.P999Ms,
		errors: s.Errors, total: s.Total, seconds: s.DurationS,
		clientCPU: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}, nil
}

// keep writes a tool's output for w into the working directory's outputs/,
// for a look after the run (with --keep).
func (r *runner) keep(w workload, suffix, text string) {
	dir := filepath.Join(r.o.dir, "outputs")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return
	}
	name := strings.Map(func(c rune) rune {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' {
			return c
		}
		return '-'
	}, strings.ToLower(w.name))
	_ = os.WriteFile(filepath.Join(dir, name+"."+suffix), []byte(text), 0o644)
}

var (
	reRPS   = regexp.MustCompile(`Requests/sec:\s+([0-9.eE+-]+)`)
	reTotal = regexp.MustCompile(`Total:\s+([0-9.eE+-]+) secs`)
	rePct   = regexp.MustCompile(`([0-9.]+)% in ([0-9.eE+-]+) secs`)
	reErr   = regexp.MustCompile(`(?m)^\s+\[(\d+)\]\s`)
)

// parseEtcdReport reads the report of etcd's benchmark (run with --precise):
// "Requests/sec:", "NN% in X secs." lines and the error distribution.
func parseEtcdReport(text string, total int) (measurement, error) {
	var m measurement
	match := reRPS.FindStringSubmatch(text)
	if match == nil {
		return m, fmt.Errorf("no Requests/sec in the report")
	}
	m.rps, _ = strconv.ParseFloat(match[1], 64)
	if match := reTotal.FindStringSubmatch(text); match != nil {
		m.seconds, _ = strconv.ParseFloat(match[1], 64)
	}
	pcts := map[string]*float64{"50": &m.p50, "90": &m.p90, "99": &m.p99, "99.9": &m.p999}
	for _, match := range rePct.FindAllStringSubmatch(text, -1) {
		if p := pcts[match[1]]; p != nil {
			v, _ := strconv.ParseFloat(match[2], 64)
			*p = v * 1000
		}
	}
	if i := strings.Index(text, "Error distribution:"); i >= 0 {
		for _, match := range reErr.FindAllStringSubmatch(text[i:], -1) {
			n, _ := strconv.ParseInt(match[1], 10, 64)
			m.errors += n
		}
	}
	m.total = int64(total)
	return m, nil
}

func randomValue(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rand.Uint32())
	}
	return string(b)
}
