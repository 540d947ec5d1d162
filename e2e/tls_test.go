package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKvctlTLS runs three kvd processes with mutual TLS on the API and
// between members, with certificates from `kvdutil certs`, and drives them
// with kvctl over https:// endpoints and a client certificate: put, get,
// member list and endpoint status work through every member. A kvctl with
// the wrong CA, a client certificate of another CA, or none exits non-zero
// at once (long before its 30s command timeout) with an error that says
// why, and the member logs the refusal.
func TestKvctlTLS(t *testing.T) {
	_, _, kvdutil := binaries(t)
	dir := t.TempDir()
	certs, other := filepath.Join(dir, "certs"), filepath.Join(dir, "other")
	for _, args := range [][]string{
		{"certs", "--dir", certs, "--members", "n1,n2,n3"},
		{"certs", "--dir", other, "--members", "n1"},
	} {
		if out, err := exec.Command(kvdutil, args...).CombinedOutput(); err != nil {
			t.Fatalf("kvdutil %v: %v\n%s", args, err, out)
		}
	}
	file := func(d, name string) string { return filepath.Join(d, name) }
	tlsFlags := []string{"--cacert", file(certs, "ca.crt"), "--cert", file(certs, "client.crt"), "--key", file(certs, "client.key")}
	c := newClusterWith(t, 3, clusterOptions{
		nodeArgs: func(name string) []string {
			return []string{
				"--cert-file", file(certs, name+".crt"), "--key-file", file(certs, name+".key"),
				"--trusted-ca-file", file(certs, "ca.crt"), "--client-cert-auth",
				"--peer-cert-file", file(certs, name+"-peer.crt"), "--peer-key-file", file(certs, name+"-peer.key"),
				"--peer-trusted-ca-file", file(certs, "ca.crt"), "--peer-client-cert-auth",
			}
		},
		kvctlArgs: tlsFlags,
	})
	c.waitLeader(90*time.Second, c.nodes)

	var https []string
	for _, nd := range c.nodes {
		https = append(https, "https://"+nd.clientAddr)
	}
	all := strings.Join(https, ",")

	// A write through each member (followers forward it to the leader over
	// TLS), each read back through every member.
	for i, ep := range https {
		if _, err := c.kvctl("", ep, "put", fmt.Sprintf("tls/%d", i), fmt.Sprintf("v%d", i)); err != nil {
			t.Fatal(err)
		}
	}
	for _, ep := range https {
		for i := range https {
			out, err := c.kvctl("", ep, "get", fmt.Sprintf("tls/%d", i), "--print-value-only")
			if err != nil {
				t.Fatal(err)
			}
			if got, want := strings.TrimSpace(out), fmt.Sprintf("v%d", i); got != want {
				t.Fatalf("get tls/%d through %s: %q, want %q", i, ep, got, want)
			}
		}
	}
	members, err := c.memberList(all)
	if err != nil {
		t.Fatal(err)
	}
	if len(members) != 3 {
		t.Fatalf("member list: %+v, want 3 members", members)
	}
	for _, m := range members {
		if !m.Healthy || m.IsLearner {
			t.Errorf("member list: %+v, want healthy voters", m)
		}
	}
	st, err := c.statuses(all)
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 3 {
		t.Fatalf("endpoint status answered for %d members, want 3: %+v", len(st), st)
	}

	// Refusals: each fails fast, non-zero, saying why.
	for _, tt := range []struct {
		name  string
		flags []string
		say   []string // in kvctl's stderr
		log   string   // in a member's log, next to "TLS handshake refused"
	}{
		{
			name:  "wrong CA",
			flags: []string{"--cacert", file(other, "ca.crt"), "--cert", file(certs, "client.crt"), "--key", file(certs, "client.key")},
			say:   []string{"TLS certificate refused by all 3 endpoints", "certificate signed by unknown authority", "is the CA file right"},
			log:   "client refused this member's certificate",
		},
		{
			name:  "client certificate of another CA",
			flags: []string{"--cacert", file(certs, "ca.crt"), "--cert", file(other, "client.crt"), "--key", file(other, "client.key")},
			say:   []string{"TLS certificate refused by all 3 endpoints", "does not trust the CA that signed this client's certificate"},
			log:   "signed by a CA this end does not trust",
		},
		{
			name:  "no client certificate",
			flags: []string{"--cacert", file(certs, "ca.crt")},
			say:   []string{"TLS certificate refused by all 3 endpoints", "requires a client certificate"},
			log:   "requires a client certificate",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			args := append(append([]string{"--endpoints", all, "--command-timeout", "30s"}, tt.flags...), "get", "tls/0")
			cmd := exec.CommandContext(ctx, c.kvctlBin, args...)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			start := time.Now()
			err := cmd.Run()
			took := time.Since(start)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() == 0 {
				t.Fatalf("kvctl: %v, want a non-zero exit; stdout %q", err, stdout.String())
			}
			msg := stderr.String()
			for _, want := range tt.say {
				if !strings.Contains(msg, want) {
					t.Errorf("kvctl said %q, want it to say %q", msg, want)
				}
			}
			// Generous for a loaded machine, and far from the 30s timeout
			// a retried refusal would take.
			if took > 10*time.Second {
				t.Errorf("kvctl took %s to fail, want well under its 30s command timeout", took)
			}
			t.Logf("exit %d after %s: %s", exit.ExitCode(), took.Round(time.Millisecond), strings.TrimSpace(msg))
			eventually(t, 30*time.Second, func() error {
				for _, nd := range c.nodes {
					b, _ := os.ReadFile(nd.logPath)
					for _, line := range strings.Split(string(b), "\n") {
						if strings.Contains(line, "TLS handshake refused") && strings.Contains(line, tt.log) {
							return nil
						}
					}
				}
				// Each listener logs one refusal every ten seconds: knock
				// again in case this one fell in a quiet time.
				knock := exec.CommandContext(ctx, c.kvctlBin, append(args[:2:2], append(tt.flags, "--command-timeout", "2s", "get", "tls/0")...)...)
				_ = knock.Run()
				return fmt.Errorf("no member logged a refusal saying %q", tt.log)
			})
		})
	}

}
