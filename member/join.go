package member

import (
	"context"
	"errors"
	"fmt"
	"time"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// join asks the members named in Config.Join to add this member, trying each
// in turn until one accepts, the request is refused for good, or the member
// stops. raft is already running, so the leader can replicate to this member
// as soon as it is added.
func (m *Member) join() {
	req := &kvv1.MemberAddRequest{
		Name:       m.cfg.Name,
		RaftAddr:   m.raftAddr,
		ClientAddr: m.cfg.AdvertiseClientAddr,
		IsLearner:  m.cfg.JoinAsLearner,
	}
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		addr := m.cfg.Join[attempt%len(m.cfg.Join)]
		ctx, cancel := context.WithTimeout(m.ctx, m.cfg.RequestTimeout)
		err := m.peers.AddMember(ctx, addr, req)
		cancel()
		if err == nil {
			m.log.Info("joined the cluster", "via", addr, "learner", req.IsLearner)
			return
		}
		if errors.Is(err, ErrRefused) {
			// A member that will never be added must not sit there looking
			// alive: stop, so that a supervisor sees the failure.
			m.log.Error("the cluster refused to add this member; fix the cause and restart", "via", addr, "error", err)
			m.stopServing(fmt.Errorf("%w: %w", ErrJoinRefused, err), nil)
			return
		}
		m.log.Warn("join attempt failed; retrying", "via", addr, "error", err)
		select {
		case <-m.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}
