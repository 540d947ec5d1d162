package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/kvd-io/kvd/fsm"
)

func testSnapshotStatus(ok bool) snapshotStatus {
	return snapshotStatus{Path: "b.db", SHA256: append([]byte{0xfe, 0x01, 0xcf, 0x57}, make([]byte, 28)...), ChecksumOK: ok,
		Info: fsm.StateInfo{Revision: 10, Keys: 7, AppliedIndex: 30, ClusterID: 9, Size: 2_100_000}}
}

func testSnapshotRestored() snapshotRestored {
	return snapshotRestored{Path: "b.db", Name: "n1", DataDir: "/d/n1", RaftAddr: "r:1", InitialCluster: "n1=r:1,n2=r:2",
		Info: fsm.StateInfo{Revision: 10, Keys: 7}}
}

func testMemberIDs() []memberID {
	return []memberID{{Name: "n1", ID: 0x8b37b07b558d4c0}, {Name: "a\rb", ID: 0x2a}}
}

func TestSimplePrinter(t *testing.T) {
	tests := []struct {
		name  string
		print func(printer) error
		want  string
	}{
		{"snapshot status", func(p printer) error { return p.SnapshotStatus(testSnapshotStatus(true)) }, "fe01cf57, 10, 7, 2.1 MB\n"},
		{"snapshot restore", func(p printer) error { return p.SnapshotRestore(testSnapshotRestored()) },
			"Restored b.db into /d/n1: revision 10, 7 keys; member n1 of a new cluster n1=r:1,n2=r:2\n" +
				"Restore every member from the same file with the same --initial-cluster, then start each; this one with:\n" +
				"  kvd --name n1 --data-dir /d/n1 --raft-addr r:1\n" +
				"(add --client-addr and the member's other flags; --initial-cluster is not needed, the data dir holds it)\n"},
		{"member id", func(p printer) error { return p.MemberIDs(testMemberIDs()) }, "8b37b07b558d4c0, n1\n2a, a\rb\n"},
		{"member id, none", func(p printer) error { return p.MemberIDs(nil) }, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := tt.print(newPrinter(formatSimple, &out)); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Errorf("stdout = %q\nwant     %q", out.String(), tt.want)
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
		{"snapshot status", func(p printer) error { return p.SnapshotStatus(testSnapshotStatus(false)) },
			`{"path":"b.db","hash":"fe01cf57","sha256":"fe01cf57` + strings.Repeat("00", 28) + `","checksum_ok":false,` +
				`"revision":10,"total_keys":7,"total_size":2100000,"applied_index":30,"cluster_id":9}`},
		{"snapshot restore", func(p printer) error { return p.SnapshotRestore(testSnapshotRestored()) },
			`{"path":"b.db","data_dir":"/d/n1","name":"n1","initial_cluster":"n1=r:1,n2=r:2","revision":10,"total_keys":7,` +
				`"start_command":"kvd --name n1 --data-dir /d/n1 --raft-addr r:1"}`},
		{"member id", func(p printer) error { return p.MemberIDs(testMemberIDs()) },
			`[{"id":626980046172116160,"name":"n1"},{"id":42,"name":"a\rb"}]`},
		{"member id, none", func(p printer) error { return p.MemberIDs(nil) }, `[]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := tt.print(newPrinter(formatJSON, &out)); err != nil {
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

func TestTablePrinter(t *testing.T) {
	tests := []struct {
		name  string
		print func(printer) error
		want  string
	}{
		{"snapshot status", func(p printer) error { return p.SnapshotStatus(testSnapshotStatus(false)) }, `+----------+----------+------------+------------+----------+
| HASH     | REVISION | TOTAL KEYS | TOTAL SIZE | CHECKSUM |
+----------+----------+------------+------------+----------+
| fe01cf57 | 10       | 7          | 2.1 MB     | MISMATCH |
+----------+----------+------------+------------+----------+
`},
		{"member id", func(p printer) error { return p.MemberIDs(testMemberIDs()) }, `+-----------------+--------+
| ID              | NAME   |
+-----------------+--------+
| 8b37b07b558d4c0 | n1     |
| 2a              | "a\rb" |
+-----------------+--------+
`},
		{"snapshot restore falls back to simple", func(p printer) error { return p.SnapshotRestore(testSnapshotRestored()) },
			"Restored b.db into /d/n1: revision 10, 7 keys; member n1 of a new cluster n1=r:1,n2=r:2\n" +
				"Restore every member from the same file with the same --initial-cluster, then start each; this one with:\n" +
				"  kvd --name n1 --data-dir /d/n1 --raft-addr r:1\n" +
				"(add --client-addr and the member's other flags; --initial-cluster is not needed, the data dir holds it)\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := tt.print(newPrinter(formatTable, &out)); err != nil {
				t.Fatal(err)
			}
			if out.String() != tt.want {
				t.Errorf("got\n%s\nwant\n%s", out.String(), tt.want)
			}
		})
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

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestPrintersReportWriteErrors(t *testing.T) {
	for _, format := range []string{formatSimple, formatJSON, formatTable} {
		p := newPrinter(format, failingWriter{})
		if err := p.MemberIDs(testMemberIDs()); err == nil {
			t.Errorf("%s printer hid a write error of member id", format)
		}
		if err := p.SnapshotStatus(testSnapshotStatus(true)); err == nil {
			t.Errorf("%s printer hid a write error of snapshot status", format)
		}
		if err := p.SnapshotRestore(testSnapshotRestored()); err == nil {
			t.Errorf("%s printer hid a write error of snapshot restore", format)
		}
	}
}
