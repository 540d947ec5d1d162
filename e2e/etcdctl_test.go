package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestEtcdctl runs etcd's own CLI, unchanged, against a three-member kvd:
// every command of issue 19's list, each with its output checked against
// what etcdctl prints for etcd (KVD_E2E_ETCD runs the same test against
// real etcd). The subtests share the cluster and run in order; each uses
// its own keys, and those that change the whole cluster (compaction, auth)
// come last.
func TestEtcdctl(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	t.Parallel()
	ctl := &etcdctl{bin: etcdctlBinary(t)}
	ec := newEtcdAPICluster(t)
	ctl.endpoints = ec.endpoints
	ec.waitServing(t, ctl)
	t.Logf("etcdctl %s against %s at %v", etcdctlVersion(t, ctl), ec.kind, ec.endpoints)

	t.Run("put", func(t *testing.T) { testEtcdctlPut(t, ctl) })
	t.Run("get", func(t *testing.T) { testEtcdctlGet(t, ctl) })
	t.Run("del", func(t *testing.T) { testEtcdctlDel(t, ctl) })
	t.Run("txn", func(t *testing.T) { testEtcdctlTxn(t, ctl) })
	t.Run("watch", func(t *testing.T) { testEtcdctlWatch(t, ctl) })
	t.Run("lease", func(t *testing.T) { testEtcdctlLease(t, ctl) })
	t.Run("lock", func(t *testing.T) { testEtcdctlLock(t, ctl) })
	t.Run("elect", func(t *testing.T) { testEtcdctlElect(t, ctl) })
	t.Run("endpoint", func(t *testing.T) { testEtcdctlEndpoint(t, ctl, ec) })
	t.Run("member", func(t *testing.T) { testEtcdctlMember(t, ctl, ec) })
	t.Run("move-leader", func(t *testing.T) { testEtcdctlMoveLeader(t, ctl, ec) })
	t.Run("alarm", func(t *testing.T) { testEtcdctlAlarm(t, ctl) })
	t.Run("snapshot", func(t *testing.T) { testEtcdctlSnapshot(t, ctl, ec) })
	t.Run("compaction", func(t *testing.T) { testEtcdctlCompaction(t, ctl) })
	t.Run("defrag", func(t *testing.T) { testEtcdctlDefrag(t, ctl, ec) })
	t.Run("auth", func(t *testing.T) { testEtcdctlAuth(t, ctl) })
}

func etcdctlVersion(t *testing.T, ctl *etcdctl) string {
	t.Helper()
	out := ctl.ok(t, "version")
	first, _, _ := strings.Cut(out, "\n")
	return strings.TrimPrefix(first, "etcdctl version: ")
}

// The shapes of etcdctl's -w json output that the tests read: etcd's
// response messages marshalled by encoding/json (bytes as base64).
type (
	jsonHeader struct {
		ClusterID uint64 `json:"cluster_id"`
		MemberID  uint64 `json:"member_id"`
		Revision  int64  `json:"revision"`
		RaftTerm  uint64 `json:"raft_term"`
	}
	jsonKV struct {
		Key            []byte `json:"key"`
		CreateRevision int64  `json:"create_revision"`
		ModRevision    int64  `json:"mod_revision"`
		Version        int64  `json:"version"`
		Value          []byte `json:"value"`
		Lease          int64  `json:"lease"`
	}
	jsonRange struct {
		Header jsonHeader `json:"header"`
		Kvs    []jsonKV   `json:"kvs"`
		More   bool       `json:"more"`
		Count  int64      `json:"count"`
	}
)

func decodeJSON(t *testing.T, out string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(out), v); err != nil {
		t.Fatalf("decode etcdctl's JSON %q: %v", out, err)
	}
}

// putRev puts key=value and returns the revision of the write.
func putRev(t *testing.T, ctl *etcdctl, key, value string) int64 {
	t.Helper()
	var resp struct {
		Header jsonHeader `json:"header"`
	}
	decodeJSON(t, ctl.ok(t, "put", key, value, "-w", "json"), &resp)
	if resp.Header.Revision <= 0 {
		t.Fatalf("put %s: header revision %d", key, resp.Header.Revision)
	}
	return resp.Header.Revision
}

// kvLines is etcdctl's simple output of key-value pairs: key, value, key,
// value, ... one per line.
func kvLines(pairs ...string) string {
	if len(pairs) == 0 {
		return ""
	}
	return strings.Join(pairs, "\n") + "\n"
}

func testEtcdctlPut(t *testing.T, ctl *etcdctl) {
	ctl.want(t, "OK\n", "put", "/put/a", "v1")
	ctl.want(t, "OK\n/put/a\nv1\n", "put", "/put/a", "v2", "--prev-kv")
	ctl.want(t, kvLines("/put/a", "v2"), "get", "/put/a")
	// An empty value is a value.
	ctl.want(t, "OK\n", "put", "/put/empty", "")
	ctl.want(t, kvLines("/put/empty", ""), "get", "/put/empty")
	// --ignore-value keeps the value and bumps the version.
	ctl.want(t, "OK\n", "put", "/put/a", "--ignore-value")
	var r jsonRange
	decodeJSON(t, ctl.ok(t, "get", "/put/a", "-w", "json"), &r)
	if len(r.Kvs) != 1 || string(r.Kvs[0].Value) != "v2" || r.Kvs[0].Version != 3 {
		t.Fatalf("after put --ignore-value: %+v, want value v2 at version 3", r.Kvs)
	}
	// --ignore-value of a key that does not exist: etcd's error.
	ctl.fails(t, "etcdserver: key not found", "put", "/put/none", "--ignore-value")
}

