package etcdapi

import (
	"context"
	"fmt"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/rpc"
)

// maintenanceServer serves etcdserverpb.Maintenance.
type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	l   rpc.Local
	cfg Config
}

// statusAlarmsWait bounds the alarm list Status adds to its errors: the
// list is read linearizably, and Status must answer quickly even when
// the leader is slow (etcdctl endpoint status asks every member).
const statusAlarmsWait = time.Second

// Status is the member's kv.v1 status in etcd's fields. Version is the
// configured etcd version (Config.EtcdVersion), not kvd's: clients
// decide by it which etcd features they may use. As etcd's, errors holds
// "etcdserver: no leader" when the member knows no leader, and the
// cluster's alarms otherwise, as far as the caller may list them (they
// need root's permission when auth is on).
func (s *maintenanceServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	st, err := s.l.Status(ctx, &kvv1.StatusRequest{})
	if err != nil {
		return nil, err
	}
	v := s.cfg.etcdVersion()
	resp := &pb.StatusResponse{
		Header:           header(st.GetHeader()),
		Version:          v,
		DbSize:           st.GetDbSize(),
		DbSizeInUse:      st.GetDbSizeInUse(),
		Leader:           st.GetLeaderId(),
		RaftIndex:        st.GetCommitIndex(),
		RaftTerm:         st.GetRaftTerm(),
		RaftAppliedIndex: st.GetAppliedIndex(),
		IsLearner:        st.GetIsLearner(),
		StorageVersion:   storageVersion(v),
		DowngradeInfo:    &pb.DowngradeInfo{},
	}
	if resp.Leader == 0 {
		resp.Errors = append(resp.Errors, status.Convert(rpctypes.ErrGRPCNoLeader).Message())
		return resp, nil
	}
	actx, cancel := context.WithTimeout(ctx, statusAlarmsWait)
	defer cancel()
	if alarms, err := s.l.Alarm(actx, &kvv1.AlarmRequest{Action: kvv1.AlarmRequest_ALARM_ACTION_GET}); err == nil {
		for _, a := range alarms.GetAlarms() {
			resp.Errors = append(resp.Errors, fmt.Sprintf("memberID:%d alarm:%s", a.GetMemberId(), alarmType(a.GetAlarm())))
		}
	}
	return resp, nil
}

// Hash is HashKV's hash at the current revision. etcd's hashes its whole
// backend (leases and auth too), for tests only; kvd's key-value history
// serves the same purpose, comparing members.
func (s *maintenanceServer) Hash(ctx context.Context, _ *pb.HashRequest) (*pb.HashResponse, error) {
	resp, err := s.l.HashKV(ctx, &kvv1.HashKVRequest{})
	if err != nil {
		return nil, err
	}
	return &pb.HashResponse{Header: header(resp.GetHeader()), Hash: resp.GetHash()}, nil
}

// HashKV hashes the key-value history up to a revision. kvd's hash is a
// CRC-32C over its own encoding of the history, not etcd's: members of
// one kvd cluster agree on it, an etcd member would not.
func (s *maintenanceServer) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	resp, err := s.l.HashKV(ctx, &kvv1.HashKVRequest{Revision: r.GetRevision()})
	if err != nil {
		return nil, err
	}
	return &pb.HashKVResponse{Header: header(resp.GetHeader()), Hash: resp.GetHash(),
		CompactRevision: resp.GetCompactRevision(), HashRevision: resp.GetHashRevision()}, nil
}

func (s *maintenanceServer) Defragment(ctx context.Context, _ *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	resp, err := s.l.Defragment(ctx, &kvv1.DefragmentRequest{})
	if err != nil {
		return nil, err
	}
	return &pb.DefragmentResponse{Header: header(resp.GetHeader())}, nil
}

// Snapshot streams kvd's snapshot in etcd's framing: the state file's
// bytes, then its SHA-256 as a last blob of its own, which etcd's
// clients check (the stream's size is 32 more than a multiple of 512)
// and keep at the end of the file. kvd's snapshot files have the same
// layout, so the file etcdctl snapshot save writes is a kvd snapshot,
// which kvdutil snapshot status and restore read; etcdutl cannot, as the
// database inside is kvd's, not etcd's.
func (s *maintenanceServer) Snapshot(_ *pb.SnapshotRequest, st grpc.ServerStreamingServer[pb.SnapshotResponse]) error {
	first := true
	return s.l.Snapshot(&kvv1.SnapshotRequest{}, &localStream{
		ServerStream: st,
		ctx:          st.Context(),
		recv:         func(any) error { return status.Error(codes.Internal, "snapshot: the stream receives nothing") },
		send: func(m any) error {
			r := m.(*kvv1.SnapshotResponse)
			out := &pb.SnapshotResponse{Header: header(r.GetHeader()), RemainingBytes: r.GetRemainingBytes(), Blob: r.GetBlob()}
			if first {
				out.Version = storageVersion(s.cfg.etcdVersion())
				first = false
			}
			if err := st.Send(out); err != nil {
				return err
			}
			if sum := r.GetSha256(); len(sum) > 0 {
				return st.Send(&pb.SnapshotResponse{Blob: sum})
			}
			return nil
		},
	})
}

