package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kvd-io/kvd/member"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// scaleResult compares the clusters once they hold many keys.
type scaleResult struct {
	keys      int
	kvd, etcd scaleSide
}

type scaleSide struct {
	load          measurement
	dataDir       []int64 // bytes, per member
	rss           []int64 // bytes, per member, after the load
	snapSize      int64
	snapSave      time.Duration
	restore       time.Duration
	restart       time.Duration // a follower, from exec to its first linearizable read
	restartMember string
}

// scale loads n keys of valSize bytes into each cluster and measures them.
func (r *runner) scale(ctx context.Context, n int) (*scaleResult, error) {
	res := &scaleResult{keys: n}
	load := workload{name: fmt.Sprintf("load %d keys", n), op: "put", clients: 1000, conns: 100, total: n, keySpace: n}

	r.logf("kvd:  %s", load.name)
	m, err := r.runKVD(ctx, load, r.kvd.endpoints())
	if err != nil {
		return nil, fmt.Errorf("kvd load: %w", err)
	}
	res.kvd.load = m
	r.logf("      %.0f keys/s, %d errors", m.rps, m.errors)
	if err := r.scaleKVD(ctx, &res.kvd); err != nil {
		return nil, fmt.Errorf("kvd: %w", err)
	}

	r.logf("etcd: %s", load.name)
	text, _, err := r.etcd.bench(ctx, load.timeout(), etcdArgs(load)...)
	if err != nil {
		return nil, fmt.Errorf("etcd load: %w", err)
	}
	r.keep(load, "etcd.txt", text)
	if res.etcd.load, err = parseEtcdReport(text, n); err != nil {
		return nil, fmt.Errorf("etcd load: %w\n%s", err, text)
	}
	r.logf("      %.0f keys/s, %d errors", res.etcd.load.rps, res.etcd.load.errors)
	if err := r.scaleEtcd(ctx, &res.etcd); err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	return res, nil
}

func (r *runner) scaleKVD(ctx context.Context, s *scaleSide) error {
	for _, m := range r.kvd.members {
		s.dataDir = append(s.dataDir, dirSize(m.dataDir))
		s.rss = append(s.rss, rss(m.cmd.Process.Pid))
	}
	leader, err := r.kvd.leaderMember(ctx)
	if err != nil {
		return err
	}

	// Snapshot save: the Snapshot stream of the leader into a file, checked
	// against the SHA-256 that ends it, as `kvctl snapshot save` does.
	snap := filepath.Join(r.o.dir, "kvd.snapshot")
	start := time.Now()
	if s.snapSize, err = kvdSnapshot(ctx, leader.clientAddr, snap); err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	s.snapSave = time.Since(start)
	r.logf("kvd:  snapshot of %d bytes saved in %v", s.snapSize, s.snapSave.Round(time.Millisecond))

	// Restore: one member's data dir of a new cluster from that file.
	f, err := os.Open(snap)
	if err != nil {
		return err
	}
	defer f.Close()
	var peers []member.Peer
	for _, m := range r.kvd.members {
		peers = append(peers, member.Peer{Name: m.name, RaftAddr: m.raftAddr})
	}
	restored := filepath.Join(r.o.dir, "kvd-restored")
	if err := os.RemoveAll(restored); err != nil {
		return err
	}
	start = time.Now()
	err = member.RestoreDataDir(f, member.RestoreConfig{Name: "n1", DataDir: filepath.Join(restored, "n1"), InitialCluster: peers})
	s.restore = time.Since(start)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	r.logf("kvd:  restored in %v", s.restore.Round(time.Millisecond))

	// Restart a follower and time it until it serves a linearizable read.
	var follower *kvdMember
	for _, m := range r.kvd.members {
		if m != leader {
			follower = m
			break
		}
	}
	if err := stopMember(follower); err != nil {
		return err
	}
	start = time.Now()
	if err := r.kvd.startMember(follower); err != nil {
		return err
	}
	if err := r.kvd.waitServing(ctx, follower.clientAddr, 2*time.Minute); err != nil {
		return err
	}
	s.restart, s.restartMember = time.Since(start), follower.name
	r.logf("kvd:  %s restarted and served in %v", follower.name, s.restart.Round(time.Millisecond))
	return nil
}

