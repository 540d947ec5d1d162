package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// kubeAPIServerEnv names a kube-apiserver binary. TestKubeAPIServer runs
// only when it is set: `make k8s` builds kube-apiserver (about twelve
// minutes on two cores, so not part of make test) and sets it.
const kubeAPIServerEnv = "KVD_E2E_KUBE_APISERVER"

// TestKubeAPIServer runs an unchanged kube-apiserver on a three-member kvd
// (or etcd, with KVD_E2E_ETCD) and uses it as a cluster's clients would:
// readiness, the system namespaces, ConfigMaps through create, patch, get,
// paged lists, a watch from a resourceVersion and delete, Events that
// expire after --event-ttl, the apiserver's own compactions every 20 s
// without a storage error, consistent lists from the watch cache (which
// take an etcd version of at least 3.5.13 and watch progress requests),
// and service going on after kill -9 of the kvd leader.
func TestKubeAPIServer(t *testing.T) {
	bin := os.Getenv(kubeAPIServerEnv)
	if bin == "" {
		t.Skipf("%s is not set: `make k8s` builds kube-apiserver and runs this test", kubeAPIServerEnv)
	}
	ec := newEtcdAPICluster(t)
	ka := startKubeAPIServer(t, bin, ec)
	t.Logf("kube-apiserver %s on %s, log %s", ka.version(t), ec.kind, ka.logPath)

	t.Run("namespaces", func(t *testing.T) {
		var list struct {
			Items []struct {
				Metadata struct {
					Name string `json:"name"`
				} `json:"metadata"`
			} `json:"items"`
		}
		// The system namespaces controller creates them right after start.
		eventually(t, time.Minute, func() error {
			if err := ka.get("/api/v1/namespaces", &list); err != nil {
				return err
			}
			var names []string
			for _, it := range list.Items {
				names = append(names, it.Metadata.Name)
			}
			for _, want := range []string{"default", "kube-system", "kube-public", "kube-node-lease"} {
				if !slices.Contains(names, want) {
					return fmt.Errorf("namespaces %v: no %s", names, want)
				}
			}
			return nil
		})
	})
	t.Run("configmaps", func(t *testing.T) { testKubeConfigMaps(t, ka, "before") })
	var eventName string
	t.Run("event-create", func(t *testing.T) { eventName = createKubeEvent(t, ka) })

	// The errors before the kill must be none; after it, the apiserver's
	// client may log the lost connection, but every request must succeed.
	beforeKill := ka.logSize(t)
	t.Run("kill-leader", func(t *testing.T) {
		i := ec.leader(t)
		t.Logf("kill -9 %s (%s)", ec.names[i], ec.endpoints[i])
		ec.kill(i)
		killed := time.Now()
		// A write in flight when the leader dies can fail, on etcd as on
		// kvd ("etcdserver: request timed out", a 500); once the others
		// have elected a leader, the apiserver must serve writes again,
		// and then everything else.
		eventually(t, time.Minute, func() error {
			code, b, err := ka.do(http.MethodPost, "/api/v1/namespaces/default/configmaps", "", map[string]any{
				"metadata": map[string]any{"name": "after-kill-probe"}, "data": map[string]string{"k": "v"}})
			if err != nil {
				return err
			}
			// 409: an earlier try was applied although its answer was lost.
			if code != http.StatusCreated && code != http.StatusConflict {
				return fmt.Errorf("POST a ConfigMap after the kill: %d: %s", code, b)
			}
			return nil
		})
		t.Logf("the apiserver took writes again %v after the kill", time.Since(killed).Round(time.Millisecond))
		testKubeConfigMaps(t, ka, "after")
		ka.waitReady(t, 2*time.Minute)
	})
	t.Run("event-expired", func(t *testing.T) {
		// --event-ttl=20s; the apiserver grants leases of the TTL plus 5%.
		eventually(t, 2*time.Minute, func() error {
			code, body, err := ka.do(http.MethodGet, "/api/v1/namespaces/default/events/"+eventName, "", nil)
			if err != nil {
				return err
			}
			if code != http.StatusNotFound {
				return fmt.Errorf("event %s: status %d (%s), want 404 once its lease expired", eventName, code, body)
			}
			return nil
		})
	})
	t.Run("compaction", func(t *testing.T) {
		// --etcd-compaction-interval=20s: the first compaction records a
		// revision, each later one compacts to the one before.
		compacted := regexp.MustCompile(`etcd: compacted rev \((\d+)\)`)
		eventually(t, 3*time.Minute, func() error {
			if n := len(compacted.FindAllString(ka.log(t), -1)); n < 2 {
				return fmt.Errorf("%d compactions in the apiserver's log, want 2", n)
			}
			return nil
		})
		if ec.kvd != nil {
			// The compaction reached kvd's storage.
			var eps []string
			for i, nd := range ec.kvd.nodes {
				if nd.cmd != nil {
					eps = append(eps, ec.endpoints[i])
				}
			}
			cli := newClient(t, strings.Join(eps, ","))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			eventually(t, time.Minute, func() error {
				h, err := cli.HashKV(ctx, eps[0], 0)
				if err != nil {
					return err
				}
				if h.GetCompactRevision() <= 1 {
					return fmt.Errorf("kvd's compact revision is %d", h.GetCompactRevision())
				}
				return nil
			})
		}
	})
	t.Run("consistent-reads-from-cache", func(t *testing.T) {
		// kube-apiserver asks each endpoint's Maintenance.Status for its
		// version, and from etcd 3.5.13 on serves consistent lists from
		// its watch cache after a watch progress request; below that, or
		// without an answer, every such list goes to storage and this
		// counter stays absent.
		served := regexp.MustCompile(`(?m)^apiserver_watch_cache_consistent_read_total\{fallback="false",group="",resource="configmaps",success="true"\} (\d+)`)
		eventually(t, 2*time.Minute, func() error {
			if err := ka.get("/api/v1/namespaces/kube-system/configmaps", nil); err != nil {
				return err
			}
			code, metrics, err := ka.do(http.MethodGet, "/metrics", "", nil)
			if err != nil || code != http.StatusOK {
				return fmt.Errorf("/metrics: %d, %v", code, err)
			}
			if m := served.FindSubmatch(metrics); m == nil || string(m[1]) == "0" {
				return fmt.Errorf("no consistent list of configmaps served from the watch cache (does Maintenance.Status answer with a version of at least 3.5.13?); counters: %q; the apiserver's log on it: %q",
					grepLines(metrics, "consistent_read_total"), grepLines([]byte(ka.log(t)), "RequestWatchProgress"))
			}
			return nil
		})
	})
	t.Run("no-storage-errors", func(t *testing.T) {
		log := ka.log(t)
		if m := regexp.MustCompile(`(?m)^E\d{4} .*compact failed.*$`).FindAllString(log, -1); len(m) > 0 {
			t.Errorf("the apiserver's compactions failed:\n%s", strings.Join(m, "\n"))
		}
		storageErr := regexp.MustCompile(`(?m)^E\d{4} .*(etcd|storage|Internal error).*$`)
		if m := storageErr.FindAllString(log[:beforeKill], -1); len(m) > 0 {
			t.Errorf("storage errors in the apiserver's log before the kill:\n%s", strings.Join(m, "\n"))
		}
		if m := storageErr.FindAllString(log[beforeKill:], -1); len(m) > 0 {
			t.Logf("the apiserver's log after the kill (its requests all succeeded):\n%s", strings.Join(m, "\n"))
		}
	})
}

