package rpc

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Local is the API's kv.v1 services called in process, by another API
// served on the same gRPC server (package etcdapi): each call is
// authorized and admitted exactly as the gRPC call of the same kv.v1
// method would be, for the caller that ctx (or a stream's context) names,
// and then served by the same handler. Its errors are the handlers' own,
// not gRPC statuses: the calling API turns them into its own
// (Config.Statuses).
//
// A delegated method (ruleDelegated) has had its caller identified by the
// interceptor, from its metadata; any other context is identified here
// from its incoming metadata, as the interceptor would.
//
// Every kv.v1 method but KVService.Stream (the calling API has streams of
// its own) has a method of the same name here (TestLocalCoversEveryMethod).
// A stream method takes the calling API's stream as a grpc.ServerStream
// whose SendMsg and RecvMsg carry kv.v1 messages.
type Local struct {
	a *API
}

// Local returns the in-process view of the API's services.
func (a *API) Local() Local { return Local{a: a} }

// unary authorizes and admits req as the call of method, then serves it
// with h.
func unary[Req proto.Message, Resp any](ctx context.Context, l Local, method string, req Req, h func(context.Context, Req) (Resp, error)) (Resp, error) {
	ctx, err := l.a.authz.authorizeLocal(ctx, method, req)
	if err == nil {
		err = l.a.adm.admit(req)
	}
	if err != nil {
		var zero Resp
		return zero, err
	}
	return h(ctx, req)
}

// stream authorizes a stream of method whose request, if it has a single
// one, is req; the returned stream's context knows the caller. Streams are
// not admitted, as the gRPC calls are not (their ops are, one by one).
func (l Local) stream(ss grpc.ServerStream, method string, req proto.Message) (grpc.ServerStream, error) {
	ctx, err := l.a.authz.authorizeLocal(ss.Context(), method, req)
	if err != nil {
		return nil, err
	}
	return &authorizedStream{ServerStream: ss, ctx: ctx}, nil
}

// KVService.

// Range is kv.v1.KVService.Range.
func (l Local) Range(ctx context.Context, req *kvv1.RangeRequest) (*kvv1.RangeResponse, error) {
	return unary(ctx, l, kvv1.KVService_Range_FullMethodName, req, l.a.kv.Range)
}

// Put is kv.v1.KVService.Put.
func (l Local) Put(ctx context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	return unary(ctx, l, kvv1.KVService_Put_FullMethodName, req, l.a.kv.Put)
}

// DeleteRange is kv.v1.KVService.DeleteRange.
func (l Local) DeleteRange(ctx context.Context, req *kvv1.DeleteRangeRequest) (*kvv1.DeleteRangeResponse, error) {
	return unary(ctx, l, kvv1.KVService_DeleteRange_FullMethodName, req, l.a.kv.DeleteRange)
}

// Txn is kv.v1.KVService.Txn.
func (l Local) Txn(ctx context.Context, req *kvv1.TxnRequest) (*kvv1.TxnResponse, error) {
	return unary(ctx, l, kvv1.KVService_Txn_FullMethodName, req, l.a.kv.Txn)
}

// Compact is kv.v1.KVService.Compact.
func (l Local) Compact(ctx context.Context, req *kvv1.CompactRequest) (*kvv1.CompactResponse, error) {
	return unary(ctx, l, kvv1.KVService_Compact_FullMethodName, req, l.a.kv.Compact)
}

// LeaseService.

// LeaseGrant is kv.v1.LeaseService.LeaseGrant.
func (l Local) LeaseGrant(ctx context.Context, req *kvv1.LeaseGrantRequest) (*kvv1.LeaseGrantResponse, error) {
	return unary(ctx, l, kvv1.LeaseService_LeaseGrant_FullMethodName, req, l.a.lease.LeaseGrant)
}

