package server_test

import (
	"errors"
	"testing"
	"time"

	"github.com/kvd-io/kvd/internal/poll"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/server"
	"github.com/kvd-io/kvd/server/servertest"
)

// When the leader goes silent, the others elect a new one within two
// heartbeat timeouts (a member notices within 1.6), not the up to three
// that hashicorp/raft's own follower timer takes: a kept-alive lease must
// have a renewal answered within 2/3 of its TTL after the leader's failure.
//
// Each round leaves one survivor with an entry the other lacks: the leader
// stops reaching one follower, commits a put with the other, and is then
// cut off. In about half the rounds the survivor with the longer log
// stands first, is refused (the other still has a leader) and must then
// refuse the other's pre-vote; without the candidate's hastened retry it
// would wait one to two election timeouts more, past the bound.
// Three rounds, on long timers, so that a slow machine's delays stay small
// beside them: the worst case is 1.7 heartbeat timeouts to notice (1.6 and
// a tick of the check) and two leader lease timeouts (0.5 s each) for the
// hastened retry, 9.5 s against the 10 s bound.
func TestSurvivorsElectWithinTwoHeartbeatTimeouts(t *testing.T) {
	skipIfShort(t)
	// Not parallel: beside the other cluster tests, a starved member's
	// delays would eat the margin between the bound and the worst case.
	const hb = 5 * time.Second
	c := servertest.New(t, 3, servertest.WithConfig(func(cfg *server.Config) {
		cfg.HeartbeatTimeout = hb
		cfg.ElectionTimeout = hb
	}))
	for round := range 3 {
		old := c.Leader(30 * time.Second)
		var rest []string
		for _, name := range c.Names() {
			if name != old {
				rest = append(rest, name)
			}
		}
		behind := rest[round%2]
		c.Cut(old, behind)
		if _, err := c.KV(old).Put(ctxT(t, 10*time.Second), &kvv1.PutRequest{Key: []byte("k"), Value: []byte{byte(round)}}); err != nil {
			t.Fatalf("round %d: put with %s cut off: %v", round, behind, err)
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
		t.Logf("round %d: %s leads %s after %s was cut off (heartbeat timeout %s; %s lacked the last entry)", round, leader, took.Round(time.Millisecond), old, hb, behind)
		if leader == behind {
			t.Errorf("round %d: %s, which lacked a committed entry, was elected", round, behind)
		}
		if took > 2*hb {
			t.Errorf("round %d: a new leader took %s, want within %s", round, took.Round(time.Millisecond), 2*hb)
		}
		c.Heal()
		c.WaitConverged(60 * time.Second)
	}
}
