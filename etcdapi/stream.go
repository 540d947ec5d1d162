package etcdapi

import (
	"context"

	"google.golang.org/grpc"
)

// localStream is an etcd stream as the kv.v1 handler behind rpc.Local
// sees it: a grpc.ServerStream whose RecvMsg fills a kv.v1 request from
// the etcd request it receives (recv) and whose SendMsg sends a kv.v1
// response as etcd's (send). Headers and trailers are the etcd stream's.
type localStream struct {
	grpc.ServerStream
	ctx  context.Context
	recv func(m any) error
	send func(m any) error
}

func (s *localStream) Context() context.Context { return s.ctx }
func (s *localStream) RecvMsg(m any) error      { return s.recv(m) }
func (s *localStream) SendMsg(m any) error      { return s.send(m) }