// kubeAPIServer is a running kube-apiserver and a client of its REST API
// with an admin token.
type kubeAPIServer struct {
	base    string
	token   string
	http    *http.Client
	logPath string
}

func startKubeAPIServer(t *testing.T, bin string, ec *etcdAPICluster) *kubeAPIServer {
	t.Helper()
	dir := t.TempDir()
	caPool := writeKubePKI(t, dir)
	const token = "kvd-e2e-admin-token"
	// --authorization-mode=AlwaysAllow turns anonymous requests off, so the
	// test authenticates with a static token of a system:masters user.
	if err := os.WriteFile(filepath.Join(dir, "tokens.csv"), []byte(token+",admin,admin-uid,system:masters\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var servers []string
	for _, ep := range ec.endpoints {
		servers = append(servers, "http://"+ep)
	}
	port := freePorts(t, 1)[0]
	ka := &kubeAPIServer{
		base:    fmt.Sprintf("https://127.0.0.1:%d", port),
		token:   token,
		http:    &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: caPool}}},
		logPath: filepath.Join(dir, "kube-apiserver.log"),
	}
	logf, err := os.Create(ka.logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin,
		"--etcd-servers", strings.Join(servers, ","),
		"--etcd-compaction-interval", "20s",
		"--event-ttl", "20s",
		"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
		// The endpoint reconciler refuses a loopback address.
		"--endpoint-reconciler-type", "none",
		"--secure-port", fmt.Sprint(port),
		"--cert-dir", filepath.Join(dir, "certs"),
		"--tls-cert-file", filepath.Join(dir, "serving.crt"), "--tls-private-key-file", filepath.Join(dir, "serving.key"),
		"--service-account-issuer", "https://kvd-e2e.invalid",
		"--service-account-key-file", filepath.Join(dir, "sa.key"),
		"--service-account-signing-key-file", filepath.Join(dir, "sa.key"),
		"--service-cluster-ip-range", "10.96.0.0/24",
		"--authorization-mode", "AlwaysAllow",
		"--token-auth-file", filepath.Join(dir, "tokens.csv"),
		"-v", "2", "--vmodule", "compact=4",
	)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatalf("start kube-apiserver: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Signal(syscall.SIGKILL)
			<-done
		}
		if t.Failed() {
			b, _ := os.ReadFile(ka.logPath)
			t.Logf("---- kube-apiserver's log (last 8000 bytes) ----\n%s", tail(b, 8000))
		}
	})
	ka.waitReady(t, 4*time.Minute)
	return ka
}

