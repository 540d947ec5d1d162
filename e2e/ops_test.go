package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/kvd-io/kvd/client"
)

// The runbooks of docs/operations.md, each run with real processes, kvctl and
// kvdutil.

type member struct {
	Name      string `json:"name"`
	IsLearner bool   `json:"is_learner"`
	IsLeader  bool   `json:"is_leader"`
	Healthy   bool   `json:"healthy"`
}

func (c *cluster) memberList(eps string) ([]member, error) {
	out, err := c.kvctl("", eps, "member", "list", "-w", "json")
	if err != nil {
		return nil, err
	}
	var doc struct {
		Members []member `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return nil, fmt.Errorf("decode %q: %w", out, err)
	}
	return doc.Members, nil
}

// putKeys loads test data through the Go client (one kvctl process per key
// would cost more than the runbook under test); the runbooks' own steps use
// kvctl.
func putKeys(t *testing.T, c *cluster, eps, prefix string, n int) {
	t.Helper()
	cli, err := client.New(client.Config{Endpoints: strings.Split(eps, ","), DialTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for i := 0; i < n; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		_, err := cli.Put(ctx, fmt.Sprintf("%s%03d", prefix, i), fmt.Sprintf("value-%d", i))
		cancel()
		if err != nil {
			t.Fatal(err)
		}
	}
}

// countOn counts keys with a prefix on one node, linearizably.
func countOn(c *cluster, nd *node, prefix string) (int, error) {
	out, err := c.kvctl("", nd.clientAddr, "get", prefix, "--prefix", "--count-only")
	if err != nil {
		return 0, err
	}
	var n int
	_, err = fmt.Sscanf(strings.TrimSpace(out), "%d", &n)
	return n, err
}

func waitCount(t *testing.T, c *cluster, nd *node, prefix string, want int) {
	t.Helper()
	eventually(t, 30*time.Second, func() error {
		n, err := countOn(c, nd, prefix)
		if err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("%s has %d keys under %s, want %d", nd.name, n, prefix, want)
		}
		return nil
	})
}

func waitExit(t *testing.T, nd *node, within time.Duration) int {
	t.Helper()
	select {
	case <-nd.exited:
	case <-time.After(within):
		t.Fatalf("%s still running after %s", nd.name, within)
	}
	code := nd.cmd.ProcessState.ExitCode()
	nd.cmd = nil
	return code
}

func TestRunbookAddLearnerThenPromote(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := newCluster(t, 3)
	c.waitLeader(30*time.Second, c.nodes[:3])
	eps := endpointsOf(c.nodes[:3]...)
	putKeys(t, c, eps, "app/", 50)

	n4 := c.addNode("n4", c.nodes[:3], "--learner")
	c.start(n4)
	waitCount(t, c, n4, "app/", 50)
	ml, err := c.memberList(eps)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, m := range ml {
		if m.Name == "n4" {
			found = m.IsLearner
		}
	}
	if !found {
		t.Fatalf("n4 not listed as a learner: %+v", ml)
	}
	eventually(t, 30*time.Second, func() error {
		_, err := c.kvctl("", eps, "member", "promote", "n4")
		return err
	})
	ml, _ = c.memberList(eps)
	for _, m := range ml {
		if m.IsLearner {
			t.Fatalf("%s still a learner after promotion", m.Name)
		}
	}
	if len(ml) != 4 {
		t.Fatalf("members: %+v", ml)
	}
	putKeys(t, c, endpointsOf(n4), "after/", 3)
}

func TestRunbookRemoveFollowerThenLeader(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := newCluster(t, 3)
	leader := c.waitLeader(30*time.Second, c.nodes)
	putKeys(t, c, c.endpoints(), "k/", 5)
	eventually(t, 30*time.Second, func() error { // every member healthy first
		ml, err := c.memberList(c.endpoints())
		if err != nil {
			return err
		}
		for _, m := range ml {
			if !m.Healthy {
				return fmt.Errorf("%s not healthy yet", m.Name)
			}
		}
		return nil
	})
	var follower *node
	for _, nd := range c.nodes {
		if nd != leader {
			follower = nd
		}
	}
	if _, err := c.kvctl("", leader.clientAddr, "member", "remove", follower.name); err != nil {
		t.Fatal(err)
	}
	if code := waitExit(t, follower, 20*time.Second); code == 0 {
		t.Fatalf("removed member exited with 0")
	}
	logb, _ := os.ReadFile(follower.logPath)
	if !strings.Contains(string(logb), "removed from the cluster") {
		t.Fatalf("removed member did not say why it stopped")
	}
	// The removed member refuses to start on its old data.
	c.start(follower)
	if code := waitExit(t, follower, 20*time.Second); code == 0 {
		t.Fatal("a removed member started again on its old data")
	}

	var rest []*node
	for _, nd := range c.nodes {
		if nd != follower {
			rest = append(rest, nd)
		}
	}
	if _, err := c.kvctl("", endpointsOf(rest...), "member", "remove", leader.name); err != nil {
		t.Fatal(err)
	}
	waitExit(t, leader, 20*time.Second)
	var last *node
	for _, nd := range rest {
		if nd != leader {
			last = nd
		}
	}
	c.waitLeader(30*time.Second, []*node{last})
	waitCount(t, c, last, "k/", 5)
	putKeys(t, c, last.clientAddr, "after/", 1)
}

func TestRunbookReplaceDeadMember(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := newCluster(t, 3)
	c.waitLeader(30*time.Second, c.nodes)
	putKeys(t, c, c.endpoints(), "k/", 20)
	dead := c.nodes[2]
	c.kill(dead) // the machine is gone for good
	alive := c.nodes[:2]
	eps := endpointsOf(alive...)
	if _, err := c.kvctl("", eps, "member", "remove", dead.name); err != nil {
		t.Fatal(err)
	}
	n4 := c.addNode("n4", alive)
	c.start(n4)
	waitCount(t, c, n4, "k/", 20)
	ml, err := c.memberList(eps)
	if err != nil {
		t.Fatal(err)
	}
	if len(ml) != 3 {
		t.Fatalf("members after replacement: %+v", ml)
	}
	// The replacement votes: with n1 down, n2 and n4 still make a quorum.
	c.kill(c.nodes[0])
	c.waitLeader(30*time.Second, []*node{c.nodes[1], n4})
	putKeys(t, c, endpointsOf(c.nodes[1], n4), "after/", 2)
}

func TestRunbookBackupAndRestoreIntoNewCluster(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := newCluster(t, 3)
	leader := c.waitLeader(30*time.Second, c.nodes)
	putKeys(t, c, c.endpoints(), "data/", 40)
	if _, err := c.kvctl("", c.endpoints(), "del", "data/000"); err != nil {
		t.Fatal(err)
	}
	before, err := c.kvctl("", c.endpoints(), "get", "data/", "--prefix", "-w", "json")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(t.TempDir(), "backup.db")
	saved, err := c.kvctl("", leader.clientAddr, "snapshot", "save", file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(saved, "Snapshot saved at "+file+" (") || !strings.Contains(saved, "kvdutil snapshot status "+file) {
		t.Fatalf("snapshot save printed %q", saved)
	}
	status, err := c.kvdutil("snapshot", "status", file, "-w", "json")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(status, `"total_keys": 39`) && !strings.Contains(status, `"total_keys":39`) {
		t.Fatalf("snapshot status: %s", status)
	}
	// The old cluster is gone; a new one is built from the file.
	for _, nd := range c.nodes {
		c.kill(nd)
	}
	fresh := newCluster(t, 3)
	var initial []string
	for _, nd := range fresh.nodes {
		fresh.kill(nd) // newCluster started them; restore needs empty, stopped members
		initial = append(initial, nd.name+"="+nd.raftAddr)
	}
	for _, nd := range fresh.nodes {
		os.RemoveAll(nd.dir)
		if _, err := fresh.kvdutil("snapshot", "restore", file, "--name", nd.name,
			"--data-dir", nd.dir, "--initial-cluster", strings.Join(initial, ",")); err != nil {
			t.Fatal(err)
		}
		fresh.start(nd)
	}
	fresh.waitLeader(30*time.Second, fresh.nodes)
	for _, nd := range fresh.nodes {
		waitCount(t, fresh, nd, "data/", 39)
	}
	after, err := fresh.kvctl("", fresh.endpoints(), "get", "data/", "--prefix", "-w", "json")
	if err != nil {
		t.Fatal(err)
	}
	if kvsOf(t, before) != kvsOf(t, after) {
		t.Fatalf("restored data differs:\nbefore %s\nafter  %s", kvsOf(t, before), kvsOf(t, after))
	}
	putKeys(t, fresh, fresh.endpoints(), "new/", 1)
	// A damaged backup is refused.
	b, _ := os.ReadFile(file)
	b[len(b)/2] ^= 0xff
	bad := filepath.Join(t.TempDir(), "bad.db")
	os.WriteFile(bad, b, 0o600)
	if _, err := fresh.kvdutil("snapshot", "restore", bad, "--name", "x",
		"--data-dir", filepath.Join(t.TempDir(), "x"), "--initial-cluster", "x=127.0.0.1:1"); err == nil {
		t.Fatal("restore accepted a corrupt backup")
	}
	// kvctl keeps etcdctl's command names but sends the user to kvdutil.
	out, err := exec.Command(fresh.kvctlBin, "snapshot", "restore", file, "--name", "n1",
		"--data-dir", filepath.Join(t.TempDir(), "n1"), "--initial-cluster", "n1=127.0.0.1:1").CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(out), "use `kvdutil snapshot restore "+file+" --name n1") {
		t.Fatalf("kvctl snapshot restore: %v, %s; want exit status 1 and the kvdutil command", err, out)
	}
}

