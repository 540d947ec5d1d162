package member

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/kvd-io/kvd/fsm"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// The space quota, as etcd's --quota-backend-bytes: before a write that can
// grow the state goes through the log, the member that received it checks
// that its state file would stay within the quota. If not, it raises a
// NOSPACE alarm through the log and refuses the write; while the alarm is
// raised, every member refuses such writes when it applies them (package
// fsm), so no write is half applied and every member agrees. Deletes,
// compactions and defragmentation go on; once space is free, an operator
// clears the alarm (kvctl alarm disarm).

// DefaultQuotaBackendBytes is etcd's default quota: 2 GiB.
const DefaultQuotaBackendBytes = 2 << 30

// ErrNoSpace: a write that would grow the state while it is over quota.
var ErrNoSpace = fsm.ErrNoSpace

// CheckQuota refuses a write of about cost bytes that would grow the state
// past the quota (or while a NOSPACE alarm is raised), raising the alarm
// if this member is the one over quota.
func (m *Member) CheckQuota(cost int) error {
	if m.fsm.NoSpace() {
		return fmt.Errorf("%w: a NOSPACE alarm is raised; compact, defragment, then disarm it", ErrNoSpace)
	}
	quota := m.cfg.quotaBytes()
	size, fits, err := m.quotaSize.fits(m.fsm.DBSize, int64(cost), quota)
	if err != nil {
		return err
	}
	if fits {
		return nil
	}
	m.raiseNoSpace(size, quota)
	return fmt.Errorf("%w: %s's state file is %d bytes, its quota (--quota-backend-bytes) %d", ErrNoSpace, m.cfg.Name, size, quota)
}

// raiseNoSpace raises this member's NOSPACE alarm, once at a time, in the
// background.
func (m *Member) raiseNoSpace(size, quota int64) {
	if !m.raisingAlarm.CompareAndSwap(false, true) {
		return
	}
	m.log.Warn("state file over its quota: raising NOSPACE; writes that grow the state are refused until it is disarmed",
		"db_size", size, "quota", quota)
	m.workers.Submit(func() {
		defer m.raisingAlarm.Store(false)
		ctx, cancel := context.WithTimeout(m.ctx, m.cfg.RequestTimeout)
		defer cancel()
		_, err := m.Alarm(ctx, &kvv1.AlarmRequest{Action: kvv1.AlarmRequest_ALARM_ACTION_ACTIVATE, MemberId: m.id, Alarm: kvv1.AlarmType_ALARM_TYPE_NOSPACE})
		if err != nil {
			m.log.Warn("raise NOSPACE", "error", err)
		}
	})
}

// Alarm lists the alarms (as of a linearizable read), or raises or clears
// one through the log.
func (m *Member) Alarm(ctx context.Context, req *kvv1.AlarmRequest) (*kvv1.AlarmResponse, error) {
	if req.GetAction() == kvv1.AlarmRequest_ALARM_ACTION_GET {
		if err := m.Linearize(ctx); err != nil {
			return nil, err
		}
		alarms, err := m.fsm.Alarms()
		if err != nil {
			return nil, err
		}
		return &kvv1.AlarmResponse{Header: m.Header(m.Revision()), Alarms: alarms}, nil
	}
	if err := fsm.ValidateAlarm(req); err != nil {
		return nil, err
	}
	if err := m.RequireFeature(fsm.FeatureAlarms); err != nil {
		return nil, err
	}
	res, err := m.proposeMsg(ctx, fsmv1.CommandType_COMMAND_TYPE_ALARM, req)
	if err != nil {
		return nil, err
	}
	resp, err := resultAs[*kvv1.AlarmResponse](res, "an alarm")
	if err != nil {
		return nil, err
	}
	resp.Header = m.Header(resp.GetHeader().GetRevision())
	return resp, nil
}

// ErrAlarmsUnsupported: a member of the cluster cannot apply alarms yet.
var ErrAlarmsUnsupported = errors.New("a member of the cluster cannot apply alarms yet")

// quotaBytes is the quota in force.
func (c Config) quotaBytes() int64 {
	if c.QuotaBackendBytes <= 0 {
		return DefaultQuotaBackendBytes
	}
	return c.QuotaBackendBytes
}

// quotaSizeMaxAge is how old the state file's size that CheckQuota compares
// with the quota may be. Reading the size commits the write batch that the
// state machine keeps open for up to 100 ms (see package fsm), and a check
// on every write request did that once per write: most of the bbolt commits
// under a write load, and a tenth of the members' CPU. The file grows by
// the writes of that much time at most between reads, as etcd's own check
// lags its backend's commits.
const quotaSizeMaxAge = 100 * time.Millisecond

// sizeCache holds the state file's size as last read, for CheckQuota.
type sizeCache struct {
	mu   sync.Mutex
	at   time.Time
	size int64
	now  func() time.Time // time.Now; tests replace it
}

// fits reports whether cost more bytes keep the state file within quota,
// and its size. It says yes by a size read at most quotaSizeMaxAge ago, but
// no only by a fresh read: a refusal raises an alarm, and the file may
// have shrunk since the cached read (a defragmentation takes
// milliseconds), which would raise it again right after an operator
// cleared it.
func (c *sizeCache) fits(read func() (size, inUse int64, err error), cost, quota int64) (int64, bool, error) {
	size, err := c.get(read)
	if err != nil || size+cost <= quota {
		return size, err == nil, err
	}
	size, err = c.refresh(read)
	return size, err == nil && size+cost <= quota, err
}

// get returns the size read at most quotaSizeMaxAge ago, reading it with
// read when it is older. Callers wait for one read at a time.
func (c *sizeCache) get(read func() (size, inUse int64, err error)) (int64, error) {
	return c.load(read, false)
}

// refresh reads the size with read whatever the cache holds.
func (c *sizeCache) refresh(read func() (size, inUse int64, err error)) (int64, error) {
	return c.load(read, true)
}

func (c *sizeCache) load(read func() (size, inUse int64, err error), fresh bool) (int64, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now
	if c.now != nil {
		now = c.now
	}
	t := now()
	if !fresh && !c.at.IsZero() && t.Sub(c.at) < quotaSizeMaxAge {
		return c.size, nil
	}
	size, _, err := read()
	if err != nil {
		return 0, err
	}
	c.at, c.size = t, size
	return size, nil
}