// writeKubePKI makes what kube-apiserver needs in dir: a serving
// certificate for 127.0.0.1 (serving.crt, serving.key) and the service
// account signing key (sa.key). It returns the pool that trusts the
// serving certificate.
func writeKubePKI(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "kube-apiserver"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	sa, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]*pem.Block{
		"serving.crt": {Type: "CERTIFICATE", Bytes: der},
		"serving.key": {Type: "EC PRIVATE KEY", Bytes: keyDER},
		"sa.key":      {Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(sa)},
	}
	for name, block := range files {
		if err := os.WriteFile(filepath.Join(dir, name), pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}

// do sends one request with the admin token; body, when not nil, is sent
// as JSON (or as contentType).
func (ka *kubeAPIServer) do(method, path, contentType string, body any) (int, []byte, error) {
	return ka.doContext(context.Background(), method, path, contentType, body)
}

func (ka *kubeAPIServer) doContext(ctx context.Context, method, path, contentType string, body any) (int, []byte, error) {
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return 0, nil, err
		}
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, ka.base+path, r)
	if err != nil {
		return 0, nil, err
	}
	req.Header.Set("Authorization", "Bearer "+ka.token)
	req.Header.Set("Accept", "application/json")
	if body != nil {
		if contentType == "" {
			contentType = "application/json"
		}
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := ka.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// get GETs path, which must answer 200, into v.
func (ka *kubeAPIServer) get(path string, v any) error {
	return ka.expect(http.MethodGet, path, "", nil, http.StatusOK, v)
}

// expect sends a request that must answer with status want, and decodes
// the answer into v (when not nil).
func (ka *kubeAPIServer) expect(method, path, contentType string, body any, want int, v any) error {
	code, b, err := ka.do(method, path, contentType, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	if code != want {
		return fmt.Errorf("%s %s: status %d, want %d: %s", method, path, code, want, b)
	}
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			return fmt.Errorf("%s %s: decode %q: %w", method, path, b, err)
		}
	}
	return nil
}

