package kubernetes_test

import (
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/kvd-io/kvd/internal/certgen"
	"github.com/kvd-io/kvd/server"
)

// testNamespace is the namespace cert-manager/certificates.yaml and the
// docs' kvdutil example are written for.
const testNamespace = "kvd"

// tlsFiles are the environment variables that name TLS files, kvd's and
// kvctl's.
var tlsFiles = []string{
	"KVD_CERT_FILE", "KVD_KEY_FILE", "KVD_TRUSTED_CA_FILE",
	"KVD_PEER_CERT_FILE", "KVD_PEER_KEY_FILE", "KVD_PEER_TRUSTED_CA_FILE",
	"KVCTL_CACERT", "KVCTL_CERT", "KVCTL_KEY",
}

// tlsConfigs is what kvd makes of the TLS variables of env.
func tlsConfigs(env map[string]string) (client, peer server.TLSConfig) {
	client = server.TLSConfig{CertFile: env["KVD_CERT_FILE"], KeyFile: env["KVD_KEY_FILE"],
		TrustedCAFile: env["KVD_TRUSTED_CA_FILE"], ClientCertAuth: env["KVD_CLIENT_CERT_AUTH"] == "true"}
	peer = server.TLSConfig{CertFile: env["KVD_PEER_CERT_FILE"], KeyFile: env["KVD_PEER_KEY_FILE"],
		TrustedCAFile: env["KVD_PEER_TRUSTED_CA_FILE"], ClientCertAuth: env["KVD_PEER_CLIENT_CERT_AUTH"] == "true",
		AllowedCN: env["KVD_PEER_CERT_ALLOWED_CN"], AllowedHostname: env["KVD_PEER_CERT_ALLOWED_HOSTNAME"]}
	return client, peer
}

// tlsSecret returns the Secret volume the StatefulSet mounts the TLS files
// from.
func tlsSecret(t *testing.T, m *manifests) (*corev1.SecretVolumeSource, corev1.VolumeMount) {
	t.Helper()
	sts, c := m.member(t)
	env := expandEnv(t, c.Env, sts.Name+"-0", testNamespace)
	dir := path.Dir(env["KVD_CERT_FILE"])
	for _, vm := range c.VolumeMounts {
		if vm.MountPath != dir {
			continue
		}
		for _, v := range sts.Spec.Template.Spec.Volumes {
			if v.Name == vm.Name && v.Secret != nil {
				return v.Secret, vm
			}
		}
		t.Fatalf("%s is mounted from %q, which is not a Secret volume", dir, vm.Name)
	}
	t.Fatalf("nothing is mounted at %s, the directory of KVD_CERT_FILE", dir)
	return nil, corev1.VolumeMount{}
}

// TestTLS checks that the members run mutual TLS on the API and between
// members with files from a Secret volume: every file variable points into
// the read-only mount at a key the Secret has, the files are readable by
// kvd's group, and kvd accepts the settings.
func TestTLS(t *testing.T) {
	m := load(t)
	sts, c := m.member(t)
	env := expandEnv(t, c.Env, sts.Name+"-0", testNamespace)
	secret, mount := tlsSecret(t, m)
	if !mount.ReadOnly {
		t.Errorf("the TLS volume %s is not mounted read-only", mount.Name)
	}
	if mount.SubPath != "" || mount.SubPathExpr != "" {
		t.Errorf("the TLS volume is mounted with a subPath: the kubelet would not update the files when the Secret changes")
	}
	if secret.DefaultMode == nil || *secret.DefaultMode&0o040 == 0 {
		t.Errorf("Secret volume defaultMode %s: the files must be readable by the group (fsGroup, kvd's)", show(secret.DefaultMode))
	}
	// cert-manager's Secrets and kubernetes.io/tls ones hold these keys.
	keys := []string{"tls.crt", "tls.key", "ca.crt"}
	if len(secret.Items) > 0 {
		keys = nil
		for _, it := range secret.Items {
			keys = append(keys, it.Path)
		}
	}
	for _, name := range tlsFiles {
		f, ok := env[name]
		if !ok {
			t.Errorf("%s is not set", name)
			continue
		}
		if path.Dir(f) != mount.MountPath || !slices.Contains(keys, path.Base(f)) {
			t.Errorf("%s=%s: want one of %q in the Secret mount %s", name, f, keys, mount.MountPath)
		}
	}
	for _, name := range []string{"KVD_CLIENT_CERT_AUTH", "KVD_PEER_CLIENT_CERT_AUTH"} {
		if env[name] != "true" {
			t.Errorf("%s=%q, want true: members and clients must present certificates", name, env[name])
		}
	}
	if env["KVD_PEER_CERT_ALLOWED_CN"] == "" && env["KVD_PEER_CERT_ALLOWED_HOSTNAME"] == "" {
		t.Error("no KVD_PEER_CERT_ALLOWED_CN or _HOSTNAME: any certificate of the CA, a client's included, could pose as a member")
	}
	if _, ok := env["KVD_HTTP_CERT_FILE"]; ok {
		t.Error("KVD_HTTP_CERT_FILE is set, but the probes are plain httpGet")
	}
	cfg := server.DefaultConfig()
	cfg.Name, cfg.DataDir = "kvd-0", dataDir
	cfg.ClientTLS, cfg.PeerTLS = tlsConfigs(env)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("kvd would refuse the TLS settings: %v", err)
	}
}

