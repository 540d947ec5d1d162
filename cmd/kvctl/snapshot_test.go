package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// runOffline runs kvctl for a command that needs no cluster.
func runOffline(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return runKvctl(t, nil, "", append([]string{"--endpoints", "127.0.0.1:1", "--command-timeout", "200ms"}, args...)...)
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

func TestSnapshotSave(t *testing.T) {
	data := make([]byte, 300_000)
	r := rand.New(rand.NewPCG(3, 4))
	for i := range data {
		data[i] = byte(r.Uint32())
	}
	f := newFakeKVD("n1", 1)
	f.snapshot = data
	ep := serveFake(t, f)
	dir := t.TempDir()
	path := filepath.Join(dir, "backup.db")
	if err := os.WriteFile(path, []byte("an older backup"), 0o600); err != nil {
		t.Fatal(err)
	}

	out := mustRun(t, ep, "", "snapshot", "save", path)
	if want := fmt.Sprintf("Snapshot saved at %s (%d bytes, revision 1)\nTo see what it holds: kvdutil snapshot status %s\n", path, len(data)+32, path); out != want {
		t.Errorf("printed %q, want %q", out, want)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(data)
	if !bytes.Equal(got, append(bytes.Clone(data), sum[:]...)) {
		t.Errorf("the file holds %d bytes, not the database followed by its SHA-256", len(got))
	}
	if names := dirEntries(t, dir); len(names) != 1 || names[0] != "backup.db" {
		t.Errorf("directory holds %q, want backup.db alone", names)
	}

	out = mustRun(t, ep, "", "-w", "json", "snapshot", "save", path)
	var saved jsonSnapshotSaved
	if err := json.Unmarshal([]byte(out), &saved); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	if saved.Size != int64(len(data)+32) || saved.DBSize != int64(len(data)) || saved.SHA256 != fmt.Sprintf("%x", sum) || saved.Header.MemberID != 1 {
		t.Errorf("json = %s", out)
	}
}

func TestSnapshotSaveRefusesABadStream(t *testing.T) {
	tests := []struct {
		name   string
		tamper func([]*snapMessage)
		want   string
	}{
		{"checksum mismatch", func(m []*snapMessage) { m[len(m)-1].Sha256[3] ^= 1 }, "snapshot is corrupt"},
		{"flipped byte", func(m []*snapMessage) { m[1].Blob[5] ^= 1 }, "snapshot is corrupt"},
		{"truncated", func(m []*snapMessage) { m[len(m)-1].Blob, m[len(m)-1].Sha256 = nil, nil }, "snapshot stream ended early"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeKVD("n1", 1)
			f.snapshot = bytes.Repeat([]byte("kvd"), 100_000)
			f.tamper = tt.tamper
			ep := serveFake(t, f)
			dir := t.TempDir()
			path := filepath.Join(dir, "backup.db")
			if err := os.WriteFile(path, []byte("an older backup"), 0o600); err != nil {
				t.Fatal(err)
			}
			stdout, _, err := runKvctl(t, nil, "", "--endpoints", ep, "snapshot", "save", path)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %v, want one containing %q", err, tt.want)
			}
			if stdout != "" {
				t.Errorf("stdout = %q", stdout)
			}
			if got, _ := os.ReadFile(path); string(got) != "an older backup" {
				t.Errorf("the existing file was changed to %d bytes", len(got))
			}
			if names := dirEntries(t, dir); len(names) != 1 {
				t.Errorf("directory holds %q, want backup.db alone", names)
			}
		})
	}
}

// lyingSource streams data but announces another size or SHA-256, as a
// reader that did not check what it returned would.
type lyingSource struct {
	*bytes.Reader
	size int64
	sum  []byte
}

func (s lyingSource) Size() int64    { return s.size }
func (s lyingSource) SHA256() []byte { return s.sum }

