package main

import (
	"strings"
	"testing"

	"github.com/kvd-io/kvd/server/servertest"
)

// The lease, lock and watch workloads end to end against an in-process
// three-member cluster, with small counts.
func TestBenchCoordinationWorkloads(t *testing.T) {
	c := servertest.New(t, 3)
	var eps []string
	for _, name := range c.Names() {
		eps = append(eps, c.Member(name).Server.ClientAddr())
	}
	endpoints := strings.Join(eps, ",")
	global := []string{"--command-timeout", "20s"}

	s := runBenchGlobal(t, endpoints, global, "lease-keepalive", "--clients", "4", "--conns", "2", "--total", "50")
	if s.Total != 50 || s.Errors != 0 || s.RequestsPerSec <= 0 || s.Unit != "requests" {
		t.Errorf("lease-keepalive: %+v", s)
	}
	s = runBenchGlobal(t, endpoints, global, "lock", "--clients", "4", "--conns", "2", "--total", "20")
	if s.Total != 20 || s.Errors != 0 || s.P50Ms <= 0 {
		t.Errorf("lock: %+v", s)
	}
	s = runBenchGlobal(t, endpoints, global, "watch-latency", "--streams", "3", "--watchers-per-stream", "2",
		"--put-total", "10", "--put-rate", "200")
	if s.Total != 60 || s.Errors != 0 || s.Unit != "events" || s.Ops["put"].Count != 10 {
		t.Errorf("watch-latency: %+v", s)
	}
	s = runBenchGlobal(t, endpoints, global, "watch", "--streams", "2", "--watch-per-stream", "5",
		"--put-total", "10", "--put-clients", "2")
	if s.Total != 100 || s.Errors != 0 || s.RequestsPerSec <= 0 {
		t.Errorf("watch: %+v", s)
	}
}

func TestBenchWatchRejectsRequestFlags(t *testing.T) {
	_, errOut, err := runKvctl(t, nil, "", "--endpoints", "127.0.0.1:1", "bench", "watch", "--total", "5")
	if err == nil || !strings.Contains(errOut+err.Error(), "--total is not used by bench watch") {
		t.Errorf("bench watch --total: err %v, stderr %q", err, errOut)
	}
	_, errOut, err = runKvctl(t, nil, "", "--endpoints", "127.0.0.1:1", "bench", "watch-latency", "--streams", "0")
	if err == nil || !strings.Contains(errOut+err.Error(), "streams 0") {
		t.Errorf("bench watch-latency --streams 0: err %v, stderr %q", err, errOut)
	}
}