// errLeaderTransferTimeout is etcd's answer when the target did not take
// over in time (etcd sends it as an unknown error).
var errLeaderTransferTimeout = status.Error(codes.Unknown, "etcdserver: request timed out, leader transfer took too long")

// MoveLeader hands leadership to the member with the target id. Unlike
// etcd's, which only its leader serves ("etcdserver: not leader"), any
// member serves it, passing it on to the leader.
func (s *maintenanceServer) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	target, err := findMember(ctx, s.l, r.GetTargetID())
	if err != nil {
		return nil, err
	}
	if target == nil || target.GetIsLearner() {
		return nil, rpctypes.ErrGRPCBadLeaderTransferee
	}
	resp, err := s.l.LeaderTransfer(ctx, &kvv1.LeaderTransferRequest{To: target.GetName()})
	if err != nil {
		return nil, err
	}
	if resp.GetLeader() != target.GetName() {
		return nil, errLeaderTransferTimeout
	}
	return &pb.MoveLeaderResponse{Header: header(resp.GetHeader())}, nil
}

// errDowngrade: kvd's rolling upgrades and rollbacks replace binaries
// member by member; there is no cluster version to lower.
var errDowngrade = status.Error(codes.Unimplemented,
	"etcdserver: downgrade is not supported by kvd: roll back by replacing the kvd binary member by member (docs/operations.md, rolling upgrade)")

// Downgrade: kvd has no downgrade job, so cancelling one is etcd's "no
// inflight downgrade job"; validating or enabling one is unsupported.
func (s *maintenanceServer) Downgrade(_ context.Context, r *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	if r.GetAction() == pb.DowngradeRequest_CANCEL {
		return nil, rpctypes.ErrGRPCNoInflightDowngrade
	}
	return nil, errDowngrade
}

// Alarm lists, raises or clears alarms. kvd raises only NOSPACE; it has
// no CORRUPT alarm (a member whose data differs is found with HashKV),
// so activating CORRUPT is refused, and listing or clearing it finds
// nothing.
func (s *maintenanceServer) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	if _, ok := pb.AlarmRequest_AlarmAction_name[int32(r.GetAction())]; !ok {
		return nil, status.Errorf(codes.InvalidArgument, "etcdserver: unknown alarm action %d", r.GetAction())
	}
	if _, ok := pb.AlarmType_name[int32(r.GetAlarm())]; !ok {
		return nil, status.Errorf(codes.InvalidArgument, "etcdserver: unknown alarm type %d", r.GetAlarm())
	}
	corrupt := r.GetAlarm() == pb.AlarmType_CORRUPT
	req := &kvv1.AlarmRequest{MemberId: r.GetMemberID(), Alarm: kvv1.AlarmType(r.GetAlarm())}
	switch {
	case r.GetAction() == pb.AlarmRequest_GET || (corrupt && r.GetAction() == pb.AlarmRequest_DEACTIVATE):
		req = &kvv1.AlarmRequest{Action: kvv1.AlarmRequest_ALARM_ACTION_GET}
	case corrupt:
		return nil, status.Error(codes.InvalidArgument, "etcdserver: kvd has no CORRUPT alarm; compare members with HashKV (etcdctl endpoint hashkv)")
	case r.GetAction() == pb.AlarmRequest_ACTIVATE:
		req.Action = kvv1.AlarmRequest_ALARM_ACTION_ACTIVATE
	default:
		req.Action = kvv1.AlarmRequest_ALARM_ACTION_DEACTIVATE
	}
	resp, err := s.l.Alarm(ctx, req)
	if err != nil {
		return nil, err
	}
	out := &pb.AlarmResponse{Header: header(resp.GetHeader())}
	if corrupt {
		return out, nil
	}
	for _, a := range resp.GetAlarms() {
		t := alarmType(a.GetAlarm())
		if r.GetAction() == pb.AlarmRequest_GET && r.GetAlarm() != pb.AlarmType_NONE && t != r.GetAlarm() {
			continue // etcd lists the alarms of the type asked for, or all
		}
		out.Alarms = append(out.Alarms, &pb.AlarmMember{MemberID: a.GetMemberId(), Alarm: t})
	}
	return out, nil
}

// alarmType is kvd's alarm type in etcd's terms; the two number them
// alike (kv.v1's zero is unspecified, etcd's is NONE).
func alarmType(t kvv1.AlarmType) pb.AlarmType {
	return pb.AlarmType(t)
}

// findMember is the member with id, or nil if there is none.
func findMember(ctx context.Context, l rpc.Local, id uint64) (*kvv1.Member, error) {
	resp, err := l.MemberList(ctx, &kvv1.MemberListRequest{})
	if err != nil {
		return nil, err
	}
	for _, m := range resp.GetMembers() {
		if m.GetId() == id {
			return m, nil
		}
	}
	return nil, nil
}
