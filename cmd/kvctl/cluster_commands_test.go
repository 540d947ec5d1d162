package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/internal/memberid"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

func TestMemberAdd(t *testing.T) {
	f := newFakeKVD("n1", 0xabc)
	ep := serveFake(t, f)

	out := mustRun(t, ep, "", "member", "add", "n3", "--raft-addr", "10.0.0.3:7380", "--client-addr", "10.0.0.3:7379", "--learner")
	lines := strings.Split(out, "\n")
	if lines[0] != "Member 4444 added to cluster 64" || lines[1] != "" {
		t.Errorf("first lines = %q", lines[:2])
	}
	if !strings.Contains(out, "\n4444, n3, 10.0.0.3:7380, 10.0.0.3:7379, true, false, false, never\n") {
		t.Errorf("output lacks the new member's line:\n%s", out)
	}
	if want := "  kvd --name n3 --raft-addr 10.0.0.3:7380 --client-addr 10.0.0.3:7379 --join 127.0.0.1:7379 --learner\n"; !strings.HasSuffix(out, want) {
		t.Errorf("output does not end with the start command %q:\n%s", want, out)
	}

	out = mustRun(t, ep, "", "-w", "json", "member", "add", "n4", "--raft-addr", "10.0.0.4:7380")
	var got jsonMemberChange
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	if got.Action != "add" || got.Name != "n4" || got.Member == nil || got.Member.IsLearner || len(got.Members) != 4 || got.Header.ClusterID != 100 {
		t.Errorf("json = %s", out)
	}

	_, _, err := runKvctl(t, nil, "", "--endpoints", ep, "member", "add", "n3", "--raft-addr", "10.0.0.9:7380")
	if err == nil || !strings.Contains(err.Error(), "member already exists") {
		t.Errorf("adding n3 twice: error %v", err)
	}
}

func TestMemberPromoteAndRemove(t *testing.T) {
	f := newFakeKVD("n1", 0xabc)
	ep := serveFake(t, f)

	out := mustRun(t, ep, "", "member", "promote", "n2")
	if want := "Member beef promoted in cluster 64\n\n"; !strings.HasPrefix(out, want) {
		t.Errorf("promote printed %q, want it to start with %q", out, want)
	}
	if !strings.Contains(out, "\nbeef, n2, 127.0.0.1:7390, , false, false, false, never\n") {
		t.Errorf("promote output lacks n2 as a voter:\n%s", out)
	}
	_, _, err := runKvctl(t, nil, "", "--endpoints", ep, "member", "promote", "n1")
	if err == nil || !strings.Contains(err.Error(), "is not a learner") {
		t.Errorf("promoting a voter: error %v", err)
	}

	table := mustRun(t, ep, "", "-w", "table", "member", "remove", "n2")
	want := fmt.Sprintf("Member %x removed from cluster 64\n\n+-----+------+", memberid.FromName("n2"))
	if !strings.HasPrefix(table, want) || strings.Contains(table, "n2") {
		t.Errorf("remove printed\n%s\nwant it to start with %q and list n1 alone", table, want)
	}
	_, _, err = runKvctl(t, nil, "", "--endpoints", ep, "member", "remove", "n2")
	if err == nil || !strings.Contains(err.Error(), "member not found") {
		t.Errorf("removing a removed member: error %v", err)
	}
}

func TestMembershipChangeRefused(t *testing.T) {
	f := newFakeKVD("n1", 1)
	f.failWith = apierr.NotApplied(codes.FailedPrecondition,
		"unsafe reconfiguration: after removing n2 the cluster would have 2 voters, needing 2 for quorum, but only 1 of them are healthy")
	ep := serveFake(t, f)
	for _, args := range [][]string{
		{"member", "remove", "n2"},
		{"member", "add", "n3", "--raft-addr", "10.0.0.3:7380"},
		{"member", "promote", "n2"},
		{"leader", "transfer"},
	} {
		stdout, _, err := runKvctl(t, nil, "", append([]string{"--endpoints", ep}, args...)...)
		if err == nil || !strings.Contains(err.Error(), "unsafe reconfiguration") {
			t.Errorf("kvctl %q: error %v, want the server's refusal", args, err)
		}
		if stdout != "" {
			t.Errorf("kvctl %q printed %q on a refusal", args, stdout)
		}
	}
}

