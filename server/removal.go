package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	peerv1 "github.com/kvd-io/kvd/proto/peer/v1"
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
func (s *Server) markRemoved(why string) {
	s.stopServing(fmt.Errorf("%w: %s", ErrRemoved, why), func() {
		note := fmt.Sprintf("removed at %s: %s\n", time.Now().UTC().Format(time.RFC3339), why)
		if err := os.WriteFile(filepath.Join(s.cfg.DataDir, removedMarker), []byte(note), 0o600); err != nil {
			s.log.Error("write removal marker", "error", err)
		}
		s.log.Error("this member was removed from the cluster and stops serving", "reason", why)
	})
}

// stopServing makes the member refuse every request and closes Done, once;
// first runs before Done is closed.
func (s *Server) stopServing(err error, first func()) {
	s.doneOnce.Do(func() {
		if first != nil {
			first()
		}
		s.doneErr = err
		close(s.done)
	})
}

// watchRemoval notices when the raft configuration no longer names this
// member (the leader's notice may not arrive).
func (s *Server) watchRemoval() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-s.done:
			return
		case <-tick.C:
		}
		cfg, _, err := s.configuration()
		if err != nil || len(cfg.Servers) == 0 {
			continue // a joining member has no configuration yet
		}
		// While a member catches up, the newest configuration in its own log
		// can be an old one: a member removed and added back replays the
		// configuration that removed it. Judge only a log that holds
		// everything the leader said is committed.
		if s.raft.LastIndex() < s.raft.CommitIndex() || s.raft.CommitIndex() == 0 {
			continue
		}
		if _, err := findServer(cfg, s.cfg.Name); err != nil {
			s.markRemoved("the raft configuration no longer includes it")
		}
	}
}

// MemberRemoved is the leader's notice that this member was removed.
func (p *peerService) MemberRemoved(ctx context.Context, req *peerv1.MemberRemovedRequest) (*peerv1.MemberRemovedResponse, error) {
	if req.GetName() != p.s.cfg.Name {
		return &peerv1.MemberRemovedResponse{}, nil
	}
	p.s.markRemoved("the leader removed it")
	return &peerv1.MemberRemovedResponse{}, nil
}