// TestWriteSnapshotFileChecksWhatItWrote: the client's reader checks the
// stream, and writeSnapshotFile checks again that the bytes in the file are
// the ones that were checked, by hash and by count.
func TestWriteSnapshotFileChecksWhatItWrote(t *testing.T) {
	data := bytes.Repeat([]byte("kvd"), 50_000)
	sum := sha256.Sum256(data)
	other := sha256.Sum256([]byte("something else"))
	tests := []struct {
		name string
		src  lyingSource
		want string
	}{
		{"wrong checksum", lyingSource{bytes.NewReader(data), int64(len(data)), other[:]}, "checksum mismatch"},
		{"no checksum", lyingSource{bytes.NewReader(data), int64(len(data)), nil}, "checksum mismatch"},
		{"wrong size", lyingSource{bytes.NewReader(data), int64(len(data)) + 1, sum[:]}, "checksum mismatch"},
		{"short stream", lyingSource{bytes.NewReader(data[:len(data)-1]), int64(len(data)), sum[:]}, "checksum mismatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "backup.db")
			if err := os.WriteFile(path, []byte("an older backup"), 0o600); err != nil {
				t.Fatal(err)
			}
			_, _, err := writeSnapshotFile(path, tt.src, nil)
			if !errors.Is(err, errChecksumMismatch) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error = %v, want one wrapping %v", err, errChecksumMismatch)
			}
			if got, _ := os.ReadFile(path); string(got) != "an older backup" {
				t.Errorf("the existing file was changed to %d bytes", len(got))
			}
			if names := dirEntries(t, dir); len(names) != 1 {
				t.Errorf("directory holds %q, want backup.db alone", names)
			}
		})
	}

	// The honest source: the file is the data and its SHA-256.
	path := filepath.Join(t.TempDir(), "backup.db")
	gotSum, n, err := writeSnapshotFile(path, lyingSource{bytes.NewReader(data), int64(len(data)), sum[:]}, nil)
	if err != nil || n != int64(len(data)) || !bytes.Equal(gotSum, sum[:]) {
		t.Fatalf("writeSnapshotFile = %x, %d, %v", gotSum, n, err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, append(bytes.Clone(data), sum[:]...)) {
		t.Errorf("the file holds %d bytes, not the data followed by its SHA-256", len(got))
	}
}

// TestSnapshotStatusAndRestoreMoved: the offline commands kept their names in
// kvctl, for etcdctl habits, but only point to kvdutil and fail.
func TestSnapshotStatusAndRestoreMoved(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"status", []string{"snapshot", "status", "backup.db"},
			"snapshot status is an offline tool: use `kvdutil snapshot status backup.db`"},
		{"status json", []string{"snapshot", "status", "backup.db", "-w", "json"},
			"snapshot status is an offline tool: use `kvdutil snapshot status backup.db -w json`"},
		{"status without file", []string{"snapshot", "status"},
			"snapshot status is an offline tool: use `kvdutil snapshot status FILE`"},
		{"restore", []string{"snapshot", "restore", "backup.db", "--name", "n1", "--data-dir", "/var/lib/kvd",
			"--initial-cluster", "n1=10.0.1.1:7380,n2=10.0.1.2:7380"},
			"snapshot restore is an offline tool: use `kvdutil snapshot restore backup.db --name n1 --data-dir /var/lib/kvd --initial-cluster n1=10.0.1.1:7380,n2=10.0.1.2:7380`"},
		{"restore, flags missing, a path to quote", []string{"snapshot", "restore", "my backup.db", "--name", "n1"},
			"snapshot restore is an offline tool: use `kvdutil snapshot restore 'my backup.db' --name n1 --data-dir DIR --initial-cluster NAME=RAFTADDR,...`"},
		{"restore without anything", []string{"snapshot", "restore"},
			"snapshot restore is an offline tool: use `kvdutil snapshot restore FILE --name NAME --data-dir DIR --initial-cluster NAME=RAFTADDR,...`"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, _, err := runOffline(t, tt.args...)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error = %v\nwant    %s", err, tt.want)
			}
			if stdout != "" {
				t.Errorf("stdout = %q", stdout)
			}
		})
	}

	// Nothing is restored: the data dir is not created.
	dataDir := filepath.Join(t.TempDir(), "n1")
	if _, _, err := runOffline(t, "snapshot", "restore", "backup.db", "--name", "n1", "--data-dir", dataDir, "--initial-cluster", "n1=h:1"); err == nil {
		t.Fatal("kvctl snapshot restore succeeded")
	}
	if _, err := os.Stat(dataDir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("kvctl snapshot restore created %s: %v", dataDir, err)
	}
}
