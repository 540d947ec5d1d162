package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/kvd-io/kvd/server"
)

// writeConfig writes a config file into a fresh directory and returns its
// path.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "kvd.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestConfigFilePrecedence(t *testing.T) {
	const file = "name: fromfile\nsnapshot-threshold: 111\nelection-timeout: 3s\nlearner: true\njoin: 127.0.0.1:1\n"
	cases := []struct {
		name  string
		file  string // written to a temp file named by --config
		args  []string
		env   map[string]string
		check func(t *testing.T, o *options)
	}{
		{name: "default when nothing sets it", file: "log-level: debug\n", check: func(t *testing.T, o *options) {
			if o.cfg.Name != "default" || o.cfg.SnapshotThreshold != server.DefaultConfig().SnapshotThreshold {
				t.Fatalf("name %q, snapshot threshold %d: want the defaults", o.cfg.Name, o.cfg.SnapshotThreshold)
			}
		}},
		{name: "file beats default", file: file, check: func(t *testing.T, o *options) {
			if o.cfg.Name != "fromfile" || o.cfg.SnapshotThreshold != 111 || o.cfg.ElectionTimeout != 3*time.Second || !o.cfg.JoinAsLearner {
				t.Fatalf("file not applied: %+v", o.cfg)
			}
		}},
		{name: "environment beats file", file: file,
			env: map[string]string{"KVD_NAME": "fromenv", "KVD_SNAPSHOT_THRESHOLD": "222"},
			check: func(t *testing.T, o *options) {
				if o.cfg.Name != "fromenv" || o.cfg.SnapshotThreshold != 222 {
					t.Fatalf("name %q, snapshot threshold %d: want the environment's", o.cfg.Name, o.cfg.SnapshotThreshold)
				}
				if o.cfg.ElectionTimeout != 3*time.Second {
					t.Fatalf("election timeout %s: the file's should still apply", o.cfg.ElectionTimeout)
				}
			}},
		{name: "flag beats file", file: file,
			args: []string{"--name", "fromflag", "--election-timeout", "4s"},
			check: func(t *testing.T, o *options) {
				if o.cfg.Name != "fromflag" || o.cfg.ElectionTimeout != 4*time.Second || o.cfg.SnapshotThreshold != 111 {
					t.Fatalf("got %+v: want flags over the file, the file over defaults", o.cfg)
				}
			}},
		{name: "flag beats environment beats file", file: file,
			args: []string{"--name", "fromflag"},
			env:  map[string]string{"KVD_NAME": "fromenv", "KVD_SNAPSHOT_THRESHOLD": "222"},
			check: func(t *testing.T, o *options) {
				if o.cfg.Name != "fromflag" || o.cfg.SnapshotThreshold != 222 || o.cfg.ElectionTimeout != 3*time.Second {
					t.Fatalf("got %+v", o.cfg)
				}
			}},
		{name: "a false bool flag beats the file's true", file: file,
			args: []string{"--learner=false"},
			check: func(t *testing.T, o *options) {
				if o.cfg.JoinAsLearner {
					t.Fatal("learner is true: the command line's false lost to the file")
				}
			}},
		{name: "values are taken as written", file: `name: no
data-dir: "/var/lib/kvd"
initial-cluster:
  - no=127.0.0.1:7380
  - b=127.0.0.1:7390
join: 127.0.0.1:1, 127.0.0.1:2
max-request-bytes: 0x100000
http-addr: ""
`, check: func(t *testing.T, o *options) {
			if o.cfg.Name != "no" || o.cfg.DataDir != "/var/lib/kvd" || o.cfg.MaxRequestBytes != 1<<20 || o.cfg.HTTPAddr != "" {
				t.Fatalf("got %+v", o.cfg)
			}
			want := []server.Peer{{Name: "no", RaftAddr: "127.0.0.1:7380"}, {Name: "b", RaftAddr: "127.0.0.1:7390"}}
			if len(o.cfg.InitialCluster) != 2 || o.cfg.InitialCluster[0] != want[0] || o.cfg.InitialCluster[1] != want[1] {
				t.Fatalf("initial cluster %+v, want %+v", o.cfg.InitialCluster, want)
			}
			if len(o.cfg.Join) != 2 || o.cfg.Join[1] != "127.0.0.1:2" {
				t.Fatalf("join %q", o.cfg.Join)
			}
		}},
		{name: "an empty file sets nothing", file: "", check: func(t *testing.T, o *options) {
			if o.cfg.Name != "default" {
				t.Fatalf("name %q", o.cfg.Name)
			}
		}},
		{name: "a file of comments sets nothing", file: "# nothing here\n", check: func(t *testing.T, o *options) {
			if o.cfg.Name != "default" {
				t.Fatalf("name %q", o.cfg.Name)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--config", writeConfig(t, tc.file)}, tc.args...)
			o, err := parseFlags(args, &bytes.Buffer{}, func(k string) string { return tc.env[k] })
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, o)
		})
	}
}

