package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/client"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// The administration printers: member changes, leader transfer, snapshots
// and hash checks.

func testMemberAdd() memberChange {
	added := &kvv1.Member{Id: 0x4d, Name: "n4", RaftAddr: "r:4", ClientAddr: "c:4", IsLearner: true}
	return memberChange{
		Action: memberAdded, ID: 0x4d, Name: "n4", Header: testHeader, Member: added,
		Members: append(testMembers(), added), Join: []string{"c:1", "c:2"},
	}
}

func testSnapshotSaved() snapshotSaved {
	return snapshotSaved{Path: "b.db", Size: 20512, DBSize: 20480, SHA256: bytes.Repeat([]byte{0xab}, 32), Endpoint: "a:1", Header: testHeader}
}

func testHashes() []memberHash {
	resp := func(h uint32) *client.HashKVResponse {
		return &client.HashKVResponse{HashKVResponse: &kvv1.HashKVResponse{Hash: h, HashRevision: 42, CompactRevision: 3}}
	}
	return []memberHash{
		{Name: "n1", ID: 0x1f, Endpoint: "a:1", Resp: resp(0xfeed), Matches: true},
		{Name: "n2", ID: 0x2f, Endpoint: "b:2", Resp: resp(0xbad)},
	}
}

func testTransfer(leader string) *client.LeaderTransferResponse {
	return &client.LeaderTransferResponse{LeaderTransferResponse: &kvv1.LeaderTransferResponse{Header: testHeader, Leader: leader}}
}

func TestSimplePrinterAdmin(t *testing.T) {
	tests := []struct {
		name  string
		print func(printer) error
		want  string
	}{
		{"member add", func(p printer) error { return p.MemberChange(testMemberAdd()) },
			"Member 4d added to cluster 9\n\n" +
				"8e9e05c52164694d, n1, r:1, c:1, false, true, true, 0.4s ago\n" +
				"2a, n2, r:2, c:2, false, false, true, 1m15s ago\n" +
				"3b, n3, r:3, , true, false, false, never\n" +
				"4d, n4, r:4, c:4, true, false, false, never\n\n" +
				"Start the new member on an empty data dir with:\n" +
				"  kvd --name n4 --raft-addr r:4 --client-addr c:4 --join c:1,c:2 --learner\n"},
		{"member promote", func(p printer) error {
			return p.MemberChange(memberChange{Action: memberPromoted, ID: 0x3b, Name: "n3", Header: testHeader, Members: testMembers()[2:]})
		}, "Member 3b promoted in cluster 9\n\n3b, n3, r:3, , true, false, false, never\n"},
		{"member remove", func(p printer) error {
			return p.MemberChange(memberChange{Action: memberRemoved, ID: 0x3b, Name: "n3", Header: testHeader})
		}, "Member 3b removed from cluster 9\n\n"},
		{"leader transfer", func(p printer) error { return p.LeaderTransfer(testTransfer("n2")) }, "Leadership transferred to n2\n"},
		{"leader transfer, leader unknown", func(p printer) error { return p.LeaderTransfer(testTransfer("")) },
			"Leadership transferred; the new leader is not known yet\n"},
		{"snapshot save", func(p printer) error { return p.SnapshotSave(testSnapshotSaved()) },
			"Snapshot saved at b.db (20512 bytes, revision 42)\nTo see what it holds: kvdutil snapshot status b.db\n"},
		{"snapshot save, no header, a path to quote", func(p printer) error {
			s := testSnapshotSaved()
			s.Path, s.Header = "/backups/it's here.db", nil
			return p.SnapshotSave(s)
		}, "Snapshot saved at /backups/it's here.db (20512 bytes)\nTo see what it holds: kvdutil snapshot status '/backups/it'\\''s here.db'\n"},
		{"hash check", func(p printer) error { return p.HashCheck(testHashes()) },
			"n1, 1f, a:1, 0000feed, 42, 3, true\nn2, 2f, b:2, 00000bad, 42, 3, false\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := tt.print(newTestPrinter(formatSimple, &out, &errOut)); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Errorf("stdout = %q\nwant     %q", out.String(), tt.want)
			}
			if errOut.Len() != 0 {
				t.Errorf("stderr = %q", errOut.String())
			}
		})
	}
}

