package member

import (
	"math/rand/v2"
	"time"

	"github.com/hashicorp/raft"
)

// Noticing a failed leader. hashicorp/raft's follower checks for its
// leader's heartbeats on a timer that it re-arms with a random one to two
// heartbeat timeouts, whatever the leader did; it stands for election only
// when a check finds the last contact more than a heartbeat timeout old.
// So it notices a dead leader one to three heartbeat timeouts after the
// last heartbeat, and an election of two survivors, which needs both to
// have noticed (each refuses the other's vote while it still has a
// leader), often takes close to three: about 3 s with the default 1 s
// timers. Every lease's renewals wait that long, and a client must have
// one answered within its lease's TTL of the last (2/3 of the TTL after
// the kill at worst: it renews every third of one): a 5 s lease was lost
// in a good share of the leader kills.
//
// hastenElections checks the follower's last contact every tenth of a
// heartbeat timeout, and once it is a heartbeat timeout old plus a random
// jitter of up to half a heartbeat timeout (so that the two survivors do
// not stand at once and split the vote), it makes raft check at once: a
// reload of raft's configuration with a shorter heartbeat timeout wakes
// the follower's check (that is how raft applies one), and the reload that
// follows puts the configured timeout back. Raft itself still decides: the
// check finds what raft's own would have found a little later. The member
// notices a dead leader 1 to 1.6 heartbeat timeouts after its last
// heartbeat, as etcd's members notice theirs within one to two election
// timeouts. A member whose LeaderLeaseTimeout equals its heartbeat timeout
// cannot take a shorter one, and keeps raft's own timer.
//
// The first survivor to stand is always refused (the other still has a
// leader), and it then waits as a candidate for one to two election
// timeouts before it asks again. That costs nothing when the second
// survivor's log is at least as long: the first grants the second's
// pre-vote, and the second wins. But when the leader's last append reached
// only the first, the first must refuse the second (its log is longer),
// and nobody wins until the first's timer fires: 2.5 to 3.6 heartbeat
// timeouts in all, and a CI run saw it. So a candidate that is asked for
// its vote, which tells it that a peer has lost its leader too, makes its
// own next attempt come sooner: the same reload, with the heartbeat and
// election timeouts at the leader lease timeout (the least raft accepts),
// re-arms the candidate's timer to one to two of those, and the configured
// values come back before it fires. Pre-votes keep the extra attempts
// harmless: an attempt that cannot win changes no term.
func (m *Member) hastenElections() {
	hb := m.cfg.HeartbeatTimeout
	if m.cfg.LeaderLeaseTimeout >= hb {
		return
	}
	// Vote requests the member receives; dropped, not queued, when the loop
	// is busy: one tells it all it needs to know.
	asked := make(chan raft.Observation, 1)
	obs := raft.NewObserver(asked, false, func(o *raft.Observation) bool {
		switch o.Data.(type) {
		case raft.RequestPreVoteRequest, raft.RequestVoteRequest:
			return true
		}
		return false
	})
	m.raft.RegisterObserver(obs)
	defer m.raft.DeregisterObserver(obs)

	jitter := func() time.Duration { return rand.N(hb / 2) }
	tick := time.NewTicker(max(hb/10, time.Millisecond))
	defer tick.Stop()
	wait := hb + jitter()
	var hastened time.Time // the last contact it made raft check after
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-asked:
			if m.raft.State() == raft.Candidate {
				m.hastenCandidate()
			}
			continue
		case <-tick.C:
		}
		if m.raft.State() != raft.Follower {
			continue
		}
		last := m.raft.LastContact()
		if last.IsZero() || last.Equal(hastened) || time.Since(last) < wait {
			continue
		}
		hastened, wait = last, hb+jitter()
		rc := m.raft.ReloadableConfig()
		shorter := rc
		shorter.HeartbeatTimeout = rc.HeartbeatTimeout - time.Nanosecond
		if err := m.raft.ReloadConfig(shorter); err != nil {
			m.log.Debug("hasten the leader check", "error", err)
			continue
		}
		if err := m.raft.ReloadConfig(rc); err != nil {
			m.log.Error("restore the raft heartbeat timeout", "error", err)
		}
		m.log.Info("no heartbeat from the leader; checking it now", "last_contact", time.Since(last).Round(time.Millisecond))
	}
}

// hastenCandidate makes a candidate's next election attempt come one to two
// leader lease timeouts from now instead of one to two election timeouts.
// Raft's candidate loop takes a changed election timeout when a shorter
// heartbeat timeout is loaded, and reads the configuration afresh for each
// attempt; the configured values are restored well before the shortened
// timer can fire, so only this attempt is hastened.
func (m *Member) hastenCandidate() {
	short := m.cfg.LeaderLeaseTimeout
	rc := m.raft.ReloadableConfig()
	shorter := rc
	shorter.HeartbeatTimeout, shorter.ElectionTimeout = short, short
	if err := m.raft.ReloadConfig(shorter); err != nil {
		m.log.Debug("hasten the next election attempt", "error", err)
		return
	}
	// Long enough for raft's loop to take the shortened timeout, short
	// enough to restore the configured ones before the attempt it set off.
	hold := time.NewTimer(short / 4)
	select {
	case <-hold.C:
	case <-m.ctx.Done():
		hold.Stop()
	}
	if err := m.raft.ReloadConfig(rc); err != nil {
		m.log.Error("restore the raft election timeout", "error", err)
	}
	// Debug: with a quorum lost, this repeats every attempt.
	m.log.Debug("asked for a vote while standing for election; trying again sooner")
}