func testEtcdctlGet(t *testing.T, ctl *etcdctl) {
	// Values that sort in another order than their keys.
	vals := map[string]string{"a": "delta", "b": "alpha", "c": "echo", "d": "bravo", "e": "charlie"}
	for _, k := range []string{"a", "b", "c", "d", "e"} {
		putRev(t, ctl, "/get/"+k, vals[k])
	}
	before := putRev(t, ctl, "/get/c", "zulu") - 1 // /get/c was "echo" at this revision

	ctl.want(t, kvLines("/get/a", "delta"), "get", "/get/a")
	ctl.want(t, "", "get", "/get/none")
	all := kvLines("/get/a", "delta", "/get/b", "alpha", "/get/c", "zulu", "/get/d", "bravo", "/get/e", "charlie")
	ctl.want(t, all, "get", "/get/", "--prefix")
	// A range [key, range_end).
	ctl.want(t, kvLines("/get/b", "alpha", "/get/c", "zulu"), "get", "/get/b", "/get/d")
	// --from-key reaches to the end of the key space; --limit keeps it to
	// this test's keys whatever other subtests wrote after them.
	ctl.want(t, kvLines("/get/c", "zulu", "/get/d", "bravo", "/get/e", "charlie"), "get", "/get/c", "--from-key", "--limit", "3")
	ctl.want(t, kvLines("/get/a", "delta", "/get/b", "alpha"), "get", "/get/", "--prefix", "--limit", "2")
	ctl.want(t, kvLines("/get/c", "echo"), "get", "/get/c", "--rev", strconv.FormatInt(before, 10))
	ctl.want(t, "/get/a\n\n/get/b\n\n/get/c\n\n/get/d\n\n/get/e\n\n", "get", "/get/", "--prefix", "--keys-only")
	ctl.want(t, "delta\nalpha\nzulu\nbravo\ncharlie\n", "get", "/get/", "--prefix", "--print-value-only")
	ctl.want(t, "alpha\nbravo\ncharlie\ndelta\nzulu\n", "get", "/get/", "--prefix", "--print-value-only", "--sort-by", "VALUE", "--order", "ASCEND")
	ctl.want(t, kvLines("/get/e", "charlie", "/get/d", "bravo", "/get/c", "zulu", "/get/b", "alpha", "/get/a", "delta"), "get", "/get/", "--prefix", "--sort-by", "KEY", "--order", "DESCEND")
	ctl.want(t, "zulu\ncharlie\nbravo\nalpha\ndelta\n", "get", "/get/", "--prefix", "--print-value-only", "--sort-by", "MODIFY", "--order", "DESCEND")
	ctl.want(t, "delta\nalpha\nzulu\nbravo\ncharlie\n", "get", "/get/", "--prefix", "--print-value-only", "--sort-by", "CREATE", "--order", "ASCEND")
	ctl.want(t, "zulu\n", "get", "/get/", "--prefix", "--print-value-only", "--sort-by", "VERSION", "--order", "DESCEND", "--limit", "1")
	ctl.want(t, "zulu\n", "get", "/get/", "--prefix", "--print-value-only", "--min-mod-rev", strconv.FormatInt(before+1, 10))
	ctl.want(t, kvLines("/get/a", "delta"), "get", "/get/a", "--consistency", "s")

	// --count-only is for -w fields (etcdctl refuses it with simple).
	fields := ctl.ok(t, "get", "/get/", "--prefix", "--count-only", "-w", "fields")
	if !strings.Contains(fields, `"Count" : 5`) || strings.Contains(fields, `"Key"`) {
		t.Fatalf("get --count-only -w fields printed %q, want a count of 5 and no keys", fields)
	}
	fields = ctl.ok(t, "get", "/get/", "--prefix", "--limit", "1", "-w", "fields")
	for _, want := range []string{`"Key" : "/get/a"`, `"Value" : "delta"`, `"More" : true`, `"Count" : 5`} {
		if !strings.Contains(fields, want) {
			t.Fatalf("get --limit 1 -w fields printed %q, want %s", fields, want)
		}
	}

	var r jsonRange
	decodeJSON(t, ctl.ok(t, "get", "/get/c", "-w", "json"), &r)
	if r.Count != 1 || len(r.Kvs) != 1 {
		t.Fatalf("get -w json: %+v, want one kv", r)
	}
	kv := r.Kvs[0]
	if string(kv.Key) != "/get/c" || string(kv.Value) != "zulu" || kv.Version != 2 || kv.ModRevision != before+1 || kv.CreateRevision >= kv.ModRevision {
		t.Fatalf("get -w json: %+v, want /get/c=zulu, version 2, modified at %d and created before", kv, before+1)
	}
	if r.Header.Revision < kv.ModRevision || r.Header.ClusterID == 0 || r.Header.MemberID == 0 || r.Header.RaftTerm == 0 {
		t.Fatalf("get -w json: header %+v", r.Header)
	}
	decodeJSON(t, ctl.ok(t, "get", "/get/", "--prefix", "--limit", "2", "-w", "json"), &r)
	if !r.More || r.Count != 5 || len(r.Kvs) != 2 {
		t.Fatalf("get --limit 2 -w json: more %v, count %d, %d kvs; want more, 5, 2", r.More, r.Count, len(r.Kvs))
	}
	ctl.fails(t, "etcdserver: mvcc: required revision is a future revision", "get", "/get/a", "--rev", strconv.FormatInt(r.Header.Revision+1000, 10))
}

