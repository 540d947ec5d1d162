package main

import (
	"fmt"
	"io"
	"strings"
)

// simplePrinter writes kvctl's default format: etcdctl's layout where etcdctl
// (or etcdutl) has one, comma-separated columns otherwise.
type simplePrinter struct {
	out io.Writer
}

var _ printer = (*simplePrinter)(nil)

// SnapshotStatus writes etcdctl's line: hash, revision, total keys, total
// size.
func (p *simplePrinter) SnapshotStatus(s snapshotStatus) error {
	w := &errWriter{w: p.out}
	w.println(strings.Join(snapshotStatusRow(s)[:4], ", "))
	return w.err
}

// SnapshotRestore writes what was restored, then the command that starts
// the member.
func (p *simplePrinter) SnapshotRestore(r snapshotRestored) error {
	w := &errWriter{w: p.out}
	w.printf("Restored %s into %s: revision %d, %d keys; member %s of a new cluster %s\n",
		r.Path, r.DataDir, r.Info.Revision, r.Info.Keys, r.Name, r.InitialCluster)
	w.println("Restore every member from the same file with the same --initial-cluster, then start each; this one with:")
	w.println("  " + restoreStartCommand(r))
	w.println("(add --client-addr and the member's other flags; --initial-cluster is not needed, the data dir holds it)")
	return w.err
}

func restoreStartCommand(r snapshotRestored) string {
	return strings.Join([]string{"kvd", "--name", r.Name, "--data-dir", r.DataDir, "--raft-addr", r.RaftAddr}, " ")
}

// MemberIDs writes one "ID, NAME" line per name, the columns of the table
// format (and the first two of kvctl member list).
func (p *simplePrinter) MemberIDs(ids []memberID) error {
	w := &errWriter{w: p.out}
	for _, row := range memberIDRows(ids) {
		w.println(strings.Join(row, ", "))
	}
	return w.err
}

var snapshotStatusHeader = []string{"HASH", "REVISION", "TOTAL KEYS", "TOTAL SIZE", "CHECKSUM"}

func snapshotStatusRow(s snapshotStatus) []string {
	checksum := "OK"
	if !s.ChecksumOK {
		checksum = "MISMATCH"
	}
	return []string{
		shortHash(s.SHA256), fmt.Sprint(s.Info.Revision), fmt.Sprint(s.Info.Keys),
		humanBytes(s.Info.Size), checksum,
	}
}

var memberIDHeader = []string{"ID", "NAME"}

func memberIDRows(ids []memberID) [][]string {
	rows := make([][]string, 0, len(ids))
	for _, m := range ids {
		rows = append(rows, []string{hexID(m.ID), m.Name})
	}
	return rows
}
