package e2e

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/client/concurrency"
)

func newClient(t *testing.T, endpoints string) *client.Client {
	t.Helper()
	cli, err := client.New(client.Config{Endpoints: strings.Split(endpoints, ",")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// kill -9 of the leader while a client keeps 1,000 leases of 10 s alive:
// none expires (the new leader extends every lease before it expires any).
// Then the client stops renewing: every key goes within the TTL plus the
// election timeout and a little for the revocations to commit.
//
// The TTL must outlast the failover with room to spare: a client that hears
// no answer for a whole TTL gives its lease up (as etcd's client does), and
// on this loaded machine a kill -9 takes 3 to 6 s to replace the leader. At
// 5 s, a run in ten lost a few dozen leases that way.
func TestLeasesSurviveLeaderKill(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	t.Parallel()
	c := newCluster(t, 3)
	leader := c.waitLeader(30*time.Second, c.nodes)
	cli := newClient(t, c.endpoints())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	const n, ttl = 1000, 10
	ids := make([]client.LeaseID, n)
	// Each lease is kept alive from its grant on: granting a thousand can
	// take longer than their TTL on a loaded machine.
	kctx, stopRenewing := context.WithCancel(ctx)
	defer stopRenewing()
	chans := make([]<-chan *client.LeaseKeepAliveResponse, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for w := range 20 {
		wg.Go(func() {
			for i := w; i < n; i += 20 {
				g, err := cli.Grant(ctx, ttl)
				if err == nil {
					ids[i] = g.GetId()
					chans[i], err = cli.KeepAlive(kctx, g.GetId())
				}
				if err == nil {
					_, err = cli.Put(ctx, fmt.Sprintf("lease/%04d", i), "up", client.WithLease(g.GetId()))
				}
				if err != nil {
					errs <- fmt.Errorf("lease %d: %w", i, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var lost sync.Map
	var drained sync.WaitGroup
	for i, ch := range chans {
		drained.Go(func() {
			for range ch {
			}
			if kctx.Err() == nil {
				lost.Store(i, true)
			}
		})
	}
	countKeys := func() int64 {
		resp, err := cli.Get(ctx, "lease/", client.WithPrefix(), client.WithCountOnly())
		if err != nil {
			t.Fatalf("count keys: %v", err)
		}
		return resp.GetCount()
	}
	time.Sleep(ttl*time.Second + 2*time.Second) // the leases live past their TTL; nothing to wait for but time
	if got := countKeys(); got != n {
		t.Fatalf("%d keys of %d before the kill", got, n)
	}
	c.kill(leader)
	var running []*node
	for _, nd := range c.nodes {
		if nd != leader {
			running = append(running, nd)
		}
	}
	killed := time.Now()
	newLeader := c.waitLeader(30*time.Second, running)
	t.Logf("%s leads %s after the kill of %s", newLeader.name, time.Since(killed).Round(time.Millisecond), leader.name)
	// Past the new leader's extension of the leases (its election timeout
	// and a TTL): only renewals through the new leader keep them now.
	time.Sleep(ttl*time.Second + 3*time.Second)
	lost.Range(func(k, _ any) bool {
		t.Errorf("the client gave up keeping lease %d alive during the failover", k)
		return true
	})
	if got := countKeys(); got != n {
		t.Fatalf("%d keys of %d after the leader's kill: leases expired while kept alive", got, n)
	}

	stopRenewing()
	stopped := time.Now()
	drained.Wait()
	// A lease renewed just before the stop lives TTL after it; the new
	// leader's tick and the revocations' commits take a little more.
	limit := ttl*time.Second + time.Second + 2*time.Second
	eventually(t, limit+10*time.Second, func() error {
		if got := countKeys(); got != 0 {
			return fmt.Errorf("%d keys left %s after the client stopped renewing", got, time.Since(stopped).Round(time.Millisecond))
		}
		return nil
	})
	if took := time.Since(stopped); took > limit {
		t.Fatalf("the keys of leases no longer renewed took %s to go; want within %s", took, limit)
	}
	t.Logf("every key gone %s after the client stopped renewing (TTL %ds)", time.Since(stopped).Round(time.Millisecond), ttl)
}

// lockHolderEnv makes the test binary a lock holder (see runLockHolder).
const lockHolderEnv = "KVD_E2E_LOCK_HOLDER"

// runLockHolder takes the lock "job" with a 2 s session on the endpoints in
// the environment, prints its fencing token, and for each "write" line on
// stdin tries a write guarded by its ownership of the lock, printing
// "applied" or "refused".
func runLockHolder() int {
	cli, err := client.New(client.Config{Endpoints: strings.Split(os.Getenv(lockHolderEnv), ",")})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	defer cli.Close()
	ctx := context.Background()
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(2))
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	m := concurrency.NewMutex(s, "job")
	if err := m.Lock(ctx); err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("token", m.Token())
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := cli.Txn(wctx).If(m.IsOwner()).Then(client.OpPut("resource", fmt.Sprint(m.Token()))).Commit()
		cancel()
		switch {
		case err != nil:
			fmt.Println("error", err)
		case resp.GetSucceeded():
			fmt.Println("applied")
		default:
			fmt.Println("refused")
		}
	}
	return 0
}

// A lock holder paused (SIGSTOP) past its session's TTL loses the lock: the
// next holder's fencing token is larger, and when the old holder resumes,
// its write guarded by the lock is refused.
func TestPausedLockHolderIsFenced(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	t.Parallel()
	c := newCluster(t, 3)
	c.waitLeader(30*time.Second, c.nodes)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), lockHolderEnv+"="+c.endpoints())
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	lines := bufio.NewScanner(stdout)
	next := func() string {
		t.Helper()
		got := make(chan string, 1)
		go func() {
			if lines.Scan() {
				got <- lines.Text()
			}
			close(got)
		}()
		select {
		case l, ok := <-got:
			if !ok {
				t.Fatal("the lock holder exited")
			}
			return l
		case <-time.After(30 * time.Second):
			t.Fatal("the lock holder said nothing for 30 s")
		}
		return ""
	}
	first := next()
	tokA, err := strconv.ParseInt(strings.TrimPrefix(first, "token "), 10, 64)
	if err != nil {
		t.Fatalf("lock holder: %q", first)
	}
	fmt.Fprintln(stdin, "write")
	if got := next(); got != "applied" {
		t.Fatalf("the holder's guarded write: %q, want applied", got)
	}

	if err := cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	cli := newClient(t, c.endpoints())
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	m := concurrency.NewMutex(s, "job")
	paused := time.Now()
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("the lock passed on %s after its holder was paused (its TTL: 2 s)", time.Since(paused).Round(time.Millisecond))
	if m.Token() <= tokA {
		t.Fatalf("the new holder's token %d is not larger than the paused holder's %d", m.Token(), tokA)
	}
	resp, err := cli.Txn(ctx).If(m.IsOwner()).Then(client.OpPut("resource", fmt.Sprint(m.Token()))).Commit()
	if err != nil || !resp.GetSucceeded() {
		t.Fatalf("the new holder's guarded write: %v, %v", resp, err)
	}

	if err := cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(stdin, "write")
	if got := next(); got != "refused" {
		t.Fatalf("the resumed old holder's guarded write: %q, want refused", got)
	}
	get, err := cli.Get(ctx, "resource")
	if err != nil || len(get.GetKvs()) != 1 || string(get.GetKvs()[0].GetValue()) != fmt.Sprint(m.Token()) {
		t.Fatalf("resource: %v, %v; want the new holder's token %d", get, err, m.Token())
	}
}
