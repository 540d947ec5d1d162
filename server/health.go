package server

import (
	"context"
	"sync"
	"time"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Health of the other members is what this member sees of their APIs: every
// probeInterval it asks each published member for its status. Raft's own
// heartbeat failures surface only after a transport timeout (10s), too late
// to keep an operator from removing the wrong member.
const (
	probeInterval = time.Second
	probeTimeout  = time.Second
	healthyWithin = 3 * time.Second
)

// prober tracks when each member last answered.
type prober struct {
	s      *Server
	mu     sync.Mutex
	lastOK map[string]time.Time
}

func newProber(s *Server) *prober { return &prober{s: s, lastOK: map[string]time.Time{}} }

// run probes until the member stops.
func (p *prober) run() {
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for {
		p.probeAll()
		select {
		case <-p.s.stop:
			return
		case <-tick.C:
		}
	}
}

func (p *prober) probeAll() {
	attrs, err := p.s.fsm.Members()
	if err != nil {
		return
	}
	f := p.s.raft.GetConfiguration()
	if f.Error() != nil {
		return
	}
	var wg sync.WaitGroup
	for _, srv := range f.Configuration().Servers {
		name := string(srv.ID)
		addr := attrs[name].GetClientAddr()
		if name == p.s.cfg.Name || addr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), probeTimeout)
			defer cancel()
			conn, err := p.s.peers.Ready(ctx, addr)
			if err != nil {
				return
			}
			st, err := kvv1.NewMaintenanceServiceClient(conn).Status(ctx, &kvv1.StatusRequest{})
			if err != nil {
				p.s.peerFailed(addr, err)
				return
			}
			if st.GetName() != name {
				return
			}
			p.mu.Lock()
			p.lastOK[name] = time.Now()
			p.mu.Unlock()
		}()
	}
	wg.Wait()
}

// lastContact returns when the member last answered; this member itself
// always answers.
func (p *prober) lastContact(name string) (time.Time, bool) {
	if name == p.s.cfg.Name {
		return time.Now(), true
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.lastOK[name]
	return t, ok
}

// healthy reports whether the member answered recently.
func (p *prober) healthy(name string) bool {
	t, ok := p.lastContact(name)
	return ok && time.Since(t) < healthyWithin
}