// kvsOf extracts the key-values (with their revisions) from `get -w json`.
func kvsOf(t *testing.T, out string) string {
	t.Helper()
	var doc struct {
		Kvs []json.RawMessage `json:"kvs"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	b, _ := json.Marshal(doc.Kvs)
	return string(b)
}

func TestRunbookQuorumLossForceNewCluster(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := newCluster(t, 3)
	c.waitLeader(30*time.Second, c.nodes)
	putKeys(t, c, c.endpoints(), "k/", 20)
	survivor := c.nodes[0]
	waitCount(t, c, survivor, "k/", 20)
	c.kill(c.nodes[1])
	c.kill(c.nodes[2])
	if _, err := c.kvctl("", survivor.clientAddr, "--command-timeout", "3s", "put", "x", "y"); err == nil {
		t.Fatal("write succeeded without quorum")
	}
	// Stop the survivor and bring it back as a new single-member cluster.
	if err := survivor.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExit(t, survivor, 30*time.Second)
	survivor.args = append(survivor.args, "--force-new-cluster")
	c.start(survivor)
	c.waitLeader(30*time.Second, []*node{survivor})
	waitCount(t, c, survivor, "k/", 20)
	logb, _ := os.ReadFile(survivor.logPath)
	if !strings.Contains(string(logb), "FORCE NEW CLUSTER") {
		t.Fatal("force-new-cluster was silent")
	}
	putKeys(t, c, survivor.clientAddr, "after/", 2)
	// Replacement machines join with empty disks.
	n4 := c.addNode("n4", []*node{survivor})
	c.start(n4)
	waitCount(t, c, n4, "k/", 20)
	n5 := c.addNode("n5", []*node{survivor, n4})
	c.start(n5)
	waitCount(t, c, n5, "after/", 2)
	ml, err := c.memberList(survivor.clientAddr)
	if err != nil || len(ml) != 3 {
		t.Fatalf("members after recovery: %+v %v", ml, err)
	}
}

func TestCheckHashFindsCorruptMember(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("starts real processes")
	}
	c := newCluster(t, 3)
	c.waitLeader(30*time.Second, c.nodes)
	putKeys(t, c, c.endpoints(), "k/", 10)
	if out, err := c.kvctl("", c.endpoints(), "check", "hash"); err != nil {
		t.Fatalf("check hash on a healthy cluster: %v\n%s", err, out)
	}
	victim := c.nodes[1]
	if err := victim.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waitExit(t, victim, 30*time.Second)
	corruptOneValue(t, filepath.Join(victim.dir, "state.db"))
	c.start(victim)
	waitReady(t, victim)
	out, err := c.kvctl("", c.endpoints(), "check", "hash")
	if err == nil {
		t.Fatalf("check hash missed the corrupt member:\n%s", out)
	}
	if !strings.Contains(err.Error(), victim.name) && !strings.Contains(out, victim.name) {
		t.Fatalf("check hash did not name %s: %v\n%s", victim.name, err, out)
	}
}

// corruptOneValue flips a byte inside one stored key-value version, as a
// failing disk might, leaving the file a valid database.
func corruptOneValue(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("revisions"))
		if b == nil {
			return fmt.Errorf("no revisions bucket")
		}
		k, v := b.Cursor().First()
		if k == nil {
			return fmt.Errorf("empty history")
		}
		bad := append([]byte(nil), v...)
		bad[len(bad)-1] ^= 0x01
		return b.Put(append([]byte(nil), k...), bad)
	})
	if err != nil {
		t.Fatal(err)
	}
}
