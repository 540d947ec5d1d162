package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/kvd-io/kvd/client"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

var testHeader = &kvv1.ResponseHeader{ClusterId: 9, MemberId: 0x1f, Revision: 42, RaftTerm: 2}

func kv(k, v string) *kvv1.KeyValue {
	return &kvv1.KeyValue{Key: []byte(k), Value: []byte(v), CreateRevision: 3, ModRevision: 5, Version: 2}
}

func testGet() *client.GetResponse {
	return &client.GetResponse{RangeResponse: &kvv1.RangeResponse{Header: testHeader, Kvs: []*kvv1.KeyValue{kv("a", "1"), kv("b", "two")}, Count: 3, More: true}}
}

func testTxn() *client.TxnResponse {
	return &client.TxnResponse{TxnResponse: &kvv1.TxnResponse{Header: testHeader, Succeeded: true, Responses: []*kvv1.ResponseOp{
		{Response: &kvv1.ResponseOp_ResponsePut{ResponsePut: &kvv1.PutResponse{Header: testHeader, PrevKv: kv("p", "old")}}},
		{Response: &kvv1.ResponseOp_ResponseRange{ResponseRange: &kvv1.RangeResponse{Header: testHeader, Kvs: []*kvv1.KeyValue{kv("a", "1")}, Count: 1}}},
		{Response: &kvv1.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &kvv1.DeleteRangeResponse{Header: testHeader, Deleted: 2}}},
		{Response: &kvv1.ResponseOp_ResponseRange{ResponseRange: &kvv1.RangeResponse{Header: testHeader, Count: 7}}},
	}}}
}

func testStatuses() []endpointStatus {
	return []endpointStatus{{Endpoint: "127.0.0.1:7379", Resp: &client.StatusResponse{StatusResponse: &kvv1.StatusResponse{
		Header: testHeader, Name: "n1", Version: "0.1.0", LeaderId: 0x1f, LeaderName: "n1", RaftState: "Leader",
		RaftTerm: 2, CommitIndex: 10, AppliedIndex: 9, DbSize: 1536, DbSizeInUse: 1024,
	}}}}
}

// testNow is the time the test printers take for now.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// newTestPrinter is newPrinter with its clock stopped at testNow.
func newTestPrinter(format string, out, errOut io.Writer) printer {
	p := newPrinter(format, out, errOut)
	switch p := p.(type) {
	case *simplePrinter:
		p.now = func() time.Time { return testNow }
	case *tablePrinter:
		p.now = func() time.Time { return testNow }
	}
	return p
}

func testMembers() []*kvv1.Member {
	return []*kvv1.Member{
		{Id: 0x8e9e05c52164694d, Name: "n1", RaftAddr: "r:1", ClientAddr: "c:1", IsLeader: true, Healthy: true,
			LastContact: timestamppb.New(testNow.Add(-400 * time.Millisecond))},
		{Id: 0x2a, Name: "n2", RaftAddr: "r:2", ClientAddr: "c:2", Healthy: true,
			LastContact: timestamppb.New(testNow.Add(-75 * time.Second))},
		{Id: 0x3b, Name: "n3", RaftAddr: "r:3", IsLearner: true},
	}
}

func testHealths() []endpointHealth {
	return []endpointHealth{
		{Endpoint: "a:1", Healthy: true, Took: 1200 * time.Microsecond},
		{Endpoint: "b:2", Error: "context deadline exceeded"},
	}
}

func testWatch() client.WatchResponse {
	return client.WatchResponse{Header: testHeader, Events: []*client.Event{
		{Type: client.EventTypePut, Kv: kv("a", "1")},
		{Type: client.EventTypePut, Kv: kv("b", "two"), PrevKv: kv("b", "old")},
		{Type: client.EventTypeDelete, Kv: &kvv1.KeyValue{Key: []byte("b"), ModRevision: 6}, PrevKv: kv("b", "two")},
	}}
}

func testDefrags() []defragResult {
	return []defragResult{
		{Endpoint: "a:1", Took: 1500 * time.Millisecond, Resp: &client.DefragmentResponse{DefragmentResponse: &kvv1.DefragmentResponse{DbSizeBefore: 1 << 20, DbSize: 64 << 10}}},
		{Endpoint: "b:2", Took: 5 * time.Second, Error: "context deadline exceeded"},
	}
}

