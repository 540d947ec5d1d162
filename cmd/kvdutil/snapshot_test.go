package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/kvd-io/kvd/fsm"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// stateDB builds a real state database with puts of keys k0..k(n-1), k0
// written twice, and returns a backup of it: the bytes snapshot save gets
// from a member (kvctl snapshot save). Its revision is n+2 (the first revision is 1).
func stateDB(t *testing.T, n int) []byte {
	t.Helper()
	f, err := fsm.New(fsm.Config{Dir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var logs []*raft.Log
	put := func(k, v string) {
		data, err := fsm.EncodeCommand(fsmv1.CommandType_COMMAND_TYPE_PUT, &kvv1.PutRequest{Key: []byte(k), Value: []byte(v)})
		if err != nil {
			t.Fatal(err)
		}
		logs = append(logs, &raft.Log{Index: uint64(len(logs) + 1), Term: 1, Type: raft.LogCommand, Data: data})
	}
	for i := range n {
		put(fmt.Sprintf("k%d", i), fmt.Sprintf("value %d", i))
	}
	put("k0", "again")
	for i, r := range f.ApplyBatch(logs) {
		if err, ok := r.(error); ok {
			t.Fatalf("apply %d: %v", i, err)
		}
	}
	var buf bytes.Buffer
	if _, err := f.Backup(&buf, nil); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// snapshotFile writes db followed by its SHA-256, as kvctl snapshot save
// does.
func snapshotFile(t *testing.T, db []byte) string {
	t.Helper()
	sum := sha256.Sum256(db)
	path := filepath.Join(t.TempDir(), "snap.db")
	if err := os.WriteFile(path, append(bytes.Clone(db), sum[:]...), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func dirEntries(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestSnapshotStatus(t *testing.T) {
	db := stateDB(t, 5)
	path := snapshotFile(t, db)
	sum := sha256.Sum256(db)

	stdout, stderr, err := runKvdutil(t, nil, "snapshot", "status", path)
	if err != nil {
		t.Fatalf("status: %v (%s)", err, stderr)
	}
	if want := fmt.Sprintf("%x, 7, 5, %s\n", sum[:4], humanBytes(int64(len(db)))); stdout != want {
		t.Errorf("simple = %q, want %q", stdout, want)
	}

	stdout, _, err = runKvdutil(t, nil, "-w", "json", "snapshot", "status", path)
	if err != nil {
		t.Fatal(err)
	}
	var st jsonSnapshotStatus
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatalf("decode %q: %v", stdout, err)
	}
	if !st.ChecksumOK || st.Revision != 7 || st.TotalKeys != 5 || st.TotalSize != int64(len(db)) || st.SHA256 != fmt.Sprintf("%x", sum) {
		t.Errorf("json = %s", stdout)
	}

	stdout, _, err = runKvdutil(t, nil, "-w", "table", "snapshot", "status", path)
	if err != nil || !strings.Contains(stdout, "| HASH     | REVISION | TOTAL KEYS | TOTAL SIZE | CHECKSUM |") || !strings.Contains(stdout, "| OK       |") {
		t.Errorf("table (%v):\n%s", err, stdout)
	}
}

func TestSnapshotStatusRefusesBadFiles(t *testing.T) {
	db := stateDB(t, 5)
	good := snapshotFile(t, db)
	goodBytes, err := os.ReadFile(good)
	if err != nil {
		t.Fatal(err)
	}
	write := func(b []byte) string {
		path := filepath.Join(t.TempDir(), "bad.db")
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	flipped := bytes.Clone(goodBytes)
	flipped[len(db)/2] ^= 0x10
	notDB := []byte(strings.Repeat("not a database ", 1000))
	notDBSum := sha256.Sum256(notDB)

	tests := []struct {
		name, path, want string
	}{
		{"flipped byte", write(flipped), "checksum mismatch"},
		{"truncated", write(goodBytes[:len(goodBytes)-1000]), "checksum mismatch"},
		{"checksum cut off", write(goodBytes[:len(db)]), "checksum mismatch"},
		{"shorter than a checksum", write([]byte("tiny")), "is not a snapshot file"},
		{"valid checksum, not a database", write(append(notDB, notDBSum[:]...)), "is not a kvd state database"},
		{"missing file", filepath.Join(t.TempDir(), "nope.db"), "no such file"},
		{"directory", t.TempDir(), "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, _, err := runKvdutil(t, nil, "-w", "table", "snapshot", "status", tt.path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one containing %q", err, tt.want)
			}
			if stdout != "" && !strings.Contains(stdout, "MISMATCH") {
				t.Errorf("printed a status without MISMATCH:\n%s", stdout)
			}
		})
	}
}

func TestSnapshotRestore(t *testing.T) {
	db := stateDB(t, 5)
	path := snapshotFile(t, db)
	dataDir := filepath.Join(t.TempDir(), "n2.kvd")
	stdout, stderr, err := runKvdutil(t, nil, "snapshot", "restore", path, "--name", "n2", "--data-dir", dataDir,
		"--initial-cluster", "n1=127.0.0.1:7380,n2=127.0.0.1:7390,n3=127.0.0.1:7400")
	if err != nil {
		t.Fatalf("restore: %v (%s)", err, stderr)
	}
	for _, want := range []string{
		fmt.Sprintf("Restored %s into %s: revision 7, 5 keys; member n2 of a new cluster n1=", path, dataDir),
		"  kvd --name n2 --data-dir " + dataDir + " --raft-addr 127.0.0.1:7390\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("output lacks %q:\n%s", want, stdout)
		}
	}
	info, err := fsm.InspectState(filepath.Join(dataDir, fsm.StateFile))
	if err != nil {
		t.Fatal(err)
	}
	if info.Revision != 7 || info.Keys != 5 {
		t.Errorf("restored state: revision %d, %d keys; want 7 and 5", info.Revision, info.Keys)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "raft", "raft.db")); err != nil {
		t.Errorf("no raft log: %v", err)
	}

	// The same data dir again: not empty, refused, left alone.
	before := dirEntries(t, dataDir)
	_, _, err = runKvdutil(t, nil, "snapshot", "restore", path, "--name", "n2", "--data-dir", dataDir, "--initial-cluster", "n2=127.0.0.1:7390")
	if err == nil || !strings.Contains(err.Error(), "data dir is not empty") {
		t.Errorf("restore into a non-empty dir: error %v", err)
	}
	if after := dirEntries(t, dataDir); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("data dir changed from %q to %q", before, after)
	}
	if info, err := fsm.InspectState(filepath.Join(dataDir, fsm.StateFile)); err != nil || info.Revision != 7 {
		t.Errorf("state after a refused restore: %+v, %v", info, err)
	}
}