func TestLeaderTransfer(t *testing.T) {
	f := newFakeKVD("n1", 1)
	f.setMembers(
		&kvv1.Member{Id: 1, Name: "n1", IsLeader: true},
		&kvv1.Member{Id: 2, Name: "n2"},
		&kvv1.Member{Id: 3, Name: "n3"},
	)
	ep := serveFake(t, f)
	if got, want := mustRun(t, ep, "", "leader", "transfer", "--to", "n3"), "Leadership transferred to n3\n"; got != want {
		t.Errorf("transfer --to n3 printed %q, want %q", got, want)
	}
	if got, want := mustRun(t, ep, "", "leader", "transfer"), "Leadership transferred to n2\n"; got != want {
		t.Errorf("transfer printed %q, want %q", got, want)
	}
	out := mustRun(t, ep, "", "-w", "json", "leader", "transfer", "--to", "n1")
	var got jsonLeaderTransfer
	if err := json.Unmarshal([]byte(out), &got); err != nil || got.Leader != "n1" || got.Header.MemberID != 1 {
		t.Errorf("json = %s (%v)", out, err)
	}
	_, _, err := runKvctl(t, nil, "", "--endpoints", ep, "leader", "transfer", "--to", "n9")
	if err == nil || !strings.Contains(err.Error(), "member not found") {
		t.Errorf("transfer to an unknown member: error %v", err)
	}
}

// hashCluster starts one fake per hash, each listing all of them as members
// n1, n2... with their addresses, and returns the fakes and their addresses.
func hashCluster(t *testing.T, hashes ...uint32) ([]*fakeKVD, []string) {
	t.Helper()
	var fakes []*fakeKVD
	var addrs []string
	var members []*kvv1.Member
	for i, h := range hashes {
		name := fmt.Sprintf("n%d", i+1)
		f := newFakeKVD(name, uint64(i+1))
		f.hash = h
		fakes = append(fakes, f)
		addrs = append(addrs, serveFake(t, f))
		members = append(members, &kvv1.Member{Id: uint64(i + 1), Name: name, ClientAddr: addrs[i], Healthy: true})
	}
	for _, f := range fakes {
		f.setMembers(members...)
	}
	return fakes, addrs
}

func TestCheckHashAgreeing(t *testing.T) {
	fakes, addrs := hashCluster(t, 0xfeed, 0xfeed, 0xfeed)
	for range 3 { // revision 4
		mustRun(t, addrs[0], "", "put", "k", "v")
	}
	out := mustRun(t, addrs[0], "", "check", "hash")
	want := fmt.Sprintf("n1, 1, %s, 0000feed, 4, 1, true\nn2, 2, %s, 0000feed, 4, 1, true\nn3, 3, %s, 0000feed, 4, 1, true\n", addrs[0], addrs[1], addrs[2])
	if out != want {
		t.Errorf("check hash printed\n%q\nwant\n%q", out, want)
	}
	for i, f := range fakes {
		f.mu.Lock()
		revs := slices.Clone(f.hashRevs)
		f.mu.Unlock()
		if !slices.Equal(revs, []int64{4}) {
			t.Errorf("member %d was asked for revisions %v, want [4]", i+1, revs)
		}
	}

	out = mustRun(t, addrs[1], "", "-w", "json", "check", "hash", "--rev", "2")
	var got []jsonMemberHash
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	if len(got) != 3 || got[2].Name != "n3" || got[2].Hash != 0xfeed || got[2].HashRevision != 2 || !got[2].Matches {
		t.Errorf("json = %s", out)
	}
	if table := mustRun(t, addrs[0], "", "-w", "table", "check", "hash"); !strings.Contains(table, "| NAME | ID | ENDPOINT") {
		t.Errorf("table:\n%s", table)
	}
}