// must is expect that fails the test.
func (ka *kubeAPIServer) must(t *testing.T, method, path, contentType string, body any, want int, v any) {
	t.Helper()
	if err := ka.expect(method, path, contentType, body, want, v); err != nil {
		t.Fatal(err)
	}
}

func (ka *kubeAPIServer) waitReady(t *testing.T, timeout time.Duration) {
	t.Helper()
	eventually(t, timeout, func() error {
		code, b, err := ka.do(http.MethodGet, "/readyz", "", nil)
		if err != nil {
			return err
		}
		if code != http.StatusOK {
			return fmt.Errorf("/readyz: %d: %s", code, b)
		}
		return nil
	})
}

func (ka *kubeAPIServer) version(t *testing.T) string {
	t.Helper()
	var v struct {
		GitVersion string `json:"gitVersion"`
	}
	ka.must(t, http.MethodGet, "/version", "", nil, http.StatusOK, &v)
	return v.GitVersion
}

func (ka *kubeAPIServer) log(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(ka.logPath)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func (ka *kubeAPIServer) logSize(t *testing.T) int {
	t.Helper()
	return len(ka.log(t))
}

// kubeObject is the part of an object the tests read.
type kubeObject struct {
	Metadata struct {
		Name            string            `json:"name"`
		ResourceVersion string            `json:"resourceVersion"`
		Labels          map[string]string `json:"labels"`
	} `json:"metadata"`
	Data map[string]string `json:"data"`
}

type kubeList struct {
	Metadata struct {
		ResourceVersion string `json:"resourceVersion"`
		Continue        string `json:"continue"`
	} `json:"metadata"`
	Items []kubeObject `json:"items"`
}

type kubeWatchEvent struct {
	Type   string     `json:"type"`
	Object kubeObject `json:"object"`
}

// watchKube opens a watch on path from resourceVersion rv and sends its
// events until ctx ends.
func (ka *kubeAPIServer) watchKube(t *testing.T, ctx context.Context, path, rv string) <-chan kubeWatchEvent {
	t.Helper()
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, ka.base+path+sep+"watch=true&resourceVersion="+url.QueryEscape(rv), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+ka.token)
	// The shared client's timeout would cut the stream.
	resp, err := (&http.Client{Transport: ka.http.Transport}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("watch %s from %s: %d: %s", path, rv, resp.StatusCode, b)
	}
	ch := make(chan kubeWatchEvent, 64)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		dec := json.NewDecoder(bufio.NewReader(resp.Body))
		for {
			var ev kubeWatchEvent
			if err := dec.Decode(&ev); err != nil {
				return
			}
			select {
			case ch <- ev:
			case <-ctx.Done():
				return
			}
		}
	}()
	return ch
}