func testEtcdctlDel(t *testing.T, ctl *etcdctl) {
	for i, k := range []string{"a", "b", "c", "d"} {
		ctl.want(t, "OK\n", "put", "/del/"+k, strconv.Itoa(i+1))
	}
	ctl.want(t, "1\n", "del", "/del/a")
	ctl.want(t, "1\n/del/b\n2\n", "del", "/del/b", "--prev-kv")
	ctl.want(t, "0\n", "del", "/del/none")
	ctl.want(t, "2\n/del/c\n3\n/del/d\n4\n", "del", "/del/", "--prefix", "--prev-kv")
	ctl.want(t, "", "get", "/del/", "--prefix")
	ctl.want(t, "0\n", "del", "/del/", "--prefix")
}

func testEtcdctlTxn(t *testing.T, ctl *etcdctl) {
	ctl.want(t, "OK\n", "put", "/txn/a", "1")
	ctl.want(t, "OK\n", "put", "/txn/b", "2")
	// etcdctl txn reads compares, a blank line, the success requests, a
	// blank line, the failure requests and a blank line from stdin.
	txn := func(stdin string, args ...string) string {
		t.Helper()
		out, err := ctl.run(stdin, append([]string{"txn"}, args...)...)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	got := txn("value(\"/txn/a\") = \"1\"\n\nput /txn/a 11\nget /txn/b\n\nget /txn/a\n\n")
	if want := "SUCCESS\n\nOK\n\n/txn/b\n2\n"; got != want {
		t.Fatalf("txn (compare holds) printed %q, want %q", got, want)
	}
	// Interactive: etcdctl prompts for each part.
	got = txn("value(\"/txn/a\") = \"nope\"\n\nput /txn/a 13\n\nget /txn/a\n\n", "-i")
	if want := "compares:\nsuccess requests (get, put, del):\nfailure requests (get, put, del):\nFAILURE\n\n/txn/a\n11\n"; got != want {
		t.Fatalf("txn -i (compare fails) printed %q, want %q", got, want)
	}
	// Several compares on version, create and mod revision (etcdctl 3.7.3
	// panics parsing a lease compare, so none here).
	got = txn("version(\"/txn/b\") = \"1\"\ncreate(\"/txn/a\") > \"0\"\nmod(\"/txn/a\") > \"0\"\n\ndel /txn/b\nput /txn/c 3\n\n\n")
	if want := "SUCCESS\n\n1\n\nOK\n"; got != want {
		t.Fatalf("txn with four compares printed %q, want %q", got, want)
	}
	got = txn("value(\"/txn/a\") < \"5\"\n\nget /txn/ --prefix\n\n\n", "-w", "json")
	var resp struct {
		Header    jsonHeader `json:"header"`
		Succeeded bool       `json:"succeeded"`
		Responses []struct {
			Response struct {
				ResponseRange *jsonRange `json:"response_range"`
			} `json:"Response"`
		} `json:"responses"`
	}
	decodeJSON(t, got, &resp)
	if !resp.Succeeded || len(resp.Responses) != 1 || resp.Responses[0].Response.ResponseRange == nil {
		t.Fatalf("txn -w json: %s, want success with one range response", got)
	}
	var keys []string
	for _, kv := range resp.Responses[0].Response.ResponseRange.Kvs {
		keys = append(keys, string(kv.Key)+"="+string(kv.Value))
	}
	if !slices.Equal(keys, []string{"/txn/a=11", "/txn/c=3"}) {
		t.Fatalf("txn -w json range: %v", keys)
	}
}

func testEtcdctlWatch(t *testing.T, ctl *etcdctl) {
	first := putRev(t, ctl, "/watch/k", "v1")
	putRev(t, ctl, "/watch/k", "v2")
	putRev(t, ctl, "/watch/other", "x")
	putRev(t, ctl, "/watch/k", "v3")
	ctl.want(t, "1\n", "del", "/watch/k")

	// The history from the first write, each event with its previous value.
	w := ctl.start(t, "watch", "/watch/k", "--rev", strconv.FormatInt(first, 10), "--prev-kv")
	w.expect(30*time.Second,
		"PUT", "/watch/k", "v1",
		"PUT", "/watch/k", "v1", "/watch/k", "v2",
		"PUT", "/watch/k", "v2", "/watch/k", "v3",
		"DELETE", "/watch/k", "v3", "/watch/k", "")
	// Then it follows: a put after the delete has no previous value.
	next := putRev(t, ctl, "/watch/k", "v4")
	w.expect(30*time.Second, "PUT", "/watch/k", "v4")

	// A prefix watch from the next revision sees the writes that follow,
	// not the ones before.
	p := ctl.start(t, "watch", "/watch/", "--prefix", "--rev", strconv.FormatInt(next+1, 10))
	putRev(t, ctl, "/watch/other", "y")
	ctl.want(t, "1\n", "del", "/watch/k")
	p.expect(30*time.Second, "PUT", "/watch/other", "y", "DELETE", "/watch/k", "")
	w.expect(30*time.Second, "DELETE", "/watch/k", "v4", "/watch/k", "")

	// -w json: one response per revision, with its header.
	j := ctl.start(t, "watch", "/watch/other", "--rev", strconv.FormatInt(first, 10), "-w", "json")
	var ev struct {
		Header jsonHeader `json:"Header"`
		Events []struct {
			Type int    `json:"type"`
			Kv   jsonKV `json:"kv"`
		} `json:"Events"`
	}
	decodeJSON(t, j.next(30*time.Second), &ev)
	if len(ev.Events) == 0 || ev.Events[0].Type != 0 || string(ev.Events[0].Kv.Value) != "x" || ev.Header.Revision < ev.Events[0].Kv.ModRevision {
		t.Fatalf("watch -w json: first response %+v, want the PUT of x first", ev)
	}
	for _, l := range []*lines{w, p, j} {
		if err := l.interrupt(30 * time.Second); err != nil && !strings.Contains(err.Error(), "signal") {
			t.Fatalf("%s after SIGINT: %v", l.name(), err)
		}
	}
}

var leaseGranted = regexp.MustCompile(`^lease ([0-9a-f]+) granted with TTL\((\d+)s\)\n$`)

// grantLease runs `lease grant ttl` and returns the lease id (hex) and
// the TTL the server granted.
func grantLease(t *testing.T, ctl *etcdctl, ttl int) (string, int) {
	t.Helper()
	out := ctl.ok(t, "lease", "grant", strconv.Itoa(ttl))
	m := leaseGranted.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("lease grant printed %q", out)
	}
	granted, _ := strconv.Atoi(m[2])
	return m[1], granted
}

