package member

import (
	"context"
	"errors"
	"fmt"

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
	size, _, err := m.fsm.DBSize()
	if err != nil {
		return err
	}
	quota := m.cfg.quotaBytes()
	if size+int64(cost) <= quota {
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
		return &kvv1.AlarmResponse{Header: m.Header(m.fsm.Revision()), Alarms: alarms}, nil
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