func TestSimplePrinter(t *testing.T) {
	tests := []struct {
		name          string
		print         func(printer) error
		want, wantErr string
	}{
		{"put", func(p printer) error {
			return p.Put(&client.PutResponse{PutResponse: &kvv1.PutResponse{Header: testHeader}})
		}, "OK\n", ""},
		{"put prev kv", func(p printer) error {
			return p.Put(&client.PutResponse{PutResponse: &kvv1.PutResponse{Header: testHeader, PrevKv: kv("k", "old")}})
		}, "OK\nk\nold\n", ""},
		{"get", func(p printer) error { return p.Get(testGet(), getFormat{}) }, "a\n1\nb\ntwo\n", ""},
		{"get value only", func(p printer) error { return p.Get(testGet(), getFormat{valueOnly: true}) }, "1\ntwo\n", ""},
		{"get count only", func(p printer) error { return p.Get(testGet(), getFormat{countOnly: true}) }, "3\n", ""},
		{"del", func(p printer) error {
			return p.Del(&client.DeleteResponse{DeleteRangeResponse: &kvv1.DeleteRangeResponse{Deleted: 2, PrevKvs: []*kvv1.KeyValue{kv("a", "1"), kv("b", "2")}}})
		}, "2\na\n1\nb\n2\n", ""},
		{"txn", func(p printer) error { return p.Txn(testTxn(), []getFormat{{}, {}, {}, {countOnly: true}}) },
			"SUCCESS\n\nOK\np\nold\n\na\n1\n\n2\n\n7\n", ""},
		{"txn failure without responses", func(p printer) error {
			return p.Txn(&client.TxnResponse{TxnResponse: &kvv1.TxnResponse{}}, nil)
		}, "FAILURE\n", ""},
		{"member list", func(p printer) error {
			return p.MemberList(&client.MemberListResponse{MemberListResponse: &kvv1.MemberListResponse{Members: testMembers()}})
		}, "8e9e05c52164694d, n1, r:1, c:1, false, true, true, 0.4s ago\n" +
			"2a, n2, r:2, c:2, false, false, true, 1m15s ago\n" +
			"3b, n3, r:3, , true, false, false, never\n", ""},
		{"endpoint status", func(p printer) error { return p.EndpointStatus(testStatuses()) },
			"127.0.0.1:7379, 1f, n1, 0.1.0, 1.5 kB, 1.0 kB, true, false, Leader, 2, 10, 9, 42, n1\n", ""},
		{"endpoint health", func(p printer) error { return p.EndpointHealth(testHealths()) },
			"a:1 is healthy: successfully committed proposal: took = 1.2ms\n", "b:2 is unhealthy: context deadline exceeded\n"},
		{"watch events", func(p printer) error { return p.Watch(testWatch()) },
			"PUT\na\n1\nPUT\nb\nold\nb\ntwo\nDELETE\nb\ntwo\nb\n\n", ""},
		{"watch progress", func(p printer) error { return p.Watch(client.WatchResponse{Header: testHeader}) },
			"progress notify: 42\n", ""},
		{"watch end", func(p printer) error {
			return p.Watch(client.WatchResponse{Header: testHeader, Canceled: true, CompactRevision: 7})
		}, "", ""},
		{"compaction", func(p printer) error { return p.Compaction(12, &client.CompactResponse{}) }, "compacted revision 12\n", ""},
		{"defrag", func(p printer) error { return p.Defrag(testDefrags()) },
			"Finished defragmenting member a:1 (1.0 MB -> 66 kB) in 1.5s\n", "Failed to defragment member b:2 after 5s (context deadline exceeded)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			if err := tt.print(newTestPrinter(formatSimple, &out, &errOut)); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Errorf("stdout = %q, want %q", out.String(), tt.want)
			}
			if errOut.String() != tt.wantErr {
				t.Errorf("stderr = %q, want %q", errOut.String(), tt.wantErr)
			}
		})
	}
}