func testEtcdctlLease(t *testing.T, ctl *etcdctl) {
	id, ttl := grantLease(t, ctl, 300)
	if ttl != 300 {
		t.Fatalf("lease grant 300 granted TTL %d", ttl)
	}
	ctl.want(t, "OK\n", "put", "/lease/k", "v", "--lease", id)
	ctl.want(t, "OK\n", "put", "/lease/k2", "v", "--lease", id)
	ctl.want(t, fmt.Sprintf("lease %s keepalived with TTL(300)\n", id), "lease", "keep-alive", "--once", id)

	out := ctl.ok(t, "lease", "timetolive", "--keys", id)
	m := regexp.MustCompile(`^lease ` + id + ` granted with TTL\(300s\), remaining\((\d+)s\), attached keys\(\[(.*)\]\)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("lease timetolive --keys printed %q", out)
	}
	if rem, _ := strconv.Atoi(m[1]); rem < 240 || rem > 300 {
		t.Fatalf("lease timetolive: %d s remaining of 300", rem)
	}
	if keys := strings.Fields(m[2]); !slices.Equal(slices.Sorted(slices.Values(keys)), []string{"/lease/k", "/lease/k2"}) {
		t.Fatalf("lease timetolive --keys: attached keys %q", m[2])
	}
	var ttlResp struct {
		ID         int64    `json:"id"`
		TTL        int64    `json:"ttl"`
		GrantedTTL int64    `json:"granted-ttl"`
		Keys       [][]byte `json:"keys"`
	}
	decodeJSON(t, ctl.ok(t, "lease", "timetolive", "--keys", id, "-w", "json"), &ttlResp)
	if idNum, _ := strconv.ParseInt(id, 16, 64); ttlResp.ID != idNum || ttlResp.GrantedTTL != 300 || ttlResp.TTL <= 0 || len(ttlResp.Keys) != 2 {
		t.Fatalf("lease timetolive -w json: %+v", ttlResp)
	}

	list := ctl.ok(t, "lease", "list")
	if !regexp.MustCompile(`^found \d+ leases\n`).MatchString(list) || !slices.Contains(strings.Split(list, "\n"), id) {
		t.Fatalf("lease list printed %q, want lease %s", list, id)
	}
	ctl.want(t, fmt.Sprintf("lease %s revoked\n", id), "lease", "revoke", id)
	ctl.want(t, "", "get", "/lease/", "--prefix")
	ctl.want(t, fmt.Sprintf("lease %s already expired\n", id), "lease", "timetolive", id)
	ctl.fails(t, "etcdserver: requested lease not found", "lease", "revoke", id)
	ctl.fails(t, "etcdserver: requested lease not found", "put", "/lease/k", "v", "--lease", id)
	if list := ctl.ok(t, "lease", "list"); slices.Contains(strings.Split(list, "\n"), id) {
		t.Fatalf("lease list after revoke still has %s: %q", id, list)
	}

	// A short lease expires by itself and takes its key along.
	short, ttl := grantLease(t, ctl, 3)
	ctl.want(t, "OK\n", "put", "/lease/short", "v", "--lease", short)
	eventually(t, time.Duration(ttl)*time.Second+30*time.Second, func() error {
		if out := ctl.ok(t, "get", "/lease/short"); out != "" {
			return fmt.Errorf("key of the %ds lease %s still there: %q", ttl, short, out)
		}
		return nil
	})
	ctl.want(t, fmt.Sprintf("lease %s already expired\n", short), "lease", "timetolive", short)
}

var lockEnv = regexp.MustCompile(`^key=(/lock/\w+/[0-9a-f]+) rev=(\d+)\n$`)

func testEtcdctlLock(t *testing.T, ctl *etcdctl) {
	// With a command: it runs while the lock is held, with the lock's key
	// and revision in its environment, and the lock is released after.
	script := `echo "key=$ETCD_LOCK_KEY rev=$ETCD_LOCK_REV"`
	out := ctl.ok(t, "lock", "/lock/a", "--", "sh", "-c", script)
	m := lockEnv.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("lock -- cmd printed %q", out)
	}
	ctl.want(t, "", "get", m[1]) // released
	firstRev, _ := strconv.ParseInt(m[2], 10, 64)

	// Contention: a holder without a command prints its key and holds the
	// lock until interrupted; a second locker waits until then.
	holder := ctl.start(t, "lock", "/lock/a")
	key := holder.next(30 * time.Second)
	if !strings.HasPrefix(key, "/lock/a/") {
		t.Fatalf("lock printed %q, want the lock's key", key)
	}
	if out := ctl.ok(t, "get", key, "--keys-only"); out != key+"\n\n" {
		t.Fatalf("the holder's key %s: get printed %q", key, out)
	}
	waiter := ctl.start(t, "lock", "/lock/a", "--", "sh", "-c", script)
	waiter.quiet(2 * time.Second)
	if err := holder.interrupt(30 * time.Second); err != nil && !strings.Contains(err.Error(), "signal") {
		t.Fatalf("lock holder after SIGINT: %v", err)
	}
	if err := waiter.exit(30 * time.Second); err != nil {
		t.Fatalf("second locker: %v (printed %q, stderr %s)", err, waiter.seen, waiter.stderr.String())
	}
	if len(waiter.seen) != 1 {
		t.Fatalf("second locker printed %q", waiter.seen)
	}
	m = lockEnv.FindStringSubmatch(waiter.seen[0] + "\n")
	if m == nil {
		t.Fatalf("second locker printed %q", waiter.seen)
	}
	if rev, _ := strconv.ParseInt(m[2], 10, 64); rev <= firstRev || m[1] == key {
		t.Fatalf("second locker got key %s rev %d; the first had rev %d, the holder key %s", m[1], rev, firstRev, key)
	}

	// The command's failure is etcdctl's failure.
	if _, err := ctl.run("", "lock", "/lock/b", "--", "sh", "-c", "exit 3"); err == nil {
		t.Fatal("lock -- a failing command: etcdctl succeeded")
	}
}

func testEtcdctlElect(t *testing.T, ctl *etcdctl) {
	alice := ctl.start(t, "elect", "/elect/e", "alice")
	aliceKey := alice.next(30 * time.Second)
	if !strings.HasPrefix(aliceKey, "/elect/e/") {
		t.Fatalf("elect printed %q, want the leader key", aliceKey)
	}
	alice.expect(30*time.Second, "alice")

	listener := ctl.start(t, "elect", "--listen", "/elect/e")
	listener.expect(30*time.Second, aliceKey, "alice")

	bob := ctl.start(t, "elect", "/elect/e", "bob")
	bob.quiet(2 * time.Second)
	if err := alice.interrupt(30 * time.Second); err != nil && !strings.Contains(err.Error(), "signal") {
		t.Fatalf("elect alice after SIGINT: %v", err)
	}
	bobKey := bob.next(30 * time.Second)
	if !strings.HasPrefix(bobKey, "/elect/e/") || bobKey == aliceKey {
		t.Fatalf("bob's elect printed %q (alice's key %s)", bobKey, aliceKey)
	}
	bob.expect(30*time.Second, "bob")
	listener.expect(30*time.Second, bobKey, "bob")
	for _, l := range []*lines{bob, listener} {
		if err := l.interrupt(30 * time.Second); err != nil && !strings.Contains(err.Error(), "signal") {
			t.Fatalf("%s after SIGINT: %v", l.name(), err)
		}
	}
}

// etcdctl's endpoint status -w json.
type endpointStatus struct {
	Endpoint string `json:"Endpoint"`
	Status   struct {
		Header           jsonHeader `json:"header"`
		Version          string     `json:"version"`
		DBSize           int64      `json:"dbSize"`
		Leader           uint64     `json:"leader"`
		RaftIndex        uint64     `json:"raftIndex"`
		RaftTerm         uint64     `json:"raftTerm"`
		RaftAppliedIndex uint64     `json:"raftAppliedIndex"`
		DBSizeInUse      int64      `json:"dbSizeInUse"`
		IsLearner        bool       `json:"isLearner"`
	} `json:"Status"`
}

// atLeastVersion reports whether the semver v (x.y.z, maybe with a suffix)
// is at least major.minor.patch.
func atLeastVersion(v string, want [3]int) bool {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) != 3 {
		return false
	}
	var got [3]int
	for i, p := range parts {
		n, err := strconv.Atoi(strings.FieldsFunc(p, func(r rune) bool { return r == '-' || r == '+' })[0])
		if err != nil {
			return false
		}
		got[i] = n
	}
	return slices.Compare(got[:], want[:]) >= 0
}

func testEtcdctlEndpoint(t *testing.T, ctl *etcdctl, ec *etcdAPICluster) {
	out := ctl.ok(t, "endpoint", "health")
	for _, ep := range ec.endpoints {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(ep) + ` is healthy: successfully committed proposal: took = \S+$`).MatchString(out) {
			t.Fatalf("endpoint health printed %q, want %s healthy", out, ep)
		}
	}
	var health []struct {
		Endpoint string `json:"endpoint"`
		Health   bool   `json:"health"`
		Error    string `json:"error"`
	}
	decodeJSON(t, ctl.ok(t, "endpoint", "health", "-w", "json"), &health)
	if len(health) != len(ec.endpoints) {
		t.Fatalf("endpoint health -w json: %+v", health)
	}
	for _, h := range health {
		if !h.Health || h.Error != "" || !slices.Contains(ec.endpoints, h.Endpoint) {
			t.Fatalf("endpoint health -w json: %+v", health)
		}
	}

	var st []endpointStatus
	decodeJSON(t, ctl.ok(t, "endpoint", "status", "-w", "json"), &st)
	if len(st) != len(ec.endpoints) {
		t.Fatalf("endpoint status -w json: %d entries, want %d", len(st), len(ec.endpoints))
	}
	ids := map[uint64]bool{}
	for _, s := range st {
		ids[s.Status.Header.MemberID] = true
	}
	for _, s := range st {
		// kube-apiserver turns watch-cache features off below 3.5.13.
		if !atLeastVersion(s.Status.Version, [3]int{3, 5, 13}) {
			t.Errorf("endpoint status of %s: version %q, want a semver of at least 3.5.13", s.Endpoint, s.Status.Version)
		}
		if s.Status.Leader == 0 || s.Status.Leader != st[0].Status.Leader || !ids[s.Status.Leader] {
			t.Errorf("endpoint status of %s: leader %x; the members are %v and %s's leader is %x", s.Endpoint, s.Status.Leader, ids, st[0].Endpoint, st[0].Status.Leader)
		}
		if s.Status.DBSize <= 0 || s.Status.DBSizeInUse <= 0 || s.Status.DBSizeInUse > s.Status.DBSize {
			t.Errorf("endpoint status of %s: db size %d, in use %d", s.Endpoint, s.Status.DBSize, s.Status.DBSizeInUse)
		}
		if s.Status.RaftTerm == 0 || s.Status.RaftIndex == 0 || s.Status.RaftAppliedIndex == 0 || s.Status.IsLearner {
			t.Errorf("endpoint status of %s: %+v", s.Endpoint, s.Status)
		}
	}
	if len(ids) != len(ec.endpoints) {
		t.Errorf("endpoint status: member ids %v, want %d distinct", ids, len(ec.endpoints))
	}
	table := ctl.ok(t, "endpoint", "status", "-w", "table")
	for _, want := range []string{"ENDPOINT", "IS LEADER", "true", ec.endpoints[0]} {
		if !strings.Contains(table, want) {
			t.Errorf("endpoint status -w table printed %q, want %q in it", table, want)
		}
	}

	// hashkv: every member has the same history up to a revision.
	rev := putRev(t, ctl, "/hash/k", "v")
	type hashKV struct {
		Endpoint string `json:"Endpoint"`
		HashKV   struct {
			Hash            uint32 `json:"hash"`
			CompactRevision int64  `json:"compact_revision"`
			HashRevision    int64  `json:"hash_revision"`
		} `json:"HashKV"`
	}
	var hashes []hashKV
	eventually(t, 30*time.Second, func() error {
		out, err := ctl.run("", "endpoint", "hashkv", "--rev", strconv.FormatInt(rev, 10), "-w", "json")
		if err != nil {
			return err // a member may not have applied rev yet
		}
		hashes = nil
		if err := json.Unmarshal([]byte(out), &hashes); err != nil {
			return fmt.Errorf("decode %q: %w", out, err)
		}
		return nil
	})
	if len(hashes) != len(ec.endpoints) {
		t.Fatalf("endpoint hashkv: %+v", hashes)
	}
	for _, h := range hashes {
		if h.HashKV.Hash == 0 || h.HashKV.Hash != hashes[0].HashKV.Hash || h.HashKV.HashRevision != rev {
			t.Fatalf("endpoint hashkv --rev %d: %+v, want one nonzero hash at that revision", rev, hashes)
		}
	}
	// The hash of a revision does not change with later writes.
	putRev(t, ctl, "/hash/k", "v2")
	out = ctl.ok(t, "endpoint", "hashkv", "--rev", strconv.FormatInt(rev, 10))
	for _, ep := range ec.endpoints {
		if want := fmt.Sprintf("%s, %d, %d\n", ep, hashes[0].HashKV.Hash, rev); !strings.Contains(out, want) {
			t.Fatalf("endpoint hashkv --rev %d printed %q, want the line %q", rev, out, want)
		}
	}
}

func testEtcdctlMember(t *testing.T, ctl *etcdctl, ec *etcdAPICluster) {
	var list struct {
		Header  jsonHeader `json:"header"`
		Members []struct {
			ID         uint64   `json:"ID"`
			Name       string   `json:"name"`
			PeerURLs   []string `json:"peerURLs"`
			ClientURLs []string `json:"clientURLs"`
			IsLearner  bool     `json:"isLearner"`
		} `json:"members"`
	}
	decodeJSON(t, ctl.ok(t, "member", "list", "-w", "json"), &list)
	if len(list.Members) != len(ec.names) {
		t.Fatalf("member list: %+v, want %d members", list.Members, len(ec.names))
	}
	simple := ctl.ok(t, "member", "list")
	for _, m := range list.Members {
		i := slices.Index(ec.names, m.Name)
		if i < 0 || m.ID == 0 || m.IsLearner || len(m.PeerURLs) != 1 || !slices.Equal(m.ClientURLs, []string{"http://" + ec.endpoints[i]}) {
			t.Fatalf("member list: %+v; members %v at %v", m, ec.names, ec.endpoints)
		}
		line := fmt.Sprintf("%x, started, %s, %s, %s, false\n", m.ID, m.Name, m.PeerURLs[0], m.ClientURLs[0])
		if !strings.Contains(simple, line) {
			t.Fatalf("member list printed %q, want the line %q", simple, line)
		}
	}
	// Every member answers with the same three.
	for _, ep := range ec.endpoints {
		if got := ctl.at(ep).ok(t, "member", "list"); len(strings.Split(strings.TrimSpace(got), "\n")) != len(ec.names) {
			t.Fatalf("member list at %s printed %q", ep, got)
		}
	}
}

// statuses returns etcdctl's endpoint status -w json of every endpoint.
func statuses(t *testing.T, ctl *etcdctl) []endpointStatus {
	t.Helper()
	var st []endpointStatus
	decodeJSON(t, ctl.ok(t, "endpoint", "status", "-w", "json"), &st)
	return st
}

func testEtcdctlMoveLeader(t *testing.T, ctl *etcdctl, ec *etcdAPICluster) {
	st := statuses(t, ctl)
	leader, target := st[0].Status.Leader, uint64(0)
	for _, s := range st {
		if id := s.Status.Header.MemberID; id != leader {
			target = id
			break
		}
	}
	if leader == 0 || target == 0 {
		t.Fatalf("endpoint status: no leader and follower in %+v", st)
	}
	// etcdctl finds the leader among the endpoints through Status and asks
	// it to hand over.
	ctl.want(t, fmt.Sprintf("Leadership transferred from %x to %x\n", leader, target), "move-leader", fmt.Sprintf("%x", target))
	eventually(t, 30*time.Second, func() error {
		for _, s := range statuses(t, ctl) {
			if s.Status.Leader != target {
				return fmt.Errorf("%s: leader %x, want %x", s.Endpoint, s.Status.Leader, target)
			}
		}
		return nil
	})
	ctl.want(t, kvLines("/put/a", "v2"), "get", "/put/a")
	ctl.fails(t, "etcdserver: bad leader transferee", "move-leader", "1234")
	// Only the leader can hand leadership over.
	var follower string
	for i, s := range statuses(t, ctl) {
		if s.Status.Header.MemberID != target {
			follower = ec.endpoints[i]
		}
	}
	ctl.at(follower).fails(t, "no leader endpoint given", "move-leader", fmt.Sprintf("%x", leader))
}

func testEtcdctlAlarm(t *testing.T, ctl *etcdctl) {
	// No alarm is raised: both print nothing and succeed.
	ctl.want(t, "", "alarm", "list")
	ctl.want(t, "", "alarm", "disarm")
	ctl.want(t, "", "alarm", "list", "-w", "simple")
}

func testEtcdctlSnapshot(t *testing.T, ctl *etcdctl, ec *etcdAPICluster) {
	path := filepath.Join(t.TempDir(), "snap.db")
	out := ctl.at(ec.endpoints[0]).ok(t, "snapshot", "save", path)
	if !strings.HasPrefix(out, "Snapshot saved at "+path+"\n") {
		t.Fatalf("snapshot save printed %q", out)
	}
	ctl.fails(t, "snapshot must be requested to one selected node", "snapshot", "save", path+".2")

	// etcd's framing: a bbolt file followed by the SHA-256 of its bytes,
	// which etcdctl and etcdutl check.
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b)%512 != sha256.Size {
		t.Fatalf("snapshot of %d bytes: no SHA-256 trailer after whole 512-byte pages", len(b))
	}
	data, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if got := sha256.Sum256(data); !bytes.Equal(got[:], sum) {
		t.Fatalf("snapshot's trailer %x is not the SHA-256 of its data %x", sum, got)
	}
	if ec.kind == "kvd" {
		// The database inside is kvd's (docs/etcd-compatibility.md,
		// Maintenance): the file is a kvd snapshot, which kvdutil reads.
		status, err := ec.kvd.kvdutil("snapshot", "status", path, "-w", "json")
		if err != nil {
			t.Fatalf("kvdutil snapshot status of etcdctl's snapshot: %v", err)
		}
		var st struct {
			ChecksumOK bool  `json:"checksum_ok"`
			Revision   int64 `json:"revision"`
			TotalKeys  int   `json:"total_keys"`
		}
		if err := json.Unmarshal([]byte(status), &st); err != nil || !st.ChecksumOK || st.Revision == 0 || st.TotalKeys == 0 {
			t.Fatalf("kvdutil snapshot status: %s (%v): want a valid checksum, a revision and keys", status, err)
		}
		return
	}
	db := filepath.Join(t.TempDir(), "db")
	if err := os.WriteFile(db, data, 0o600); err != nil {
		t.Fatal(err)
	}
	bdb, err := bolt.Open(db, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatalf("the snapshot is not a bbolt file: %v", err)
	}
	defer bdb.Close()
	err = bdb.View(func(tx *bolt.Tx) error {
		for _, name := range []string{"key", "meta"} {
			if tx.Bucket([]byte(name)) == nil {
				return fmt.Errorf("no bucket %q", name)
			}
		}
		// etcd's key bucket maps revisions to KeyValue messages: some hold
		// a key this test wrote.
		found := false
		_ = tx.Bucket([]byte("key")).ForEach(func(_, v []byte) error {
			found = found || bytes.Contains(v, []byte("/put/a"))
			return nil
		})
		if !found {
			return fmt.Errorf("bucket key holds no record of /put/a")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("snapshot is not in etcd's format: %v", err)
	}
}

func testEtcdctlCompaction(t *testing.T, ctl *etcdctl) {
	r1 := putRev(t, ctl, "/compact/k", "v1")
	r2 := putRev(t, ctl, "/compact/k", "v2")
	r3 := putRev(t, ctl, "/compact/k", "v3")
	ctl.want(t, fmt.Sprintf("compacted revision %d\n", r2), "compaction", strconv.FormatInt(r2, 10))
	ctl.fails(t, "etcdserver: mvcc: required revision has been compacted", "get", "/compact/k", "--rev", strconv.FormatInt(r1, 10))
	ctl.want(t, kvLines("/compact/k", "v2"), "get", "/compact/k", "--rev", strconv.FormatInt(r2, 10))
	ctl.fails(t, "etcdserver: mvcc: required revision has been compacted", "compaction", strconv.FormatInt(r1, 10))
	ctl.want(t, fmt.Sprintf("compacted revision %d\n", r3), "compaction", "--physical", strconv.FormatInt(r3, 10))
	ctl.want(t, kvLines("/compact/k", "v3"), "get", "/compact/k", "--rev", strconv.FormatInt(r3, 10))
	ctl.fails(t, "etcdserver: mvcc: required revision is a future revision", "compaction", strconv.FormatInt(r3+1000, 10))

	// A watch from a compacted revision is cancelled with etcd's message.
	w := ctl.start(t, "watch", "/compact/k", "--rev", strconv.FormatInt(r1, 10))
	err := w.exit(30 * time.Second)
	if err == nil || !strings.Contains(w.stderr.String(), "required revision has been compacted") {
		t.Fatalf("watch from compacted revision %d: %v, printed %q, stderr %q", r1, err, w.seen, w.stderr.String())
	}
}

func testEtcdctlDefrag(t *testing.T, ctl *etcdctl, ec *etcdAPICluster) {
	check := func(out string) {
		t.Helper()
		for _, ep := range ec.endpoints {
			if !regexp.MustCompile(`(?m)^Finished defragmenting etcd member\[(http://)?` + regexp.QuoteMeta(ep) + `\]`).MatchString(out) {
				t.Fatalf("defrag printed %q, want a line for %s", out, ep)
			}
		}
	}
	check(ctl.ok(t, "defrag"))
	// --cluster finds the members through member list's client URLs.
	check(ctl.at(ec.endpoints[0]).ok(t, "defrag", "--cluster"))
	ctl.want(t, kvLines("/get/a", "delta"), "get", "/get/a")
}

