package main

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

// newSnapshotCmd groups the snapshot commands. Add a subcommand here, in its
// own file. Only save talks to a cluster; status and restore work on files
// and data dirs and live in kvdutil, but keep their names here to point
// etcdctl users there.
func newSnapshotCmd(g *globalOptions) *cobra.Command {
	return groupCmd("snapshot", "Manages kvd snapshots",
		newSnapshotSaveCmd(g),
		newSnapshotStatusCmd(g),
		newSnapshotRestoreCmd(g),
	)
}

// A snapshot file, as snapshot save writes it, is laid out like etcd's: the
// member's state database (a bbolt file) byte for byte, then the SHA-256 of
// those bytes (32 bytes). The checksum is what lets kvdutil snapshot status
// and restore refuse a file that was truncated or damaged since it was
// saved.
const snapshotSumLen = sha256.Size

// errChecksumMismatch is wrapped by the error of a snapshot whose bytes do
// not match their SHA-256.
var errChecksumMismatch = errors.New("checksum mismatch")

// offlineArg is one argument of a kvdutil command line that kvctl suggests:
// a flag's value, or a placeholder when the user did not give it.
type offlineArg struct {
	flag        string // "--name"; empty for a positional argument
	value       string
	placeholder string // printed when value is empty
}

// movedToKvdutil is the error of a kvctl command that became a kvdutil one:
// it names the kvdutil command line with the user's arguments.
func movedToKvdutil(g *globalOptions, command string, args ...offlineArg) error {
	line := []string{"kvdutil", command}
	for _, a := range args {
		if a.flag != "" {
			line = append(line, a.flag)
		}
		if a.value == "" {
			line = append(line, a.placeholder)
		} else {
			line = append(line, shellQuote(a.value))
		}
	}
	if g.writeOut != formatSimple {
		line = append(line, "-w", g.writeOut)
	}
	return fmt.Errorf("%s is an offline tool: use `%s`", command, strings.Join(line, " "))
}

// positionalArgs turns a command's arguments into offlineArgs, or into
// placeholder when there are none.
func positionalArgs(args []string, placeholder string) []offlineArg {
	if len(args) == 0 {
		return []offlineArg{{placeholder: placeholder}}
	}
	out := make([]offlineArg, 0, len(args))
	for _, a := range args {
		out = append(out, offlineArg{value: a, placeholder: "''"})
	}
	return out
}

// shellQuote returns s as a POSIX shell word: as is when it holds only
// characters the shell leaves alone, in single quotes otherwise.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_./:=,@%+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