// testKubeConfigMaps takes ConfigMaps named after tag through their life:
// create, patch, get, a paged list, a watch from the creation's
// resourceVersion that sees the patch and the delete, delete.
func testKubeConfigMaps(t *testing.T, ka *kubeAPIServer, tag string) {
	const ns = "/api/v1/namespaces/default/configmaps"
	name := "cm-" + tag
	var created kubeObject
	ka.must(t, http.MethodPost, ns, "", map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": name, "labels": map[string]string{"e2e": tag}},
		"data":     map[string]string{"color": "blue"},
	}, http.StatusCreated, &created)
	ka.must(t, http.MethodPost, ns, "", map[string]any{"metadata": map[string]any{"name": name}}, http.StatusConflict, nil)

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	events := ka.watchKube(t, ctx, ns+"?fieldSelector=metadata.name%3D"+name, created.Metadata.ResourceVersion)

	var patched kubeObject
	ka.must(t, http.MethodPatch, ns+"/"+name, "application/merge-patch+json",
		map[string]any{"data": map[string]string{"size": "large"}}, http.StatusOK, &patched)
	if patched.Data["color"] != "blue" || patched.Data["size"] != "large" || patched.Metadata.ResourceVersion == created.Metadata.ResourceVersion {
		t.Fatalf("patched ConfigMap: %+v (created at %s)", patched, created.Metadata.ResourceVersion)
	}
	var got kubeObject
	ka.must(t, http.MethodGet, ns+"/"+name, "", nil, http.StatusOK, &got)
	if got.Metadata.ResourceVersion != patched.Metadata.ResourceVersion || got.Data["size"] != "large" {
		t.Fatalf("get after patch: %+v, want %+v", got, patched)
	}

	// A paged list: 5 more ConfigMaps, listed 2 at a time.
	want := []string{name}
	for i := range 5 {
		n := fmt.Sprintf("%s-page-%d", name, i)
		want = append(want, n)
		ka.must(t, http.MethodPost, ns, "", map[string]any{
			"metadata": map[string]any{"name": n, "labels": map[string]string{"e2e": tag}},
			"data":     map[string]string{"i": fmt.Sprint(i)},
		}, http.StatusCreated, nil)
	}
	var names []string
	cont, pages := "", 0
	for {
		var page kubeList
		path := ns + "?limit=2&labelSelector=e2e%3D" + tag
		if cont != "" {
			path += "&continue=" + url.QueryEscape(cont)
		}
		ka.must(t, http.MethodGet, path, "", nil, http.StatusOK, &page)
		pages++
		if len(page.Items) > 2 {
			t.Fatalf("list with limit 2 returned %d items", len(page.Items))
		}
		for _, it := range page.Items {
			names = append(names, it.Metadata.Name)
		}
		if cont = page.Metadata.Continue; cont == "" {
			break
		}
	}
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) || pages != 3 {
		t.Fatalf("paged list: %v in %d pages, want %v in 3", names, pages, want)
	}

	ka.must(t, http.MethodDelete, ns+"/"+name, "", nil, http.StatusOK, nil)
	ka.must(t, http.MethodGet, ns+"/"+name, "", nil, http.StatusNotFound, nil)
	for _, n := range want[1:] {
		ka.must(t, http.MethodDelete, ns+"/"+n, "", nil, http.StatusOK, nil)
	}

	// The watch from the creation's resourceVersion: the patch, then the
	// delete.
	for _, wantType := range []string{"MODIFIED", "DELETED"} {
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("watch of %s ended before its %s event", name, wantType)
			}
			if ev.Type != wantType || ev.Object.Metadata.Name != name || ev.Object.Data["size"] != "large" {
				t.Fatalf("watch of %s: %s %+v, want %s", name, ev.Type, ev.Object, wantType)
			}
		case <-ctx.Done():
			t.Fatalf("watch of %s: no %s event", name, wantType)
		}
	}
}

// createKubeEvent creates an Event, which kube-apiserver stores with a
// lease of --event-ttl, and returns its name.
func createKubeEvent(t *testing.T, ka *kubeAPIServer) string {
	const name = "kvd-e2e-event"
	now := time.Now().UTC().Format(time.RFC3339)
	ka.must(t, http.MethodPost, "/api/v1/namespaces/default/events", "", map[string]any{
		"apiVersion": "v1", "kind": "Event",
		"metadata":       map[string]any{"name": name},
		"involvedObject": map[string]any{"kind": "Namespace", "name": "default", "namespace": "default", "apiVersion": "v1"},
		"reason":         "KvdE2E", "message": "an event that expires", "type": "Normal",
		"firstTimestamp": now, "lastTimestamp": now, "count": 1,
		"source": map[string]any{"component": "kvd-e2e"},
	}, http.StatusCreated, nil)
	ka.must(t, http.MethodGet, "/api/v1/namespaces/default/events/"+name, "", nil, http.StatusOK, nil)
	return name
}

// grepLines returns the lines of b that contain s.
func grepLines(b []byte, s string) string {
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
