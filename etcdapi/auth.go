package etcdapi

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/kvd-io/kvd/rpc"
)

// authServer serves etcdserverpb.Auth. Only Authenticate is served yet
// (clientv3's Username and Password need it); the user and role
// management calls answer Unimplemented until they are mapped too.
type authServer struct {
	pb.UnimplementedAuthServer
	l rpc.Local
}

// Authenticate gives a token for a user's name and password: kvd's
// token, which every etcd and kv.v1 method accepts in the metadata
// "token", where clientv3 puts it.
func (s *authServer) Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	return unary(ctx, s.l, r, total(authenticateRequest), s.l.Authenticate, authenticateResponse)
}