func TestCheckHashDisagreeing(t *testing.T) {
	_, addrs := hashCluster(t, 0xfeed, 0xbad, 0xfeed)
	stdout, _, err := runKvctl(t, nil, "", "--endpoints", addrs[0], "check", "hash")
	if err == nil || !strings.Contains(err.Error(), "1 of 3 members differ") || !strings.Contains(err.Error(), "n2 (00000bad at revision 1, majority 0000feed)") {
		t.Errorf("error = %v, want it to name n2", err)
	}
	if !strings.Contains(stdout, "n2, 2, "+addrs[1]+", 00000bad, 1, 1, false\n") {
		t.Errorf("stdout = %q", stdout)
	}

	_, addrs = hashCluster(t, 1, 2)
	_, _, err = runKvctl(t, nil, "", "--endpoints", addrs[0], "check", "hash")
	if err == nil || !strings.Contains(err.Error(), "no hash is shared by a majority") || !strings.Contains(err.Error(), "n1 00000001, n2 00000002") {
		t.Errorf("no majority: error %v", err)
	}
}

func TestCheckHashUnreachableMembers(t *testing.T) {
	fakes, addrs := hashCluster(t, 7, 7)
	dead := deadAddr(t)
	for _, f := range fakes {
		f.setMembers(
			&kvv1.Member{Id: 1, Name: "n1", ClientAddr: addrs[0]},
			&kvv1.Member{Id: 2, Name: "n2", ClientAddr: addrs[1]},
			&kvv1.Member{Id: 3, Name: "n3", ClientAddr: dead},
			&kvv1.Member{Id: 4, Name: "n4"},
		)
	}
	stdout, stderr, err := runKvctl(t, nil, "", "--endpoints", addrs[0], "--command-timeout", "2s", "check", "hash")
	if err == nil || !strings.Contains(err.Error(), "2 of 4 members could not be checked") {
		t.Errorf("error = %v", err)
	}
	if strings.Count(stdout, ", true\n") != 2 {
		t.Errorf("stdout = %q, want the two members that answered", stdout)
	}
	if !strings.Contains(stderr, "member n3 (3) at "+dead) || !strings.Contains(stderr, "member n4 (4) has not published a client address") {
		t.Errorf("stderr = %q", stderr)
	}
}

func TestEndpointCluster(t *testing.T) {
	fakes, addrs := hashCluster(t, 0, 0)
	for _, f := range fakes {
		f.setMembers(
			&kvv1.Member{Id: 1, Name: "n1", ClientAddr: addrs[0]},
			&kvv1.Member{Id: 2, Name: "n2", ClientAddr: addrs[1]},
			&kvv1.Member{Id: 3, Name: "n3"},
		)
	}
	stdout, stderr, err := runKvctl(t, nil, "", "--endpoints", addrs[1], "-w", "json", "endpoint", "status", "--cluster")
	if err != nil {
		t.Fatalf("endpoint status --cluster: %v (%s)", err, stderr)
	}
	var statuses []jsonStatus
	if err := json.Unmarshal([]byte(stdout), &statuses); err != nil {
		t.Fatalf("decode %q: %v", stdout, err)
	}
	if len(statuses) != 2 || statuses[0].Endpoint != addrs[0] || statuses[0].Name != "n1" || statuses[1].Name != "n2" {
		t.Errorf("statuses = %s", stdout)
	}
	if !strings.Contains(stderr, "Skipping member n3 (3): it has not published a client address") {
		t.Errorf("stderr = %q", stderr)
	}

	stdout, _, err = runKvctl(t, nil, "", "--endpoints", addrs[0], "endpoint", "health", "--cluster")
	if err != nil {
		t.Fatalf("endpoint health --cluster: %v", err)
	}
	for _, a := range addrs {
		if !strings.Contains(stdout, a+" is healthy") {
			t.Errorf("health output lacks %s: %q", a, stdout)
		}
	}

	dead := deadAddr(t)
	_, _, err = runKvctl(t, nil, "", "--endpoints", dead, "--command-timeout", "300ms", "endpoint", "status", "--cluster")
	if err == nil || !strings.Contains(err.Error(), "list the members") {
		t.Errorf("--cluster with no member reachable: error %v", err)
	}
}
