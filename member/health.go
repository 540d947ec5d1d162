package member

import (
	"context"
	"sync"
	"time"
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
	m      *Member
	mu     sync.Mutex
	lastOK map[string]time.Time
}

func newProber(m *Member) *prober { return &prober{m: m, lastOK: map[string]time.Time{}} }

// run probes until the member stops.
func (p *prober) run() {
	tick := time.NewTicker(probeInterval)
	defer tick.Stop()
	for {
		p.probeAll()
		select {
		case <-p.m.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

func (p *prober) probeAll() {
	attrs, err := p.m.fsm.Members()
	if err != nil {
		return
	}
	cfg, _, err := p.m.configuration()
	if err != nil {
		return
	}
	var wg sync.WaitGroup
	for _, srv := range cfg.Servers {
		name := string(srv.ID)
		addr := attrs[name].GetClientAddr()
		if name == p.m.cfg.Name || addr == "" {
			continue
		}
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(p.m.ctx, probeTimeout)
			defer cancel()
			st, err := p.m.peers.Status(ctx, addr)
			if err != nil || st.Name != name {
				return
			}
			p.mu.Lock()
			p.lastOK[name] = time.Now()
			p.mu.Unlock()
		})
	}
	wg.Wait()
}

// lastContact returns when the member last answered; this member itself
// always answers.
func (p *prober) lastContact(name string) (time.Time, bool) {
	if name == p.m.cfg.Name {
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
