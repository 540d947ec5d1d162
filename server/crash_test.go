package server_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvd-io/kvd/fsm"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/server"
	"github.com/kvd-io/kvd/server/servertest"
)

// The state database commits are fsynced and raft snapshots refer to it
// rather than copy it. A member that crashed finds its state as of some
// commit at or after its newest snapshot, and raft replays the log after
// it: nothing is lost. A state older than the newest snapshot (state.db
// replaced by an old copy) cannot be caught up from the log, and the member
// refuses to start rather than serve a state with a hole in it.
func TestCrashedStateCatchesUpFromTheLog(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	c := servertest.New(t, 3, servertest.WithConfig(func(cfg *server.Config) {
		cfg.SnapshotThreshold = 50
		cfg.TrailingLogs = 10
	}))
	leader := c.Leader(20 * time.Second)
	victim := others(c, leader)[0]
	backup := func() []byte {
		t.Helper()
		var b bytes.Buffer
		if _, err := c.Member(victim).Server.FSM().Backup(&b, nil); err != nil {
			t.Fatal(err)
		}
		return b.Bytes()
	}
	for i := 0; i < 60; i++ {
		put(t, c, leader, fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i))
	}
	c.WaitConverged(20 * time.Second)
	beforeSnapshot := backup()
	for i := 60; i < 120; i++ {
		put(t, c, leader, fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i))
	}
	c.WaitConverged(20 * time.Second)
	// A snapshot trims the log: the entries before it are gone.
	if err := c.Member(victim).Server.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	afterSnapshot := backup()
	for i := 120; i < 150; i++ {
		put(t, c, leader, fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i))
	}
	c.WaitConverged(20 * time.Second)
	want, err := c.Member(leader).Server.FSM().Hash()
	if err != nil {
		t.Fatal(err)
	}
	snaps, err := filepath.Glob(filepath.Join(c.Member(victim).Dir, "snapshots", "*", "state.bin"))
	if err != nil || len(snaps) == 0 {
		t.Fatalf("no snapshot on disk: %v", err)
	}
	for _, s := range snaps {
		if fi, err := os.Stat(s); err != nil || fi.Size() > 100 {
			t.Fatalf("snapshot %s: %v bytes (%v), want a short reference", s, fi.Size(), err)
		}
	}

	// A crash: state.db as of a commit after the snapshot, no clean marker.
	dir := c.Member(victim).Dir
	state := filepath.Join(dir, fsm.StateFile)
	crash := func(data []byte) {
		t.Helper()
		c.Stop(victim)
		if err := os.WriteFile(state, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(filepath.Join(dir, fsm.CleanMarker)); err != nil {
			t.Fatal(err)
		}
	}
	crash(afterSnapshot)
	c.Start(victim)
	if c.Member(victim).Server.FSM().Rebuilt() {
		t.Fatal("the crashed state was discarded")
	}
	c.WaitConverged(30 * time.Second)
	got, err := c.Member(victim).Server.FSM().Hash()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("state after the crash hashes to %08x, want %08x", got, want)
	}
	if n := countKeys(t, c, victim, true); n != 150 {
		t.Fatalf("member has %d keys after the crash, want 150", n)
	}

	// state.db older than the snapshot: the log no longer covers the gap.
	crash(beforeSnapshot)
	if err := c.TryStart(victim); !errors.Is(err, fsm.ErrStateBehindSnapshot) {
		t.Fatalf("start over a state older than the snapshot: %v, want ErrStateBehindSnapshot", err)
	}
}

// Defragmentation gives back the raft log file's space too: after a burst
// of large entries, raft keeps only its trailing entries once a snapshot is
// taken, and the file is rewritten with those.
func TestDefragmentShrinksTheRaftLog(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	c := servertest.New(t, 1, servertest.WithConfig(func(cfg *server.Config) {
		cfg.SnapshotThreshold = 1 << 20 // only the defragmentation's snapshot
		cfg.TrailingLogs = 10
	}))
	name := c.Leader(20 * time.Second)
	big := string(bytes.Repeat([]byte("v"), 32<<10))
	for i := 0; i < 300; i++ {
		put(t, c, name, fmt.Sprintf("k%03d", i%10), big)
	}
	logFile := filepath.Join(c.Member(name).Dir, "raft", "raft.db")
	size := func() int64 {
		t.Helper()
		// Entries reach raft.db in the journal's checkpoints.
		var fi os.FileInfo
		c.Eventually(10*time.Second, func() error {
			var err error
			if fi, err = os.Stat(logFile); err != nil {
				return err
			}
			return nil
		})
		return fi.Size()
	}
	var before int64
	c.Eventually(20*time.Second, func() error {
		if before = size(); before < 8<<20 {
			return fmt.Errorf("raft.db is %d bytes, want the burst in it", before)
		}
		return nil
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := c.Maintenance(name).Defragment(ctx, &kvv1.DefragmentRequest{}); err != nil {
		t.Fatal(err)
	}
	if after := size(); after > before/4 {
		t.Fatalf("raft.db is %d bytes after defragmenting, %d before; want a quarter at most", after, before)
	}
	// The member goes on writing its log, and the data is all there.
	put(t, c, name, "after", "1")
	if n := countKeys(t, c, name, false); n != 11 {
		t.Fatalf("%d keys after defragmenting, want 11", n)
	}
}
