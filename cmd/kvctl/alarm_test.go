package main

import (
	"context"
	"testing"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Alarm serves the fake's alarms: get lists them, deactivate clears one.
func (f *fakeKVD) Alarm(_ context.Context, r *kvv1.AlarmRequest) (*kvv1.AlarmResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch r.GetAction() {
	case kvv1.AlarmRequest_ALARM_ACTION_GET:
		return &kvv1.AlarmResponse{Header: f.header(), Alarms: append([]*kvv1.AlarmMember(nil), f.alarms...)}, nil
	case kvv1.AlarmRequest_ALARM_ACTION_DEACTIVATE:
		for i, a := range f.alarms {
			if a.GetMemberId() == r.GetMemberId() && a.GetAlarm() == r.GetAlarm() {
				f.alarms = append(f.alarms[:i], f.alarms[i+1:]...)
				return &kvv1.AlarmResponse{Header: f.header(), Alarms: []*kvv1.AlarmMember{a}}, nil
			}
		}
		return &kvv1.AlarmResponse{Header: f.header()}, nil
	}
	return &kvv1.AlarmResponse{Header: f.header()}, nil
}

func TestAlarmCommands(t *testing.T) {
	f := newFakeKVD("n1", 1)
	f.alarms = []*kvv1.AlarmMember{{MemberId: 0x8e9e05c52164694d, Alarm: kvv1.AlarmType_ALARM_TYPE_NOSPACE}}
	ep := serveFake(t, f)
	want := "memberID:8e9e05c52164694d alarm:NOSPACE\n"
	if out := mustRun(t, ep, "", "alarm", "list"); out != want {
		t.Errorf("alarm list printed %q, want %q", out, want)
	}
	out := mustRun(t, ep, "", "-w", "json", "alarm", "list")
	if out != `{"header":{"cluster_id":100,"member_id":1,"revision":1,"raft_term":3},"alarms":[{"member_id":"8e9e05c52164694d","alarm":"NOSPACE"}]}`+"\n" {
		t.Errorf("alarm list -w json printed %q", out)
	}
	if out := mustRun(t, ep, "", "alarm", "disarm"); out != want {
		t.Errorf("alarm disarm printed %q, want %q", out, want)
	}
	if out := mustRun(t, ep, "", "alarm", "list"); out != "" {
		t.Errorf("after disarm, alarm list printed %q", out)
	}
	if _, _, err := runKvctl(t, nil, "", "--endpoints", ep, "alarm", "list", "extra"); err == nil {
		t.Error("alarm list with an argument succeeded")
	}
}
