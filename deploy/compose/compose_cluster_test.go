package compose_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestComposeCluster brings compose.yaml's cluster up under a project name of
// its own and on free ports, with the mutual TLS of the file, then, with a
// kvctl built on the host and the CA and client certificate the certs
// service made: checks that a plaintext client and a client without a
// certificate are refused with errors that say so; writes through every
// member and reads each write back through every member; kills
// the leader's container (SIGKILL); keeps writing through the others;
// starts the container again and checks, on that member alone, every key
// with serializable and linearizable reads; and finally takes the project
// down and checks that no container, network or volume of it is left.
//
// It needs Docker, docker compose (or docker-compose) and the image (kvd:dev,
// or KVD_IMAGE). `make compose-test` builds the image and runs it with
// KVD_COMPOSE_TEST=1; without that variable it is skipped.
func TestComposeCluster(t *testing.T) {
	if os.Getenv("KVD_COMPOSE_TEST") != "1" {
		t.Skip("needs Docker: run `make compose-test` (part of `make test` when Docker works), which builds kvd:dev and sets KVD_COMPOSE_TEST=1")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	start := time.Now()
	step := func(format string, args ...any) {
		t.Logf("[%5.1fs] %s", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}

	c := newCluster(ctx, t)
	step("project %s, image %s, compose %q", c.project, c.image, strings.Join(c.compose, " "))
	c.composeRun("up", "-d")
	step("up")
	for _, s := range c.services {
		c.waitHealthy(s)
	}
	step("every container healthy")
	c.fetchClientCerts()
	step("copied ca.crt, client.crt and client.key out of the certs container")

	// The API is TLS with client certificates required: a plaintext client
	// and a TLS client without a certificate are refused, and say why.
	for _, tt := range []struct {
		name string
		args []string
		say  string
	}{
		{"plaintext client", []string{"--endpoints", fmt.Sprintf("127.0.0.1:%d", c.clientPort["kvd1"])}, "does it serve TLS"},
		{"TLS client without a certificate", []string{"--endpoints", c.endpoint("kvd1"), "--cacert", c.certFile("ca.crt")}, "requires a client certificate"},
	} {
		out, err := c.rawKvctl(append(tt.args, "--dial-timeout", "2s", "--command-timeout", "5s", "get", "any")...)
		if err == nil {
			t.Fatalf("%s: kvctl get succeeded: %s", tt.name, out)
		}
		if !strings.Contains(err.Error(), tt.say) {
			t.Fatalf("%s: kvctl error %q, want it to say %q", tt.name, err, tt.say)
		}
	}
	step("a plaintext client and a client without a certificate are refused")

	// Write through each member; read every write through each member.
	for i, s := range c.services {
		c.kvctl(c.endpoint(s), "put", "via/"+s, fmt.Sprintf("v%d", i))
	}
	for _, s := range c.services {
		for i, w := range c.services {
			if got := c.get(c.endpoint(s), false, "via/"+w); len(got) != 1 || got["via/"+w] != fmt.Sprintf("v%d", i) {
				t.Fatalf("get via/%s through %s: %v", w, s, got)
			}
		}
	}
	step("wrote through every member, read every write through every member")

	victim := c.leader()
	var survivors []string
	for _, s := range c.services {
		if s != victim {
			survivors = append(survivors, c.endpoint(s))
		}
	}
	c.docker("kill", c.containers[victim])
	c.waitFor("container "+victim+" to stop", 30*time.Second, func() error {
		if state := c.inspect(victim, "{{.State.Running}}"); state != "false" {
			return fmt.Errorf("running: %s", state)
		}
		return nil
	})
	step("killed the leader's container, %s", victim)

	const during = 30
	failed := 0
	for i := range during {
		key, value := fmt.Sprintf("during/%02d", i), fmt.Sprintf("d%d", i)
		// A write may meet the election that follows the kill; kvctl's
		// client retries what was certainly not applied, and this retries
		// the rest: a put is idempotent here.
		c.waitFor("put "+key, 30*time.Second, func() error {
			_, err := c.tryKvctl(strings.Join(survivors, ","), "put", key, value)
			if err != nil {
				failed++
				c.t.Logf("retrying: %v", err)
			}
			return err
		})
	}
	step("wrote %d keys through the survivors (%d attempts failed and were retried)", during, failed)

	c.docker("start", c.containers[victim])
	c.waitHealthy(victim)
	c.waitFor(victim+" /readyz", 60*time.Second, func() error {
		resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/readyz", c.httpPorts[victim]))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %s", resp.Status)
		}
		return nil
	})
	step("started %s again; healthy and ready", victim)

	want := map[string]string{}
	for i, s := range c.services {
		want["via/"+s] = fmt.Sprintf("v%d", i)
	}
	for i := range during {
		want[fmt.Sprintf("during/%02d", i)] = fmt.Sprintf("d%d", i)
	}
	ep := c.endpoint(victim)
	// A serializable read answers from the member's own state, which may
	// still be catching up; it must get there.
	c.waitFor(victim+" to hold every key (serializable)", 30*time.Second, func() error {
		return sameKVs(want, c.getAll(ep, true))
	})
	if err := sameKVs(want, c.getAll(ep, false)); err != nil {
		t.Fatalf("linearizable read through %s: %v", victim, err)
	}
	step("%s holds all %d keys (serializable and linearizable reads through it alone)", victim, len(want))
	if st := c.status(c.allEndpoints()); len(st) != len(c.services) {
		t.Fatalf("endpoint status: %d members answered, want %d", len(st), len(c.services))
	}

	c.composeRun("down", "-v", "--remove-orphans", "--timeout", "30")
	step("down")
	c.assertNothingLeft()
	step("no container, network or volume of %s left", c.project)
}