// cmObject is the part of a cert-manager Issuer or Certificate the example
// uses; decoding is strict, so a field this does not know fails the test.
type cmObject struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Name string `json:"name"`
	} `json:"metadata"`
	Spec struct {
		// Issuer
		SelfSigned *struct{} `json:"selfSigned,omitempty"`
		CA         *struct {
			SecretName string `json:"secretName"`
		} `json:"ca,omitempty"`
		// Certificate
		IsCA        bool     `json:"isCA,omitempty"`
		CommonName  string   `json:"commonName,omitempty"`
		SecretName  string   `json:"secretName,omitempty"`
		DNSNames    []string `json:"dnsNames,omitempty"`
		IPAddresses []string `json:"ipAddresses,omitempty"`
		Usages      []string `json:"usages,omitempty"`
		Duration    string   `json:"duration,omitempty"`
		RenewBefore string   `json:"renewBefore,omitempty"`
		PrivateKey  *struct {
			Algorithm      string `json:"algorithm"`
			Size           int    `json:"size"`
			RotationPolicy string `json:"rotationPolicy,omitempty"`
		} `json:"privateKey,omitempty"`
		IssuerRef *struct {
			Name string `json:"name"`
			Kind string `json:"kind"`
		} `json:"issuerRef,omitempty"`
	} `json:"spec"`
}

// dialedNames returns the host names members and clients dial for the
// first n pods, from the StatefulSet's environment in namespace ns: each
// pod's advertised client and raft hosts, the join Service's, and
// 127.0.0.1 (kvctl in the pod).
func dialedNames(t *testing.T, m *manifests, n int, ns string) []string {
	t.Helper()
	sts, c := m.member(t)
	names := []string{"127.0.0.1"}
	for i := range n {
		env := expandEnv(t, c.Env, fmt.Sprintf("%s-%d", sts.Name, i), ns)
		for _, v := range []string{"KVD_ADVERTISE_CLIENT_ADDR", "KVD_ADVERTISE_RAFT_ADDR"} {
			h, _, err := net.SplitHostPort(env[v])
			if err != nil {
				t.Fatalf("%s=%q: %v", v, env[v], err)
			}
			names = append(names, h)
		}
		for _, j := range strings.Split(env["KVD_JOIN"], ",") {
			h, _, err := net.SplitHostPort(j)
			if err != nil {
				t.Fatalf("KVD_JOIN %q: %v", j, err)
			}
			names = append(names, h)
		}
	}
	return slices.Compact(slices.Sorted(slices.Values(names)))
}

// checkCovers issues a certificate for hosts with Go's crypto and checks
// that it is valid for every name.
func checkCovers(t *testing.T, what string, hosts, names []string) {
	t.Helper()
	now := time.Now()
	ca, err := certgen.NewCA("test", now.Add(-time.Hour), now.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	certPEM, _, err := ca.Issue(certgen.Request{CommonName: "kvd", Hosts: hosts, Usage: certgen.Server | certgen.Client, NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour)})
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	b, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		if err := cert.VerifyHostname(n); err != nil {
			t.Errorf("%s: a certificate for %q is not valid for %s, which members or clients dial: %v", what, hosts, n, err)
		}
	}
}

