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

// service is one etcd service and what serves it.
type service struct {
	desc *grpc.ServiceDesc
	impl any
}

// services are the etcd services served. Every method of each needs a
// rule in rpc's methodRules (ruleDelegated) and a case in
// TestEveryMethodAuthorizedAsKvd.
func (a *API) services() []service {
	return []service{
		{&pb.KV_ServiceDesc, &kvServer{l: a.local}},
		{&pb.Watch_ServiceDesc, &watchServer{l: a.local}},
		{&pb.Lease_ServiceDesc, &leaseServer{l: a.local}},
		{&pb.Auth_ServiceDesc, &authServer{l: a.local}},
		{&pb.Maintenance_ServiceDesc, &maintenanceServer{l: a.local, cfg: a.cfg}},
		{&pb.Cluster_ServiceDesc, &clusterServer{l: a.local, cfg: a.cfg}},
		{&v3lockpb.Lock_ServiceDesc, &lockServer{l: a.local}},
		{&v3electionpb.Election_ServiceDesc, &electionServer{l: a.local}},
	}
}

// Register registers the etcd services on s, which must serve kvd's API
// (rpc.API.Register, with rpc.API.ServerOptions and Statuses in its
// config): the interceptors identify the callers of etcd methods.
func (a *API) Register(s grpc.ServiceRegistrar) {
	for _, svc := range a.services() {
		s.RegisterService(svc.desc, svc.impl)
	}
}
