package server_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/kvd-io/kvd/server/servertest"
)

func httpGet(url string) (int, string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

func TestProbesMetricsAndGRPCHealth(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	put(t, c, leader, "k", "v")
	put(t, c, others(c, leader)[0], "forwarded", "v")
	for _, name := range c.Names() {
		base := "http://" + c.Member(name).Server.HTTPAddr()
		if _, err := get(ctxT(t, 5*time.Second), c, name, "k", false); err != nil {
			t.Fatal(err)
		}
		c.Eventually(10*time.Second, func() error {
			code, body, err := httpGet(base + "/readyz")
			if err != nil || code != 200 {
				return fmt.Errorf("%s /readyz: %d %q %v", name, code, body, err)
			}
			return nil
		})
		if code, _, err := httpGet(base + "/healthz"); err != nil || code != 200 {
			t.Fatalf("%s /healthz: %d %v", name, code, err)
		}
		code, body, err := httpGet(base + "/metrics")
		if err != nil || code != 200 {
			t.Fatalf("%s /metrics: %d %v", name, code, err)
		}
		for _, want := range []string{"kvd_raft_term", "kvd_raft_applied_index", "kvd_store_revision", "kvd_fsm_apply_duration_seconds",
			`kvd_grpc_requests_total{code="OK",method="/kv.v1.KVService/`} {
			if !strings.Contains(body, want) {
				t.Errorf("%s /metrics lacks %s", name, want)
			}
		}
		if name == leader && !strings.Contains(body, `kvd_raft_state{state="leader"} 1`) {
			t.Errorf("leader's metrics do not say it leads")
		}
		// The put sent to a follower reached the leader on a proposal
		// stream, and counts as the Propose it stands for.
		if name == leader && !strings.Contains(body, `kvd_grpc_requests_total{code="OK",method="/peer.v1.PeerService/Propose"}`) {
			t.Errorf("leader's metrics do not count the forwarded proposal")
		}
		// The leader appended its term's first entry and the put through
		// the commit queue, which counts the proposals of each entry.
		if name == leader && (!strings.Contains(body, "kvd_raft_entry_proposals_count ") ||
			strings.Contains(body, "kvd_raft_entry_proposals_count 0\n")) {
			t.Errorf("leader's metrics count no appended entry")
		}
		// The leader wrote the puts' entries in the background while it
		// replicated them; a follower wrote them before acknowledging. Every
		// member applied them, each time after checking its own copy.
		mode := "sync"
		if name == leader {
			mode = "background"
		}
		for _, count := range []string{`kvd_raft_log_append_duration_seconds_count{mode="` + mode + `"}`, "kvd_raft_log_durable_wait_seconds_count"} {
			if !strings.Contains(body, count+" ") || strings.Contains(body, count+" 0\n") {
				t.Errorf("%s /metrics: %s is missing or zero", name, count)
			}
		}
		if code, _, err := httpGet(base + "/debug/pprof/"); err != nil || code != 200 {
			t.Fatalf("%s pprof: %d %v", name, code, err)
		}
		c.Eventually(10*time.Second, func() error {
			resp, err := healthpb.NewHealthClient(c.Member(name).Conn()).Check(ctxT(t, 5*time.Second), &healthpb.HealthCheckRequest{})
			if err != nil {
				return err
			}
			if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
				return fmt.Errorf("%s gRPC health %s", name, resp.GetStatus())
			}
			return nil
		})
	}
	// A member cut off from the others stops being ready.
	isolated := others(c, leader)[0]
	c.Isolate(isolated)
	c.Eventually(20*time.Second, func() error {
		code, _, err := httpGet("http://" + c.Member(isolated).Server.HTTPAddr() + "/readyz")
		if err == nil && code == 503 {
			return nil
		}
		return fmt.Errorf("isolated member /readyz: %d %v", code, err)
	})
}
