package e2e

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvd-io/kvd/client"
)

// terminate sends SIGTERM and waits for a clean exit.
func (c *cluster) terminate(nd *node) {
	c.t.Helper()
	if err := nd.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		c.t.Fatal(err)
	}
	select {
	case <-nd.exited:
	case <-time.After(30 * time.Second):
		c.t.Fatalf("%s did not exit within 30s of SIGTERM", nd.name)
	}
	if code := nd.cmd.ProcessState.ExitCode(); code != 0 {
		c.t.Fatalf("%s exited with %d after SIGTERM", nd.name, code)
	}
	nd.cmd = nil
}

// waitReady waits until the node's /readyz answers 200.
func waitReady(t *testing.T, nd *node) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		resp, err := http.Get("http://" + nd.httpAddr + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("%s /readyz: %d", nd.name, resp.StatusCode)
		}
		return nil
	})
}

// load runs SDK clients that write unique keys and read linearizably until
// stopped, and records every failure.
type load struct {
	mu     sync.Mutex
	acked  map[string]string
	reads  int
	errors []string
	stop   chan struct{}
	wg     sync.WaitGroup
}

func startLoad(t *testing.T, endpoints []string, writers, readers int) *load {
	l := &load{acked: map[string]string{}, stop: make(chan struct{})}
	cli, err := client.New(client.Config{Endpoints: endpoints, DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	fail := func(format string, args ...any) {
		l.mu.Lock()
		l.errors = append(l.errors, fmt.Sprintf(format, args...))
		l.mu.Unlock()
	}
	for w := 0; w < writers; w++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				key, val := fmt.Sprintf("roll-%d-%06d", w, i), fmt.Sprintf("v%d", i)
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				_, err := cli.Put(ctx, key, val)
				cancel()
				if err != nil {
					fail("put %s: %v", key, err)
					continue
				}
				l.mu.Lock()
				l.acked[key] = val
				l.mu.Unlock()
			}
		}()
	}
	for r := 0; r < readers; r++ {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
				_, err := cli.Get(ctx, "roll-", client.WithPrefix(), client.WithCountOnly())
				cancel()
				if err != nil {
					fail("linearizable read: %v", err)
					continue
				}
				l.mu.Lock()
				l.reads++
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) progress() (writes, reads int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked), l.reads
}

func (l *load) waitMore(t *testing.T, n int) {
	t.Helper()
	w0, r0 := l.progress()
	eventually(t, 30*time.Second, func() error {
		w, r := l.progress()
		if w-w0 < n || r-r0 < n {
			return fmt.Errorf("progress: %d writes, %d reads", w-w0, r-r0)
		}
		return nil
	})
}

func (l *load) halt() (map[string]string, []string) {
	close(l.stop)
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked, l.errors
}

// A restart rolled through every member, one at a time, under continuous
// load, fails no client request and loses no acknowledged write.
func TestRollingRestartUnderLoad(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := newCluster(t, 3)
	leader := c.waitLeader(30*time.Second, c.nodes)
	var eps []string
	for _, nd := range c.nodes {
		eps = append(eps, nd.clientAddr)
	}
	l := startLoad(t, eps, 4, 2)
	l.waitMore(t, 20)

	// Followers first, the leader last: the leader hands over on SIGTERM.
	order := []*node{}
	for _, nd := range c.nodes {
		if nd != leader {
			order = append(order, nd)
		}
	}
	order = append(order, leader)
	for _, nd := range order {
		t.Logf("restarting %s", nd.name)
		c.terminate(nd)
		l.waitMore(t, 10) // the cluster keeps serving with one member down
		c.start(nd)
		waitReady(t, nd)
		l.waitMore(t, 10)
	}
	acked, errs := l.halt()
	w, r := len(acked), l.reads
	t.Logf("during the roll: %d acknowledged writes, %d linearizable reads, %d failed requests", w, r, len(errs))
	if len(errs) > 0 {
		t.Fatalf("%d client requests failed during the rolling restart, e.g.:\n%s", len(errs), strings.Join(errs[:min(len(errs), 10)], "\n"))
	}
	for _, nd := range c.nodes {
		checkAckedPrefix(t, c, nd, "roll-", acked)
	}
}
