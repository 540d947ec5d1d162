package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
)

// results is everything a run measured, printed as markdown.
type results struct {
	sys                   sysInfo
	kvdLeader, etcdLeader string
	kvdIdle, etcdIdle     time.Duration // CPU of the three members over idleWindow
	rows                  []row
	tool                  *toolResult
	coord                 []coordRow
	profiles              []*profileResult
	scale                 *scaleResult
	compaction            *compactionResult
	wall                  time.Duration
}

type sysInfo struct {
	cpus     int
	cpuModel string
	memory   string
	disk     string
	kernel   string
	load     string
	goVer    string
	fsync    time.Duration // median of a 4 KiB write and fsync in the work dir
}

func systemInfo(dir string) sysInfo {
	s := sysInfo{cpus: runtime.NumCPU(), goVer: runtime.Version()}
	s.cpuModel = firstField("/proc/cpuinfo", "model name")
	if kb, err := strconv.ParseInt(strings.TrimSuffix(firstField("/proc/meminfo", "MemTotal"), " kB"), 10, 64); err == nil {
		s.memory = fmt.Sprintf("%.1f GiB", float64(kb)/(1<<20))
	}
	s.fsync = fsyncLatency(dir, 200)
	if out, err := exec.Command("df", "-h", "--output=source,fstype,size,avail", dir).Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		s.disk = strings.Join(strings.Fields(lines[len(lines)-1]), " ")
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		s.kernel = strings.TrimSpace(string(b))
	}
	s.load = loadAvg()
	return s
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Join(strings.Fields(string(b))[:3], " ")
}

// fsyncLatency returns the median time of n writes of 4 KiB, each followed
// by an fsync, in a file in dir: the floor of a durable write's latency.
func fsyncLatency(dir string, n int) time.Duration {
	f, err := os.CreateTemp(dir, "fsync-probe-")
	if err != nil {
		return 0
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	var took []time.Duration
	for i := range n {
		start := time.Now()
		if _, err := f.WriteAt(buf, int64(i%16)*4096); err != nil {
			return 0
		}
		if err := f.Sync(); err != nil {
			return 0
		}
		took = append(took, time.Since(start))
	}
	slices.Sort(took)
	return took[len(took)/2]
}

// firstField returns the value of the first "key: value" line of path that
// starts with key.
func firstField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func ratio(a, b float64) string {
	if b == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f x", a/b)
}

func (r *results) markdown() string {
	var b strings.Builder
	s := r.sys
	fmt.Fprintf(&b, "\n## kvd vs etcd 3.6.7, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Machine: %d CPUs (%s), %s memory, disk %s (4 KiB write + fsync: median %.2f ms), Linux %s, %s; load average at the start %s.\n",
		s.cpus, s.cpuModel, s.memory, s.disk, float64(s.fsync)/float64(time.Millisecond), s.kernel, s.goVer, s.load)
	fmt.Fprintf(&b, "Leaders: kvd %s, etcd %s (connections go round-robin from member 1, except \"on the leader\").\n",
		r.kvdLeader, r.etcdLeader)
	fmt.Fprintf(&b, "Idle clusters (three members, before the runs): kvd %.1f%%, etcd %.1f%% of one CPU.\n\n",
		100*r.kvdIdle.Seconds()/idleWindow.Seconds(), 100*r.etcdIdle.Seconds()/idleWindow.Seconds())
	if len(r.rows) > 0 {
		r.table(&b)
	}
	if r.tool != nil {
		b.WriteString(r.tool.markdown())
	}
	if len(r.coord) > 0 {
		b.WriteString(coordMarkdown(r.coord))
	}
	for _, p := range r.profiles {
		b.WriteString(p.markdown())
	}
	if r.scale != nil {
		b.WriteString(r.scale.markdown())
	}
	if r.compaction != nil {
		b.WriteString(r.compaction.markdown())
	}
	fmt.Fprintf(&b, "\nWall time of the run: %s; load average at the end %s.\n", r.wall.Round(time.Second), loadAvg())
	return b.String()
}

func (r *results) table(b *strings.Builder) {
	fmt.Fprintf(b, "| workload | kvd req/s | etcd req/s | throughput kvd/etcd | kvd p50 / p99 ms | etcd p50 / p99 ms | p50 kvd/etcd | server CPU µs/req kvd / etcd | client CPU µs/req kvd / etcd | errors kvd / etcd |\n")
	fmt.Fprintf(b, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n")
	for _, row := range r.rows {
		k, e := row.kvd, row.etcd
		fmt.Fprintf(b, "| %s | %.0f | %.0f | %s | %.2f / %.2f | %.2f / %.2f | %s | %.0f / %.0f | %.0f / %.0f | %d / %d |\n",
			row.w.name, k.rps, e.rps, ratio(k.rps, e.rps), k.p50, k.p99, e.p50, e.p99, ratio(k.p50, e.p50),
			k.cpuPerReq(k.serverCPU), e.cpuPerReq(e.serverCPU), k.cpuPerReq(k.clientCPU), e.cpuPerReq(e.clientCPU),
			k.errors, e.errors)
	}
}
