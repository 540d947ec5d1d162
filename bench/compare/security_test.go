package main

import (
	"strings"
	"testing"
	"time"
)

// TestSecurityMarkdown: the cost of TLS is the TLS mode's CPU per request
// and median latency minus the plain mode's, the cost of auth the TLS and
// auth mode's minus the TLS mode's, for kvd and etcd alike.
func TestSecurityMarkdown(t *testing.T) {
	w := secWorkloads(false)[0]
	m := func(rps, p50 float64, cpu time.Duration) measurement {
		return measurement{rps: rps, seconds: 1, p50: p50, serverCPU: cpu}
	}
	rows := []secRow{
		{mode: secModes[0], w: w, kvd: m(1000, 1, 100*time.Millisecond), etcd: m(1000, 2, 200*time.Millisecond)},     // 100 and 200 µs/req
		{mode: secModes[1], w: w, kvd: m(1000, 1.5, 130*time.Millisecond), etcd: m(1000, 2.5, 260*time.Millisecond)}, // +30, +60
		{mode: secModes[2], w: w, kvd: m(500, 2, 70*time.Millisecond), etcd: m(1000, 3, 300*time.Millisecond)},       // 140 (+10), 300 (+40)
	}
	md := securityMarkdown(rows)
	for _, want := range []string{
		"| put, 100 clients / 10 conns | TLS | +30 | +60 | +0.50 | +0.50 |",
		"| put, 100 clients / 10 conns | auth | +10 | +40 | +0.50 | +0.50 |",
		"| put, 100 clients / 10 conns | TLS + auth | 500 | 1000 | 2.00 | 3.00 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("no line %q in\n%s", want, md)
		}
	}
}

// TestMakeSecurity: the certificates of both clusters and the client come
// from two CAs, and every kvd member gets mutual TLS on both ports.
func TestMakeSecurity(t *testing.T) {
	s, err := makeSecurity(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"n1", "n3-peer", "e2", "e1-peer", "client"} {
		if _, ok := s.certs[name]; !ok {
			t.Errorf("no certificate %s", name)
		}
	}
	args := strings.Join(s.memberArgs["n2"], " ")
	for _, flag := range []string{"--client-cert-auth", "--peer-client-cert-auth", "--trusted-ca-file " + s.clientCAFile, "--peer-trusted-ca-file " + s.peerCAFile} {
		if !strings.Contains(args, flag) {
			t.Errorf("n2's flags %q lack %q", args, flag)
		}
	}
	if s.clientCAFile == s.peerCAFile || s.clientTLS == nil || len(s.clientTLS.Certificates) != 1 {
		t.Fatalf("client TLS %v, CAs %s and %s", s.clientTLS, s.clientCAFile, s.peerCAFile)
	}
}