// cluster is one compose project of the test.
type cluster struct {
	ctx        context.Context
	t          *testing.T
	compose    []string // "docker compose" or "docker-compose"
	project    string
	image      string
	env        []string // the ports and the image, for compose
	kvctlBin   string
	certsDir   string // ca.crt, client.crt, client.key, after fetchClientCerts
	services   []string
	clientPort map[string]int
	httpPorts  map[string]int
	containers map[string]string // service → container id, after up
}

func newCluster(ctx context.Context, t *testing.T) *cluster {
	t.Helper()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Fatalf("KVD_COMPOSE_TEST=1 but docker is not usable: %v\n%s", err, out)
	}
	c := &cluster{
		ctx:        ctx,
		t:          t,
		compose:    composeCommand(ctx, t),
		project:    "kvdtest" + randomHex(t, 4),
		image:      os.Getenv("KVD_IMAGE"),
		services:   []string{"kvd1", "kvd2", "kvd3"},
		clientPort: map[string]int{},
		httpPorts:  map[string]int{},
		containers: map[string]string{},
	}
	if c.image == "" {
		c.image = "kvd:dev"
	}
	if out, err := exec.CommandContext(ctx, "docker", "image", "inspect", c.image).CombinedOutput(); err != nil {
		t.Fatalf("image %s: %v (build it with `make docker`)\n%s", c.image, err, lastLines(out, 3))
	}
	ports := freePorts(t, 2*len(c.services))
	c.env = append(os.Environ(), "KVD_IMAGE="+c.image)
	for i, s := range c.services {
		c.clientPort[s], c.httpPorts[s] = ports[2*i], ports[2*i+1]
		n := strings.ToUpper(s)
		c.env = append(c.env, fmt.Sprintf("%s_CLIENT_PORT=%d", n, c.clientPort[s]), fmt.Sprintf("%s_HTTP_PORT=%d", n, c.httpPorts[s]))
	}

	c.kvctlBin = filepath.Join(t.TempDir(), "kvctl")
	build := exec.CommandContext(ctx, "go", "build", "-o", c.kvctlBin, "github.com/kvd-io/kvd/cmd/kvctl")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build kvctl: %v\n%s", err, out)
	}

	// Registered before up, so a failure anywhere still tears down. A
	// context of its own: the test's may have run out.
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if t.Failed() {
			out, _ := c.composeOutput(ctx, "logs", "--no-color", "--tail", "40")
			t.Logf("compose logs:\n%s", out)
		}
		if out, err := c.composeOutput(ctx, "down", "-v", "--remove-orphans", "--timeout", "10"); err != nil {
			t.Errorf("cleanup: compose down: %v\n%s", err, out)
		}
	})
	return c
}

