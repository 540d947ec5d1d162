package member

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// removedMarker is written into the data dir of a member removed from its
// cluster, so that it refuses to start again on that data: its log still
// names it a member, and it would run as a zombie that no one talks to.
const removedMarker = "REMOVED"

func checkNotRemoved(dataDir string) error {
	b, err := os.ReadFile(filepath.Join(dataDir, removedMarker))
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check removal marker: %w", err)
	}
	return fmt.Errorf("%w (%s); to rejoin, empty %s and start with --join",
		ErrRemoved, strings.TrimSpace(string(b)), dataDir)
}

// markRemoved records the removal on disk and stops serving.
func (m *Member) markRemoved(why string) {
	m.stopServing(fmt.Errorf("%w: %s", ErrRemoved, why), func() {
		note := fmt.Sprintf("removed at %s: %s\n", time.Now().UTC().Format(time.RFC3339), why)
		if err := os.WriteFile(filepath.Join(m.cfg.DataDir, removedMarker), []byte(note), 0o600); err != nil {
			m.log.Error("write removal marker", "error", err)
		}
		m.log.Error("this member was removed from the cluster and stops serving", "reason", why)
	})
}

// stopServing makes the member refuse every request and closes Done, once;
// first runs before Done is closed.
func (m *Member) stopServing(err error, first func()) {
	m.doneOnce.Do(func() {
		if first != nil {
			first()
		}
		m.doneErr = err
		close(m.done)
	})
}

// watchRemoval notices when the raft configuration no longer names this
// member (the leader's notice may not arrive).
func (m *Member) watchRemoval() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	unconfirmed := 0 // checks in a row that found this member left out and no leader to ask
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-m.done:
			return
		case <-tick.C:
		}
		cfg, _, err := m.configuration()
		if err != nil || len(cfg.Servers) == 0 {
			continue // a joining member has no configuration yet
		}
		if _, err := findServer(cfg, m.cfg.Name); err == nil {
			unconfirmed = 0
			continue
		}
		// While a member catches up, the newest configuration in its own log
		// can be an old one: a member removed and added back replays the
		// configuration that removed it. Its log cannot tell, so the leader
		// is asked.
		listed, err := m.leaderListsMe()
		switch {
		case errors.Is(err, ErrSelfIsLeader):
			m.markRemoved("the raft configuration no longer includes it")
		case err == nil && !listed:
			m.markRemoved("the leader's raft configuration no longer includes it")
		case err == nil:
			unconfirmed = 0 // catching up through an old removal
		default:
			unconfirmed++
			if unconfirmed >= removalUnconfirmedChecks {
				m.markRemoved(fmt.Sprintf("its raft configuration has not included it for %d checks and no leader answered", unconfirmed))
			}
		}
	}
}

// removalUnconfirmedChecks is how many checks in a row (one a second) a
// member left out of its own configuration waits for a leader to confirm it
// before it believes its log alone. A removed member stops hearing from the
// leader, so it may have no leader to ask; a member catching up has one.
const removalUnconfirmedChecks = 10

// leaderListsMe asks the leader whether its configuration names this member.
// It returns ErrSelfIsLeader when this member leads.
func (m *Member) leaderListsMe() (bool, error) {
	ctx, cancel := context.WithTimeout(m.ctx, m.cfg.RequestTimeout)
	defer cancel()
	addr, _, err := m.leaderAddr(ctx)
	if err != nil {
		return false, err
	}
	members, err := m.peers.Members(ctx, addr)
	if err != nil {
		return false, err
	}
	for _, mem := range members {
		if mem.GetName() == m.cfg.Name {
			return true, nil
		}
	}
	return false, nil
}

// RemovedNotice is the leader's notice that the member named name was
// removed (PeerService.MemberRemoved). A notice for another name is
// ignored.
func (m *Member) RemovedNotice(name string) {
	if name != m.cfg.Name {
		return
	}
	m.markRemoved("the leader removed it")
}