func TestConfigFileNamedByEnvironment(t *testing.T) {
	fromEnv := writeConfig(t, "name: fromenvfile\n")
	fromFlag := writeConfig(t, "name: fromflagfile\n")
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"KVD_CONFIG names the file", nil, "fromenvfile"},
		{"--config beats KVD_CONFIG", []string{"--config", fromFlag}, "fromflagfile"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"KVD_CONFIG": fromEnv}
			o, err := parseFlags(tc.args, &bytes.Buffer{}, func(k string) string { return env[k] })
			if err != nil {
				t.Fatal(err)
			}
			if o.cfg.Name != tc.want {
				t.Fatalf("name %q, want %q", o.cfg.Name, tc.want)
			}
		})
	}
}

func TestConfigFileAnchors(t *testing.T) {
	path := writeConfig(t, "heartbeat-timeout: &t 2s\nelection-timeout: *t\n")
	o, err := parseFlags([]string{"--config", path}, &bytes.Buffer{}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if o.cfg.HeartbeatTimeout != 2*time.Second || o.cfg.ElectionTimeout != 2*time.Second {
		t.Fatalf("heartbeat %s, election %s: want 2s from the anchor", o.cfg.HeartbeatTimeout, o.cfg.ElectionTimeout)
	}
}

func TestConfigFileBadInputIsRefused(t *testing.T) {
	cases := []struct {
		name string
		file string
		args []string
		want []string // each must appear in the error
	}{
		{name: "unknown key", file: "name: a\nnope: 1\n", want: []string{"line 2", `unknown key "nope"`}},
		{name: "key spelled as an environment variable", file: "data_dir: /x\n", want: []string{`unknown key "data_dir"`, `did you mean "data-dir"`}},
		{name: "bad number", file: "snapshot-threshold: lots\n", want: []string{"line 1", "snapshot-threshold", `"lots"`}},
		{name: "negative unsigned", file: "snapshot-threshold: -1\n", want: []string{"snapshot-threshold", `"-1"`}},
		{name: "bad duration", file: "election-timeout: 5\n", want: []string{"election-timeout", `"5"`}},
		{name: "bad bool", file: "learner: yes\n", want: []string{"learner", `"yes"`}},
		{name: "bad value even when a flag overrides it", file: "snapshot-retain: many\n", args: []string{"--snapshot-retain", "2"},
			want: []string{"snapshot-retain", `"many"`}},
		{name: "list for a single-valued flag", file: "name: [a, b]\n", want: []string{"name", "not a list"}},
		{name: "mapping value", file: "name:\n  first: a\n", want: []string{"name", "not a mapping"}},
		{name: "list of mappings", file: "join:\n  - addr: 127.0.0.1:1\n", want: []string{"join", "list of strings"}},
		{name: "no value", file: "data-dir:\n", want: []string{"data-dir", "no value"}},
		{name: "key twice", file: "name: a\nname: b\n", want: []string{"line 2", "name is set twice"}},
		{name: "config names a config file", file: "config: other.yaml\n", want: []string{"config", "another config file"}},
		{name: "version is not a setting", file: "version: true\n", want: []string{"version", "not a setting"}},
		{name: "not a mapping", file: "- name\n- a\n", want: []string{"want a mapping"}},
		{name: "two documents", file: "name: a\n---\nname: b\n", want: []string{"one YAML document"}},
		{name: "not YAML", file: "name: [a\n", want: []string{"kvd.yaml"}},
		{name: "bad value in the flag's own terms", file: "initial-cluster: [a]\n", want: []string{"initial cluster entry"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.file)
			args := append([]string{"--config", path}, tc.args...)
			_, err := parseFlags(args, &bytes.Buffer{}, func(string) string { return "" })
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
	t.Run("missing file", func(t *testing.T) {
		_, err := parseFlags([]string{"--config", filepath.Join(t.TempDir(), "absent.yaml")}, &bytes.Buffer{}, func(string) string { return "" })
		if !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("error %v, want one wrapping os.ErrNotExist", err)
		}
	})
}

// TestExampleConfigFile loads deploy/kvd.yaml, checks it makes a valid member,
// and checks that it names every flag (as a key or a commented-out key), so a
// new flag is documented there too.
func TestExampleConfigFile(t *testing.T) {
	const example = "../../deploy/kvd.yaml"
	o, err := parseFlags([]string{"--config", example}, &bytes.Buffer{}, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	if err := o.cfg.Validate(); err != nil {
		t.Fatalf("%s does not make a valid member: %v", example, err)
	}
	if o.cfg.Name != "n1" || len(o.cfg.InitialCluster) != 3 || o.shutdownWait != 30*time.Second {
		t.Fatalf("%s: unexpected settings %+v", example, o.cfg)
	}

	text, err := os.ReadFile(example)
	if err != nil {
		t.Fatal(err)
	}
	var usage bytes.Buffer
	if _, err := parseFlags([]string{"-h"}, &usage, func(string) string { return "" }); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v", err)
	}
	flags := regexp.MustCompile(`(?m)^  -([a-z-]+)`).FindAllStringSubmatch(usage.String(), -1)
	if len(flags) < 20 {
		t.Fatalf("found only %d flags in the usage text:\n%s", len(flags), usage.String())
	}
	for _, m := range flags {
		name := m[1]
		if _, ok := notSetting(name); ok {
			continue
		}
		if !regexp.MustCompile(`(?m)^#? ?` + regexp.QuoteMeta(name) + `:`).Match(text) {
			t.Errorf("%s does not mention --%s; add it (commented out with its default if need be)", example, name)
		}
	}
}
