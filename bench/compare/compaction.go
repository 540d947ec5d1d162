package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protowire"
)

// The compaction and defragmentation measurements of --scale-revisions use
// the same hand-written client on both systems (kvd's messages have etcd's
// field numbers).
type rawKVAPI struct {
	put, rangeM, compact, defrag string
}

var (
	kvdKVAPI = rawKVAPI{put: "/kv.v1.KVService/Put", rangeM: "/kv.v1.KVService/Range",
		compact: "/kv.v1.KVService/Compact", defrag: "/kv.v1.MaintenanceService/Defragment"}
	etcdKVAPI = rawKVAPI{put: "/etcdserverpb.KV/Put", rangeM: "/etcdserverpb.KV/Range",
		compact: "/etcdserverpb.KV/Compact", defrag: "/etcdserverpb.Maintenance/Defragment"}
)

// compactionSide is one system's compaction and defragmentation results.
type compactionSide struct {
	rewrite        measurement   // the puts that gave every key its further revisions
	revision       int64         // the revision compacted to
	compact        time.Duration // Compact(revision, physical) until it returned
	beforeDir      []int64       // data dir per member before compaction
	afterDir       []int64       // after compaction and defragmentation of every member
	defrag         time.Duration // defragmentation of member 1
	maxPut, maxGet time.Duration // longest put and get sent to member 1 during its defragmentation
	puts, gets     int64         // how many completed during it
}

func putReq(key, value string) []byte {
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	req = protowire.AppendString(req, key)
	req = protowire.AppendTag(req, 2, protowire.BytesType)
	req = protowire.AppendString(req, value)
	return req
}

func rangeReq(key string) []byte {
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	return protowire.AppendString(req, key)
}

// currentRevision returns the header revision of a read through addr.
func currentRevision(ctx context.Context, api rawKVAPI, addr string) (int64, error) {
	resp, err := rawCall(ctx, addr, api.rangeM, rangeReq("bench-compare-ready"))
	if err != nil {
		return 0, err
	}
	hdr, _ := fields(resp)[1].([]byte)
	rev, _ := fields(hdr)[3].(uint64)
	if rev == 0 {
		return 0, fmt.Errorf("no revision in the answer of %s", addr)
	}
	return int64(rev), nil
}

// compactAndDefrag compacts the cluster at addrs to its current revision
// (physical), then defragments member 1 while one writer and one reader
// keep sending to it, recording their longest request, then defragments
// the other members.
func compactAndDefrag(ctx context.Context, api rawKVAPI, addrs []string, dirs func() []int64, logf func(string, ...any), s *compactionSide) error {
	var err error
	if s.revision, err = currentRevision(ctx, api, addrs[0]); err != nil {
		return err
	}
	s.beforeDir = dirs()
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.VarintType)
	req = protowire.AppendVarint(req, uint64(s.revision))
	req = protowire.AppendTag(req, 2, protowire.VarintType)
	req = protowire.AppendVarint(req, 1)
	cctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	start := time.Now()
	_, err = rawCall(cctx, addrs[0], api.compact, req)
	s.compact = time.Since(start)
	cancel()
	if err != nil {
		return fmt.Errorf("compact to %d: %w", s.revision, err)
	}
	logf("      compacted to revision %d in %v", s.revision, s.compact.Round(time.Millisecond))

	// Member 1 under load while it defragments.
	cc, err := dialRaw(addrs[0])
	if err != nil {
		return err
	}
	defer cc.Close()
	lctx, stopLoad := context.WithCancel(ctx)
	var maxPut, maxGet atomic.Int64
	var puts, gets atomic.Int64
	var wg sync.WaitGroup
	measuring := atomic.Bool{}
	loop := func(method string, body []byte, most, count *atomic.Int64) {
		for lctx.Err() == nil {
			t0 := time.Now()
			var resp []byte
			rctx, cancel := context.WithTimeout(lctx, 2*time.Minute)
			err := cc.Invoke(rctx, method, &body, &resp, grpc.WaitForReady(true))
			cancel()
			if err == nil && measuring.Load() {
				storeMaxDur(most, time.Since(t0))
				count.Add(1)
			}
		}
	}
	wg.Go(func() { loop(api.put, putReq("defrag-probe", randomValue(valSize)), &maxPut, &puts) })
	wg.Go(func() { loop(api.rangeM, rangeReq("defrag-probe"), &maxGet, &gets) })
	if err := sleepCtx(ctx, time.Second); err != nil {
		stopLoad()
		wg.Wait()
		return err
	}
	measuring.Store(true)
	dctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	start = time.Now()
	_, err = rawCall(dctx, addrs[0], api.defrag, nil)
	s.defrag = time.Since(start)
	cancel()
	// A request in flight when the defragmentation ended may still be
	// stalled by it: let it finish before reading the maxima.
	time.Sleep(100 * time.Millisecond)
	measuring.Store(false)
	stopLoad()
	wg.Wait()
	if err != nil {
		return fmt.Errorf("defragment %s: %w", addrs[0], err)
	}
	s.maxPut, s.maxGet = time.Duration(maxPut.Load()), time.Duration(maxGet.Load())
	s.puts, s.gets = puts.Load(), gets.Load()
	logf("      defragmented %s in %v; longest put %v, get %v (%d puts, %d gets meanwhile)", addrs[0], s.defrag.Round(time.Millisecond),
		s.maxPut.Round(time.Millisecond), s.maxGet.Round(time.Millisecond), s.puts, s.gets)
	for _, a := range addrs[1:] {
		dctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		_, err := rawCall(dctx, a, api.defrag, nil)
		cancel()
		if err != nil {
			return fmt.Errorf("defragment %s: %w", a, err)
		}
	}
	s.afterDir = dirs()
	return nil
}

