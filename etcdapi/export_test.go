package etcdapi

import "google.golang.org/grpc"

// ServiceDescs are the etcd services an API registers, for the tests of
// the external test package.
func ServiceDescs() []*grpc.ServiceDesc {
	var out []*grpc.ServiceDesc
	for _, s := range (&API{}).services() {
		out = append(out, s.desc)
	}
	return out
}
