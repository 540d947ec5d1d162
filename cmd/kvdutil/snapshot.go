package main

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/kvd-io/kvd/fsm"
)

// newSnapshotCmd groups the snapshot commands. Add a subcommand here, in its
// own file. Saving a snapshot needs a cluster: that is kvctl snapshot save.
func newSnapshotCmd(g *globalOptions) *cobra.Command {
	return groupCmd("snapshot", "Inspects snapshot files and restores them into data dirs",
		newSnapshotStatusCmd(g),
		newSnapshotRestoreCmd(g),
	)
}

// A snapshot file, as kvctl snapshot save writes it, is laid out like etcd's:
// the member's state database (a bbolt file) byte for byte, then the SHA-256
// of those bytes (32 bytes). The checksum is what lets status and restore
// refuse a file that was truncated or damaged since it was saved.
const snapshotSumLen = sha256.Size

// errChecksumMismatch is wrapped by the error of a snapshot file whose
// database does not match the SHA-256 it ends with.
var errChecksumMismatch = errors.New("checksum mismatch")

// snapshotCheck is what checkSnapshotFile found.
type snapshotCheck struct {
	dbSize int64  // bytes before the checksum
	sum    []byte // SHA-256 of those bytes
	stored []byte // the SHA-256 the file ends with
}

func (c snapshotCheck) ok() bool { return bytes.Equal(c.sum, c.stored) }

// mismatch is the error of a check that failed.
func (c snapshotCheck) mismatch(path string) error {
	return fmt.Errorf("snapshot %s is corrupt (truncated or damaged): %w: its %d database bytes hash to %x, the file ends with %x",
		path, errChecksumMismatch, c.dbSize, c.sum, c.stored)
}

// checkSnapshotFile reads the snapshot file f, copying its database part to
// copyTo unless copyTo is nil, and computes the database's SHA-256. A
// mismatch is not an error here: see snapshotCheck.ok.
func checkSnapshotFile(f *os.File, copyTo io.Writer) (snapshotCheck, error) {
	var c snapshotCheck
	fi, err := f.Stat()
	if err != nil {
		return c, err
	}
	if !fi.Mode().IsRegular() {
		return c, fmt.Errorf("%s is not a regular file", f.Name())
	}
	if fi.Size() < snapshotSumLen {
		return c, fmt.Errorf("%s is not a snapshot file: %d bytes, fewer than its %d-byte checksum", f.Name(), fi.Size(), snapshotSumLen)
	}
	c.dbSize = fi.Size() - snapshotSumLen
	h := sha256.New()
	var w io.Writer = h
	if copyTo != nil {
		w = io.MultiWriter(h, copyTo)
	}
	if _, err := io.Copy(w, io.NewSectionReader(f, 0, c.dbSize)); err != nil {
		return c, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	c.sum = h.Sum(nil)
	c.stored = make([]byte, snapshotSumLen)
	if _, err := f.ReadAt(c.stored, c.dbSize); err != nil {
		return c, fmt.Errorf("read %s: %w", f.Name(), err)
	}
	return c, nil
}

// verifyingReader reads a database part that was checked before, and fails
// at its end if the bytes changed since.
type verifyingReader struct {
	r    io.Reader
	h    hash.Hash
	want []byte
}

func (v *verifyingReader) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	if err == io.EOF && !bytes.Equal(v.h.Sum(nil), v.want) {
		return n, fmt.Errorf("%w: the file changed while it was read", errChecksumMismatch)
	}
	return n, err
}

// inspectState is fsm.InspectState, with bbolt's panics on a damaged file
// turned into an error.
func inspectState(path string) (info fsm.StateInfo, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("damaged database: %v", r)
		}
	}()
	return fsm.InspectState(path)
}