func TestSnapshotRestoreRefusesBadFiles(t *testing.T) {
	db := stateDB(t, 3)
	good, err := os.ReadFile(snapshotFile(t, db))
	if err != nil {
		t.Fatal(err)
	}
	flipped := bytes.Clone(good)
	flipped[100] ^= 1
	notDB := []byte(strings.Repeat("x", 5000))
	notDBSum := sha256.Sum256(notDB)
	tests := []struct {
		name string
		file []byte
		want string
	}{
		{"corrupt", flipped, "refusing to restore: snapshot"},
		{"truncated", good[:len(good)-10], "checksum mismatch"},
		{"valid checksum, not a database", append(notDB, notDBSum[:]...), "snapshot restore of"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "snap.db")
			if err := os.WriteFile(path, tt.file, 0o600); err != nil {
				t.Fatal(err)
			}
			for _, existing := range []bool{false, true} {
				dataDir := filepath.Join(t.TempDir(), "data")
				if existing {
					if err := os.Mkdir(dataDir, 0o700); err != nil {
						t.Fatal(err)
					}
				}
				_, _, err := runKvdutil(t, nil, "snapshot", "restore", path, "--name", "n1", "--data-dir", dataDir, "--initial-cluster", "n1=127.0.0.1:7380")
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error = %v, want one containing %q", err, tt.want)
				}
				entries, statErr := os.ReadDir(dataDir)
				switch {
				case existing && (statErr != nil || len(entries) > 0):
					t.Errorf("the empty data dir was not left empty: %v, %v", entries, statErr)
				case !existing && !errors.Is(statErr, os.ErrNotExist):
					t.Errorf("a failed restore left %s behind: %v", dataDir, entries)
				}
			}
		})
	}
}

// TestSnapshotStatusThenRestore takes one file through both commands, as the
// runbook does, with the json format.
func TestSnapshotStatusThenRestore(t *testing.T) {
	db := stateDB(t, 20)
	path := snapshotFile(t, db)

	stdout, _, err := runKvdutil(t, nil, "snapshot", "status", path)
	if err != nil || !strings.HasSuffix(stdout, ", 22, 20, "+humanBytes(int64(len(db)))+"\n") {
		t.Errorf("status of a saved snapshot: %q, %v", stdout, err)
	}
	dataDir := filepath.Join(t.TempDir(), "data")
	stdout, _, err = runKvdutil(t, nil, "-w", "json", "snapshot", "restore", path, "--name", "n1", "--data-dir", dataDir, "--initial-cluster", "n1=127.0.0.1:7380")
	if err != nil {
		t.Fatal(err)
	}
	var restored jsonSnapshotRestored
	if err := json.Unmarshal([]byte(stdout), &restored); err != nil {
		t.Fatalf("decode %q: %v", stdout, err)
	}
	if restored.Revision != 22 || restored.TotalKeys != 20 || restored.DataDir != dataDir || restored.Name != "n1" ||
		restored.StartCommand != "kvd --name n1 --data-dir "+dataDir+" --raft-addr 127.0.0.1:7380" {
		t.Errorf("json = %s", stdout)
	}
	if info, err := fsm.InspectState(filepath.Join(dataDir, fsm.StateFile)); err != nil || info.Revision != 22 || info.Keys != 20 {
		t.Errorf("restored state: %+v, %v", info, err)
	}
}
