package etcdapi

import (
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"

	"github.com/kvd-io/kvd/rpc"
)

// MethodPrefix begins the full name of every method this package serves:
// the key of ToStatus in rpc.Config.Statuses.
const MethodPrefix = "/etcdserverpb."

// Statuses is what rpc.Config.Statuses needs for the etcd API.
func Statuses() map[string]func(error) error {
	return map[string]func(error) error{MethodPrefix: ToStatus}
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
