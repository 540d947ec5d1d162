package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/internal/certgen"
)

// The cost of TLS and of auth (--security): kvd and etcd each run plain,
// with mutual TLS on the client and peer ports, and with mutual TLS and
// auth on (the benchmark logged in as a user with read and write on every
// key, not root, whose permissions both check on every request). Both use
// certificates from the same two CAs (client and peer, kept apart so that
// a client certificate cannot pass for a kvd member), made with certgen as
// `kvdutil certs` makes them. etcd is started from the binaries the peers
// script builds, since the script passes no TLS flags. For each mode both
// clusters start afresh, then each workload runs on kvd and on etcd in
// turn, and both stop.

// secMode is one security setting.
type secMode struct {
	name      string
	tls, auth bool
}

var secModes = []secMode{{"plain", false, false}, {"TLS", true, false}, {"TLS + auth", true, true}}

// secWorkloads are the loads measured in each mode: throughput with many
// clients, and the latency of one.
func secWorkloads(quick bool) []workload {
	ws := []workload{
		{name: "put, 100 clients / 10 conns", op: "put", clients: 100, conns: 10, total: 30000},
		{name: "get linearizable, 100 clients / 10 conns", op: "get", consistency: "l", clients: 100, conns: 10, total: 50000},
		{name: "put, 1 client / 1 conn", op: "put", clients: 1, conns: 1, total: 2000},
	}
	if quick {
		for i := range ws {
			ws[i].total /= 10
		}
	}
	return ws
}

// loginBcryptCost is the cost of the bench users' password hashes, the
// lowest both accept: each benchmark connection logs in once, and at the
// default cost (10) those logins would add tens of microseconds to every
// request of a run, which is not what a request costs.
const loginBcryptCost = 4

// The bench user: read and write on every key (from "\x00" on).
const (
	benchUser  = "bench"
	benchPW    = "bench-pw"
	benchRoot  = "root"
	benchRootP = "root-pw"
)

// secSetup is what members and clients of one mode need.
type secSetup struct {
	auth                      bool
	clientCAFile, peerCAFile  string
	clientCertFile, clientKey string
	clientTLS                 *tls.Config // nil: plaintext
	memberArgs                map[string][]string
	user, password            string // the bench user's, with auth
	certs                     map[string][2]string
}

// makeSecurity makes the CAs and the certificates of kvd's members n1..n3
// and etcd's e1..e3 (each a client-port and a peer certificate) and of the
// benchmark client, under dir.
func makeSecurity(dir string) (*secSetup, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	now := time.Now()
	from, to := now.Add(-time.Hour), now.Add(24*time.Hour)
	s := &secSetup{certs: map[string][2]string{}}
	cas := map[string]*certgen.CA{}
	for _, name := range []string{"client-ca", "peer-ca"} {
		ca, err := certgen.NewCA("bench "+name, from, to)
		if err != nil {
			return nil, err
		}
		if err := certgen.WriteFile(filepath.Join(dir, name+".crt"), ca.CertPEM, 0o644); err != nil {
			return nil, err
		}
		cas[name] = ca
	}
	s.clientCAFile, s.peerCAFile = filepath.Join(dir, "client-ca.crt"), filepath.Join(dir, "peer-ca.crt")
	issue := func(ca *certgen.CA, base string, req certgen.Request) error {
		req.NotBefore, req.NotAfter = from, to
		certPEM, keyPEM, err := ca.Issue(req)
		if err != nil {
			return err
		}
		cert, key := filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key")
		if err := certgen.WriteFile(key, keyPEM, 0o600); err != nil {
			return err
		}
		s.certs[base] = [2]string{cert, key}
		return certgen.WriteFile(cert, certPEM, 0o644)
	}
	hosts := []string{"127.0.0.1", "localhost"}
	for _, m := range []string{"n1", "n2", "n3", "e1", "e2", "e3"} {
		req := certgen.Request{CommonName: m, Hosts: hosts, Usage: certgen.Server | certgen.Client}
		if err := issue(cas["client-ca"], m, req); err != nil {
			return nil, err
		}
		if err := issue(cas["peer-ca"], m+"-peer", req); err != nil {
			return nil, err
		}
	}
	// The client's certificate names no user: the password identifies it.
	if err := issue(cas["client-ca"], "client", certgen.Request{CommonName: "bench-client", Usage: certgen.Client}); err != nil {
		return nil, err
	}
	s.clientCertFile, s.clientKey = s.certs["client"][0], s.certs["client"][1]
	pair, err := tls.LoadX509KeyPair(s.clientCertFile, s.clientKey)
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	roots.AddCert(cas["client-ca"].Cert)
	s.clientTLS = &tls.Config{RootCAs: roots, Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}
	s.memberArgs = map[string][]string{}
	for _, m := range []string{"n1", "n2", "n3"} {
		s.memberArgs[m] = []string{
			"--cert-file", s.certs[m][0], "--key-file", s.certs[m][1], "--trusted-ca-file", s.clientCAFile, "--client-cert-auth",
			"--peer-cert-file", s.certs[m+"-peer"][0], "--peer-key-file", s.certs[m+"-peer"][1],
			"--peer-trusted-ca-file", s.peerCAFile, "--peer-client-cert-auth",
			"--bcrypt-cost", fmt.Sprint(loginBcryptCost),
		}
	}
	return s, nil
}

