package member

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"

	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/auth"
	"github.com/kvd-io/kvd/internal/mvcc"
	"github.com/kvd-io/kvd/internal/watch"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Watch: the state machine reports what each applied revision changed
// (fsm.Feed); the member hands it to its watch hub (package
// internal/watch), which queues each watcher's events on its stream and
// catches watchers that fell behind up from the store (watchHistory).

// NewWatchStream opens a stream of watchers on this member.
func (m *Member) NewWatchStream() *watch.Stream { return m.hub.NewStream() }

// WatchProgressInterval is how often idle watchers that asked for it get a
// progress notification.
func (m *Member) WatchProgressInterval() time.Duration { return m.cfg.WatchProgressInterval }

// ElectionTimeout is the member's raft election timeout.
func (m *Member) ElectionTimeout() time.Duration { return m.cfg.ElectionTimeout }

// LeaderlessFor is how long this member has known no leader; zero while it
// knows one.
func (m *Member) LeaderlessFor() time.Duration {
	since := m.leaderlessSince.Load()
	if since == 0 {
		return 0
	}
	return time.Since(time.Unix(0, since))
}

// watchLeader keeps leaderlessSince: raft tells of every change of leader.
func (m *Member) watchLeader() {
	ch := make(chan raft.Observation, 16)
	obs := raft.NewObserver(ch, false, func(o *raft.Observation) bool {
		_, ok := o.Data.(raft.LeaderObservation)
		return ok
	})
	m.raft.RegisterObserver(obs)
	defer m.raft.DeregisterObserver(obs)
	update := func() {
		if _, id := m.raft.LeaderWithID(); id != "" {
			m.leaderlessSince.Store(0)
		} else {
			m.leaderlessSince.CompareAndSwap(0, time.Now().UnixNano())
		}
	}
	update()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-ch:
			update()
		}
	}
}

// hubFeed is the state machine's feed into the watch hub.
type hubFeed struct{ m *Member }

func (f hubFeed) Applied(changes []fsm.Change) {
	out := make([]watch.Change, len(changes))
	for i, c := range changes {
		out[i] = watch.Change{Revision: c.Revision, Events: events(c.Events)}
	}
	f.m.hub.Applied(out)
}

func (f hubFeed) Restored(revision int64) { f.m.hub.Restored(revision) }

// AuthChanged lets the hub end the watchers whose users lost the right to
// read their keys, before any event applied after the change.
func (f hubFeed) AuthChanged(s *auth.State) { f.m.hub.AuthChanged(s) }

// watchHistory is the store's history as the hub reads it.
type watchHistory struct{ m *Member }

func (h watchHistory) Changes(key, end []byte, from, to int64) ([]watch.Change, error) {
	changes, err := h.m.fsm.Changes(key, end, from, to)
	if errors.Is(err, fsm.ErrCompacted) {
		return nil, fmt.Errorf("%w: %w", watch.ErrCompacted, err)
	}
	if err != nil {
		return nil, err
	}
	out := make([]watch.Change, len(changes))
	for i, c := range changes {
		out[i] = watch.Change{Revision: c.Revision, Events: events(c.Events)}
	}
	return out, nil
}

func (h watchHistory) CompactRevision() int64 { return h.m.fsm.CompactRevision() }

// events turns the state machine's events into the API's.
func events(in []mvcc.Event) []*kvv1.Event {
	out := make([]*kvv1.Event, len(in))
	for i, e := range in {
		t := kvv1.EventType_EVENT_TYPE_PUT
		if e.Type == mvcc.Delete {
			t = kvv1.EventType_EVENT_TYPE_DELETE
		}
		out[i] = &kvv1.Event{Type: t, Kv: e.KV, PrevKv: e.PrevKV}
	}
	return out
}

// ErrCompactUnsupported: a member of the cluster runs a version that
// cannot apply a compaction (a rolling upgrade is under way).
var ErrCompactUnsupported = errors.New("a member of the cluster cannot apply compactions yet")

// Compact discards the history below rev through the log (see
// KVService.Compact). With physical, it then waits until this member has
// trimmed it.
func (m *Member) Compact(ctx context.Context, rev int64, physical bool) (*kvv1.CompactResponse, error) {
	req := &kvv1.CompactRequest{Revision: rev}
	if err := fsm.ValidateCompact(req); err != nil {
		return nil, err
	}
	if err := m.requireFeature(fsm.FeatureCompact, ErrCompactUnsupported); err != nil {
		return nil, err
	}
	cmd, err := fsm.EncodeClientCommand(fsmv1.CommandType_COMMAND_TYPE_COMPACT, req, AuthInfoFrom(ctx))
	if err != nil {
		return nil, err
	}
	res, err := m.Propose(ctx, cmd)
	if err != nil {
		return nil, err
	}
	resp, ok := res.(*kvv1.CompactResponse)
	if !ok {
		return nil, fmt.Errorf("%w: %T answered a compaction", ErrOutcomeUnknown, res)
	}
	if physical {
		// Once this member reflects the compaction, wait for its trim.
		if err := m.Linearize(ctx); err != nil {
			return nil, err
		}
		if err := m.fsm.WaitTrimmed(ctx, rev); err != nil {
			return nil, err
		}
	}
	return resp, nil
}

// RequireFeature fails unless every member can apply commands that need
// feature (fsm.Feature*): with ErrLeasesUnsupported, ErrAlarmsUnsupported
// or ErrFeatureUnsupported when one cannot, with ErrNotReady (retry) when
// one has not said yet.
func (m *Member) RequireFeature(feature string) error {
	missing := ErrFeatureUnsupported
	switch feature {
	case fsm.FeatureLeases:
		missing = ErrLeasesUnsupported
	case fsm.FeatureAlarms:
		missing = ErrAlarmsUnsupported
	case fsm.FeatureCompact:
		missing = ErrCompactUnsupported
	}
	return m.requireFeature(feature, missing)
}

// ErrFeatureUnsupported: a member of the cluster cannot apply a command the
// request needs yet (a rolling upgrade is under way).
var ErrFeatureUnsupported = errors.New("a member of the cluster cannot apply this request yet")

// requireFeature fails with missing unless every member of the
// configuration has published feature (fsm.Feature*), or with ErrNotReady
// while one has published nothing yet (it just started or joined).
func (m *Member) requireFeature(feature string, missing error) error {
	members, err := m.fsm.Members()
	if err != nil {
		return err
	}
	cfg, _, err := m.configuration()
	if err != nil {
		return fmt.Errorf("%w: read configuration: %w", ErrNotReady, err)
	}
	for _, srv := range cfg.Servers {
		attrs, ok := members[string(srv.ID)]
		if !ok {
			return fmt.Errorf("%w: member %s has not published its version yet", ErrNotReady, srv.ID)
		}
		if !fsm.HasFeature(attrs, feature) {
			return fmt.Errorf("%w: member %s cannot; upgrade every member first", missing, srv.ID)
		}
	}
	return nil
}

// membersHave reports whether every member of the configuration has
// published feature.
func (m *Member) membersHave(feature string) bool {
	members, err := m.fsm.Members()
	if err != nil {
		return false
	}
	cfg, _, err := m.configuration()
	if err != nil {
		return false
	}
	return allHaveFeature(cfg, members, feature)
}
