package main

import (
	"fmt"
	"io"

	"github.com/kvd-io/kvd/fsm"
)

// printer writes command results in one output format. Each -w value has its
// own implementation, in its own file. Every method returns the first write
// error, so a closed stdout fails the command.
type printer interface {
	// SnapshotStatus prints what a snapshot file holds.
	SnapshotStatus(s snapshotStatus) error
	// SnapshotRestore prints what a restore wrote and how to start the
	// member.
	SnapshotRestore(r snapshotRestored) error
	// MemberIDs prints the member id of each name, in the order given.
	MemberIDs(ids []memberID) error
}

// snapshotStatus describes a snapshot file, for snapshot status.
type snapshotStatus struct {
	Path       string
	SHA256     []byte // of the database part of the file
	ChecksumOK bool   // it matches the SHA-256 stored at the end of the file
	Info       fsm.StateInfo
}

// snapshotRestored describes a data dir that snapshot restore built.
type snapshotRestored struct {
	Path           string
	Name           string
	DataDir        string
	RaftAddr       string
	InitialCluster string
	Info           fsm.StateInfo
}

// memberID is a name and the member id kvd derives from it.
type memberID struct {
	Name string
	ID   uint64
}

// newPrinter returns the printer for format, which must be valid (the global
// flags were validated).
func newPrinter(format string, out io.Writer) printer {
	simple := &simplePrinter{out: out}
	switch format {
	case formatJSON:
		return &jsonPrinter{out: out}
	case formatTable:
		return &tablePrinter{simplePrinter: simple}
	default:
		return simple
	}
}

// hexID formats a member id as kvctl and etcdctl do.
func hexID(id uint64) string { return fmt.Sprintf("%x", id) }

// humanBytes formats a size in SI units, as etcdctl's "20 kB".
func humanBytes(n int64) string {
	if n < 1000 {
		return fmt.Sprintf("%d B", n)
	}
	const units = "kMGTPE"
	f := float64(n) / 1000
	i := 0
	for f >= 999.5 && i < len(units)-1 { // would print as 1000
		f /= 1000
		i++
	}
	if f < 9.95 { // would print as 10.0
		return fmt.Sprintf("%.1f %cB", f, units[i])
	}
	return fmt.Sprintf("%.0f %cB", f, units[i])
}

// shortHash is the first four bytes of a SHA-256 in hex, eight digits like
// the hash etcdctl shows for a snapshot.
func shortHash(sum []byte) string {
	if len(sum) < 4 {
		return fmt.Sprintf("%x", sum)
	}
	return fmt.Sprintf("%x", sum[:4])
}

// errWriter remembers the first write error, so printers can write many
// lines and check once.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

func (e *errWriter) println(args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintln(e.w, args...)
	}
}
