package member

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Automatic compaction, with etcd's flags and meaning
// (--auto-compaction-mode, --auto-compaction-retention). Only the leader
// compacts, through the log, like any client would.
//
//   - periodic: keep about retention of history. Every tenth of retention
//     (at least a second) the compactor notes the current revision, and
//     compacts to the revision it noted retention ago. A retention given as
//     a bare number means hours, as etcd reads it.
//   - revision: keep the newest retention revisions: every five minutes
//     (less when the interval is set lower, for tests) it compacts to the
//     current revision minus retention.
const (
	CompactionPeriodic = "periodic"
	CompactionRevision = "revision"
)

// compactionPolicy is a parsed automatic compaction setting.
type compactionPolicy struct {
	mode      string
	retention time.Duration // periodic
	keep      int64         // revision
	interval  time.Duration // how often the compactor looks
}

// parseCompaction reads --auto-compaction-mode and -retention; an empty
// mode or a zero retention turns automatic compaction off (ok false).
func parseCompaction(mode, retention string, revisionInterval time.Duration) (p compactionPolicy, ok bool, err error) {
	if retention == "" || retention == "0" {
		return p, false, nil
	}
	switch mode {
	case "", CompactionPeriodic:
		d, err := time.ParseDuration(retention)
		if err != nil {
			hours, herr := strconv.ParseFloat(retention, 64)
			if herr != nil {
				return p, false, fmt.Errorf("auto compaction retention %q: want a duration (1h30m) or a number of hours", retention)
			}
			d = time.Duration(hours * float64(time.Hour))
		}
		if d <= 0 {
			return p, false, fmt.Errorf("auto compaction retention %q must be positive", retention)
		}
		return compactionPolicy{mode: CompactionPeriodic, retention: d, interval: max(d/10, time.Second)}, true, nil
	case CompactionRevision:
		n, err := strconv.ParseInt(retention, 10, 64)
		if err != nil || n <= 0 {
			return p, false, fmt.Errorf("auto compaction retention %q: want a positive number of revisions", retention)
		}
		return compactionPolicy{mode: CompactionRevision, keep: n, interval: revisionInterval}, true, nil
	default:
		return p, false, fmt.Errorf("auto compaction mode %q: want %s or %s", mode, CompactionPeriodic, CompactionRevision)
	}
}

// compactAutomatically runs the compactor until the member stops.
func (m *Member) compactAutomatically(p compactionPolicy) {
	m.log.Info("automatic compaction", "mode", p.mode, "retention", p.retention, "keep_revisions", p.keep, "every", p.interval)
	tick := time.NewTicker(p.interval)
	defer tick.Stop()
	// periodic: the revisions noted at each tick, oldest first.
	type sample struct {
		at  time.Time
		rev int64
	}
	var samples []sample
	for {
		select {
		case <-m.ctx.Done():
			return
		case now := <-tick.C:
			rev := m.fsm.Revision()
			target := int64(0)
			switch p.mode {
			case CompactionPeriodic:
				samples = append(samples, sample{now, rev})
				for len(samples) > 0 && now.Sub(samples[0].at) >= p.retention {
					target = samples[0].rev
					samples = samples[1:]
				}
			case CompactionRevision:
				target = rev - p.keep
			}
			if target <= m.fsm.CompactRevision() || !m.IsLeader() {
				continue
			}
			ctx, cancel := context.WithTimeout(m.ctx, m.cfg.RequestTimeout)
			_, err := m.Compact(ctx, target, false)
			cancel()
			switch {
			case err == nil:
				m.log.Info("compacted automatically", "revision", target, "mode", p.mode)
			case errors.Is(err, ErrStopped), m.ctx.Err() != nil:
				return
			default:
				m.log.Warn("automatic compaction failed; trying again at the next tick", "revision", target, "error", err)
			}
		}
	}
}