// composeCommand returns COMPOSE if set, else `docker compose` if the plugin
// works, else docker-compose.
func composeCommand(ctx context.Context, t *testing.T) []string {
	if c := strings.Fields(os.Getenv("COMPOSE")); len(c) > 0 {
		return c
	}
	if exec.CommandContext(ctx, "docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if exec.CommandContext(ctx, "docker-compose", "version").Run() == nil {
		return []string{"docker-compose"}
	}
	t.Fatal("neither `docker compose` nor docker-compose works")
	return nil
}

func (c *cluster) composeOutput(ctx context.Context, args ...string) (string, error) {
	full := append(append([]string{}, c.compose[1:]...), "-p", c.project, "-f", "compose.yaml")
	cmd := exec.CommandContext(ctx, c.compose[0], append(full, args...)...)
	cmd.Env = c.env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (c *cluster) composeRun(args ...string) {
	c.t.Helper()
	out, err := c.composeOutput(c.ctx, args...)
	if err != nil {
		c.t.Fatalf("compose %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if args[0] == "up" {
		for _, s := range c.services {
			id, err := c.composeOutput(c.ctx, "ps", "-q", s)
			if id = strings.TrimSpace(id); err != nil || id == "" {
				c.t.Fatalf("compose ps -q %s: %q, %v", s, id, err)
			}
			c.containers[s] = id
		}
	}
}

func (c *cluster) docker(args ...string) string {
	c.t.Helper()
	out, err := exec.CommandContext(c.ctx, "docker", args...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

func (c *cluster) inspect(service, format string) string {
	c.t.Helper()
	return c.docker("inspect", "-f", format, c.containers[service])
}

// waitHealthy waits for the image's HEALTHCHECK to pass on a member.
func (c *cluster) waitHealthy(service string) {
	c.t.Helper()
	c.waitFor(service+" to be healthy", 90*time.Second, func() error {
		if h := c.inspect(service, "{{.State.Health.Status}}"); h != "healthy" {
			return fmt.Errorf("health %s", h)
		}
		return nil
	})
}

// waitFor polls cond until it returns nil, failing the test at the deadline
// with cond's last error.
func (c *cluster) waitFor(what string, timeout time.Duration, cond func() error) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.t.Fatalf("waiting for %s: gave up after %s: %v", what, timeout, err)
		}
		select {
		case <-c.ctx.Done():
			c.t.Fatalf("waiting for %s: %v (last: %v)", what, c.ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// fetchClientCerts copies the CA and the client certificate that the certs
// service wrote into its volume, as `make cluster-up` does.
func (c *cluster) fetchClientCerts() {
	c.t.Helper()
	id := c.docker("ps", "-a", "-q",
		"--filter", "label=com.docker.compose.project="+c.project,
		"--filter", "label=com.docker.compose.service=certs")
	if id == "" || strings.Contains(id, "\n") {
		c.t.Fatalf("want one certs container, got %q", id)
	}
	if code := c.docker("inspect", "-f", "{{.State.ExitCode}}", id); code != "0" {
		c.t.Fatalf("certs container exited with %s", code)
	}
	c.certsDir = c.t.TempDir()
	for _, f := range []string{"ca.crt", "client.crt", "client.key"} {
		c.docker("cp", id+":/etc/kvd/tls/"+f, filepath.Join(c.certsDir, f))
	}
}

func (c *cluster) certFile(name string) string { return filepath.Join(c.certsDir, name) }

// endpoint is service's API on the host, https://127.0.0.1:port.
func (c *cluster) endpoint(service string) string {
	return fmt.Sprintf("https://127.0.0.1:%d", c.clientPort[service])
}

func (c *cluster) allEndpoints() string {
	var eps []string
	for _, s := range c.services {
		eps = append(eps, c.endpoint(s))
	}
	return strings.Join(eps, ",")
}

// tryKvctl runs kvctl against endpoints with the CA and the client
// certificate.
func (c *cluster) tryKvctl(endpoints string, args ...string) ([]byte, error) {
	return c.rawKvctl(append([]string{"--endpoints", endpoints, "--command-timeout", "10s",
		"--cacert", c.certFile("ca.crt"), "--cert", c.certFile("client.crt"), "--key", c.certFile("client.key")}, args...)...)
}

// rawKvctl runs kvctl with args alone.
func (c *cluster) rawKvctl(args ...string) ([]byte, error) {
	cmd := exec.CommandContext(c.ctx, c.kvctlBin, args...)
	cmd.Env = []string{} // no KVCTL_* from the caller's environment
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return out, fmt.Errorf("kvctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func (c *cluster) kvctl(endpoints string, args ...string) []byte {
	c.t.Helper()
	out, err := c.tryKvctl(endpoints, args...)
	if err != nil {
		c.t.Fatal(err)
	}
	return out
}

type jsonGet struct {
	KVs []struct {
		Key   []byte `json:"key"`
		Value []byte `json:"value"`
	} `json:"kvs"`
}

// get reads a key or, with --prefix, a range, through one endpoint.
func (c *cluster) get(endpoint string, serializable bool, key string, flags ...string) map[string]string {
	c.t.Helper()
	consistency := "l"
	if serializable {
		consistency = "s"
	}
	args := append([]string{"--consistency", consistency, "-w", "json", "get", key}, flags...)
	var resp jsonGet
	if err := json.Unmarshal(c.kvctl(endpoint, args...), &resp); err != nil {
		c.t.Fatalf("kvctl get: %v", err)
	}
	kvs := map[string]string{}
	for _, kv := range resp.KVs {
		kvs[string(kv.Key)] = string(kv.Value)
	}
	return kvs
}

// getAll reads every key through one endpoint.
func (c *cluster) getAll(endpoint string, serializable bool) map[string]string {
	c.t.Helper()
	return c.get(endpoint, serializable, "", "--prefix")
}

type memberStatus struct {
	Endpoint  string `json:"endpoint"`
	Name      string `json:"name"`
	IsLeader  bool   `json:"is_leader"`
	ClusterID uint64 `json:"cluster_id"`
}

func (c *cluster) status(endpoints string) []memberStatus {
	c.t.Helper()
	var st []memberStatus
	if err := json.Unmarshal(c.kvctl(endpoints, "-w", "json", "endpoint", "status"), &st); err != nil {
		c.t.Fatalf("kvctl endpoint status: %v", err)
	}
	if len(st) == 0 {
		c.t.Fatal("kvctl endpoint status: no member answered")
	}
	for _, s := range st[1:] {
		if s.ClusterID != st[0].ClusterID {
			c.t.Fatalf("members of different clusters: %+v", st)
		}
	}
	return st
}

// leader returns the service whose member leads.
func (c *cluster) leader() string {
	c.t.Helper()
	for _, s := range c.status(c.allEndpoints()) {
		if s.IsLeader && slices.Contains(c.services, s.Name) {
			return s.Name
		}
	}
	c.t.Fatal("no member says it leads")
	return ""
}

// assertNothingLeft checks that no container, network or volume carries the
// project's label.
func (c *cluster) assertNothingLeft() {
	c.t.Helper()
	label := "label=com.docker.compose.project=" + c.project
	for _, what := range [][]string{
		{"ps", "-a", "-q", "--filter", label},
		{"network", "ls", "-q", "--filter", label},
		{"volume", "ls", "-q", "--filter", label},
	} {
		if out := c.docker(what...); out != "" {
			c.t.Errorf("docker %s: left behind: %s", strings.Join(what[:len(what)-2], " "), strings.Join(strings.Fields(out), " "))
		}
	}
}

func sameKVs(want, got map[string]string) error {
	var missing []string
	for k, v := range want {
		if got[k] != v {
			missing = append(missing, fmt.Sprintf("%s=%q (got %q)", k, v, got[k]))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%d of %d keys missing or wrong, e.g. %s", len(missing), len(want), missing[0])
	}
	return nil
}

// freePorts returns n distinct free TCP ports on 127.0.0.1, holding them all
// open until all are chosen so none repeats. Another process could take one
// before compose binds it; the high ephemeral range makes that unlikely.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns = append(lns, ln)
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func lastLines(b []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
