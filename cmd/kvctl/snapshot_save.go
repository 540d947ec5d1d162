package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
)

type snapshotSaveOptions struct {
	g    *globalOptions
	path string
}

func newSnapshotSaveCmd(g *globalOptions) *cobra.Command {
	o := &snapshotSaveOptions{g: g}
	return &cobra.Command{
		Use:   "save FILE",
		Short: "Stores a snapshot of a member's state database to FILE",
		Long: `Copies the state database of the member at --endpoints, which must name
exactly one endpoint (ideally the leader's, for the freshest data), into FILE:
the database bytes followed by their 32-byte SHA-256, as etcd lays out its
snapshot files. The copy goes to FILE.part, is checked against the checksum the
member sent, synced, and only then renamed to FILE, so FILE is either complete
or untouched (an existing FILE is replaced). It prints FILE's size and the
member's revision when the copy began.

kvctl does not read the database itself: "kvdutil snapshot status FILE" checks
the file again and shows its revision, keys and size, and
"kvdutil snapshot restore" builds a new cluster's data dirs from it.

--command-timeout bounds the wait for the member to start sending, not the
transfer; interrupt a transfer with Ctrl-C. A progress bar is drawn on stderr
when it is a terminal.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return fmt.Errorf("snapshot save needs a file name, got %d arguments", len(args))
			}
			o.path = args[0]
			if o.path == "" {
				return errors.New("snapshot save: file name is empty")
			}
			return o.Run(cmd.Context())
		},
	}
}

// Run streams the snapshot into the file and prints where it is.
func (o *snapshotSaveOptions) Run(ctx context.Context) error {
	if n := len(o.g.endpoints); n != 1 {
		return fmt.Errorf("snapshot save needs exactly one endpoint, got %d (%q): pick the member to copy, ideally the leader", n, o.g.endpoints)
	}
	ep := o.g.endpoints[0]
	if fi, err := os.Stat(o.path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("snapshot save: %s exists and is not a regular file", o.path)
	}
	c, err := o.g.newClient()
	if err != nil {
		return err
	}
	defer c.Close()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	timer := time.AfterFunc(o.g.commandTimeout, cancel)
	sr, err := c.Snapshot(ctx, ep)
	if !timer.Stop() {
		err = fmt.Errorf("%s did not start sending a snapshot within --command-timeout %v: %w", ep, o.g.commandTimeout, context.DeadlineExceeded)
	}
	if err != nil {
		if sr != nil {
			_ = sr.Close()
		}
		return err
	}
	defer sr.Close()

	var bar *progressBar
	if isTerminalWriter(o.g.errOut) {
		bar = &progressBar{w: o.g.errOut, total: sr.Size()}
	}
	sum, n, err := writeSnapshotFile(o.path, sr, bar)
	if err != nil {
		return fmt.Errorf("snapshot save: %w", err)
	}
	return o.g.printer().SnapshotSave(snapshotSaved{
		Path:     o.path,
		Size:     n + snapshotSumLen,
		DBSize:   n,
		SHA256:   sum,
		Endpoint: ep,
		Header:   sr.Header(),
	})
}

// snapshotSource is the part of client.SnapshotReader that
// writeSnapshotFile uses.
type snapshotSource interface {
	io.Reader
	Size() int64
	SHA256() []byte
}

// writeSnapshotFile writes the database that src streams, then its SHA-256,
// to path.part, syncs it, checks it against the member's checksum, renames it
// to path and syncs the directory. On failure path.part is removed and path
// is left as it was. It returns the SHA-256 and size of the database.
func writeSnapshotFile(path string, src snapshotSource, bar *progressBar) (sum []byte, n int64, err error) {
	part := path + ".part"
	f, err := os.OpenFile(part, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, 0, err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(part)
		}
	}()
	h := sha256.New()
	w := io.MultiWriter(f, h)
	if bar != nil {
		w = io.MultiWriter(f, h, bar)
	}
	n, err = io.Copy(w, src)
	if bar != nil {
		bar.finish()
	}
	if err != nil {
		return nil, n, err
	}
	sum = h.Sum(nil)
	// The reader checked the stream against the member's SHA-256 already;
	// this checks that what went into the file is what was checked.
	if !bytes.Equal(sum, src.SHA256()) || n != src.Size() {
		return nil, n, fmt.Errorf("%w: wrote %d bytes hashing to %x, the member sent %d bytes hashing to %x",
			errChecksumMismatch, n, sum, src.Size(), src.SHA256())
	}
	if _, err = f.Write(sum); err != nil {
		return nil, n, err
	}
	if err = f.Sync(); err != nil {
		return nil, n, err
	}
	if err = f.Close(); err != nil {
		return nil, n, err
	}
	if err = os.Rename(part, path); err != nil {
		return nil, n, err
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		// The file is complete and in place; only its durability across a
		// crash is in doubt.
		return sum, n, fmt.Errorf("saved %s, but syncing its directory failed: %w", path, err)
	}
	return sum, n, nil
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
