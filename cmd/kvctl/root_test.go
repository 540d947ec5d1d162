package main

import (
	"strings"
	"testing"
)

// TestBadInput runs commands whose input is rejected before any request is
// sent, so no server is needed.
func TestBadInput(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		wantErr string
	}{
		{"bad write-out", nil, []string{"-w", "xml", "get", "k"}, `invalid --write-out "xml": want simple, json or table`},
		{"bad consistency", nil, []string{"--consistency", "x", "get", "k"}, `invalid --consistency "x"`},
		{"bad endpoint", nil, []string{"--endpoints", "unix://a:1", "get", "k"}, "want host:port, https://host:port or http://host:port"},
		{"empty endpoints", nil, []string{"--endpoints", ",", "get", "k"}, "no endpoints"},
		{"bad env timeout", map[string]string{"KVCTL_DIAL_TIMEOUT": "soon"}, []string{"get", "k"}, `invalid KVCTL_DIAL_TIMEOUT "soon"`},
		{"zero command timeout", nil, []string{"--command-timeout", "0s", "get", "k"}, "invalid --command-timeout"},
		{"unknown command", nil, []string{"frobnicate"}, `unknown command "frobnicate"`},
		{"unknown subcommand", nil, []string{"member", "lst"}, `unknown command "lst" for "kvctl member"`},
		{"unknown flag", nil, []string{"get", "k", "--prefx"}, "unknown flag: --prefx"},
		{"get without key", nil, []string{"get"}, "get needs a key and an optional range end, got 0 arguments"},
		{"get too many", nil, []string{"get", "a", "b", "c"}, "got 3 arguments"},
		{"get empty key", nil, []string{"get", ""}, "key is empty"},
		{"get prefix and end", nil, []string{"get", "a", "b", "--prefix"}, "a range end cannot be used with --prefix"},
		{"get from-key and end", nil, []string{"get", "a", "b", "--from-key"}, "a range end cannot be used with --from-key"},
		{"get prefix and from-key", nil, []string{"get", "a", "--prefix", "--from-key"}, "--prefix and --from-key cannot be used together"},
		{"get keys and count", nil, []string{"get", "a", "--keys-only", "--count-only"}, "cannot be used together"},
		{"get value-only and keys-only", nil, []string{"get", "a", "--keys-only", "--print-value-only"}, "--print-value-only cannot be used"},
		{"get negative limit", nil, []string{"get", "a", "--limit", "-1"}, "invalid --limit -1"},
		{"get bad rev", nil, []string{"get", "a", "--rev", "x"}, `invalid argument "x"`},
		{"put without value", nil, []string{"put", "k"}, "put needs a key and a value, got 1 arguments"},
		{"put empty key", nil, []string{"put", "", "v"}, "key is empty"},
		{"del without key", nil, []string{"del"}, "del needs a key"},
		{"del prefix and end", nil, []string{"del", "a", "b", "--prefix"}, "a range end cannot be used with --prefix"},
		{"txn with args", nil, []string{"txn", "x"}, `unknown command "x" for "kvctl txn"`},
		{"member list with args", nil, []string{"member", "list", "x"}, `unknown command "x"`},
		{"endpoint status with args", nil, []string{"endpoint", "status", "x"}, `unknown command "x"`},
		{"member add without name", nil, []string{"member", "add", "--raft-addr", "a:1"}, "member add needs a member name, got 0 arguments"},
		{"member add without raft addr", nil, []string{"member", "add", "n4"}, "member add needs --raft-addr"},
		{"member add bad raft addr", nil, []string{"member", "add", "n4", "--raft-addr", "nohost"}, `invalid --raft-addr "nohost": want host:port`},
		{"member add empty host", nil, []string{"member", "add", "n4", "--raft-addr", ":7380"}, `invalid --raft-addr ":7380": want host:port`},
		{"member add bad client addr", nil, []string{"member", "add", "n4", "--raft-addr", "a:1", "--client-addr", "x"}, `invalid --client-addr "x"`},
		{"member add bad name", nil, []string{"member", "add", "a=b", "--raft-addr", "a:1"}, `name "a=b" must not contain commas, '=' or spaces`},
		{"member add empty name", nil, []string{"member", "add", "", "--raft-addr", "a:1"}, "member name is empty"},
		{"member promote without name", nil, []string{"member", "promote"}, "member promote needs a member name, got 0 arguments"},
		{"member remove two names", nil, []string{"member", "remove", "a", "b"}, "member remove needs a member name, got 2 arguments"},
		{"leader transfer with args", nil, []string{"leader", "transfer", "n2"}, `unknown command "n2"`},
		{"leader transfer bad name", nil, []string{"leader", "transfer", "--to", "a b"}, "must not contain commas"},
		{"unknown leader subcommand", nil, []string{"leader", "move"}, `unknown command "move" for "kvctl leader"`},
		{"snapshot save without file", nil, []string{"snapshot", "save"}, "snapshot save needs a file name, got 0 arguments"},
		{"snapshot save empty file", nil, []string{"snapshot", "save", ""}, "file name is empty"},
		{"snapshot save two endpoints", nil, []string{"--endpoints", "127.0.0.1:1,127.0.0.1:2", "snapshot", "save", "x.db"}, "snapshot save needs exactly one endpoint, got 2"},
		{"snapshot save into a directory", nil, []string{"snapshot", "save", "."}, "exists and is not a regular file"},
		{"snapshot status moved", nil, []string{"snapshot", "status", "x.db"}, "snapshot status is an offline tool: use `kvdutil snapshot status x.db`"},
		{"snapshot restore moved", nil, []string{"snapshot", "restore", "x.db", "--name", "a", "--data-dir", "d", "--initial-cluster", "a=h:1"}, "use `kvdutil snapshot restore x.db --name a --data-dir d --initial-cluster a=h:1`"},
		{"check hash negative rev", nil, []string{"check", "hash", "--rev", "-1"}, "invalid --rev -1"},
		{"check hash with args", nil, []string{"check", "hash", "x"}, `unknown command "x"`},
		{"watch without key", nil, []string{"watch"}, "watch needs a key and an optional range end, got 0 arguments"},
		{"watch too many", nil, []string{"watch", "a", "b", "c"}, "got 3 arguments"},
		{"watch empty key", nil, []string{"watch", ""}, "watch: key is empty"},
		{"watch prefix and end", nil, []string{"watch", "a", "b", "--prefix"}, "a range end cannot be used with --prefix"},
		{"watch negative rev", nil, []string{"watch", "a", "--rev", "-1"}, "invalid --rev -1"},
		{"watch bad rev", nil, []string{"watch", "a", "--rev", "x"}, `invalid argument "x"`},
		{"watch separator without command", nil, []string{"watch", "a", "--"}, `found "--" but no command after it`},
		{"watch command without key", nil, []string{"watch", "--", "echo", "hi"}, "watch needs a key and an optional range end, got 0 arguments"},
		{"watch interactive with args", nil, []string{"watch", "-i", "a"}, "watch -i reads its watches from stdin and takes no arguments"},
		{"compaction without revision", nil, []string{"compaction"}, "compaction needs a revision, got 0 arguments"},
		{"compaction two revisions", nil, []string{"compaction", "1", "2"}, "compaction needs a revision, got 2 arguments"},
		{"compaction not a number", nil, []string{"compaction", "abc"}, `invalid revision "abc": want a positive integer`},
		{"compaction zero", nil, []string{"compaction", "0"}, "invalid revision 0: must be at least 1"},
		{"compaction negative", nil, []string{"compaction", "--", "-5"}, "invalid revision -5: must be at least 1"},
		{"defrag with args", nil, []string{"defrag", "x"}, `unknown command "x" for "kvctl defrag"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The endpoint does not exist; none of these may reach it.
			args := append([]string{"--endpoints", "127.0.0.1:1", "--command-timeout", "200ms"}, tt.args...)
			if tt.name == "bad endpoint" || tt.name == "empty endpoints" || tt.name == "snapshot save two endpoints" {
				args = tt.args
			}
			_, _, err := runKvctl(t, tt.env, "", args...)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestHelpNeedsNoServer(t *testing.T) {
	for _, args := range [][]string{{}, {"--help"}, {"get", "--help"}, {"member"}, {"endpoint"}, {"leader"}, {"snapshot"},
		{"check"}, {"snapshot", "restore", "--help"}, {"member", "add", "--help"},
		{"watch", "--help"}, {"compaction", "--help"}, {"defrag", "--help"}} {
		out, _, err := runKvctl(t, nil, "", args...)
		if err != nil {
			t.Errorf("kvctl %q: %v", args, err)
		}
		if !strings.Contains(out, "Usage:") {
			t.Errorf("kvctl %q printed no usage: %q", args, out)
		}
	}
}
