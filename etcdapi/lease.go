package etcdapi

import (
	"context"
	"errors"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"

	"github.com/kvd-io/kvd/member"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/rpc"
)

// leaseServer serves etcdserverpb.Lease.
type leaseServer struct {
	pb.UnimplementedLeaseServer
	l rpc.Local
}

// LeaseGrant grants a lease. A TTL below the cluster's minimum is raised
// to it, as etcd's lessor does, where kvd's own API refuses it: etcd's
// clients (and tests written for etcd) ask for short TTLs.
func (s *leaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	ttl := max(r.GetTTL(), s.l.MinLeaseTTL())
	resp, err := s.l.LeaseGrant(ctx, &kvv1.LeaseGrantRequest{Id: r.GetID(), Ttl: ttl})
	if errors.Is(err, member.ErrLeaseTTLTooShort) {
		// The minimum grew (a longer election timeout) since it was read.
		resp, err = s.l.LeaseGrant(ctx, &kvv1.LeaseGrantRequest{Id: r.GetID(), Ttl: s.l.MinLeaseTTL()})
	}
	if err != nil {
		return nil, err
	}
	return &pb.LeaseGrantResponse{Header: header(resp.GetHeader()), ID: resp.GetId(), TTL: resp.GetTtl()}, nil
}

func (s *leaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	resp, err := s.l.LeaseRevoke(ctx, &kvv1.LeaseRevokeRequest{Id: r.GetID()})
	if err != nil {
		return nil, err
	}
	return &pb.LeaseRevokeResponse{Header: header(resp.GetHeader())}, nil
}

// LeaseTimeToLive answers TTL -1 for a lease that does not exist, as etcd
// does (kvd's own LeaseTimeToLive does too).
func (s *leaseServer) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	resp, err := s.l.LeaseTimeToLive(ctx, &kvv1.LeaseTimeToLiveRequest{Id: r.GetID(), Keys: r.GetKeys()})
	if err != nil {
		return nil, err
	}
	return &pb.LeaseTimeToLiveResponse{Header: header(resp.GetHeader()), ID: resp.GetId(), TTL: resp.GetTtl(),
		GrantedTTL: resp.GetGrantedTtl(), Keys: resp.GetKeys()}, nil
}

func (s *leaseServer) LeaseLeases(ctx context.Context, _ *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	resp, err := s.l.LeaseLeases(ctx, &kvv1.LeaseLeasesRequest{})
	if err != nil {
		return nil, err
	}
	out := &pb.LeaseLeasesResponse{Header: header(resp.GetHeader())}
	if n := len(resp.GetLeases()); n > 0 {
		out.Leases = make([]*pb.LeaseStatus, n)
		for i, l := range resp.GetLeases() {
			out.Leases[i] = &pb.LeaseStatus{ID: l.GetId()}
		}
	}
	return out, nil
}

// LeaseKeepAlive is kvd's keep-alive stream: each request renews one
// lease and is answered with its TTL, 0 when it does not exist.
func (s *leaseServer) LeaseKeepAlive(st grpc.BidiStreamingServer[pb.LeaseKeepAliveRequest, pb.LeaseKeepAliveResponse]) error {
	return s.l.LeaseKeepAlive(&localStream{
		ServerStream: st,
		ctx:          st.Context(),
		recv: func(m any) error {
			r, err := st.Recv()
			if err != nil {
				return err
			}
			m.(*kvv1.LeaseKeepAliveRequest).Id = r.GetID()
			return nil
		},
		send: func(m any) error {
			r := m.(*kvv1.LeaseKeepAliveResponse)
			return st.Send(&pb.LeaseKeepAliveResponse{Header: header(r.GetHeader()), ID: r.GetId(), TTL: r.GetTtl()})
		},
	})
}