// kvctlFlags are kvctl's global flags for the mode, kvctlEnv its
// environment: the TLS files go in variables.
func (s *secSetup) kvctlFlags() []string {
	if s.auth {
		return []string{"--user", s.user + ":" + s.password}
	}
	return nil
}

func (s *secSetup) kvctlEnv() []string {
	return []string{"KVCTL_CACERT=" + s.clientCAFile, "KVCTL_CERT=" + s.clientCertFile, "KVCTL_KEY=" + s.clientKey}
}

// enableKVDAuth creates root and the bench user and enables auth.
func enableKVDAuth(ctx context.Context, c *kvdCluster) error {
	cli, err := client.New(client.Config{Endpoints: strings.Split(c.endpoints(), ","), DialTimeout: time.Second, TLS: c.sec.clientTLS})
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	steps := []func() error{
		func() error { _, err := cli.UserAdd(ctx, benchRoot, benchRootP); return err },
		func() error { _, err := cli.UserGrantRole(ctx, benchRoot, "root"); return err },
		func() error { _, err := cli.RoleAdd(ctx, benchUser); return err },
		func() error {
			_, err := cli.RoleGrantPermission(ctx, benchUser, "\x00", "\x00", client.PermReadWrite)
			return err
		},
		func() error { _, err := cli.UserAdd(ctx, benchUser, benchPW); return err },
		func() error { _, err := cli.UserGrantRole(ctx, benchUser, benchUser); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		for {
			err := step()
			if err == nil {
				break
			}
			if ctx.Err() != nil {
				return fmt.Errorf("kvd auth step %d: %w", i, err)
			}
			time.Sleep(200 * time.Millisecond) // the members publish their features first
		}
	}
	return nil
}

// etcdProcs is a three-member etcd cluster started from its binary with
// the mode's flags, on the ports of the peers script.
type etcdProcs struct {
	bin, benchBin, dir string
	sec                *secSetup // nil: plaintext, no auth
	procs
}

func (e *etcdProcs) scheme() string {
	if e.sec != nil {
		return "https"
	}
	return "http"
}

func (e *etcdProcs) endpoints() string {
	var eps []string
	for _, a := range strings.Split(etcdEndpoints, ",") {
		eps = append(eps, e.scheme()+"://"+a)
	}
	return strings.Join(eps, ",")
}

func (e *etcdProcs) start(ctx context.Context) error {
	if err := os.RemoveAll(e.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(e.dir, 0o755); err != nil {
		return err
	}
	var initial []string
	for i := 1; i <= 3; i++ {
		initial = append(initial, fmt.Sprintf("e%d=%s://127.0.0.1:2%d380", i, e.scheme(), i))
	}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("e%d", i)
		cu, pu := fmt.Sprintf("%s://127.0.0.1:2%d379", e.scheme(), i), fmt.Sprintf("%s://127.0.0.1:2%d380", e.scheme(), i)
		args := []string{"--name", name, "--data-dir", filepath.Join(e.dir, name+".etcd"),
			"--listen-client-urls", cu, "--advertise-client-urls", cu, "--listen-peer-urls", pu, "--initial-advertise-peer-urls", pu,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new", "--log-level", "error"}
		if s := e.sec; s != nil {
			args = append(args, "--cert-file", s.certs[name][0], "--key-file", s.certs[name][1], "--trusted-ca-file", s.clientCAFile, "--client-cert-auth",
				"--peer-cert-file", s.certs[name+"-peer"][0], "--peer-key-file", s.certs[name+"-peer"][1],
				"--peer-trusted-ca-file", s.peerCAFile, "--peer-client-cert-auth", "--bcrypt-cost", fmt.Sprint(loginBcryptCost))
		}
		log, err := os.Create(filepath.Join(e.dir, name+".log"))
		if err != nil {
			return err
		}
		cmd := exec.Command(e.bin, args...)
		cmd.Stdout, cmd.Stderr = log, log
		if err := e.procs.start(cmd, log); err != nil {
			log.Close()
			return fmt.Errorf("start etcd %s: %w", name, err)
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	for {
		_, _, err := e.bench(wctx, 10*time.Second, false, "put", "--total=1")
		if err == nil {
			return nil
		}
		if wctx.Err() != nil {
			return fmt.Errorf("etcd did not serve within 30s (logs in %s): %w", e.dir, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (e *etcdProcs) stop() error { return e.procs.stop(15 * time.Second) }

// bench runs etcd's benchmark with the mode's flags (and the bench user
// when withUser), for at most timeout; it returns the report and the CPU
// time the tool used.
func (e *etcdProcs) bench(ctx context.Context, timeout time.Duration, withUser bool, args ...string) (string, time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	flags := []string{"--endpoints=" + e.endpoints()}
	if s := e.sec; s != nil {
		flags = append(flags, "--cacert", s.clientCAFile, "--cert", s.clientCertFile, "--key", s.clientKey)
		if s.auth && withUser {
			flags = append(flags, "--user", s.user+":"+s.password)
		}
	}
	cmd := exec.CommandContext(ctx, e.benchBin, append(flags, args...)...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		return out.String(), 0, fmt.Errorf("etcd-benchmark %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errOut.String()))
	}
	return out.String(), cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// etcdCall makes one etcd RPC, encoded by hand (see etcd.go), with the
// mode's TLS and, when token is set, a token.
func (e *etcdProcs) call(ctx context.Context, method, token string, req []byte) ([]byte, error) {
	creds := insecure.NewCredentials()
	if e.sec != nil {
		creds = credentials.NewTLS(e.sec.clientTLS)
	}
	cc, err := grpc.NewClient(strings.Split(etcdEndpoints, ",")[0], grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(rawCodec{})))
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	if token != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "token", token)
	}
	var resp []byte
	return resp, cc.Invoke(ctx, method, &req, &resp)
}

func pbStrings(fs ...any) []byte {
	var b []byte
	for i, f := range fs {
		switch v := f.(type) {
		case string:
			b = protowire.AppendTag(b, protowire.Number(i+1), protowire.BytesType)
			b = protowire.AppendString(b, v)
		case []byte:
			b = protowire.AppendTag(b, protowire.Number(i+1), protowire.BytesType)
			b = protowire.AppendBytes(b, v)
		case uint64:
			b = protowire.AppendTag(b, protowire.Number(i+1), protowire.VarintType)
			b = protowire.AppendVarint(b, v)
		}
	}
	return b
}

// enableAuth creates root and the bench user (read and write on every
// key) and enables auth, with etcd's Auth RPCs.
func (e *etcdProcs) enableAuth(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	const readwrite = 2 // etcd's authpb.Permission_READWRITE
	perm := pbStrings(uint64(readwrite), []byte{0}, []byte{0})
	for _, c := range []struct {
		method string
		req    []byte
	}{
		{"UserAdd", pbStrings(benchRoot, benchRootP)},
		{"UserGrantRole", pbStrings(benchRoot, "root")},
		{"RoleAdd", pbStrings(benchUser)},
		{"RoleGrantPermission", pbStrings(benchUser, perm)},
		{"UserAdd", pbStrings(benchUser, benchPW)},
		{"UserGrantRole", pbStrings(benchUser, benchUser)},
		{"AuthEnable", nil},
	} {
		if _, err := e.call(ctx, "/etcdserverpb.Auth/"+c.method, "", c.req); err != nil {
			return fmt.Errorf("etcd %s: %w", c.method, err)
		}
	}
	return nil
}

// put writes key=value as the bench user.
func (e *etcdProcs) put(ctx context.Context, key, value string) error {
	token := ""
	if e.sec != nil && e.sec.auth {
		resp, err := e.call(ctx, "/etcdserverpb.Auth/Authenticate", "", pbStrings(benchUser, benchPW))
		if err != nil {
			return err
		}
		tok, _ := fields(resp)[2].([]byte)
		token = string(tok)
	}
	_, err := e.call(ctx, "/etcdserverpb.KV/Put", token, pbStrings(key, value))
	return err
}

// secRow is one workload in one mode.
type secRow struct {
	mode      secMode
	w         workload
	kvd, etcd measurement
}

// security measures every mode; kvd's and etcd's clusters of a mode run
// side by side, and the workloads alternate between them.
func security(ctx context.Context, o *options, etcdBinDir string, logf func(string, ...any)) ([]secRow, error) {
	sec, err := makeSecurity(filepath.Join(o.dir, "certs"))
	if err != nil {
		return nil, err
	}
	var rows []secRow
	for _, mode := range secModes {
		var s *secSetup
		if mode.tls {
			cp := *sec
			cp.auth = mode.auth
			if mode.auth {
				cp.user, cp.password = benchUser, benchPW
			}
			s = &cp
		}
		kvd := newKVDCluster(o.kvdBin, filepath.Join(o.dir, "kvd"))
		kvd.sec = s
		etcd := &etcdProcs{bin: filepath.Join(etcdBinDir, "etcd"), benchBin: filepath.Join(etcdBinDir, "etcd-benchmark"), dir: filepath.Join(o.dir, "etcd"), sec: s, procs: procs{what: "etcd"}}
		mrows, err := measureMode(ctx, o, mode, kvd, etcd, logf)
		err = errors.Join(err, kvd.stop(), etcd.stop())
		if err != nil {
			return rows, fmt.Errorf("%s: %w", mode.name, err)
		}
		rows = append(rows, mrows...)
	}
	return rows, nil
}

func measureMode(ctx context.Context, o *options, mode secMode, kvd *kvdCluster, etcd *etcdProcs, logf func(string, ...any)) ([]secRow, error) {
	if err := checkPortsFree(append(kvd.ports(), etcdPorts...)); err != nil {
		return nil, err
	}
	logf("%s: starting kvd and etcd", mode.name)
	if err := kvd.start(ctx); err != nil {
		return nil, err
	}
	if err := etcd.start(ctx); err != nil {
		return nil, err
	}
	if mode.auth {
		if err := enableKVDAuth(ctx, kvd); err != nil {
			return nil, err
		}
		if err := etcd.enableAuth(ctx); err != nil {
			return nil, err
		}
	}
	r := &runner{o: o, kvd: kvd, logf: logf}
	if kvd.sec != nil {
		r.kvctlGlobal, r.kvctlEnv = kvd.sec.kvctlFlags(), kvd.sec.kvctlEnv()
	}
	var rows []secRow
	for _, w := range secWorkloads(o.quick) {
		row := secRow{mode: mode, w: w}
		logf("%s kvd:  %s (%d requests)", mode.name, w.name, w.total)
		cpu0 := kvd.cpu()
		m, err := r.runKVD(ctx, w, kvd.endpoints())
		if err != nil {
			return rows, fmt.Errorf("kvd %s: %w", w.name, err)
		}
		m.serverCPU = kvd.cpu() - cpu0
		row.kvd = m
		logf("      %.0f req/s, p50 %.3f ms, p99 %.3f ms, %d errors", m.rps, m.p50, m.p99, m.errors)

		logf("%s etcd: %s (%d requests)", mode.name, w.name, w.total)
		if w.op == "get" {
			pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			err := etcd.put(pctx, getKey, randomValue(valSize))
			cancel()
			if err != nil {
				return rows, fmt.Errorf("etcd: write %s: %w", getKey, err)
			}
		}
		cpu0 = etcd.cpu()
		text, clientCPU, err := etcd.bench(ctx, w.timeout(), true, etcdArgs(w)...)
		if err != nil {
			return rows, fmt.Errorf("etcd %s: %w", w.name, err)
		}
		serverCPU := etcd.cpu() - cpu0
		if row.etcd, err = parseEtcdReport(text, w.total); err != nil {
			return rows, fmt.Errorf("etcd %s: %w\n%s", w.name, err, text)
		}
		row.etcd.serverCPU, row.etcd.clientCPU = serverCPU, clientCPU
		logf("      %.0f req/s, p50 %.3f ms, p99 %.3f ms, %d errors", row.etcd.rps, row.etcd.p50, row.etcd.p99, row.etcd.errors)
		rows = append(rows, row)
	}
	return rows, nil
}

// securityMarkdown is the table of every mode, then the cost of TLS (TLS
// against plain) and of auth (TLS + auth against TLS) per request: server
// CPU (the three members) and median latency.
func securityMarkdown(rows []secRow) string {
	var b strings.Builder
	b.WriteString("| workload | mode | kvd req/s | etcd req/s | kvd p50 ms | etcd p50 ms | kvd p99 ms | etcd p99 ms | kvd server CPU µs/req | etcd server CPU µs/req | errors kvd/etcd |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	byKey := map[string]secRow{}
	for _, r := range rows {
		byKey[r.w.name+"/"+r.mode.name] = r
		fmt.Fprintf(&b, "| %s | %s | %.0f | %.0f | %.2f | %.2f | %.2f | %.2f | %.0f | %.0f | %d/%d |\n", r.w.name, r.mode.name,
			r.kvd.rps, r.etcd.rps, r.kvd.p50, r.etcd.p50, r.kvd.p99, r.etcd.p99,
			r.kvd.cpuPerReq(r.kvd.serverCPU), r.etcd.cpuPerReq(r.etcd.serverCPU), r.kvd.errors, r.etcd.errors)
	}
	b.WriteString("\nCost per request (the difference between two modes):\n\n")
	b.WriteString("| workload | cost of | kvd server CPU µs/req | etcd server CPU µs/req | kvd p50 ms | etcd p50 ms |\n")
	b.WriteString("|---|---|---:|---:|---:|---:|\n")
	for _, w := range secWorkloads(false) {
		for _, c := range []struct{ what, base, with string }{{"TLS", "plain", "TLS"}, {"auth", "TLS", "TLS + auth"}} {
			base, ok1 := byKey[w.name+"/"+c.base]
			with, ok2 := byKey[w.name+"/"+c.with]
			if !ok1 || !ok2 {
				continue
			}
			fmt.Fprintf(&b, "| %s | %s | %+.0f | %+.0f | %+.2f | %+.2f |\n", w.name, c.what,
				with.kvd.cpuPerReq(with.kvd.serverCPU)-base.kvd.cpuPerReq(base.kvd.serverCPU),
				with.etcd.cpuPerReq(with.etcd.serverCPU)-base.etcd.cpuPerReq(base.etcd.serverCPU),
				with.kvd.p50-base.kvd.p50, with.etcd.p50-base.etcd.p50)
		}
	}
	return b.String()
}