func TestJSONPrinterAdmin(t *testing.T) {
	const header = `"header":{"cluster_id":9,"member_id":31,"revision":42,"raft_term":2}`
	tests := []struct {
		name  string
		print func(printer) error
		want  string
	}{
		{"member promote", func(p printer) error {
			return p.MemberChange(memberChange{Action: memberPromoted, ID: 0x3b, Name: "n3", Header: testHeader, Members: testMembers()[2:]})
		}, `{` + header + `,"action":"promote","id":59,"name":"n3","members":[` +
			`{"id":59,"name":"n3","raft_addr":"r:3","client_addr":"","is_learner":true,"is_leader":false,"healthy":false}]}`},
		{"member remove", func(p printer) error {
			return p.MemberChange(memberChange{Action: memberRemoved, ID: 0x3b, Name: "n3", Header: testHeader})
		}, `{` + header + `,"action":"remove","id":59,"name":"n3","members":[]}`},
		{"leader transfer", func(p printer) error { return p.LeaderTransfer(testTransfer("n2")) }, `{` + header + `,"leader":"n2"}`},
		{"snapshot save", func(p printer) error { return p.SnapshotSave(testSnapshotSaved()) },
			`{"path":"b.db","size":20512,"db_size":20480,"sha256":"` + strings.Repeat("ab", 32) + `","endpoint":"a:1",` + header + `}`},
		{"hash check", func(p printer) error { return p.HashCheck(testHashes()) },
			`[{"name":"n1","id":31,"endpoint":"a:1","hash":65261,"hash_revision":42,"compact_revision":3,"matches":true},` +
				`{"name":"n2","id":47,"endpoint":"b:2","hash":2989,"hash_revision":42,"compact_revision":3,"matches":false}]`},
		{"no hash", func(p printer) error { return p.HashCheck(nil) }, `[]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := tt.print(newTestPrinter(formatJSON, &out, &out)); err != nil {
				t.Fatal(err)
			}
			if got := strings.TrimSuffix(out.String(), "\n"); got != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
			if !json.Valid(out.Bytes()) {
				t.Error("output is not valid JSON")
			}
		})
	}

	var out bytes.Buffer
	if err := newTestPrinter(formatJSON, &out, &out).MemberChange(testMemberAdd()); err != nil {
		t.Fatal(err)
	}
	var add jsonMemberChange
	if err := json.Unmarshal(out.Bytes(), &add); err != nil {
		t.Fatal(err)
	}
	if add.Action != "add" || add.Member == nil || add.Member.Name != "n4" || len(add.Members) != 4 ||
		add.Members[0].LastContact != "2026-03-01T11:59:59.6Z" {
		t.Errorf("member add json = %s", out.String())
	}
}

func TestTablePrinterAdmin(t *testing.T) {
	tests := []struct {
		name  string
		print func(printer) error
		want  string
	}{
		{"endpoint status", func(p printer) error {
			st := testStatuses()
			follower := proto.Clone(st[0].Resp.StatusResponse).(*kvv1.StatusResponse)
			follower.Header = &kvv1.ResponseHeader{MemberId: 0x2f, Revision: 41}
			follower.Name, follower.RaftState, follower.AppliedIndex = "n2", "Follower", 7
			learner := proto.Clone(follower).(*kvv1.StatusResponse)
			learner.Name, learner.IsLearner = "n3", true
			st = append(st,
				endpointStatus{Endpoint: "127.0.0.1:7479", Resp: &client.StatusResponse{StatusResponse: follower}},
				endpointStatus{Endpoint: "127.0.0.1:7579", Resp: &client.StatusResponse{StatusResponse: learner}})
			return p.EndpointStatus(st)
		}, `+----------------+------+----------+--------+------+----------------+----------+---------+----------------+---------+
| ENDPOINT       | NAME | ROLE     | LEADER | TERM | COMMIT/APPLIED | REVISION | DB SIZE | DB SIZE IN USE | VERSION |
+----------------+------+----------+--------+------+----------------+----------+---------+----------------+---------+
| 127.0.0.1:7379 | n1   | leader   | n1     | 2    | 10/9           | 42       | 1.5 kB  | 1.0 kB         | 0.1.0   |
| 127.0.0.1:7479 | n2   | follower | n1     | 2    | 10/7           | 41       | 1.5 kB  | 1.0 kB         | 0.1.0   |
| 127.0.0.1:7579 | n3   | learner  | n1     | 2    | 10/7           | 41       | 1.5 kB  | 1.0 kB         | 0.1.0   |
+----------------+------+----------+--------+------+----------------+----------+---------+----------------+---------+
`},
		{"member promote", func(p printer) error {
			return p.MemberChange(memberChange{Action: memberPromoted, ID: 0x3b, Name: "n3", Header: testHeader, Members: testMembers()[2:]})
		}, `Member 3b promoted in cluster 9

+----+------+-----------+-------------+------------+-----------+---------+--------------+
| ID | NAME | RAFT ADDR | CLIENT ADDR | IS LEARNER | IS LEADER | HEALTHY | LAST CONTACT |
+----+------+-----------+-------------+------------+-----------+---------+--------------+
| 3b | n3   | r:3       |             | true       | false     | false   | never        |
+----+------+-----------+-------------+------------+-----------+---------+--------------+
`},
		{"hash check", func(p printer) error { return p.HashCheck(testHashes()) }, `+------+----+----------+----------+---------------+------------------+---------+
| NAME | ID | ENDPOINT | HASH     | HASH REVISION | COMPACT REVISION | MATCHES |
+------+----+----------+----------+---------------+------------------+---------+
| n1   | 1f | a:1      | 0000feed | 42            | 3                | true    |
| n2   | 2f | b:2      | 00000bad | 42            | 3                | false   |
+------+----+----------+----------+---------------+------------------+---------+
`},
		{"leader transfer falls back to simple", func(p printer) error { return p.LeaderTransfer(testTransfer("n2")) },
			"Leadership transferred to n2\n"},
		{"snapshot save falls back to simple", func(p printer) error { return p.SnapshotSave(testSnapshotSaved()) },
			"Snapshot saved at b.db (20512 bytes, revision 42)\nTo see what it holds: kvdutil snapshot status b.db\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := tt.print(newTestPrinter(formatTable, &out, &out)); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Errorf("got\n%s\nwant\n%s", out.String(), tt.want)
			}
		})
	}
}

func TestAgo(t *testing.T) {
	now := testNow
	tests := []struct {
		t    time.Time
		want string
	}{
		{time.Time{}, "never"},
		{now, "0.0s ago"},
		{now.Add(-400 * time.Millisecond), "0.4s ago"},
		{now.Add(-59 * time.Second), "59.0s ago"},
		{now.Add(-75 * time.Second), "1m15s ago"},
		{now.Add(-3 * time.Hour), "3h0m0s ago"},
		{now.Add(2 * time.Second), "0.0s ago"}, // clock skew
	}
	for _, tt := range tests {
		if got := ago(tt.t, now); got != tt.want {
			t.Errorf("ago(%v) = %q, want %q", tt.t, got, tt.want)
		}
	}
}

func TestProgressBar(t *testing.T) {
	var out bytes.Buffer
	bar := &progressBar{w: &out, total: 2000}
	if _, err := bar.Write(make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	if got, want := out.String(), "\r[==============>               ]  50% 1.0 kB / 2.0 kB  "; got != want {
		t.Errorf("half way: %q, want %q", got, want)
	}
	out.Reset()
	_, _ = bar.Write(make([]byte, 1000)) // too soon to redraw
	bar.finish()
	if got, want := out.String(), "\r[==============================] 100% 2.0 kB / 2.0 kB  \n"; got != want {
		t.Errorf("done: %q, want %q", got, want)
	}
	if isTerminalWriter(&out) {
		t.Error("a buffer is a terminal")
	}
}