// LeaseRevoke is kv.v1.LeaseService.LeaseRevoke.
func (l Local) LeaseRevoke(ctx context.Context, req *kvv1.LeaseRevokeRequest) (*kvv1.LeaseRevokeResponse, error) {
	return unary(ctx, l, kvv1.LeaseService_LeaseRevoke_FullMethodName, req, l.a.lease.LeaseRevoke)
}

// LeaseTimeToLive is kv.v1.LeaseService.LeaseTimeToLive.
func (l Local) LeaseTimeToLive(ctx context.Context, req *kvv1.LeaseTimeToLiveRequest) (*kvv1.LeaseTimeToLiveResponse, error) {
	return unary(ctx, l, kvv1.LeaseService_LeaseTimeToLive_FullMethodName, req, l.a.lease.LeaseTimeToLive)
}

// LeaseLeases is kv.v1.LeaseService.LeaseLeases.
func (l Local) LeaseLeases(ctx context.Context, req *kvv1.LeaseLeasesRequest) (*kvv1.LeaseLeasesResponse, error) {
	return unary(ctx, l, kvv1.LeaseService_LeaseLeases_FullMethodName, req, l.a.lease.LeaseLeases)
}

// ClusterService.

// MemberList is kv.v1.ClusterService.MemberList.
func (l Local) MemberList(ctx context.Context, req *kvv1.MemberListRequest) (*kvv1.MemberListResponse, error) {
	return unary(ctx, l, kvv1.ClusterService_MemberList_FullMethodName, req, l.a.cluster.MemberList)
}

// MemberAdd is kv.v1.ClusterService.MemberAdd.
func (l Local) MemberAdd(ctx context.Context, req *kvv1.MemberAddRequest) (*kvv1.MemberAddResponse, error) {
	return unary(ctx, l, kvv1.ClusterService_MemberAdd_FullMethodName, req, l.a.cluster.MemberAdd)
}

// MemberPromote is kv.v1.ClusterService.MemberPromote.
func (l Local) MemberPromote(ctx context.Context, req *kvv1.MemberPromoteRequest) (*kvv1.MemberPromoteResponse, error) {
	return unary(ctx, l, kvv1.ClusterService_MemberPromote_FullMethodName, req, l.a.cluster.MemberPromote)
}

// MemberRemove is kv.v1.ClusterService.MemberRemove.
func (l Local) MemberRemove(ctx context.Context, req *kvv1.MemberRemoveRequest) (*kvv1.MemberRemoveResponse, error) {
	return unary(ctx, l, kvv1.ClusterService_MemberRemove_FullMethodName, req, l.a.cluster.MemberRemove)
}

// LeaderTransfer is kv.v1.ClusterService.LeaderTransfer.
func (l Local) LeaderTransfer(ctx context.Context, req *kvv1.LeaderTransferRequest) (*kvv1.LeaderTransferResponse, error) {
	return unary(ctx, l, kvv1.ClusterService_LeaderTransfer_FullMethodName, req, l.a.cluster.LeaderTransfer)
}

// MaintenanceService.

// Status is kv.v1.MaintenanceService.Status.
func (l Local) Status(ctx context.Context, req *kvv1.StatusRequest) (*kvv1.StatusResponse, error) {
	return unary(ctx, l, kvv1.MaintenanceService_Status_FullMethodName, req, l.a.maintenance.Status)
}

// HashKV is kv.v1.MaintenanceService.HashKV.
func (l Local) HashKV(ctx context.Context, req *kvv1.HashKVRequest) (*kvv1.HashKVResponse, error) {
	return unary(ctx, l, kvv1.MaintenanceService_HashKV_FullMethodName, req, l.a.maintenance.HashKV)
}

// Defragment is kv.v1.MaintenanceService.Defragment.
func (l Local) Defragment(ctx context.Context, req *kvv1.DefragmentRequest) (*kvv1.DefragmentResponse, error) {
	return unary(ctx, l, kvv1.MaintenanceService_Defragment_FullMethodName, req, l.a.maintenance.Defragment)
}

