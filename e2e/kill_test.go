package e2e

import (
	"context"
	"fmt"
	"math/rand"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/client"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// writers put unique keys through random nodes until stopped and record
// every write that was acknowledged.
type writers struct {
	c      *cluster
	mu     sync.Mutex
	acked  map[string]string
	stop   chan struct{}
	wg     sync.WaitGroup
	failed int
}

func startWriters(c *cluster, n int) *writers {
	w := &writers{c: c, acked: map[string]string{}, stop: make(chan struct{})}
	for i := 0; i < n; i++ {
		w.wg.Add(1)
		go w.run(i)
	}
	return w
}

func (w *writers) run(id int) {
	defer w.wg.Done()
	rng := rand.New(rand.NewSource(int64(id)))
	for seq := 0; ; seq++ {
		select {
		case <-w.stop:
			return
		default:
		}
		nd := w.c.nodes[rng.Intn(len(w.c.nodes))]
		key := fmt.Sprintf("w-%d-%06d", id, seq)
		val := fmt.Sprintf("v%d", seq)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := w.c.kv(nd).Put(ctx, &kvv1.PutRequest{Key: []byte(key), Value: []byte(val)})
		cancel()
		w.mu.Lock()
		if err == nil {
			w.acked[key] = val
		} else {
			w.failed++
		}
		w.mu.Unlock()
		if err != nil {
			// Back off a little: the node may be dead or electing.
			select {
			case <-w.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

func (w *writers) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

// waitMore waits until at least n more writes are acknowledged.
func (w *writers) waitMore(t *testing.T, n int, timeout time.Duration) {
	t.Helper()
	start := w.count()
	eventually(t, timeout, func() error {
		if got := w.count() - start; got < n {
			return fmt.Errorf("only %d new acknowledged writes", got)
		}
		return nil
	})
}

func (w *writers) halt() map[string]string {
	close(w.stop)
	w.wg.Wait()
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]string, len(w.acked))
	for k, v := range w.acked {
		out[k] = v
	}
	return out
}

// checkAcked fails the test unless nd (through a linearizable read) holds
// every acknowledged write with its value.
func checkAcked(t *testing.T, c *cluster, nd *node, acked map[string]string) {
	t.Helper()
	checkAckedPrefix(t, c, nd, "w-", acked)
}

func checkAckedPrefix(t *testing.T, c *cluster, nd *node, prefix string, acked map[string]string) {
	t.Helper()
	var resp *kvv1.RangeResponse
	eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		resp, err = c.kv(nd).Range(ctx, &kvv1.RangeRequest{Key: []byte(prefix), RangeEnd: []byte(client.PrefixEnd(prefix))})
		return err
	})
	have := make(map[string]string, len(resp.GetKvs()))
	for _, kv := range resp.GetKvs() {
		have[string(kv.GetKey())] = string(kv.GetValue())
	}
	lost := 0
	for k, v := range acked {
		if have[k] != v {
			if lost < 5 {
				t.Errorf("%s: acknowledged write %s=%s is missing (have %q)", nd.name, k, v, have[k])
			}
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%s lost %d of %d acknowledged writes", nd.name, lost, len(acked))
	}
}

func TestThreeNodeClusterSurvivesKill9(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := newCluster(t, 3)
	leader := c.waitLeader(30*time.Second, c.nodes)
	t.Logf("leader: %s", leader.name)

	// kvctl writes through every node, and every node reads every write.
	for _, nd := range c.nodes {
		if out, err := c.kvctl("", nd.clientAddr, "put", "via-"+nd.name, "hello from "+nd.name); err != nil || strings.TrimSpace(out) != "OK" {
			t.Fatalf("put via %s: %q %v", nd.name, out, err)
		}
	}
	for _, reader := range c.nodes {
		for _, writer := range c.nodes {
			out, err := c.kvctl("", reader.clientAddr, "get", "via-"+writer.name)
			if err != nil {
				t.Fatal(err)
			}
			if want := "via-" + writer.name + "\nhello from " + writer.name + "\n"; out != want {
				t.Fatalf("get via %s = %q, want %q", reader.name, out, want)
			}
		}
	}

	w := startWriters(c, 4)
	w.waitMore(t, 50, 30*time.Second)

	// kill -9 the leader: the others elect a new one and writes continue.
	c.kill(leader)
	var rest []*node
	for _, nd := range c.nodes {
		if nd != leader {
			rest = append(rest, nd)
		}
	}
	newLeader := c.waitLeader(30*time.Second, rest)
	if newLeader == leader {
		t.Fatalf("killed leader still leads")
	}
	t.Logf("new leader: %s", newLeader.name)
	w.waitMore(t, 50, 30*time.Second)

	// The killed node comes back and catches up.
	c.start(leader)
	w.waitMore(t, 20, 30*time.Second)
	snapshot := func() map[string]string {
		w.mu.Lock()
		defer w.mu.Unlock()
		m := make(map[string]string, len(w.acked))
		for k, v := range w.acked {
			m[k] = v
		}
		return m
	}
	checkAcked(t, c, leader, snapshot())

	// kill -9 every node while the writers run, then bring them all back.
	for _, nd := range c.nodes {
		c.kill(nd)
	}
	acked := w.halt()
	t.Logf("acknowledged writes: %d (failed or unknown: %d)", len(acked), w.failed)
	// The state database's commits are fsynced and raft's snapshots refer
	// to it: every node must resume from its own state.db and the log
	// after it, not discard it (server.TestCrashedStateCatchesUpFromTheLog
	// covers a state as of an older commit, what a power loss leaves).
	for _, nd := range c.nodes {
		c.start(nd)
	}
	c.waitLeader(30*time.Second, c.nodes)
	for _, nd := range c.nodes {
		checkAcked(t, c, nd, acked)
	}
	for _, nd := range c.nodes {
		if b, err := os.ReadFile(nd.logPath); err != nil || strings.Contains(string(b), "discarding it") {
			t.Fatalf("%s discarded its state after kill -9 (%v)", nd.name, err)
		}
	}
	// And the cluster still takes writes.
	if _, err := c.kvctl("", c.endpoints(), "put", "after-restart", "ok"); err != nil {
		t.Fatal(err)
	}
}

// With no quorum a write fails with a clear error and a non-zero exit.
func TestKvctlReportsNoQuorum(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := newCluster(t, 3)
	c.waitLeader(30*time.Second, c.nodes)
	c.kill(c.nodes[0])
	c.kill(c.nodes[1])
	survivor := c.nodes[2]
	eventually(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := c.kv(survivor).Put(ctx, &kvv1.PutRequest{Key: []byte("k"), Value: []byte("v")})
		if status.Code(err) != codes.Unavailable || !apierr.IsNotApplied(err) {
			return fmt.Errorf("want Unavailable (not applied), got %v", err)
		}
		return nil
	})
	_, err := c.kvctl("", survivor.clientAddr, "--command-timeout", "3s", "put", "k", "v")
	if err == nil {
		t.Fatal("kvctl put without quorum succeeded")
	}
}
