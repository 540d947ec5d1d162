package etcdapi

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"

	"github.com/kvd-io/kvd/rpc"
)

// MethodPrefixes begin the full names of the methods of etcd's v3 API:
// etcdserverpb's services, and the lock and election services of
// etcd's gRPC proxy packages (v3lockpb, v3electionpb). Their errors are
// etcd's (ToStatus).
var MethodPrefixes = []string{"/etcdserverpb.", "/v3lockpb.", "/v3electionpb."}

// Statuses is what rpc.Config.Statuses needs for the etcd API.
func Statuses() map[string]func(error) error {
	m := map[string]func(error) error{}
	for _, p := range MethodPrefixes {
		m[p] = ToStatus
	}
	return m
}

// API is etcd's v3 services over kvd's kv.v1 services.
type API struct {
	local rpc.Local
}

// New returns the etcd API over local; Register serves it.
func New(local rpc.Local) *API {
	return &API{local: local}
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
