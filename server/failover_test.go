package server_test

import (
	"errors"
	"testing"
	"time"

	"github.com/kvd-io/kvd/internal/poll"
	"github.com/kvd-io/kvd/server"
	"github.com/kvd-io/kvd/server/servertest"
)

// When the leader goes silent, the others elect a new one within two
// heartbeat timeouts (a member notices within 1.6), not the up to three
// that hashicorp/raft's own follower timer takes: a kept-alive lease must
// have a renewal answered within 2/3 of its TTL after the leader's failure.
// Twice, on long timers, so that a slow machine's delays stay small beside
// them, and so that raft's timer alone would rarely make it both times.
func TestSurvivorsElectWithinTwoHeartbeatTimeouts(t *testing.T) {
	skipIfShort(t)
	// Not parallel: beside the other cluster tests, a starved member's
	// delays would eat the margin between the bound and 1.6 timeouts.
	const hb = 3 * time.Second
	c := servertest.New(t, 3, servertest.WithConfig(func(cfg *server.Config) {
		cfg.HeartbeatTimeout = hb
		cfg.ElectionTimeout = hb
	}))
	for round := range 2 {
		old := c.Leader(30 * time.Second)
		var rest []string
		for _, name := range c.Names() {
			if name != old {
				rest = append(rest, name)
			}
		}
		c.Isolate(old)
		cut := time.Now()
		var leader string
		if err := poll.Within(30*time.Second, func() error {
			for _, name := range rest {
				if c.Member(name).Server.IsLeader() {
					leader = name
					return nil
				}
			}
			return errors.New("no new leader yet")
		}); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		took := time.Since(cut)
		t.Logf("round %d: %s leads %s after %s was cut off (heartbeat timeout %s)", round, leader, took.Round(time.Millisecond), old, hb)
		if took > 2*hb {
			t.Errorf("round %d: a new leader took %s, want within %s", round, took.Round(time.Millisecond), 2*hb)
		}
		c.Heal()
		c.WaitConverged(60 * time.Second)
	}
}