func storeMaxDur(a *atomic.Int64, d time.Duration) {
	for {
		cur := a.Load()
		if cur >= int64(d) || a.CompareAndSwap(cur, int64(d)) {
			return
		}
	}
}

// compaction gives each of the n keys of the scale load revisions-1 more
// revisions on both clusters, then compacts and defragments each.
func (r *runner) compaction(ctx context.Context, n, revisions int) (*compactionResult, error) {
	res := &compactionResult{keys: n, revisions: revisions}
	more := workload{name: fmt.Sprintf("rewrite %d keys %d times", n, revisions-1), op: "put", clients: 1000, conns: 100,
		total: n * (revisions - 1), keySpace: n}

	r.logf("kvd:  %s", more.name)
	m, err := r.runKVD(ctx, more, r.kvd.endpoints())
	if err != nil {
		return nil, fmt.Errorf("kvd rewrite: %w", err)
	}
	res.kvd.rewrite = m
	kvdDirs := func() []int64 {
		var ds []int64
		for _, m := range r.kvd.members {
			ds = append(ds, dirSize(m.dataDir))
		}
		return ds
	}
	if err := compactAndDefrag(ctx, kvdKVAPI, strings.Split(r.kvd.endpoints(), ","), kvdDirs, r.logf, &res.kvd); err != nil {
		return nil, fmt.Errorf("kvd: %w", err)
	}

	r.logf("etcd: %s", more.name)
	text, _, err := r.etcd.bench(ctx, more.timeout(), etcdArgs(more)...)
	if err != nil {
		return nil, fmt.Errorf("etcd rewrite: %w", err)
	}
	r.keep(more, "etcd.txt", text) // with the tool's error distribution
	if res.etcd.rewrite, err = parseEtcdReport(text, more.total); err != nil {
		return nil, fmt.Errorf("etcd rewrite: %w", err)
	}
	etcdDirs := func() []int64 {
		var ds []int64
		for i := 1; i <= 3; i++ {
			ds = append(ds, dirSize(filepath.Join(r.etcd.dir, fmt.Sprintf("e%d.etcd", i))))
		}
		return ds
	}
	if err := compactAndDefrag(ctx, etcdKVAPI, strings.Split(etcdEndpoints, ","), etcdDirs, r.logf, &res.etcd); err != nil {
		return nil, fmt.Errorf("etcd: %w", err)
	}
	return res, nil
}

type compactionResult struct {
	keys, revisions int
	kvd, etcd       compactionSide
}

func (c *compactionResult) markdown() string {
	var b strings.Builder
	k, e := c.kvd, c.etcd
	fmt.Fprintf(&b, "\n### Scale: %d keys with %d revisions each, compacted and defragmented\n\n", c.keys, c.revisions)
	fmt.Fprintf(&b, "| measure | kvd | etcd | kvd/etcd |\n|---|--:|--:|--:|\n")
	fmt.Fprintf(&b, "| rewrite throughput (puts/s), errors | %.0f, %d | %.0f, %d | %s |\n", k.rewrite.rps, k.rewrite.errors, e.rewrite.rps, e.rewrite.errors, ratio(k.rewrite.rps, e.rewrite.rps))
	fmt.Fprintf(&b, "| data dir per member before compaction (MiB) | %s | %s | %s |\n", mibs(k.beforeDir), mibs(e.beforeDir), ratio(float64(sum(k.beforeDir)), float64(sum(e.beforeDir))))
	fmt.Fprintf(&b, "| compaction to the latest revision, physical (s) | %.2f | %.2f | %s |\n", k.compact.Seconds(), e.compact.Seconds(), ratio(k.compact.Seconds(), e.compact.Seconds()))
	fmt.Fprintf(&b, "| data dir per member after compaction and defragmentation (MiB) | %s | %s | %s |\n", mibs(k.afterDir), mibs(e.afterDir), ratio(float64(sum(k.afterDir)), float64(sum(e.afterDir))))
	fmt.Fprintf(&b, "| defragmentation of member 1 (s) | %.2f | %.2f | %s |\n", k.defrag.Seconds(), e.defrag.Seconds(), ratio(k.defrag.Seconds(), e.defrag.Seconds()))
	fmt.Fprintf(&b, "| longest put to member 1 during it (ms) | %.1f (%d puts) | %.1f (%d puts) | %s |\n", ms(k.maxPut), k.puts, ms(e.maxPut), e.puts, ratio(ms(k.maxPut), ms(e.maxPut)))
	fmt.Fprintf(&b, "| longest linearizable get from member 1 during it (ms) | %.1f (%d gets) | %.1f (%d gets) | %s |\n", ms(k.maxGet), k.gets, ms(e.maxGet), e.gets, ratio(ms(k.maxGet), ms(e.maxGet)))
	return b.String()
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