// Alarm is kv.v1.MaintenanceService.Alarm.
func (l Local) Alarm(ctx context.Context, req *kvv1.AlarmRequest) (*kvv1.AlarmResponse, error) {
	return unary(ctx, l, kvv1.MaintenanceService_Alarm_FullMethodName, req, l.a.maintenance.Alarm)
}

// AuthService.

// Authenticate is kv.v1.AuthService.Authenticate.
func (l Local) Authenticate(ctx context.Context, req *kvv1.AuthenticateRequest) (*kvv1.AuthenticateResponse, error) {
	return unary(ctx, l, kvv1.AuthService_Authenticate_FullMethodName, req, l.a.auth.Authenticate)
}

// AuthStatus is kv.v1.AuthService.AuthStatus.
func (l Local) AuthStatus(ctx context.Context, req *kvv1.AuthStatusRequest) (*kvv1.AuthStatusResponse, error) {
	return unary(ctx, l, kvv1.AuthService_AuthStatus_FullMethodName, req, l.a.auth.AuthStatus)
}

// AuthEnable is kv.v1.AuthService.AuthEnable.
func (l Local) AuthEnable(ctx context.Context, req *kvv1.AuthEnableRequest) (*kvv1.AuthEnableResponse, error) {
	return unary(ctx, l, kvv1.AuthService_AuthEnable_FullMethodName, req, l.a.auth.AuthEnable)
}

// AuthDisable is kv.v1.AuthService.AuthDisable.
func (l Local) AuthDisable(ctx context.Context, req *kvv1.AuthDisableRequest) (*kvv1.AuthDisableResponse, error) {
	return unary(ctx, l, kvv1.AuthService_AuthDisable_FullMethodName, req, l.a.auth.AuthDisable)
}

// UserAdd is kv.v1.AuthService.UserAdd.
func (l Local) UserAdd(ctx context.Context, req *kvv1.UserAddRequest) (*kvv1.UserAddResponse, error) {
	return unary(ctx, l, kvv1.AuthService_UserAdd_FullMethodName, req, l.a.auth.UserAdd)
}

// UserGet is kv.v1.AuthService.UserGet.
func (l Local) UserGet(ctx context.Context, req *kvv1.UserGetRequest) (*kvv1.UserGetResponse, error) {
	return unary(ctx, l, kvv1.AuthService_UserGet_FullMethodName, req, l.a.auth.UserGet)
}

// UserList is kv.v1.AuthService.UserList.
func (l Local) UserList(ctx context.Context, req *kvv1.UserListRequest) (*kvv1.UserListResponse, error) {
	return unary(ctx, l, kvv1.AuthService_UserList_FullMethodName, req, l.a.auth.UserList)
}

// UserDelete is kv.v1.AuthService.UserDelete.
func (l Local) UserDelete(ctx context.Context, req *kvv1.UserDeleteRequest) (*kvv1.UserDeleteResponse, error) {
	return unary(ctx, l, kvv1.AuthService_UserDelete_FullMethodName, req, l.a.auth.UserDelete)
}

// UserChangePassword is kv.v1.AuthService.UserChangePassword.
func (l Local) UserChangePassword(ctx context.Context, req *kvv1.UserChangePasswordRequest) (*kvv1.UserChangePasswordResponse, error) {
	return unary(ctx, l, kvv1.AuthService_UserChangePassword_FullMethodName, req, l.a.auth.UserChangePassword)
}

// UserGrantRole is kv.v1.AuthService.UserGrantRole.
func (l Local) UserGrantRole(ctx context.Context, req *kvv1.UserGrantRoleRequest) (*kvv1.UserGrantRoleResponse, error) {
	return unary(ctx, l, kvv1.AuthService_UserGrantRole_FullMethodName, req, l.a.auth.UserGrantRole)
}

