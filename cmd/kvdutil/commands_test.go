package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// runAsMain makes the test binary run kvdutil's main instead of the tests,
// so that TestExitCodes can check what the process exits with.
const runAsMain = "KVDUTIL_TEST_RUN_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(runAsMain) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestExitCodes runs kvdutil as a process: 0 on success, 1 with "Error: ..."
// on stderr and nothing on stdout when the input is refused.
func TestExitCodes(t *testing.T) {
	tests := []struct {
		args       []string
		code       int
		wantStdout string
		wantStderr string
	}{
		{[]string{"member", "id", "n1"}, 0, "8b37b07b558d4c0, n1\n", ""},
		{[]string{"member", "id", "n1", "a=b"}, 1, "", `Error: member id: name "a=b" must not contain commas, '=' or spaces` + "\n"},
		{[]string{"member", "id"}, 1, "", "Error: member id needs at least one member name\n"},
		{[]string{"snapshot", "status", "does-not-exist.db"}, 1, "", "Error: snapshot status: open does-not-exist.db: no such file or directory\n"},
	}
	for _, tt := range tests {
		cmd := exec.Command(os.Args[0], tt.args...)
		cmd.Env = append(os.Environ(), runAsMain+"=1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tt.code || stdout.String() != tt.wantStdout || stderr.String() != tt.wantStderr {
			t.Errorf("kvdutil %q: exit %d, stdout %q, stderr %q; want exit %d, stdout %q, stderr %q",
				tt.args, code, stdout.String(), stderr.String(), tt.code, tt.wantStdout, tt.wantStderr)
		}
	}
}

// runKvdutil runs kvdutil in-process with the given environment and returns
// what it wrote.
func runKvdutil(t *testing.T, env map[string]string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	lookup := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	cmd := newRootCmdWithEnv(strings.NewReader(""), &out, &errOut, lookup)
	cmd.SetArgs(args)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	err = cmd.ExecuteContext(ctx)
	return out.String(), errOut.String(), err
}

// mustRun runs kvdutil and fails the test on error.
func mustRun(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := runKvdutil(t, nil, args...)
	if err != nil {
		t.Fatalf("kvdutil %q: %v (stderr %q)", args, err, errOut)
	}
	return out
}

func TestMemberID(t *testing.T) {
	// The ids kvd's server derives for these names (see internal/memberid).
	if got, want := mustRun(t, "member", "id", "n1"), "8b37b07b558d4c0, n1\n"; got != want {
		t.Errorf("simple = %q, want %q", got, want)
	}
	if got, want := mustRun(t, "member", "id", "n2", "kvd-0", "n1"),
		"8b37e07b558d9d9, n2\n1ca85f5e23fb3bf5, kvd-0\n8b37b07b558d4c0, n1\n"; got != want {
		t.Errorf("simple, three names = %q, want %q", got, want)
	}

	out := mustRun(t, "-w", "json", "member", "id", "n1", "kvd-0")
	var ids []jsonMemberID
	if err := json.Unmarshal([]byte(out), &ids); err != nil {
		t.Fatalf("decode %q: %v", out, err)
	}
	if len(ids) != 2 || ids[0] != (jsonMemberID{ID: 0x8b37b07b558d4c0, Name: "n1"}) || ids[1] != (jsonMemberID{ID: 0x1ca85f5e23fb3bf5, Name: "kvd-0"}) {
		t.Errorf("json = %s", out)
	}

	want := `+------------------+-------+
| ID               | NAME  |
+------------------+-------+
| 8b37b07b558d4c0  | n1    |
| 1ca85f5e23fb3bf5 | kvd-0 |
+------------------+-------+
`
	if got := mustRun(t, "member", "id", "n1", "kvd-0", "-w", "table"); got != want {
		t.Errorf("table:\n%s\nwant\n%s", got, want)
	}

	// -w from the environment; the flag wins over it.
	if out, _, err := runKvdutil(t, map[string]string{"KVDUTIL_WRITE_OUT": "json"}, "member", "id", "n1"); err != nil || !strings.HasPrefix(out, `[{"id":`) {
		t.Errorf("KVDUTIL_WRITE_OUT=json: %q, %v", out, err)
	}
	if out, _, err := runKvdutil(t, map[string]string{"KVDUTIL_WRITE_OUT": "json"}, "-w", "simple", "member", "id", "n1"); err != nil || out != "8b37b07b558d4c0, n1\n" {
		t.Errorf("-w simple over KVDUTIL_WRITE_OUT=json: %q, %v", out, err)
	}
}

