package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/server"
	"github.com/kvd-io/kvd/server/servertest"
)

// The lease, lock and elect commands run against a real one-member cluster
// in-process: their semantics (expiry, queues, waiting) are the server's,
// which a fake would only restate. Only the tests link the server; kvctl
// itself does not (deps_test.go).

// startCluster starts a one-member cluster and returns its client address.
// It runs with the daemon's election timeout, so that the minimum lease TTL
// (1.5 times it, rounded up: 2 s) leaves a positive TTL below it, refused
// by the member.
func startCluster(t *testing.T) string {
	t.Helper()
	c := servertest.New(t, 1, servertest.WithConfig(func(cfg *server.Config) {
		cfg.HeartbeatTimeout, cfg.ElectionTimeout = time.Second, time.Second
	}))
	return c.Member(c.Leader(20 * time.Second)).Server.ClientAddr()
}

// sdk returns a client of ep, closed when the test ends.
func sdk(t *testing.T, ep string) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Endpoints: []string{ep}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// wait waits for kvctl to end on its own and returns its error.
func (r *running) wait(t *testing.T) error {
	t.Helper()
	select {
	case err := <-r.done:
		close(r.done) // stop, at cleanup, finds it closed
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("kvctl did not end; stdout %q, stderr %q", r.out.String(), r.errOut.String())
		return nil
	}
}

var grantedRE = regexp.MustCompile(`^lease ([0-9a-f]+) granted with TTL\(30s\)\n$`)

func TestLeaseCommands(t *testing.T) {
	ep := startCluster(t)
	out := mustRun(t, ep, "", "lease", "grant", "30")
	m := grantedRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("lease grant printed %q", out)
	}
	id := m[1]

	if out := mustRun(t, ep, "", "put", "svc/a", "up", "--lease", id); out != "OK\n" {
		t.Fatalf("put --lease printed %q", out)
	}
	if out := mustRun(t, ep, "", "put", "svc/b", "up", "--lease", "0x"+id); out != "OK\n" {
		t.Fatalf("put --lease 0x... printed %q", out)
	}
	var got jsonGet
	if err := json.Unmarshal([]byte(mustRun(t, ep, "", "-w", "json", "get", "svc/a")), &got); err != nil || len(got.KVs) != 1 || fmt.Sprintf("%x", got.KVs[0].Lease) != id {
		t.Fatalf("svc/a after put --lease: %+v, %v", got, err)
	}
	// --ignore-lease changes the value and keeps the lease; --ignore-value
	// the reverse.
	mustRun(t, ep, "", "put", "svc/a", "down", "--ignore-lease")
	mustRun(t, ep, "", "put", "plain", "v")
	mustRun(t, ep, "", "put", "plain", "--ignore-value", "--lease", id)
	if out := mustRun(t, ep, "", "get", "plain"); out != "plain\nv\n" {
		t.Fatalf("get plain after --ignore-value: %q", out)
	}

	re := regexp.MustCompile(`^lease ` + id + ` granted with TTL\(30s\), remaining\((\d+)s\), attached keys\(\[plain svc/a svc/b\]\)\n$`)
	if out := mustRun(t, ep, "", "lease", "timetolive", "--keys", id); !re.MatchString(out) {
		t.Fatalf("lease timetolive --keys printed %q", out)
	}
	if out := mustRun(t, ep, "", "lease", "list"); out != "found 1 leases\n"+id+"\n" {
		t.Fatalf("lease list printed %q", out)
	}
	if out := mustRun(t, ep, "", "-w", "table", "lease", "list"); !strings.Contains(out, "| "+id+" |") {
		t.Fatalf("lease list -w table printed %q", out)
	}
	if out := mustRun(t, ep, "", "lease", "keep-alive", "--once", id); out != "lease "+id+" keepalived with TTL(30)\n" {
		t.Fatalf("lease keep-alive --once printed %q", out)
	}
	var ttl jsonLeaseTTL
	if err := json.Unmarshal([]byte(mustRun(t, ep, "", "-w", "json", "lease", "timetolive", id)), &ttl); err != nil ||
		fmt.Sprintf("%x", ttl.ID) != id || ttl.GrantedTTL != 30 || ttl.TTL <= 0 || ttl.Header.Revision == 0 {
		t.Fatalf("lease timetolive -w json: %+v, %v", ttl, err)
	}

	// keep-alive runs until the lease goes, then fails.
	ka := startKvctl(t, "", "--endpoints", ep, "lease", "keep-alive", id)
	waitUntil(t, func() bool { return strings.HasPrefix(ka.out.String(), "lease "+id+" keepalived with TTL(30)\n") },
		func() string { return "keep-alive printed " + ka.out.String() })
	if out := mustRun(t, ep, "", "lease", "revoke", id); out != "lease "+id+" revoked\n" {
		t.Fatalf("lease revoke printed %q", out)
	}
	if err := ka.wait(t); err == nil || !strings.Contains(err.Error(), "expired or was revoked") {
		t.Fatalf("keep-alive of a revoked lease ended with %v", err)
	}
	if !strings.HasSuffix(ka.out.String(), "lease "+id+" expired or revoked.\n") {
		t.Fatalf("keep-alive printed %q", ka.out.String())
	}
	if out := mustRun(t, ep, "", "get", "svc/", "--prefix"); out != "" {
		t.Fatalf("the lease's keys survived its revocation: %q", out)
	}
	if out := mustRun(t, ep, "", "lease", "timetolive", id); out != "lease "+id+" already expired\n" {
		t.Fatalf("lease timetolive of a revoked lease printed %q", out)
	}
	out, _, err := runKvctl(t, nil, "", "--endpoints", ep, "lease", "keep-alive", "--once", id)
	if err == nil || out != "lease "+id+" expired or revoked.\n" {
		t.Fatalf("keep-alive --once of a revoked lease: %q, %v", out, err)
	}

	var granted jsonLease
	if err := json.Unmarshal([]byte(mustRun(t, ep, "", "-w", "json", "lease", "grant", "20")), &granted); err != nil || granted.ID <= 0 || granted.TTL != 20 {
		t.Fatalf("lease grant -w json: %+v, %v", granted, err)
	}
}