func testEtcdctlAuth(t *testing.T, ctl *etcdctl) {
	root := ctl.as("root:rootpw")
	ctl.want(t, "User root created\n", "user", "add", "root", "--new-user-password", "rootpw")
	ctl.want(t, "Role app created\n", "role", "add", "app")
	ctl.want(t, "Role app updated\n", "role", "grant-permission", "app", "readwrite", "/app/", "--prefix")
	ctl.want(t, "Role app updated\n", "role", "grant-permission", "app", "read", "/shared")
	ctl.want(t, "User alice created\n", "user", "add", "alice", "--new-user-password", "alicepw")
	ctl.want(t, "Role app is granted to user alice\n", "user", "grant-role", "alice", "app")
	ctl.want(t, "User: alice\nRoles: app\n", "user", "get", "alice")
	ctl.want(t, "app\n", "role", "list")
	ctl.want(t, "OK\n", "put", "/shared", "s")
	// etcdctl grants root the root role itself when enabling auth.
	ctl.want(t, "Authentication Enabled\n", "auth", "enable")
	defer func() {
		if t.Failed() {
			_, _ = root.run("", "auth", "disable")
		}
	}()

	alice := ctl.as("alice:alicepw")
	alice.want(t, "OK\n", "put", "/app/x", "1")
	alice.want(t, kvLines("/app/x", "1"), "get", "/app/", "--prefix")
	alice.want(t, kvLines("/shared", "s"), "get", "/shared")
	alice.fails(t, "etcdserver: permission denied", "get", "/other")
	alice.fails(t, "etcdserver: permission denied", "put", "/shared", "t")
	alice.fails(t, "etcdserver: permission denied", "user", "list")
	ctl.fails(t, "etcdserver: user name is empty", "get", "/app/x")
	ctl.as("alice:wrong").fails(t, "etcdserver: authentication failed, invalid user ID or password", "get", "/app/x")

	root.want(t, "alice\nroot\n", "user", "list")
	root.want(t, "app\nroot\n", "role", "list")
	root.want(t, "Role app\nKV Read:\n\t[/app/, /app0) (prefix /app/)\n\t/shared\nKV Write:\n\t[/app/, /app0) (prefix /app/)\n", "role", "get", "app")
	status := root.ok(t, "auth", "status")
	if !regexp.MustCompile(`^Authentication Status: true\nAuthRevision: \d+\n$`).MatchString(status) {
		t.Fatalf("auth status printed %q", status)
	}
	root.want(t, "Role app is revoked from user alice\n", "user", "revoke-role", "alice", "app")
	alice.fails(t, "etcdserver: permission denied", "get", "/app/x")
	root.want(t, "Authentication Disabled\n", "auth", "disable")
	ctl.want(t, kvLines("/app/x", "1"), "get", "/app/x")
	if status := ctl.ok(t, "auth", "status"); !strings.HasPrefix(status, "Authentication Status: false\n") {
		t.Fatalf("auth status after disable printed %q", status)
	}
}