// TestCertManagerCertificates checks cert-manager/certificates.yaml against
// the StatefulSet: the Certificate that fills the mounted Secret has the
// common name members allow, both usages members need, and SANs valid for
// every name dialed (five pods, scaling included), and its issuer is in
// the file; the client Certificate cannot pose as a member.
func TestCertManagerCertificates(t *testing.T) {
	m := load(t)
	_, c := m.member(t)
	sts := m.statefulSets[0]
	env := expandEnv(t, c.Env, sts.Name+"-0", testNamespace)
	secret, _ := tlsSecret(t, m)

	b, err := os.ReadFile("cert-manager/certificates.yaml")
	if err != nil {
		t.Fatal(err)
	}
	issuers := map[string]*cmObject{}
	certs := map[string]*cmObject{} // by secretName
	for i, doc := range regexp.MustCompile(`(?m)^---[ \t]*$`).Split(string(b), -1) {
		o := &cmObject{}
		if err := yaml.UnmarshalStrict([]byte(doc), o); err != nil {
			t.Fatalf("document %d: %v", i+1, err)
		}
		if o.APIVersion != "cert-manager.io/v1" {
			t.Fatalf("document %d: apiVersion %q, want cert-manager.io/v1", i+1, o.APIVersion)
		}
		switch o.Kind {
		case "Issuer":
			issuers[o.Metadata.Name] = o
		case "Certificate":
			certs[o.Spec.SecretName] = o
		default:
			t.Fatalf("document %d: kind %q", i+1, o.Kind)
		}
	}
	for _, cert := range certs {
		if r := cert.Spec.IssuerRef; r == nil || r.Kind != "Issuer" || issuers[r.Name] == nil {
			t.Errorf("Certificate %s: issuerRef %+v is not an Issuer of the file", cert.Metadata.Name, r)
		}
		if iss := issuers[cert.Spec.IssuerRef.Name]; iss != nil && iss.Spec.CA != nil && certs[iss.Spec.CA.SecretName] == nil {
			t.Errorf("Issuer %s signs with Secret %s, which no Certificate of the file makes", iss.Metadata.Name, iss.Spec.CA.SecretName)
		}
		if cert.Spec.Duration != "" {
			if _, err := time.ParseDuration(cert.Spec.Duration); err != nil {
				t.Errorf("Certificate %s: duration %q: %v", cert.Metadata.Name, cert.Spec.Duration, err)
			}
		}
	}

	member := certs[secret.SecretName]
	if member == nil {
		t.Fatalf("no Certificate makes the Secret %s that the StatefulSet mounts", secret.SecretName)
	}
	if member.Spec.CommonName != env["KVD_PEER_CERT_ALLOWED_CN"] {
		t.Errorf("Certificate %s: common name %q, but members allow only %q (KVD_PEER_CERT_ALLOWED_CN)", member.Metadata.Name, member.Spec.CommonName, env["KVD_PEER_CERT_ALLOWED_CN"])
	}
	for _, u := range []string{"server auth", "client auth"} {
		if !slices.Contains(member.Spec.Usages, u) {
			t.Errorf("Certificate %s: usages %q lack %q: members serve and call each other with it", member.Metadata.Name, member.Spec.Usages, u)
		}
	}
	checkCovers(t, "Certificate "+member.Metadata.Name, append(slices.Clone(member.Spec.DNSNames), member.Spec.IPAddresses...),
		dialedNames(t, m, int(*sts.Spec.Replicas)+2, testNamespace))

	var clients int
	for name, cert := range certs {
		if name == secret.SecretName || cert.Spec.IsCA {
			continue
		}
		clients++
		if !slices.Contains(cert.Spec.Usages, "client auth") {
			t.Errorf("Certificate %s: usages %q lack client auth", cert.Metadata.Name, cert.Spec.Usages)
		}
		if cert.Spec.CommonName == env["KVD_PEER_CERT_ALLOWED_CN"] {
			t.Errorf("client Certificate %s has the members' common name %q: it could pose as a member", cert.Metadata.Name, cert.Spec.CommonName)
		}
	}
	if clients == 0 {
		t.Error("no client Certificate for kvctl and applications")
	}
}

// TestDocsKvdutilHosts checks the `kvdutil certs --hosts` line of
// docs/kubernetes.md: kvdutil adds the member name, localhost and
// 127.0.0.1 to the --hosts given, and the result must be valid for every
// name dialed in the namespace the docs use.
func TestDocsKvdutilHosts(t *testing.T) {
	m := load(t)
	b, err := os.ReadFile("../../docs/kubernetes.md")
	if err != nil {
		t.Fatal(err)
	}
	match := regexp.MustCompile(`kvdutil certs [^\n]*--members (\S+)[^\n]*--hosts '([^']+)'`).FindSubmatch(b)
	if match == nil {
		t.Fatal("docs/kubernetes.md has no `kvdutil certs ... --members NAME ... --hosts '...'` line")
	}
	name := string(match[1])
	hosts := append([]string{name, "localhost", "127.0.0.1", "::1"}, strings.Split(string(match[2]), ",")...)
	checkCovers(t, "kvdutil certs --hosts of docs/kubernetes.md", hosts, dialedNames(t, m, int(*m.statefulSets[0].Spec.Replicas)+2, testNamespace))
	_, c := m.member(t)
	if allowed := expandEnv(t, c.Env, "kvd-0", testNamespace)["KVD_PEER_CERT_ALLOWED_CN"]; allowed != name {
		t.Errorf("the docs make the member certificate with --members %s (its common name), but members allow only %q", name, allowed)
	}
}
