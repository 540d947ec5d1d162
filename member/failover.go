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
func (m *Member) hastenElections() {
	hb := m.cfg.HeartbeatTimeout
	if m.cfg.LeaderLeaseTimeout >= hb {
		return
	}
	jitter := func() time.Duration { return rand.N(hb / 2) }
	tick := time.NewTicker(max(hb/10, time.Millisecond))
	defer tick.Stop()
	wait := hb + jitter()
	var hastened time.Time // the last contact it made raft check after
	for {
		select {
		case <-m.ctx.Done():
			return
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
