package main

import (
	"bytes"
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"
)

// runKvctl runs kvctl in-process with the given environment and stdin and
// returns what it wrote.
func runKvctl(t *testing.T, env map[string]string, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cmd := newRootCmdWithEnv(strings.NewReader(stdin), &out, &errOut, lookup)
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// mustRun runs kvctl against endpoint and fails the test on error.
func mustRun(t *testing.T, endpoint, stdin string, args ...string) string {
	t.Helper()
	out, errOut, err := runKvctl(t, nil, stdin, append([]string{"--endpoints", endpoint}, args...)...)
	if err != nil {
		t.Fatalf("kvctl %q: %v (stderr %q)", args, err, errOut)
	}
	return out
}

func TestKVCommands(t *testing.T) {
	f := newFakeKVD("n1", 0xabc)
	ep := serveFake(t, f)
	for _, kv := range [][2]string{{"a/1", "one"}, {"a/2", "two"}, {"a/3", "three"}, {"b", "bee"}} {
		if out := mustRun(t, ep, "", "put", kv[0], kv[1]); out != "OK\n" {
			t.Fatalf("put printed %q, want OK", out)
		}
	}
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"get one", []string{"get", "b"}, "b\nbee\n"},
		{"get missing", []string{"get", "zzz"}, ""},
		{"get prefix", []string{"get", "a/", "--prefix"}, "a/1\none\na/2\ntwo\na/3\nthree\n"},
		{"get range", []string{"get", "a/2", "b"}, "a/2\ntwo\na/3\nthree\n"},
		{"get from key", []string{"get", "a/3", "--from-key"}, "a/3\nthree\nb\nbee\n"},
		{"get everything", []string{"get", "", "--prefix"}, "a/1\none\na/2\ntwo\na/3\nthree\nb\nbee\n"},
		{"get limit", []string{"get", "a/", "--prefix", "--limit", "1"}, "a/1\none\n"},
		{"get value only", []string{"get", "a/", "--prefix", "--print-value-only"}, "one\ntwo\nthree\n"},
		{"get keys only", []string{"get", "a/", "--prefix", "--keys-only"}, "a/1\n\na/2\n\na/3\n\n"},
		{"get count only", []string{"get", "a/", "--prefix", "--count-only"}, "3\n"},
		{"put prev kv", []string{"put", "b", "bee2", "--prev-kv"}, "OK\nb\nbee\n"},
		{"del prev kv", []string{"del", "a/3", "--prev-kv"}, "1\na/3\nthree\n"},
		{"del prefix", []string{"del", "a/", "--prefix"}, "2\n"},
		{"del missing", []string{"del", "a/1"}, "0\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := mustRun(t, ep, "", tt.args...); got != tt.want {
				t.Errorf("kvctl %q printed %q, want %q", tt.args, got, tt.want)
			}
		})
	}
}

