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

func (s *leaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	return unary(ctx, s.l, r, total(leaseGrantRequest), s.grant, leaseGrantResponse)
}

// grant grants a lease. A TTL below the cluster's minimum is raised to it,
// as etcd's lessor does, where kvd's own API refuses it: etcd's clients
// (and tests written for etcd) ask for short TTLs.
func (s *leaseServer) grant(ctx context.Context, r *kvv1.LeaseGrantRequest) (*kvv1.LeaseGrantResponse, error) {
	r.Ttl = max(r.GetTtl(), s.l.MinLeaseTTL())
	resp, err := s.l.LeaseGrant(ctx, r)
	if errors.Is(err, member.ErrLeaseTTLTooShort) {
		// The minimum grew (a longer election timeout) since it was read.
		r.Ttl = s.l.MinLeaseTTL()
		resp, err = s.l.LeaseGrant(ctx, r)
	}
	return resp, err
}

func (s *leaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	return unary(ctx, s.l, r, total(leaseRevokeRequest), s.l.LeaseRevoke, leaseRevokeResponse)
}

// LeaseTimeToLive answers TTL -1 for a lease that does not exist, as etcd
// does (kvd's own LeaseTimeToLive does too).
func (s *leaseServer) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	return unary(ctx, s.l, r, total(leaseTimeToLiveRequest), s.l.LeaseTimeToLive, leaseTimeToLiveResponse)
}

func (s *leaseServer) LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	return unary(ctx, s.l, r, total(leaseLeasesRequest), s.l.LeaseLeases, leaseLeasesResponse)
}

// LeaseKeepAlive is kvd's keep-alive stream: each request renews one
// lease and is answered with its TTL, 0 when it does not exist.
func (s *leaseServer) LeaseKeepAlive(st grpc.BidiStreamingServer[pb.LeaseKeepAliveRequest, pb.LeaseKeepAliveResponse]) error {
	if err := requireLeader(st.Context(), s.l); err != nil {
		return err
	}
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