// UserRevokeRole is kv.v1.AuthService.UserRevokeRole.
func (l Local) UserRevokeRole(ctx context.Context, req *kvv1.UserRevokeRoleRequest) (*kvv1.UserRevokeRoleResponse, error) {
	return unary(ctx, l, kvv1.AuthService_UserRevokeRole_FullMethodName, req, l.a.auth.UserRevokeRole)
}

// RoleAdd is kv.v1.AuthService.RoleAdd.
func (l Local) RoleAdd(ctx context.Context, req *kvv1.RoleAddRequest) (*kvv1.RoleAddResponse, error) {
	return unary(ctx, l, kvv1.AuthService_RoleAdd_FullMethodName, req, l.a.auth.RoleAdd)
}

// RoleGet is kv.v1.AuthService.RoleGet.
func (l Local) RoleGet(ctx context.Context, req *kvv1.RoleGetRequest) (*kvv1.RoleGetResponse, error) {
	return unary(ctx, l, kvv1.AuthService_RoleGet_FullMethodName, req, l.a.auth.RoleGet)
}

// RoleList is kv.v1.AuthService.RoleList.
func (l Local) RoleList(ctx context.Context, req *kvv1.RoleListRequest) (*kvv1.RoleListResponse, error) {
	return unary(ctx, l, kvv1.AuthService_RoleList_FullMethodName, req, l.a.auth.RoleList)
}

// RoleDelete is kv.v1.AuthService.RoleDelete.
func (l Local) RoleDelete(ctx context.Context, req *kvv1.RoleDeleteRequest) (*kvv1.RoleDeleteResponse, error) {
	return unary(ctx, l, kvv1.AuthService_RoleDelete_FullMethodName, req, l.a.auth.RoleDelete)
}

// RoleGrantPermission is kv.v1.AuthService.RoleGrantPermission.
func (l Local) RoleGrantPermission(ctx context.Context, req *kvv1.RoleGrantPermissionRequest) (*kvv1.RoleGrantPermissionResponse, error) {
	return unary(ctx, l, kvv1.AuthService_RoleGrantPermission_FullMethodName, req, l.a.auth.RoleGrantPermission)
}

// RoleRevokePermission is kv.v1.AuthService.RoleRevokePermission.
func (l Local) RoleRevokePermission(ctx context.Context, req *kvv1.RoleRevokePermissionRequest) (*kvv1.RoleRevokePermissionResponse, error) {
	return unary(ctx, l, kvv1.AuthService_RoleRevokePermission_FullMethodName, req, l.a.auth.RoleRevokePermission)
}

// LockService.

// Lock is kv.v1.LockService.Lock.
func (l Local) Lock(ctx context.Context, req *kvv1.LockRequest) (*kvv1.LockResponse, error) {
	return unary(ctx, l, kvv1.LockService_Lock_FullMethodName, req, l.a.lock.Lock)
}

// Unlock is kv.v1.LockService.Unlock.
func (l Local) Unlock(ctx context.Context, req *kvv1.UnlockRequest) (*kvv1.UnlockResponse, error) {
	return unary(ctx, l, kvv1.LockService_Unlock_FullMethodName, req, l.a.lock.Unlock)
}

// ElectionService.

// Campaign is kv.v1.ElectionService.Campaign.
func (l Local) Campaign(ctx context.Context, req *kvv1.CampaignRequest) (*kvv1.CampaignResponse, error) {
	return unary(ctx, l, kvv1.ElectionService_Campaign_FullMethodName, req, l.a.election.Campaign)
}

// Proclaim is kv.v1.ElectionService.Proclaim.
func (l Local) Proclaim(ctx context.Context, req *kvv1.ProclaimRequest) (*kvv1.ProclaimResponse, error) {
	return unary(ctx, l, kvv1.ElectionService_Proclaim_FullMethodName, req, l.a.election.Proclaim)
}