func TestJSONPrinter(t *testing.T) {
	tests := []struct {
		name  string
		print func(printer) error
		want  string
	}{
		{"put", func(p printer) error {
			return p.Put(&client.PutResponse{PutResponse: &kvv1.PutResponse{Header: testHeader}})
		}, `{"header":{"cluster_id":9,"member_id":31,"revision":42,"raft_term":2}}`},
		{"get", func(p printer) error { return p.Get(testGet(), getFormat{valueOnly: true}) },
			`{"header":{"cluster_id":9,"member_id":31,"revision":42,"raft_term":2},"kvs":[` +
				`{"key":"YQ==","create_revision":3,"mod_revision":5,"version":2,"value":"MQ==","lease":0},` +
				`{"key":"Yg==","create_revision":3,"mod_revision":5,"version":2,"value":"dHdv","lease":0}],"count":3,"more":true}`},
		{"empty get", func(p printer) error {
			return p.Get(&client.GetResponse{RangeResponse: &kvv1.RangeResponse{Header: testHeader}}, getFormat{})
		}, `{"header":{"cluster_id":9,"member_id":31,"revision":42,"raft_term":2},"kvs":[],"count":0,"more":false}`},
		{"del", func(p printer) error {
			return p.Del(&client.DeleteResponse{DeleteRangeResponse: &kvv1.DeleteRangeResponse{Header: testHeader, Deleted: 1}})
		}, `{"header":{"cluster_id":9,"member_id":31,"revision":42,"raft_term":2},"deleted":1}`},
		{"member list", func(p printer) error {
			return p.MemberList(&client.MemberListResponse{MemberListResponse: &kvv1.MemberListResponse{Header: testHeader, Members: []*kvv1.Member{
				{Id: 7, Name: "n1", RaftAddr: "r:1", ClientAddr: "c:1", IsLearner: true},
				{Id: 8, Name: "n2", Healthy: true, LastContact: timestamppb.New(testNow.Add(-400 * time.Millisecond))},
			}}})
		}, `{"header":{"cluster_id":9,"member_id":31,"revision":42,"raft_term":2},"members":[` +
			`{"id":7,"name":"n1","raft_addr":"r:1","client_addr":"c:1","is_learner":true,"is_leader":false,"healthy":false},` +
			`{"id":8,"name":"n2","raft_addr":"","client_addr":"","is_learner":false,"is_leader":false,"healthy":true,"last_contact":"2026-03-01T11:59:59.6Z"}]}`},
		{"endpoint status", func(p printer) error { return p.EndpointStatus(testStatuses()) },
			`[{"endpoint":"127.0.0.1:7379","name":"n1","id":31,"cluster_id":9,"leader":"n1","leader_id":31,"is_leader":true,` +
				`"is_learner":false,"raft_state":"Leader","term":2,"commit_index":10,"applied_index":9,"revision":42,"db_size":1536,"db_size_in_use":1024,"version":"0.1.0"}]`},
		{"no endpoint answered", func(p printer) error { return p.EndpointStatus(nil) }, `[]`},
		{"endpoint health", func(p printer) error { return p.EndpointHealth(testHealths()) },
			`[{"endpoint":"a:1","health":true,"took":"1.2ms"},{"endpoint":"b:2","health":false,"took":"0s","error":"context deadline exceeded"}]`},
		{"watch events", func(p printer) error { return p.Watch(testWatch()) },
			`{"header":{"cluster_id":9,"member_id":31,"revision":42,"raft_term":2},"events":[` +
				`{"type":"PUT","kv":{"key":"YQ==","create_revision":3,"mod_revision":5,"version":2,"value":"MQ==","lease":0}},` +
				`{"type":"PUT","kv":{"key":"Yg==","create_revision":3,"mod_revision":5,"version":2,"value":"dHdv","lease":0},` +
				`"prev_kv":{"key":"Yg==","create_revision":3,"mod_revision":5,"version":2,"value":"b2xk","lease":0}},` +
				`{"type":"DELETE","kv":{"key":"Yg==","create_revision":0,"mod_revision":6,"version":0,"value":null,"lease":0},` +
				`"prev_kv":{"key":"Yg==","create_revision":3,"mod_revision":5,"version":2,"value":"dHdv","lease":0}}],` +
				`"compact_revision":0,"canceled":false,"created":false,"progress_notify":false}`},
		{"watch progress", func(p printer) error { return p.Watch(client.WatchResponse{Header: testHeader}) },
			`{"header":{"cluster_id":9,"member_id":31,"revision":42,"raft_term":2},"events":[],"compact_revision":0,"canceled":false,"created":false,"progress_notify":true}`},
		{"watch end", func(p printer) error {
			return p.Watch(client.WatchResponse{Header: testHeader, Canceled: true, CompactRevision: 7, CancelReason: "compacted"})
		}, `{"header":{"cluster_id":9,"member_id":31,"revision":42,"raft_term":2},"events":[],"compact_revision":7,"canceled":true,"created":false,"progress_notify":false,"cancel_reason":"compacted"}`},
		{"compaction", func(p printer) error {
			return p.Compaction(12, &client.CompactResponse{CompactResponse: &kvv1.CompactResponse{Header: testHeader}})
		}, `{"header":{"cluster_id":9,"member_id":31,"revision":42,"raft_term":2},"revision":12}`},
		{"defrag", func(p printer) error { return p.Defrag(testDefrags()) },
			`[{"endpoint":"a:1","db_size_before":1048576,"db_size":65536,"took":"1.5s"},{"endpoint":"b:2","db_size_before":0,"db_size":0,"took":"5s","error":"context deadline exceeded"}]`},
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
}

func TestJSONPrinterTxn(t *testing.T) {
	var out bytes.Buffer
	if err := newPrinter(formatJSON, &out, &out).Txn(testTxn(), nil); err != nil {
		t.Fatal(err)
	}
	var got struct {
		Succeeded bool             `json:"succeeded"`
		Responses []map[string]any `json:"responses"`
	}
	if err := json.Unmarshal(out.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	wantKeys := []string{"response_put", "response_range", "response_delete_range", "response_range"}
	if !got.Succeeded || len(got.Responses) != len(wantKeys) {
		t.Fatalf("txn json = %s", out.String())
	}
	for i, k := range wantKeys {
		if _, ok := got.Responses[i][k]; !ok || len(got.Responses[i]) != 1 {
			t.Errorf("response %d = %v, want only %q", i, got.Responses[i], k)
		}
	}
}

func TestTablePrinter(t *testing.T) {
	tests := []struct {
		name  string
		print func(printer) error
		want  string
	}{
		{"get", func(p printer) error {
			r := testGet()
			r.Kvs = append(r.Kvs, kv("c", "multi\nline"))
			return p.Get(r, getFormat{})
		}, `+-----+---------------+-----------------+--------------+---------+-------+
| KEY | VALUE         | CREATE REVISION | MOD REVISION | VERSION | LEASE |
+-----+---------------+-----------------+--------------+---------+-------+
| a   | 1             | 3               | 5            | 2       | 0     |
| b   | two           | 3               | 5            | 2       | 0     |
| c   | "multi\nline" | 3               | 5            | 2       | 0     |
+-----+---------------+-----------------+--------------+---------+-------+
`},
		{"get count only", func(p printer) error { return p.Get(testGet(), getFormat{countOnly: true}) }, `+-------+
| COUNT |
+-------+
| 3     |
+-------+
`},
		{"put falls back to simple", func(p printer) error {
			return p.Put(&client.PutResponse{PutResponse: &kvv1.PutResponse{}})
		}, "OK\n"},
		{"watch falls back to simple", func(p printer) error { return p.Watch(testWatch()) },
			"PUT\na\n1\nPUT\nb\nold\nb\ntwo\nDELETE\nb\ntwo\nb\n\n"},
		{"compaction falls back to simple", func(p printer) error { return p.Compaction(3, &client.CompactResponse{}) },
			"compacted revision 3\n"},
		{"defrag", func(p printer) error { return p.Defrag(testDefrags()) }, `+----------+----------------+---------------+------+---------------------------+
| ENDPOINT | DB SIZE BEFORE | DB SIZE AFTER | TOOK | ERROR                     |
+----------+----------------+---------------+------+---------------------------+
| a:1      | 1.0 MB         | 66 kB         | 1.5s |                           |
| b:2      |                |               | 5s   | context deadline exceeded |
+----------+----------------+---------------+------+---------------------------+
`},
		{"endpoint health", func(p printer) error { return p.EndpointHealth(testHealths()) }, `+----------+--------+-------+---------------------------+
| ENDPOINT | HEALTH | TOOK  | ERROR                     |
+----------+--------+-------+---------------------------+
| a:1      | true   | 1.2ms |                           |
| b:2      | false  | 0s    | context deadline exceeded |
+----------+--------+-------+---------------------------+
`},
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

func TestTablePrinterStatusHasEveryColumn(t *testing.T) {
	var out bytes.Buffer
	if err := newPrinter(formatTable, &out, &out).EndpointStatus(testStatuses()); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 5 {
		t.Fatalf("got %d lines, want 5:\n%s", len(lines), out.String())
	}
	for _, h := range tableStatusHeader {
		if !strings.Contains(lines[1], h) {
			t.Errorf("header row lacks %q: %s", h, lines[1])
		}
	}
	if len(lines[1]) != len(lines[3]) {
		t.Errorf("rows are not aligned:\n%s", out.String())
	}
}

func TestHumanBytes(t *testing.T) {
	tests := []struct {
		n    int64
		want string
	}{
		{0, "0 B"}, {999, "999 B"}, {1000, "1.0 kB"}, {1536, "1.5 kB"}, {20480, "20 kB"},
		{999_999, "1.0 MB"}, {9_960, "10 kB"}, {1_000_000, "1.0 MB"}, {45_000_000_000, "45 GB"},
	}
	for _, tt := range tests {
		if got := humanBytes(tt.n); got != tt.want {
			t.Errorf("humanBytes(%d) = %q, want %q", tt.n, got, tt.want)
		}
	}
}

type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errBrokenPipe }

var errBrokenPipe = errors.New("broken pipe")

func TestPrintersReportWriteErrors(t *testing.T) {
	for _, format := range []string{formatSimple, formatJSON, formatTable} {
		p := newPrinter(format, failingWriter{}, failingWriter{})
		if err := p.Get(testGet(), getFormat{}); err == nil {
			t.Errorf("%s printer hid a write error", format)
		}
	}
}
