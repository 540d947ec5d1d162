package etcdapi

import (
	"context"
	"fmt"
	"net"
	"net/url"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/internal/memberid"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/rpc"
)

// clusterServer serves etcdserverpb.Cluster over kvd's ClusterService.
//
// kvd names its members and derives each one's id from its name
// (memberid.FromName); etcd draws ids and learns a member's name when it
// starts. The calls that take an id (remove, promote) find the member
// with that id; MemberAdd, which etcd gives only peer URLs, names the new
// member after its raft address (see MemberAdd).
type clusterServer struct {
	pb.UnimplementedClusterServer
	l   rpc.Local
	cfg Config
}

// MemberList lists the members with etcd's URLs: the raft address as
// the peer URL, the client address (once the member published it) as
// the client URL, https:// when the port serves TLS. A linearizable list
// waits until this member has applied every change acknowledged before
// the call; otherwise it is this member's view, as etcd's.
func (s *clusterServer) MemberList(ctx context.Context, r *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	if r.GetLinearizable() {
		if err := s.l.Linearize(ctx); err != nil {
			return nil, err
		}
	}
	resp, err := s.l.MemberList(ctx, &kvv1.MemberListRequest{})
	if err != nil {
		return nil, err
	}
	return &pb.MemberListResponse{Header: header(resp.GetHeader()), Members: s.members(resp.GetMembers())}, nil
}

// MemberAdd adds a member at the one peer URL given, named after that
// URL's host:port: start it with that --name, --raft-addr the same
// address and --join (it then finds itself already added). The response
// names it, and its id is FromName of that name.
func (s *clusterServer) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	addr, err := peerAddr(r.GetPeerURLs())
	if err != nil {
		return nil, err
	}
	list, err := s.l.MemberList(ctx, &kvv1.MemberListRequest{})
	if err != nil {
		return nil, err
	}
	for _, m := range list.GetMembers() {
		if m.GetRaftAddr() == addr {
			return nil, rpctypes.ErrGRPCPeerURLExist
		}
	}
	resp, err := s.l.MemberAdd(ctx, &kvv1.MemberAddRequest{Name: addr, RaftAddr: addr, IsLearner: r.GetIsLearner()})
	if err != nil {
		return nil, err
	}
	out := &pb.MemberAddResponse{Header: header(resp.GetHeader()), Members: s.members(resp.GetMembers())}
	if m := resp.GetMember(); m != nil {
		out.Member = s.member(m)
	} else {
		// A member that was not in the list the leader answered with
		// (removed again at once): describe it from the request.
		out.Member = &pb.Member{ID: memberid.FromName(addr), Name: addr, PeerURLs: []string{s.url(addr, s.cfg.PeerTLS)}, IsLearner: r.GetIsLearner()}
	}
	return out, nil
}

// peerAddr is the raft address of etcd's peer URLs: kvd members have one,
// so exactly one URL, http or https, with a host and a port.
func peerAddr(urls []string) (string, error) {
	if len(urls) != 1 {
		return "", status.Errorf(codes.InvalidArgument,
			"etcdserver: given member URLs are invalid: kvd members have one raft address, so give exactly one peer URL (got %d)", len(urls))
	}
	u, err := url.Parse(urls[0])
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" && u.Path != "/" {
		return "", status.Errorf(codes.InvalidArgument,
			"etcdserver: given member URLs are invalid: %q: want http(s)://host:port", urls[0])
	}
	if _, port, err := net.SplitHostPort(u.Host); err != nil || port == "" {
		return "", status.Errorf(codes.InvalidArgument,
			"etcdserver: given member URLs are invalid: %q has no port: want http(s)://host:port", urls[0])
	}
	if err := memberid.CheckName(u.Host); err != nil {
		return "", status.Errorf(codes.InvalidArgument, "etcdserver: given member URLs are invalid: %q: %v", urls[0], err)
	}
	return u.Host, nil
}

func (s *clusterServer) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	m, err := s.byID(ctx, r.GetID())
	if err != nil {
		return nil, err
	}
	resp, err := s.l.MemberRemove(ctx, &kvv1.MemberRemoveRequest{Name: m.GetName()})
	if err != nil {
		return nil, err
	}
	return &pb.MemberRemoveResponse{Header: header(resp.GetHeader()), Members: s.members(resp.GetMembers())}, nil
}

func (s *clusterServer) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	m, err := s.byID(ctx, r.GetID())
	if err != nil {
		return nil, err
	}
	resp, err := s.l.MemberPromote(ctx, &kvv1.MemberPromoteRequest{Name: m.GetName()})
	if err != nil {
		return nil, err
	}
	return &pb.MemberPromoteResponse{Header: header(resp.GetHeader()), Members: s.members(resp.GetMembers())}, nil
}

// MemberUpdate changes a member's peer URLs, which kvd cannot do: a
// member's raft address is fixed while it is a member. An update to the
// URL it already has succeeds and changes nothing.
func (s *clusterServer) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	m, err := s.byID(ctx, r.GetID())
	if err != nil {
		return nil, err
	}
	addr, err := peerAddr(r.GetPeerURLs())
	if err != nil {
		return nil, err
	}
	if addr != m.GetRaftAddr() {
		return nil, status.Errorf(codes.FailedPrecondition,
			"etcdserver: kvd cannot change the peer URL of member %s (%x) from %s to %s: remove the member, then add it again at the new address with an empty data dir",
			m.GetName(), m.GetId(), m.GetRaftAddr(), addr)
	}
	resp, err := s.l.MemberList(ctx, &kvv1.MemberListRequest{})
	if err != nil {
		return nil, err
	}
	return &pb.MemberUpdateResponse{Header: header(resp.GetHeader()), Members: s.members(resp.GetMembers())}, nil
}

// byID is the member with id, or etcd's "member not found".
func (s *clusterServer) byID(ctx context.Context, id uint64) (*kvv1.Member, error) {
	m, err := findMember(ctx, s.l, id)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, rpctypes.ErrGRPCMemberNotFound
	}
	return m, nil
}

func (s *clusterServer) members(ms []*kvv1.Member) []*pb.Member {
	if len(ms) == 0 {
		return nil
	}
	out := make([]*pb.Member, len(ms))
	for i, m := range ms {
		out[i] = s.member(m)
	}
	return out
}

// member is m in etcd's terms. etcd lists a member that has not started
// yet without a name; kvd knows every member's name from the start.
func (s *clusterServer) member(m *kvv1.Member) *pb.Member {
	out := &pb.Member{ID: m.GetId(), Name: m.GetName(), IsLearner: m.GetIsLearner()}
	if a := m.GetRaftAddr(); a != "" {
		out.PeerURLs = []string{s.url(a, s.cfg.PeerTLS)}
	}
	if a := m.GetClientAddr(); a != "" {
		out.ClientURLs = []string{s.url(a, s.cfg.ClientTLS)}
	}
	return out
}

// url is addr as an etcd URL.
func (s *clusterServer) url(addr string, tls bool) string {
	scheme := "http"
	if tls {
		scheme = "https"
	}
	return fmt.Sprintf("%s://%s", scheme, addr)
}
