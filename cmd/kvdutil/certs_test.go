package main

import (
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCerts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tls")
	mustRun(t, "certs", "--dir", dir, "--members", "n1,n2", "--hosts", "{name}.kvd.svc,10.0.0.9", "--expiry", "48h")
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	verify := func(base, host string, usage x509.ExtKeyUsage) *x509.Certificate {
		t.Helper()
		pair, err := tls.LoadX509KeyPair(filepath.Join(dir, base+".crt"), filepath.Join(dir, base+".key"))
		if err != nil {
			t.Fatalf("%s: %v", base, err)
		}
		if _, err := pair.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: host, KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
			t.Fatalf("%s for %q: %v", base, host, err)
		}
		return pair.Leaf
	}
	for _, m := range []string{"n1", "n2"} {
		for _, base := range []string{m, m + "-peer"} {
			for _, host := range []string{m, "localhost", "127.0.0.1", m + ".kvd.svc", "10.0.0.9"} {
				verify(base, host, x509.ExtKeyUsageServerAuth)
			}
			leaf := verify(base, "", x509.ExtKeyUsageClientAuth)
			if d := leaf.NotAfter.Sub(leaf.NotBefore); d < 48*3600e9 || d > 50*3600e9 {
				t.Fatalf("%s valid for %s, want about 48h", base, d)
			}
		}
	}
	if leaf := verify("client", "", x509.ExtKeyUsageClientAuth); leaf.Subject.CommonName != "client" {
		t.Fatalf("client certificate CN %q", leaf.Subject.CommonName)
	}
	if fi, err := os.Stat(filepath.Join(dir, "ca.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("ca.key mode: %v %v", fi, err)
	}

	// A second run reuses the CA: the new certificates verify against the
	// CA file members already trust.
	out := mustRun(t, "certs", "--dir", dir, "--members", "n3")
	if !strings.Contains(out, "reused") {
		t.Fatalf("second run did not reuse the CA: %s", out)
	}
	verify("n3", "n3", x509.ExtKeyUsageServerAuth)
	verify("n1", "n1", x509.ExtKeyUsageServerAuth)
}

func TestCertsBadFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		name string
		args []string
		want string
	}{
		{"no dir", []string{"certs", "--members", "n1"}, "--dir is required"},
		{"no members", []string{"certs", "--dir", dir}, "--members is required"},
		{"bad name", []string{"certs", "--dir", dir, "--members", "a=b"}, "--members"},
		{"twice", []string{"certs", "--dir", dir, "--members", "n1,n1"}, `names "n1" twice`},
		{"reserved", []string{"certs", "--dir", dir, "--members", "ca"}, "would overwrite"},
		{"expiry", []string{"certs", "--dir", dir, "--members", "n1", "--expiry", "-1h"}, "must be positive"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runKvdutil(t, nil, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want %q", err, tt.want)
			}
		})
	}
}
