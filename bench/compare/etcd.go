package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protowire"
)

// The etcd cluster of the peers script: clients on 21379, 22379, 23379.
const etcdEndpoints = "127.0.0.1:21379,127.0.0.1:22379,127.0.0.1:23379"

var etcdPorts = []string{"127.0.0.1:21379", "127.0.0.1:21380", "127.0.0.1:22379", "127.0.0.1:22380", "127.0.0.1:23379", "127.0.0.1:23380"}

// etcdCluster drives the peers script: build, start DIR, stop DIR, bench.
type etcdCluster struct {
	script  string
	dir     string
	started bool
	// env is added to the script's environment: etcd reads any flag from
	// an ETCD_ variable (ETCD_QUOTA_BACKEND_BYTES for
	// --quota-backend-bytes), and the script passes its environment on.
	env []string
}

func (e *etcdCluster) runScript(ctx context.Context, args ...string) ([]byte, error) {
	out, _, err := e.runScriptCPU(ctx, args...)
	return out, err
}

// runScriptCPU runs the script and also returns the CPU time it and the
// children it waited for used.
func (e *etcdCluster) runScriptCPU(ctx context.Context, args ...string) ([]byte, time.Duration, error) {
	cmd := exec.CommandContext(ctx, e.script, args...)
	if len(e.env) > 0 {
		cmd.Env = append(os.Environ(), e.env...)
	}
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if err != nil {
		return out.Bytes(), 0, fmt.Errorf("%s %s: %w: %s", filepath.Base(e.script), strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.Bytes(), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

func (e *etcdCluster) build(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	_, err := e.runScript(ctx, "build")
	return err
}

func (e *etcdCluster) start(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	e.started = true // stop is harmless if start failed half way
	_, err := e.runScript(ctx, "start", e.dir)
	return err
}

func (e *etcdCluster) stop() error {
	if !e.started {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	pids := e.pids()
	_, err := e.runScript(ctx, "stop", e.dir)
	// The script sends SIGTERM and returns; wait for the processes to go.
	for _, pid := range pids {
		waitGone(pid, 15*time.Second)
	}
	e.started = false
	return err
}

// pids returns the pids of the members, from the script's pid files, in
// member order.
func (e *etcdCluster) pids() []int {
	var pids []int
	for i := 1; i <= 3; i++ {
		b, err := os.ReadFile(filepath.Join(e.dir, fmt.Sprintf("e%d.pid", i)))
		if err != nil {
			continue
		}
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids
}

// waitGone waits until process pid no longer exists, up to limit.
func waitGone(pid int, limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && isZombie(b) {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

func isZombie(stat []byte) bool {
	i := bytes.LastIndexByte(stat, ')')
	return i > 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// bench runs etcd's benchmark tool with args, for at most timeout, and
// returns its output and the CPU time it used.
func (e *etcdCluster) bench(ctx context.Context, timeout time.Duration, args ...string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out, cpu, err := e.runScriptCPU(ctx, append([]string{"bench"}, args...)...)
	return string(out), cpu, err
}

// cpu returns the CPU time the members have used so far.
func (e *etcdCluster) cpu() time.Duration {
	var t time.Duration
	for _, pid := range e.pids() {
		t += procCPU(pid)
	}
	return t
}

// procCPU returns the user and system CPU time of process pid, from
// /proc/PID/stat (fields 14 and 15, in clock ticks of 1/100 s).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:])) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// ---- a few etcd RPCs without etcd's packages: the requests and responses
// are encoded by hand with protowire (field numbers from etcd's rpc.proto),
// and sent with a codec that passes bytes through.

type rawCodec struct{}

func (rawCodec) Marshal(v any) ([]byte, error) { return *(v.(*[]byte)), nil }
func (rawCodec) Unmarshal(data []byte, v any) error {
	p := v.(*[]byte)
	*p = append((*p)[:0], data...)
	return nil
}
func (rawCodec) Name() string { return "proto" }

func dialRaw(addr string) (*grpc.ClientConn, error) {
	return grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{}), grpc.MaxCallRecvMsgSize(64<<20)))
}

func rawCall(ctx context.Context, addr, method string, req []byte) ([]byte, error) {
	cc, err := dialRaw(addr)
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	var resp []byte
	if err := cc.Invoke(ctx, method, &req, &resp); err != nil {
		return nil, err
	}
	return resp, nil
}

// fields decodes the top-level fields of a protobuf message: varints as
// uint64, length-delimited fields as []byte (the last of each number wins).
func fields(b []byte) map[protowire.Number]any {
	out := map[protowire.Number]any{}
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return out
		}
		b = b[n:]
		switch typ {
		case protowire.VarintType:
			v, n := protowire.ConsumeVarint(b)
			if n < 0 {
				return out
			}
			out[num], b = v, b[n:]
		case protowire.BytesType:
			v, n := protowire.ConsumeBytes(b)
			if n < 0 {
				return out
			}
			out[num], b = v, b[n:]
		default:
			n := protowire.ConsumeFieldValue(num, typ, b)
			if n < 0 {
				return out
			}
			b = b[n:]
		}
	}
	return out
}

// etcdStatus returns the member id of the member at addr and of the leader
// it knows.
func etcdStatus(ctx context.Context, addr string) (member, leader uint64, err error) {
	resp, err := rawCall(ctx, addr, "/etcdserverpb.Maintenance/Status", nil)
	if err != nil {
		return 0, 0, err
	}
	f := fields(resp)
	hdr, _ := f[1].([]byte)
	member, _ = fields(hdr)[2].(uint64)
	leader, _ = f[4].(uint64)
	return member, leader, nil
}

// leader returns the name (e1, e2, e3) of the member that leads.
func (e *etcdCluster) leader(ctx context.Context) (string, error) {
	for i, addr := range strings.Split(etcdEndpoints, ",") {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		member, leader, err := etcdStatus(sctx, addr)
		cancel()
		if err == nil && member != 0 && member == leader {
			return fmt.Sprintf("e%d", i+1), nil
		}
	}
	return "", errors.New("etcd: no member is the leader")
}

// etcdPut writes key=value through addr.
func etcdPut(ctx context.Context, addr, key, value string) error {
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	req = protowire.AppendString(req, key)
	req = protowire.AppendTag(req, 2, protowire.BytesType)
	req = protowire.AppendString(req, value)
	_, err := rawCall(ctx, addr, "/etcdserverpb.KV/Put", req)
	return err
}

// etcdGet reads key linearizably through addr.
func etcdGet(ctx context.Context, addr, key string) error {
	var req []byte
	req = protowire.AppendTag(req, 1, protowire.BytesType)
	req = protowire.AppendString(req, key)
	_, err := rawCall(ctx, addr, "/etcdserverpb.KV/Range", req)
	return err
}

// etcdSnapshot streams a snapshot of the member at addr into w and returns
// its size.
func etcdSnapshot(ctx context.Context, addr string, w io.Writer) (int64, error) {
	cc, err := dialRaw(addr)
	if err != nil {
		return 0, err
	}
	defer cc.Close()
	desc := &grpc.StreamDesc{StreamName: "Snapshot", ServerStreams: true}
	s, err := cc.NewStream(ctx, desc, "/etcdserverpb.Maintenance/Snapshot")
	if err != nil {
		return 0, err
	}
	var req []byte
	if err := s.SendMsg(&req); err != nil {
		return 0, err
	}
	if err := s.CloseSend(); err != nil {
		return 0, err
	}
	var total int64
	for {
		var msg []byte
		err := s.RecvMsg(&msg)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
		blob, _ := fields(msg)[3].([]byte)
		n, err := w.Write(blob)
		total += int64(n)
		if err != nil {
			return total, err
		}
	}
}
