package client

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// AlarmMember is one raised alarm: the member that raised it and which.
type AlarmMember = kvv1.AlarmMember

// AlarmResponse lists alarms: all raised ones for AlarmList, the one
// cleared for AlarmDisarm.
type AlarmResponse struct{ *kvv1.AlarmResponse }

// AlarmNoSpace is the alarm a member raises when its state file would grow
// past its quota (--quota-backend-bytes): while it is raised, puts,
// transactions with a put and lease grants fail with ResourceExhausted
// ("database space exceeded"). Compact, defragment, then disarm it.
const AlarmNoSpace = kvv1.AlarmType_ALARM_TYPE_NOSPACE

// AlarmList returns the cluster's raised alarms, as of a linearizable read.
func (c *Client) AlarmList(ctx context.Context) (*AlarmResponse, error) {
	return c.alarm(ctx, kindRead, &kvv1.AlarmRequest{Action: kvv1.AlarmRequest_ALARM_ACTION_GET})
}

// AlarmDisarm clears one alarm (as AlarmList returned it) through the raft
// log. If the member is still over its quota, its next write raises it
// again.
func (c *Client) AlarmDisarm(ctx context.Context, m *AlarmMember) (*AlarmResponse, error) {
	if m.GetMemberId() == 0 || m.GetAlarm() == kvv1.AlarmType_ALARM_TYPE_UNSPECIFIED {
		return nil, fmt.Errorf("client: AlarmDisarm needs a member id and an alarm, got %v", m)
	}
	return c.alarm(ctx, kindWrite, &kvv1.AlarmRequest{Action: kvv1.AlarmRequest_ALARM_ACTION_DEACTIVATE, MemberId: m.GetMemberId(), Alarm: m.GetAlarm()})
}

func (c *Client) alarm(ctx context.Context, kind rpcKind, req *kvv1.AlarmRequest) (*AlarmResponse, error) {
	var resp *kvv1.AlarmResponse
	err := c.invoke(ctx, kind, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = kvv1.NewMaintenanceServiceClient(cc).Alarm(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &AlarmResponse{resp}, nil
}