func TestGetJSONAndTable(t *testing.T) {
	f := newFakeKVD("n1", 0xabc)
	ep := serveFake(t, f)
	mustRun(t, ep, "", "put", "k1", "v1")
	mustRun(t, ep, "", "put", "k2", "v2")

	var got struct {
		Header struct {
			ClusterID uint64 `json:"cluster_id"`
			MemberID  uint64 `json:"member_id"`
			Revision  int64  `json:"revision"`
			RaftTerm  uint64 `json:"raft_term"`
		} `json:"header"`
		KVs []struct {
			Key            []byte `json:"key"`
			Value          []byte `json:"value"`
			CreateRevision int64  `json:"create_revision"`
			Version        int64  `json:"version"`
		} `json:"kvs"`
		Count int64 `json:"count"`
		More  bool  `json:"more"`
	}
	out := mustRun(t, ep, "", "-w", "json", "get", "k", "--prefix", "--limit", "1")
	if !strings.Contains(out, `"key":"azE="`) {
		t.Errorf("json output %q does not hold the base64 key", out)
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	if got.Header.MemberID != 0xabc || got.Header.ClusterID != 100 || got.Header.Revision != 3 || got.Header.RaftTerm != 3 {
		t.Errorf("header = %+v", got.Header)
	}
	if len(got.KVs) != 1 || string(got.KVs[0].Key) != "k1" || string(got.KVs[0].Value) != "v1" || got.Count != 2 || !got.More {
		t.Errorf("json = %+v", got)
	}

	table := mustRun(t, ep, "", "-w", "table", "get", "k", "--prefix")
	for _, want := range []string{"| KEY | VALUE |", "| k1  | v1    |", "| k2  | v2    |"} {
		if !strings.Contains(table, want) {
			t.Errorf("table output lacks %q:\n%s", want, table)
		}
	}
}

func TestConsistencyFlag(t *testing.T) {
	f := newFakeKVD("n1", 1)
	ep := serveFake(t, f)
	for _, tt := range []struct {
		consistency string
		want        bool
	}{{"l", false}, {"s", true}} {
		mustRun(t, ep, "", "--consistency", tt.consistency, "get", "k")
		f.mu.Lock()
		got := f.lastRange.GetSerializable()
		f.mu.Unlock()
		if got != tt.want {
			t.Errorf("--consistency %s: serializable = %v, want %v", tt.consistency, got, tt.want)
		}
	}
}

func TestTxnCommand(t *testing.T) {
	f := newFakeKVD("n1", 1)
	ep := serveFake(t, f)
	mustRun(t, ep, "", "put", "k", "old")

	swap := "value(\"k\") = \"old\"\n\nput k \"new value\"\nget k\n\nget k\n"
	if got, want := mustRun(t, ep, swap, "txn"), "SUCCESS\n\nOK\n\nk\nnew value\n"; got != want {
		t.Errorf("first txn printed %q, want %q", got, want)
	}
	if got, want := mustRun(t, ep, swap, "txn"), "FAILURE\n\nk\nnew value\n"; got != want {
		t.Errorf("second txn printed %q, want %q", got, want)
	}
	counted := "ver(\"k\") > 0\n\nget k --count-only\ndel k --prev-kv\n"
	if got, want := mustRun(t, ep, counted, "txn"), "SUCCESS\n\n1\n\n1\nk\nnew value\n"; got != want {
		t.Errorf("third txn printed %q, want %q", got, want)
	}

	out := mustRun(t, ep, "\nput x y\n", "-w", "json", "txn")
	var got struct {
		Succeeded bool `json:"succeeded"`
		Responses []struct {
			Put *struct{} `json:"response_put"`
		} `json:"responses"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	if !got.Succeeded || len(got.Responses) != 1 || got.Responses[0].Put == nil {
		t.Errorf("json txn = %s", out)
	}

	_, _, err := runKvctl(t, nil, "value(\"k\") = \"v\"\n\nput k\n", "--endpoints", ep, "txn")
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Errorf("bad txn error = %v, want it to name line 3", err)
	}
}

func TestMemberList(t *testing.T) {
	ep := serveFake(t, newFakeKVD("n1", 0xabc))
	want := regexp.MustCompile(`^abc, n1, 127\.0\.0\.1:7380, 127\.0\.0\.1:7379, false, true, true, 0\.\ds ago\n` +
		`beef, n2, 127\.0\.0\.1:7390, , true, false, false, never\n$`)
	if got := mustRun(t, ep, "", "member", "list"); !want.MatchString(got) {
		t.Errorf("member list printed %q, want it to match %s", got, want)
	}
	out := mustRun(t, ep, "", "member", "list", "-w", "json")
	var got struct {
		Members []jsonMember `json:"members"`
	}
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Members) != 2 || got.Members[0].ID != 0xabc || !got.Members[1].IsLearner {
		t.Errorf("member list json = %s", out)
	}
	if last, err := time.Parse(time.RFC3339, got.Members[0].LastContact); err != nil || time.Since(last) > time.Minute {
		t.Errorf("last contact %q: want a recent RFC 3339 time (%v)", got.Members[0].LastContact, err)
	}
	if !got.Members[0].Healthy || got.Members[1].Healthy || got.Members[1].LastContact != "" {
		t.Errorf("member list json = %s", out)
	}
	table := mustRun(t, ep, "", "member", "list", "-w", "table")
	if !strings.Contains(table, "| ID   | NAME | RAFT ADDR") || !strings.Contains(table, "| HEALTHY | LAST CONTACT |") ||
		!strings.Contains(table, "| false   | never        |") {
		t.Errorf("member list table:\n%s", table)
	}
}

func TestEndpointStatus(t *testing.T) {
	ep1 := serveFake(t, newFakeKVD("n1", 1))
	ep2 := serveFake(t, newFakeKVD("n2", 2))
	out := mustRun(t, ep1+","+ep2, "", "endpoint", "status", "-w", "json")

	var got []map[string]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	if len(got) != 2 {
		t.Fatalf("got %d statuses, want 2: %s", len(got), out)
	}
	for _, key := range []string{"endpoint", "name", "id", "leader", "leader_id", "is_leader", "term",
		"commit_index", "applied_index", "revision", "db_size", "db_size_in_use", "raft_state", "version", "is_learner"} {
		if _, ok := got[0][key]; !ok {
			t.Errorf("status object lacks %q: %s", key, out)
		}
	}
	if got[0]["endpoint"] != ep1 || got[1]["name"] != "n2" || got[1]["leader"] != "n2" || got[0]["is_leader"] != true {
		t.Errorf("statuses = %s", out)
	}

	dead := deadAddr(t)
	stdout, stderr, err := runKvctl(t, nil, "", "--endpoints", ep1+","+dead, "endpoint", "status", "--command-timeout", "2s")
	if err == nil {
		t.Error("endpoint status with a dead endpoint succeeded")
	}
	if !strings.HasPrefix(stdout, ep1+", 1, n1, 0.1.0, 20 kB, 12 kB, true, false, Leader, 3, 12, 11, ") || strings.Count(stdout, "\n") != 1 {
		t.Errorf("stdout = %q", stdout)
	}
	if !strings.Contains(stderr, "Failed to get the status of endpoint "+dead) {
		t.Errorf("stderr = %q", stderr)
	}
}

func TestEndpointHealth(t *testing.T) {
	ep := serveFake(t, newFakeKVD("n1", 1))
	out := mustRun(t, ep, "", "endpoint", "health")
	if !strings.HasPrefix(out, ep+" is healthy: successfully committed proposal: took = ") {
		t.Errorf("health printed %q", out)
	}

	dead := deadAddr(t)
	stdout, stderr, err := runKvctl(t, nil, "", "--endpoints", ep+","+dead, "--command-timeout", "300ms", "-w", "json", "endpoint", "health")
	if err == nil || !strings.Contains(err.Error(), "1 of 2 endpoints are unhealthy") {
		t.Errorf("error = %v", err)
	}
	var got []jsonHealth
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("decode %q: %v (stderr %q)", stdout, err, stderr)
	}
	if len(got) != 2 || !got[0].Health || got[1].Health || got[1].Error == "" {
		t.Errorf("health json = %s", stdout)
	}

	_, stderr, _ = runKvctl(t, nil, "", "--endpoints", dead, "--command-timeout", "300ms", "endpoint", "health")
	if !strings.HasPrefix(stderr, dead+" is unhealthy: ") {
		t.Errorf("stderr = %q", stderr)
	}
}

func TestEndpointsFromEnvironment(t *testing.T) {
	ep := serveFake(t, newFakeKVD("n1", 1))
	dead := deadAddr(t)
	env := map[string]string{"KVCTL_ENDPOINTS": ep}

	if _, errOut, err := runKvctl(t, env, "", "put", "k", "v"); err != nil {
		t.Fatalf("with KVCTL_ENDPOINTS: %v (%s)", err, errOut)
	}
	// The flag wins over the environment.
	_, _, err := runKvctl(t, env, "", "--endpoints", dead, "--command-timeout", "300ms", "get", "k")
	if err == nil {
		t.Error("--endpoints did not override KVCTL_ENDPOINTS")
	}
	// Other global flags read the environment too.
	_, _, err = runKvctl(t, map[string]string{"KVCTL_ENDPOINTS": ep, "KVCTL_WRITE_OUT": "yaml"}, "", "get", "k")
	if err == nil || !strings.Contains(err.Error(), `invalid --write-out "yaml"`) {
		t.Errorf("KVCTL_WRITE_OUT=yaml: error %v", err)
	}
}
