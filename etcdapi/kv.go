package etcdapi

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/rpc"
)

// kvServer serves etcdserverpb.KV.
type kvServer struct {
	pb.UnimplementedKVServer
	l rpc.Local
}

func (k *kvServer) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	return unary(ctx, k.l, r, rangeRequest, k.l.Range, rangeResponse)
}

// errRangeStream: clients fall back to Range when RangeStream is
// unimplemented.
var errRangeStream = status.Error(codes.Unimplemented, "etcdserver: RangeStream is not supported by kvd; use Range")

func (k *kvServer) RangeStream(*pb.RangeRequest, grpc.ServerStreamingServer[pb.RangeStreamResponse]) error {
	return errRangeStream
}

func (k *kvServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	return unary(ctx, k.l, r, total(putRequest), k.l.Put, putResponse)
}

func (k *kvServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	return unary(ctx, k.l, r, total(deleteRangeRequest), k.l.DeleteRange, deleteRangeResponse)
}

func (k *kvServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	return unary(ctx, k.l, r, txnRequest, k.l.Txn, txnResponse)
}

func (k *kvServer) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	return unary(ctx, k.l, r, total(compactRequest), k.l.Compact, compactResponse)
}

func compactRequest(r *pb.CompactionRequest) *kvv1.CompactRequest {
	return &kvv1.CompactRequest{Revision: r.GetRevision(), Physical: r.GetPhysical()}
}

func compactResponse(r *kvv1.CompactResponse) *pb.CompactionResponse {
	return &pb.CompactionResponse{Header: header(r.GetHeader())}
}