// kvdSnapshot streams the state database of the member at addr into path
// and checks its SHA-256.
func kvdSnapshot(ctx context.Context, addr, path string) (int64, error) {
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return 0, err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	stream, err := kvv1.NewMaintenanceServiceClient(cc).Snapshot(ctx, &kvv1.SnapshotRequest{})
	if err != nil {
		return 0, err
	}
	f, err := os.Create(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	h := sha256.New()
	w := io.MultiWriter(f, h)
	var n int64
	var sum []byte
	for {
		resp, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			return n, err
		}
		k, err := w.Write(resp.Blob)
		n += int64(k)
		if err != nil {
			return n, err
		}
		if len(resp.Sha256) > 0 {
			sum = resp.Sha256
		}
	}
	if !bytes.Equal(sum, h.Sum(nil)) {
		return n, errors.New("snapshot SHA-256 does not match")
	}
	if err := f.Sync(); err != nil {
		return n, err
	}
	return n, f.Close()
}

func (r *runner) scaleEtcd(ctx context.Context, s *scaleSide) error {
	pids := r.etcd.pids()
	if len(pids) != 3 {
		return fmt.Errorf("found %d etcd pids, want 3", len(pids))
	}
	for i, pid := range pids {
		s.dataDir = append(s.dataDir, dirSize(filepath.Join(r.etcd.dir, fmt.Sprintf("e%d.etcd", i+1))))
		s.rss = append(s.rss, rss(pid))
	}
	leaderName, err := r.etcd.leader(ctx)
	if err != nil {
		return err
	}
	addrs := strings.Split(etcdEndpoints, ",")
	leaderIdx := int(leaderName[1] - '1')

	snap := filepath.Join(r.o.dir, "etcd.snapshot")
	f, err := os.Create(snap)
	if err != nil {
		return err
	}
	start := time.Now()
	sctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	s.snapSize, err = etcdSnapshot(sctx, addrs[leaderIdx], f)
	cancel()
	if err == nil {
		err = f.Sync()
	}
	s.snapSave = time.Since(start)
	f.Close()
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	r.logf("etcd: snapshot of %d bytes saved in %v", s.snapSize, s.snapSave.Round(time.Millisecond))

	etcdutl, err := r.etcdutl(ctx)
	if err != nil {
		return err
	}
	restored := filepath.Join(r.o.dir, "etcd-restored")
	if err := os.RemoveAll(restored); err != nil {
		return err
	}
	start = time.Now()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	out, err := exec.CommandContext(rctx, etcdutl, "snapshot", "restore", snap,
		"--data-dir", filepath.Join(restored, "e1"), "--name", "e1",
		"--initial-cluster", "e1=http://127.0.0.1:21380,e2=http://127.0.0.1:22380,e3=http://127.0.0.1:23380",
		"--initial-advertise-peer-urls", "http://127.0.0.1:21380").CombinedOutput()
	cancel()
	s.restore = time.Since(start)
	if err != nil {
		return fmt.Errorf("etcdutl snapshot restore: %w: %s", err, out)
	}
	r.logf("etcd: restored in %v", s.restore.Round(time.Millisecond))

	// Restart a follower with the command line it runs with.
	follower := (leaderIdx + 1) % 3
	s.restartMember = fmt.Sprintf("e%d", follower+1)
	if s.restart, err = r.restartEtcdMember(ctx, follower, pids[follower], addrs[follower]); err != nil {
		return err
	}
	r.logf("etcd: %s restarted and served in %v", s.restartMember, s.restart.Round(time.Millisecond))
	return nil
}