// TestBadInput runs commands whose input is refused: each must fail with a
// clear error and print nothing on stdout.
func TestBadInput(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"bad write-out", nil, []string{"-w", "xml", "member", "id", "n1"}, `invalid --write-out "xml": want simple, json or table`},
		{"bad env write-out", map[string]string{"KVDUTIL_WRITE_OUT": "yaml"}, []string{"member", "id", "n1"}, `invalid --write-out "yaml"`},
		{"unknown command", nil, []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown subcommand", nil, []string{"snapshot", "save", "x.db"}, `unknown command "save" for "kvdutil snapshot"`},
		{"unknown member subcommand", nil, []string{"member", "add", "n4"}, `unknown command "add" for "kvdutil member"`},
		{"unknown flag", nil, []string{"member", "id", "n1", "--endpoints", "a:1"}, "unknown flag: --endpoints"},
		{"member id without name", nil, []string{"member", "id"}, "member id needs at least one member name"},
		{"member id empty name", nil, []string{"member", "id", ""}, "member id: a member name is empty"},
		{"member id with '='", nil, []string{"member", "id", "a=b"}, `member id: name "a=b" must not contain commas, '=' or spaces`},
		{"member id with a comma", nil, []string{"member", "id", "n1,n2"}, `name "n1,n2" must not contain commas`},
		{"member id with a space", nil, []string{"member", "id", "n 1"}, `name "n 1" must not contain`},
		{"member id with a tab", nil, []string{"member", "id", "n\t1"}, `name "n\t1" must not contain`},
		{"member id, one bad name of three", nil, []string{"member", "id", "n1", "n=2", "n3"}, `name "n=2" must not contain`},
		{"version with args", nil, []string{"version", "x"}, `unknown command "x" for "kvdutil version"`},
		{"snapshot status without file", nil, []string{"snapshot", "status"}, "snapshot status needs a file name, got 0 arguments"},
		{"snapshot status two files", nil, []string{"snapshot", "status", "a.db", "b.db"}, "snapshot status needs a file name, got 2 arguments"},
		{"snapshot status missing file", nil, []string{"snapshot", "status", "does-not-exist.db"}, "no such file"},
		{"snapshot restore without file", nil, []string{"snapshot", "restore"}, "snapshot restore needs a file name"},
		{"snapshot restore without name", nil, []string{"snapshot", "restore", "x.db", "--data-dir", "d", "--initial-cluster", "a=h:1"}, "snapshot restore needs --name"},
		{"snapshot restore without data dir", nil, []string{"snapshot", "restore", "x.db", "--name", "a", "--initial-cluster", "a=h:1"}, "snapshot restore needs --data-dir"},
		{"snapshot restore without cluster", nil, []string{"snapshot", "restore", "x.db", "--name", "a", "--data-dir", "d"}, "snapshot restore needs --initial-cluster"},
		{"snapshot restore bad cluster", nil, []string{"snapshot", "restore", "x.db", "--name", "a", "--data-dir", "d", "--initial-cluster", "a"}, `invalid --initial-cluster: initial cluster entry "a": want name=raftaddr`},
		{"snapshot restore bad name", nil, []string{"snapshot", "restore", "x.db", "--name", "a b", "--data-dir", "d", "--initial-cluster", "a=h:1"}, `name "a b" must not contain`},
		{"snapshot restore name not in cluster", nil, []string{"snapshot", "restore", "x.db", "--name", "b", "--data-dir", "d", "--initial-cluster", "a=h:1"}, `initial cluster does not include this member's name "b"`},
		{"snapshot restore missing file", nil, []string{"snapshot", "restore", "does-not-exist.db", "--name", "a", "--data-dir", "d", "--initial-cluster", "a=h:1"}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, _, err := runKvdutil(t, tt.env, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{}, {"--help"}, {"snapshot"}, {"member"}, {"snapshot", "restore", "--help"},
		{"snapshot", "status", "--help"}, {"member", "id", "--help"}, {"version", "--help"}} {
		out, _, err := runKvdutil(t, nil, args...)
		if err != nil {
			t.Errorf("kvdutil %q: %v", args, err)
		}
		if !strings.Contains(out, "Usage:") {
			t.Errorf("kvdutil %q printed no usage: %q", args, out)
		}
	}
}

func TestVersion(t *testing.T) {
	want := "kvdutil " + version + "\n"
	for _, args := range [][]string{{"version"}, {"--version"}} {
		if got := mustRun(t, args...); got != want {
			t.Errorf("kvdutil %q printed %q, want %q", args, got, want)
		}
	}
}
