package etcdapi_test

import (
	"context"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"

	"github.com/kvd-io/kvd/etcdapi/proto/v3electionpb"
	"github.com/kvd-io/kvd/etcdapi/proto/v3lockpb"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/server/servertest"
)

// adminAuthCases are TestEveryMethodAuthorizedAsKvd's cases of the
// Maintenance, Cluster, v3lock and v3election services: each etcd call
// and the kv.v1 call it makes (or is authorized as), with requests that
// change nothing on authCluster's member m1. Downgrade has none: it
// answers Unimplemented.
func adminAuthCases(c *servertest.Cluster, cc *grpc.ClientConn) map[string][2]func(context.Context) error {
	emc, kmc := pb.NewMaintenanceClient(cc), kvv1.NewMaintenanceServiceClient(cc)
	ecl, kcl := pb.NewClusterClient(cc), kvv1.NewClusterServiceClient(cc)
	elock, klock := v3lockpb.NewLockClient(cc), kvv1.NewLockServiceClient(cc)
	eel, kel := v3electionpb.NewElectionClient(cc), kvv1.NewElectionServiceClient(cc)
	m1 := c.Member("m1").Server
	peerURL := "http://" + m1.RaftAddr()
	lock, election := []byte("app/l"), []byte("app/e")
	leader := &v3electionpb.LeaderKey{Name: election, Key: []byte("app/e/1"), Rev: 1, Lease: 1}
	kleader := &kvv1.LeaderKey{Name: election, Key: []byte("app/e/1"), Rev: 1, Lease: 1}
	// call makes a unary call whose answer does not matter.
	call := func(fn func(ctx context.Context) (any, error)) func(context.Context) error {
		return func(ctx context.Context) error { _, err := fn(ctx); return err }
	}
	pair := func(e, k func(ctx context.Context) (any, error)) [2]func(context.Context) error {
		return [2]func(context.Context) error{call(e), call(k)}
	}
	return map[string][2]func(context.Context) error{
		pb.Maintenance_Status_FullMethodName: pair(
			func(ctx context.Context) (any, error) { return emc.Status(ctx, &pb.StatusRequest{}) },
			func(ctx context.Context) (any, error) { return kmc.Status(ctx, &kvv1.StatusRequest{}) }),
		pb.Maintenance_Alarm_FullMethodName: pair(
			func(ctx context.Context) (any, error) { return emc.Alarm(ctx, &pb.AlarmRequest{}) },
			func(ctx context.Context) (any, error) {
				return kmc.Alarm(ctx, &kvv1.AlarmRequest{Action: kvv1.AlarmRequest_ALARM_ACTION_GET})
			}),
		pb.Maintenance_Defragment_FullMethodName: pair(
			func(ctx context.Context) (any, error) { return emc.Defragment(ctx, &pb.DefragmentRequest{}) },
			func(ctx context.Context) (any, error) { return kmc.Defragment(ctx, &kvv1.DefragmentRequest{}) }),
		pb.Maintenance_Hash_FullMethodName: pair(
			func(ctx context.Context) (any, error) { return emc.Hash(ctx, &pb.HashRequest{}) },
			func(ctx context.Context) (any, error) { return kmc.HashKV(ctx, &kvv1.HashKVRequest{}) }),
		pb.Maintenance_HashKV_FullMethodName: pair(
			func(ctx context.Context) (any, error) { return emc.HashKV(ctx, &pb.HashKVRequest{}) },
			func(ctx context.Context) (any, error) { return kmc.HashKV(ctx, &kvv1.HashKVRequest{}) }),
		pb.Maintenance_Snapshot_FullMethodName: {
			func(ctx context.Context) error {
				return firstOnStream(ctx, cc, pb.Maintenance_ServiceDesc.Streams[0], pb.Maintenance_Snapshot_FullMethodName,
					&pb.SnapshotRequest{}, new(pb.SnapshotResponse))
			},
			func(ctx context.Context) error {
				return firstOnStream(ctx, cc, kvv1.MaintenanceService_ServiceDesc.Streams[0], kvv1.MaintenanceService_Snapshot_FullMethodName,
					&kvv1.SnapshotRequest{}, new(kvv1.SnapshotResponse))
			}},
		pb.Maintenance_MoveLeader_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return emc.MoveLeader(ctx, &pb.MoveLeaderRequest{TargetID: m1.ID()})
			},
			func(ctx context.Context) (any, error) {
				return kcl.LeaderTransfer(ctx, &kvv1.LeaderTransferRequest{To: "m1"})
			}),

		pb.Cluster_MemberList_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return ecl.MemberList(ctx, &pb.MemberListRequest{Linearizable: true})
			},
			func(ctx context.Context) (any, error) { return kcl.MemberList(ctx, &kvv1.MemberListRequest{}) }),
		pb.Cluster_MemberAdd_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return ecl.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: []string{peerURL}})
			},
			func(ctx context.Context) (any, error) {
				return kcl.MemberAdd(ctx, &kvv1.MemberAddRequest{Name: "m1", RaftAddr: m1.RaftAddr()})
			}),
		pb.Cluster_MemberRemove_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return ecl.MemberRemove(ctx, &pb.MemberRemoveRequest{ID: 12345})
			},
			func(ctx context.Context) (any, error) {
				return kcl.MemberRemove(ctx, &kvv1.MemberRemoveRequest{Name: "nosuch"})
			}),
		pb.Cluster_MemberPromote_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return ecl.MemberPromote(ctx, &pb.MemberPromoteRequest{ID: 12345})
			},
			func(ctx context.Context) (any, error) {
				return kcl.MemberPromote(ctx, &kvv1.MemberPromoteRequest{Name: "nosuch"})
			}),
		pb.Cluster_MemberUpdate_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return ecl.MemberUpdate(ctx, &pb.MemberUpdateRequest{ID: m1.ID(), PeerURLs: []string{peerURL}})
			},
			func(ctx context.Context) (any, error) {
				return kcl.MemberAdd(ctx, &kvv1.MemberAddRequest{Name: "m1", RaftAddr: m1.RaftAddr()})
			}),

		v3lockpb.Lock_Lock_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return elock.Lock(ctx, &v3lockpb.LockRequest{Name: lock, Lease: 1})
			},
			func(ctx context.Context) (any, error) {
				return klock.Lock(ctx, &kvv1.LockRequest{Name: lock, Lease: 1})
			}),
		v3lockpb.Lock_Unlock_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return elock.Unlock(ctx, &v3lockpb.UnlockRequest{Key: []byte("app/l/1")})
			},
			func(ctx context.Context) (any, error) {
				return klock.Unlock(ctx, &kvv1.UnlockRequest{Key: []byte("app/l/1")})
			}),

		v3electionpb.Election_Campaign_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return eel.Campaign(ctx, &v3electionpb.CampaignRequest{Name: election, Lease: 1})
			},
			func(ctx context.Context) (any, error) {
				return kel.Campaign(ctx, &kvv1.CampaignRequest{Name: election, Lease: 1})
			}),
		v3electionpb.Election_Proclaim_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return eel.Proclaim(ctx, &v3electionpb.ProclaimRequest{Leader: leader})
			},
			func(ctx context.Context) (any, error) {
				return kel.Proclaim(ctx, &kvv1.ProclaimRequest{Leader: kleader})
			}),
		v3electionpb.Election_Leader_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return eel.Leader(ctx, &v3electionpb.LeaderRequest{Name: election})
			},
			func(ctx context.Context) (any, error) { return kel.Leader(ctx, &kvv1.LeaderRequest{Name: election}) }),
		v3electionpb.Election_Resign_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return eel.Resign(ctx, &v3electionpb.ResignRequest{Leader: leader})
			},
			func(ctx context.Context) (any, error) { return kel.Resign(ctx, &kvv1.ResignRequest{Leader: kleader}) }),
		// Nobody leads the election: a caller let in waits for the
		// first leader until the short deadline; one refused is
		// refused at once.
		v3electionpb.Election_Observe_FullMethodName: {
			func(ctx context.Context) error {
				ctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				return firstOnStream(ctx, cc, v3electionpb.Election_ServiceDesc.Streams[0], v3electionpb.Election_Observe_FullMethodName,
					&v3electionpb.LeaderRequest{Name: election}, new(v3electionpb.LeaderResponse))
			},
			func(ctx context.Context) error {
				ctx, cancel := context.WithTimeout(ctx, time.Second)
				defer cancel()
				return firstOnStream(ctx, cc, kvv1.ElectionService_ServiceDesc.Streams[0], kvv1.ElectionService_Observe_FullMethodName,
					&kvv1.ObserveRequest{Name: election}, new(kvv1.ObserveResponse))
			}},
	}
}