// restartEtcdMember stops member i (pid) and starts it again with the same
// command line and the environment the script gave it (etcdCluster.env),
// recording the new pid where the peers script's stop finds it, and returns
// the time from exec to its first linearizable read.
func (r *runner) restartEtcdMember(ctx context.Context, i, pid int, addr string) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return 0, err
	}
	argv := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return 0, err
	}
	if !waitGone(pid, 30*time.Second) {
		return 0, fmt.Errorf("etcd member %d did not stop", i+1)
	}
	log, err := os.OpenFile(filepath.Join(r.etcd.dir, fmt.Sprintf("e%d.log", i+1)), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	defer log.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	if len(r.etcd.env) > 0 {
		// A member restarted without them would run on etcd's defaults
		// (its 2 GiB quota raised NOSPACE for the whole cluster once).
		cmd.Env = append(os.Environ(), r.etcd.env...)
	}
	cmd.Stdout, cmd.Stderr = log, log
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, err
	}
	go func() { _ = cmd.Wait() }()
	if err := os.WriteFile(filepath.Join(r.etcd.dir, fmt.Sprintf("e%d.pid", i+1)), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644); err != nil {
		return 0, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		gctx, cancel := context.WithTimeout(ctx, time.Second)
		err := etcdGet(gctx, addr, "bench-compare-ready")
		cancel()
		if err == nil {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return 0, fmt.Errorf("etcd member %d did not serve after a restart: %w", i+1, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// etcdutl returns etcd's offline tool, built once from Go modules into
// ~/.cache/kvd-bench/bin (the peers script builds only etcd and its
// benchmark).
func (r *runner) etcdutl(ctx context.Context) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	root := filepath.Join(cache, "kvd-bench")
	bin := filepath.Join(root, "bin", "etcdutl")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	r.logf("building etcdutl v3.6.7 into %s", bin)
	mod := filepath.Join(root, "etcdutl")
	if err := os.MkdirAll(mod, 0o755); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte("module kvdbenchetcdutl\n\ngo 1.24\n"), 0o644); err != nil {
		return "", err
	}
	bctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	for _, args := range [][]string{
		{"get", "go.etcd.io/etcd/etcdutl/v3@v3.6.7"},
		{"build", "-o", bin, "go.etcd.io/etcd/etcdutl/v3"},
	} {
		cmd := exec.CommandContext(bctx, "go", args...)
		cmd.Dir = mod
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, out)
		}
	}
	return bin, nil
}

// dirSize returns the bytes of the regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// rss returns the resident memory of process pid, or -1.
func rss(pid int) int64 {
	v := firstField(fmt.Sprintf("/proc/%d/status", pid), "VmRSS")
	kb, err := strconv.ParseInt(strings.TrimSuffix(v, " kB"), 10, 64)
	if err != nil {
		return -1
	}
	return kb * 1024
}

func mib(n int64) string { return fmt.Sprintf("%.0f", float64(n)/(1<<20)) }

func mibs(ns []int64) string {
	var parts []string
	for _, n := range ns {
		parts = append(parts, mib(n))
	}
	return strings.Join(parts, " / ")
}

func (s *scaleResult) markdown() string {
	var b strings.Builder
	k, e := s.kvd, s.etcd
	fmt.Fprintf(&b, "\n### Scale: %d keys of %d-byte values (1000 clients / 100 conns, sequential keys)\n\n", s.keys, valSize)
	fmt.Fprintf(&b, "| measure | kvd | etcd | kvd/etcd |\n|---|--:|--:|--:|\n")
	fmt.Fprintf(&b, "| load throughput (keys/s) | %.0f | %.0f | %s |\n", k.load.rps, e.load.rps, ratio(k.load.rps, e.load.rps))
	fmt.Fprintf(&b, "| load errors | %d | %d | |\n", k.load.errors, e.load.errors)
	fmt.Fprintf(&b, "| data dir per member (MiB) | %s | %s | %s |\n", mibs(k.dataDir), mibs(e.dataDir), ratio(float64(sum(k.dataDir)), float64(sum(e.dataDir))))
	fmt.Fprintf(&b, "| resident memory per member (MiB) | %s | %s | %s |\n", mibs(k.rss), mibs(e.rss), ratio(float64(sum(k.rss)), float64(sum(e.rss))))
	fmt.Fprintf(&b, "| snapshot size (MiB) | %s | %s | %s |\n", mib(k.snapSize), mib(e.snapSize), ratio(float64(k.snapSize), float64(e.snapSize)))
	fmt.Fprintf(&b, "| snapshot save from the leader (s) | %.2f | %.2f | %s |\n", k.snapSave.Seconds(), e.snapSave.Seconds(), ratio(k.snapSave.Seconds(), e.snapSave.Seconds()))
	fmt.Fprintf(&b, "| restore of one member's data dir (s) | %.2f | %.2f | %s |\n", k.restore.Seconds(), e.restore.Seconds(), ratio(k.restore.Seconds(), e.restore.Seconds()))
	fmt.Fprintf(&b, "| follower restart to first linearizable read (s) | %.2f (%s) | %.2f (%s) | %s |\n",
		k.restart.Seconds(), k.restartMember, e.restart.Seconds(), e.restartMember, ratio(k.restart.Seconds(), e.restart.Seconds()))
	return b.String()
}

func sum(ns []int64) int64 {
	var t int64
	for _, n := range ns {
		t += n
	}
	return t
}
