package etcdapi

import (
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"

	"github.com/kvd-io/kvd/etcdapi/proto/v3electionpb"
	"github.com/kvd-io/kvd/etcdapi/proto/v3lockpb"
	"github.com/kvd-io/kvd/rpc"
)

// MethodPrefix begins the full name of every method of etcd's
// etcdserverpb services: the key of ToStatus in rpc.Config.Statuses.
const MethodPrefix = "/etcdserverpb."

// LockMethodPrefix and ElectionMethodPrefix begin the full names of the
// methods of etcd's v3lockpb and v3electionpb services.
const (
	LockMethodPrefix     = "/v3lockpb."
	ElectionMethodPrefix = "/v3electionpb."
)

// Statuses is what rpc.Config.Statuses needs for the etcd API.
func Statuses() map[string]func(error) error {
	return map[string]func(error) error{MethodPrefix: ToStatus, LockMethodPrefix: ToStatus, ElectionMethodPrefix: ToStatus}
}

// API is etcd's v3 services over kvd's kv.v1 services.
type API struct {
	local rpc.Local
	cfg   Config
}

// New returns the etcd API over local; Register serves it. It fails if
// cfg does not validate.
func New(local rpc.Local, cfg Config) (*API, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("etcdapi: %w", err)
	}
	return &API{local: local, cfg: cfg}, nil
}

// Register registers the etcd services on s, which must serve kvd's API
// (rpc.API.Register, with rpc.API.ServerOptions and Statuses in its
// config): the interceptors identify the callers of etcd methods.
func (a *API) Register(s *grpc.Server) {
	pb.RegisterKVServer(s, &kvServer{l: a.local})
	pb.RegisterLeaseServer(s, &leaseServer{l: a.local})
	pb.RegisterWatchServer(s, &watchServer{l: a.local})
	pb.RegisterMaintenanceServer(s, &maintenanceServer{l: a.local, cfg: a.cfg})
	pb.RegisterClusterServer(s, &clusterServer{l: a.local, cfg: a.cfg})
	v3lockpb.RegisterLockServer(s, &lockServer{l: a.local})
	v3electionpb.RegisterElectionServer(s, &electionServer{l: a.local})
}
