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
	resp, err := s.l.Campaign(ctx, &kvv1.CampaignRequest{Name: r.GetName(), Lease: r.GetLease(), Value: r.GetValue()})
	if err != nil {
		return nil, err
	}
	l := resp.GetLeader()
	return &v3electionpb.CampaignResponse{Header: header(resp.GetHeader()),
		Leader: &v3electionpb.LeaderKey{Name: l.GetName(), Key: l.GetKey(), Rev: l.GetRev(), Lease: l.GetLease()}}, nil
}

func (s *electionServer) Proclaim(ctx context.Context, r *v3electionpb.ProclaimRequest) (*v3electionpb.ProclaimResponse, error) {
	if r.GetLeader() == nil {
		return nil, errMissingLeaderKey
	}
	resp, err := s.l.Proclaim(ctx, &kvv1.ProclaimRequest{Leader: leaderKey(r.GetLeader()), Value: r.GetValue()})
	if err != nil {
		return nil, err
	}
	return &v3electionpb.ProclaimResponse{Header: header(resp.GetHeader())}, nil
}

func (s *electionServer) Leader(ctx context.Context, r *v3electionpb.LeaderRequest) (*v3electionpb.LeaderResponse, error) {
	resp, err := s.l.Leader(ctx, &kvv1.LeaderRequest{Name: r.GetName()})
	if err != nil {
		return nil, err
	}
	return &v3electionpb.LeaderResponse{Header: header(resp.GetHeader()), Kv: keyValue(resp.GetKv())}, nil
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
	if r.GetLeader() == nil {
		return nil, errMissingLeaderKey
	}
	resp, err := s.l.Resign(ctx, &kvv1.ResignRequest{Leader: leaderKey(r.GetLeader())})
	if err != nil {
		return nil, err
	}
	return &v3electionpb.ResignResponse{Header: header(resp.GetHeader())}, nil
}

func leaderKey(l *v3electionpb.LeaderKey) *kvv1.LeaderKey {
	return &kvv1.LeaderKey{Name: l.GetName(), Key: l.GetKey(), Rev: l.GetRev(), Lease: l.GetLease()}
}
