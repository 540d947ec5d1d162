package etcdapi

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/etcdapi/proto/v3electionpb"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/rpc"
)

// electionServer serves etcd's v3electionpb.Election over kvd's
// ElectionService, whose candidates are keyed as clientv3's
// concurrency.Election keys them (name/<lease in hex>, the oldest
// leads), so that the two take part in the same elections.
type electionServer struct {
	v3electionpb.UnimplementedElectionServer
	l rpc.Local
}

// errMissingLeaderKey is etcd's text for a Proclaim or Resign without a
// leader key (etcd sends it with code Unknown).
var errMissingLeaderKey = status.Error(codes.InvalidArgument, `"leader" field must be provided`)

func (s *electionServer) Campaign(ctx context.Context, r *v3electionpb.CampaignRequest) (*v3electionpb.CampaignResponse, error) {
	return unary(ctx, s.l, r,
		total(func(r *v3electionpb.CampaignRequest) *kvv1.CampaignRequest {
			return &kvv1.CampaignRequest{Name: r.GetName(), Lease: r.GetLease(), Value: r.GetValue()}
		}),
		s.l.Campaign,
		func(resp *kvv1.CampaignResponse) *v3electionpb.CampaignResponse {
			l := resp.GetLeader()
			return &v3electionpb.CampaignResponse{Header: header(resp.GetHeader()),
				Leader: &v3electionpb.LeaderKey{Name: l.GetName(), Key: l.GetKey(), Rev: l.GetRev(), Lease: l.GetLease()}}
		})
}

func (s *electionServer) Proclaim(ctx context.Context, r *v3electionpb.ProclaimRequest) (*v3electionpb.ProclaimResponse, error) {
	return unary(ctx, s.l, r,
		func(r *v3electionpb.ProclaimRequest) (*kvv1.ProclaimRequest, error) {
			if r.GetLeader() == nil {
				return nil, errMissingLeaderKey
			}
			return &kvv1.ProclaimRequest{Leader: leaderKey(r.GetLeader()), Value: r.GetValue()}, nil
		},
		s.l.Proclaim,
		func(resp *kvv1.ProclaimResponse) *v3electionpb.ProclaimResponse {
			return &v3electionpb.ProclaimResponse{Header: header(resp.GetHeader())}
		})
}

func (s *electionServer) Leader(ctx context.Context, r *v3electionpb.LeaderRequest) (*v3electionpb.LeaderResponse, error) {
	return unary(ctx, s.l, r,
		total(func(r *v3electionpb.LeaderRequest) *kvv1.LeaderRequest { return &kvv1.LeaderRequest{Name: r.GetName()} }),
		s.l.Leader,
		func(resp *kvv1.LeaderResponse) *v3electionpb.LeaderResponse {
			return &v3electionpb.LeaderResponse{Header: header(resp.GetHeader()), Kv: keyValue(resp.GetKv())}
		})
}

// Observe streams each leader and each proclamation in revision order,
// beginning with the current leader, as etcd's does.
func (s *electionServer) Observe(r *v3electionpb.LeaderRequest, st grpc.ServerStreamingServer[v3electionpb.LeaderResponse]) error {
	return s.l.Observe(&kvv1.ObserveRequest{Name: r.GetName()}, &localStream{
		ServerStream: st,
		ctx:          st.Context(),
		recv:         func(any) error { return status.Error(codes.Internal, "observe: the stream receives nothing") },
		send: func(m any) error {
			o := m.(*kvv1.ObserveResponse)
			return st.Send(&v3electionpb.LeaderResponse{Header: header(o.GetHeader()), Kv: keyValue(o.GetKv())})
		},
	})
}

// Resign deletes the leader key if it still leads; resigning a
// leadership that is over does nothing, as etcd's.
func (s *electionServer) Resign(ctx context.Context, r *v3electionpb.ResignRequest) (*v3electionpb.ResignResponse, error) {
	return unary(ctx, s.l, r,
		func(r *v3electionpb.ResignRequest) (*kvv1.ResignRequest, error) {
			if r.GetLeader() == nil {
				return nil, errMissingLeaderKey
			}
			return &kvv1.ResignRequest{Leader: leaderKey(r.GetLeader())}, nil
		},
		s.l.Resign,
		func(resp *kvv1.ResignResponse) *v3electionpb.ResignResponse {
			return &v3electionpb.ResignResponse{Header: header(resp.GetHeader())}
		})
}

func leaderKey(l *v3electionpb.LeaderKey) *kvv1.LeaderKey {
	return &kvv1.LeaderKey{Name: l.GetName(), Key: l.GetKey(), Rev: l.GetRev(), Lease: l.GetLease()}
}
