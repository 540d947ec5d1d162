package server_test

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/server"
	"github.com/kvd-io/kvd/server/servertest"
)

// The state database is not fsynced per commit. A member whose state was not
// closed cleanly (here: torn, as after a power loss) must rebuild it from its
// newest snapshot and the raft log, and lose nothing.
func TestTornStateIsRebuiltFromSnapshotAndLog(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	c := servertest.New(t, 3, servertest.WithConfig(func(cfg *server.Config) {
		cfg.SnapshotThreshold = 50
		cfg.TrailingLogs = 10
	}))
	leader := c.Leader(20 * time.Second)
	for i := 0; i < 120; i++ {
		put(t, c, leader, fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i))
	}
	victim := others(c, leader)[0]
	// A snapshot in the middle, entries after it only in the log.
	if err := c.Member(victim).Server.Raft().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	for i := 120; i < 150; i++ {
		put(t, c, leader, fmt.Sprintf("k%03d", i), fmt.Sprintf("v%d", i))
	}
	c.WaitConverged(20 * time.Second)
	want, err := c.Member(leader).Server.FSM().Hash()
	if err != nil {
		t.Fatal(err)
	}

	c.Stop(victim)
	dir := c.Member(victim).Dir
	if err := os.Remove(filepath.Join(dir, fsm.CleanMarker)); err != nil {
		t.Fatal(err)
	}
	// Tear the unsynced state: keep its first page, garble the rest.
	state := filepath.Join(dir, fsm.StateFile)
	b, err := os.ReadFile(state)
	if err != nil {
		t.Fatal(err)
	}
	for i := 4096; i < len(b); i++ {
		b[i] = byte(i)
	}
	if err := os.WriteFile(state, b, 0o600); err != nil {
		t.Fatal(err)
	}

	c.Start(victim)
	if !c.Member(victim).Server.FSM().Rebuilt() {
		t.Fatal("the unclean state was not discarded")
	}
	c.WaitConverged(30 * time.Second)
	got, err := c.Member(victim).Server.FSM().Hash()
	if err != nil {
		t.Fatal(err)
	}
	if got != want {
		t.Fatalf("rebuilt state hash %08x, want %08x", got, want)
	}
	if n := countKeys(t, c, victim, true); n != 150 {
		t.Fatalf("rebuilt member has %d keys, want 150", n)
	}
}