// Leader is kv.v1.ElectionService.Leader.
func (l Local) Leader(ctx context.Context, req *kvv1.LeaderRequest) (*kvv1.LeaderResponse, error) {
	return unary(ctx, l, kvv1.ElectionService_Leader_FullMethodName, req, l.a.election.Leader)
}

// Resign is kv.v1.ElectionService.Resign.
func (l Local) Resign(ctx context.Context, req *kvv1.ResignRequest) (*kvv1.ResignResponse, error) {
	return unary(ctx, l, kvv1.ElectionService_Resign_FullMethodName, req, l.a.election.Resign)
}

// MinLeaseTTL is the shortest TTL LeaseGrant grants, in seconds: an API
// whose clients expect a shorter TTL to be raised to it (etcd's) needs it.
func (l Local) MinLeaseTTL() int64 { return l.a.node.MinLeaseTTL() }

// Authorize checks that the caller ctx names may call the kv.v1 method
// with req, without calling it: for an answer another API gives without
// making the call (etcd's "member not found" for an id no member has,
// found in a list any user may read) that must not reach a caller the
// call would refuse.
func (l Local) Authorize(ctx context.Context, method string, req proto.Message) error {
	_, err := l.a.authz.authorizeLocal(ctx, method, req)
	return err
}

// Linearize waits until this member reflects every write acknowledged
// before the call, as a linearizable read does first: for a read of
// another API that has no kv.v1 request of its own (etcd's linearizable
// MemberList). It reads nothing, so it needs no permission.
func (l Local) Linearize(ctx context.Context) error { return l.a.node.Linearize(ctx) }

// Leaderless reports whether this member knows no leader now.
func (l Local) Leaderless() bool { return l.a.node.LeaderlessFor() > 0 }

// Streams.

// Watch is kv.v1.WatchService.Watch over ss, which receives
// *kvv1.WatchRequest and sends *kvv1.WatchResponse.
func (l Local) Watch(ss grpc.ServerStream) error {
	as, err := l.stream(ss, kvv1.WatchService_Watch_FullMethodName, nil)
	if err != nil {
		return err
	}
	return l.a.watch.Watch(&grpc.GenericServerStream[kvv1.WatchRequest, kvv1.WatchResponse]{ServerStream: as})
}

// LeaseKeepAlive is kv.v1.LeaseService.LeaseKeepAlive over ss, which
// receives *kvv1.LeaseKeepAliveRequest and sends
// *kvv1.LeaseKeepAliveResponse.
func (l Local) LeaseKeepAlive(ss grpc.ServerStream) error {
	as, err := l.stream(ss, kvv1.LeaseService_LeaseKeepAlive_FullMethodName, nil)
	if err != nil {
		return err
	}
	return l.a.lease.LeaseKeepAlive(&grpc.GenericServerStream[kvv1.LeaseKeepAliveRequest, kvv1.LeaseKeepAliveResponse]{ServerStream: as})
}

// Snapshot is kv.v1.MaintenanceService.Snapshot over ss, which sends
// *kvv1.SnapshotResponse.
func (l Local) Snapshot(req *kvv1.SnapshotRequest, ss grpc.ServerStream) error {
	as, err := l.stream(ss, kvv1.MaintenanceService_Snapshot_FullMethodName, req)
	if err != nil {
		return err
	}
	return l.a.maintenance.Snapshot(req, &grpc.GenericServerStream[kvv1.SnapshotRequest, kvv1.SnapshotResponse]{ServerStream: as})
}

// Observe is kv.v1.ElectionService.Observe over ss, which sends
// *kvv1.ObserveResponse.
func (l Local) Observe(req *kvv1.ObserveRequest, ss grpc.ServerStream) error {
	as, err := l.stream(ss, kvv1.ElectionService_Observe_FullMethodName, req)
	if err != nil {
		return err
	}
	return l.a.election.Observe(req, &grpc.GenericServerStream[kvv1.ObserveRequest, kvv1.ObserveResponse]{ServerStream: as})
}
