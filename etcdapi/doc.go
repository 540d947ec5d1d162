// Package etcdapi serves etcd's v3 gRPC API (go.etcd.io/etcd/api/v3's
// etcdserverpb services) over kvd's kv.v1 services, so that etcd's
// clients (clientv3 and its concurrency package, etcdctl, kube-apiserver)
// talk to kvd's client port unchanged.
//
// It is a thin adapter. kv.v1 already has etcd's semantics (revisions,
// create and mod revision, version, txns, watches, leases), so each etcd
// method translates its request into the kv.v1 request (convert.go), calls
// kvd's kv.v1 handler in process through rpc.Local, and translates the
// answer back. Going through rpc.Local rather than the member directly
// means that authorization, admission, quotas, rolling-upgrade feature
// checks and the stream machinery are kvd's own, not a second copy:
// rpc's interceptor only identifies the caller of an etcd method
// (ruleDelegated) and the kv.v1 call is authorized by that method's rule.
//
// Errors are etcd's, with etcd's exact codes and messages (errors.go,
// ToStatus), because etcd's clients match them by their text. ToStatus is
// given to rpc (rpc.Config.Statuses, for the method prefix MethodPrefix) so
// that the errors raised by kvd's interceptors on etcd methods (no
// credentials, permission denied, request too large) are etcd's too.
//
// docs/etcd-compatibility.md lists every service, method and field, and
// every difference from etcd.
package etcdapi