func TestLeaseCommandErrors(t *testing.T) {
	ep := startCluster(t)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"grant without a TTL", []string{"lease", "grant"}, "needs a TTL"},
		{"grant a bad TTL", []string{"lease", "grant", "ten"}, `invalid TTL "ten"`},
		{"grant below the minimum", []string{"lease", "grant", "1"}, "below the minimum"},
		{"revoke a bad id", []string{"lease", "revoke", "xyz"}, `invalid lease id "xyz"`},
		{"revoke an unknown lease", []string{"lease", "revoke", "1234"}, "lease not found"},
		{"timetolive without an id", []string{"lease", "timetolive"}, "needs a lease id"},
		{"put with a bad lease", []string{"put", "k", "v", "--lease", "-1"}, "invalid lease id"},
		{"put with an unknown lease", []string{"put", "k", "v", "--lease", "1234"}, "lease not found"},
		{"put ignore-value with a value", []string{"put", "k", "v", "--ignore-value"}, "needs a key and no value"},
		{"put ignore-lease with a lease", []string{"put", "k", "v", "--ignore-lease", "--lease", "12"}, "cannot be combined"},
		{"put ignore-value of a missing key", []string{"put", "missing", "--ignore-value", "--lease", "12"}, "key not found"},
		{"lock without a name", []string{"lock"}, "needs a lock name"},
		{"lock with a zero TTL", []string{"lock", "l", "--ttl", "0"}, "invalid --ttl 0"},
		{"lock with an empty command", []string{"lock", "l", "--"}, "no command after it"},
		{"elect without a proposal", []string{"elect", "e"}, "needs an election name and a proposal"},
		{"elect --listen with a proposal", []string{"elect", "--listen", "e", "p"}, "no proposal"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := runKvctl(t, nil, "", append([]string{"--endpoints", ep}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestLockCommand(t *testing.T) {
	ep := startCluster(t)
	c := sdk(t, ep)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	// With a command: it runs holding the lock, with the key and token in
	// its environment, and kvctl exits with its status.
	out, _, err := runKvctl(t, nil, "", "--endpoints", ep, "lock", "job", "--",
		"sh", "-c", `echo "$KVD_LOCK_KEY $KVD_LOCK_REV $ETCD_LOCK_KEY"; exit 3`)
	var exit *exitError
	if !errors.As(err, &exit) || exit.code != 3 {
		t.Fatalf("lock with a command exiting 3: %v", err)
	}
	var key, key2 string
	var rev int64
	if _, err := fmt.Sscanf(out, "%s %d %s", &key, &rev, &key2); err != nil || !strings.HasPrefix(key, "job/") || key2 != key || rev <= 0 {
		t.Fatalf("the command printed %q (%v)", out, err)
	}
	if out := mustRun(t, ep, "", "get", "job/", "--prefix"); out != "" {
		t.Fatalf("the lock was not released: %q", out)
	}

	// Another holder has the lock: kvctl waits, then runs the command with a
	// larger token.
	lease, err := c.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	held, err := c.Lock(ctx, "job", lease.GetId())
	if err != nil {
		t.Fatal(err)
	}
	waiting := startKvctl(t, "", "--endpoints", ep, "lock", "job", "--", "sh", "-c", `echo "got $KVD_LOCK_REV"`)
	waitUntil(t, func() bool {
		resp, err := c.Get(ctx, "job/", client.WithPrefix(), client.WithCountOnly())
		return err == nil && resp.GetCount() == 2
	}, func() string { return "kvctl lock did not queue" })
	if out := waiting.out.String(); out != "" {
		t.Fatalf("kvctl ran the command while the lock was held: %q", out)
	}
	if _, err := c.Unlock(ctx, string(held.GetKey())); err != nil {
		t.Fatal(err)
	}
	if err := waiting.wait(t); err != nil {
		t.Fatalf("lock after waiting: %v (stderr %q)", err, waiting.errOut.String())
	}
	var got int64
	if _, err := fmt.Sscanf(waiting.out.String(), "got %d", &got); err != nil || got <= held.GetCreateRevision() {
		t.Fatalf("the command printed %q; the earlier holder's token was %d", waiting.out.String(), held.GetCreateRevision())
	}

	// Without a command: it prints the key and holds the lock until
	// interrupted.
	holding := startKvctl(t, "", "--endpoints", ep, "lock", "job")
	waitUntil(t, func() bool { return strings.HasPrefix(holding.out.String(), "job/") }, func() string { return "lock printed " + holding.out.String() })
	lockKey := strings.TrimSpace(holding.out.String())
	if resp, err := c.Get(ctx, lockKey); err != nil || len(resp.GetKvs()) != 1 {
		t.Fatalf("the printed lock key %q: %v, %v", lockKey, resp, err)
	}
	if err := holding.stop(); err != nil {
		t.Fatalf("interrupted lock: %v", err)
	}
	if resp, err := c.Get(ctx, "job/", client.WithPrefix()); err != nil || len(resp.GetKvs()) != 0 {
		t.Fatalf("the lock was not released when interrupted: %v, %v", resp, err)
	}
}

func TestElectCommand(t *testing.T) {
	ep := startCluster(t)
	c := sdk(t, ep)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	listen := startKvctl(t, "", "--endpoints", ep, "elect", "--listen", "sched")
	first := startKvctl(t, "", "--endpoints", ep, "elect", "sched", "node-a")
	waitUntil(t, func() bool { return strings.HasSuffix(first.out.String(), "\nnode-a\n") }, func() string { return "elect printed " + first.out.String() })
	firstKey := strings.SplitN(first.out.String(), "\n", 2)[0]
	if !strings.HasPrefix(firstKey, "sched/") {
		t.Fatalf("elect printed %q", first.out.String())
	}
	second := startKvctl(t, "", "--endpoints", ep, "elect", "sched", "node-b")
	waitUntil(t, func() bool {
		resp, err := c.Get(ctx, "sched/", client.WithPrefix(), client.WithCountOnly())
		return err == nil && resp.GetCount() == 2
	}, func() string { return "the second candidate did not queue" })
	if out := second.out.String(); out != "" {
		t.Fatalf("the second candidate leads while the first does: %q", out)
	}
	// The first resigns when interrupted; the second leads.
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, func() bool { return strings.HasSuffix(second.out.String(), "\nnode-b\n") }, func() string { return "second elect printed " + second.out.String() })
	secondKey := strings.SplitN(second.out.String(), "\n", 2)[0]
	listen.waitOutput(t, firstKey+"\nnode-a\n"+secondKey+"\nnode-b\n")
	leader, err := c.Leader(ctx, "sched")
	if err != nil || string(leader.GetKv().GetKey()) != secondKey {
		t.Fatalf("leader: %v, %v", leader, err)
	}
	if err := second.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Leader(ctx, "sched"); !errors.Is(err, client.ErrElectionNoLeader) {
		t.Fatalf("leader after both resigned: %v", err)
	}
	if err := listen.stop(); err != nil {
		t.Fatal(err)
	}
}
