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
	req, err := rangeRequest(r)
	if err != nil {
		return nil, err
	}
	resp, err := k.l.Range(ctx, req)
	if err != nil {
		return nil, err
	}
	return rangeResponse(resp), nil
}

// errRangeStream: clients fall back to Range when RangeStream is
// unimplemented.
var errRangeStream = status.Error(codes.Unimplemented, "etcdserver: RangeStream is not supported by kvd; use Range")

func (k *kvServer) RangeStream(*pb.RangeRequest, grpc.ServerStreamingServer[pb.RangeStreamResponse]) error {
	return errRangeStream
}

func (k *kvServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	resp, err := k.l.Put(ctx, putRequest(r))
	if err != nil {
		return nil, err
	}
	return putResponse(resp), nil
}

func (k *kvServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	resp, err := k.l.DeleteRange(ctx, deleteRangeRequest(r))
	if err != nil {
		return nil, err
	}
	return deleteRangeResponse(resp), nil
}

func (k *kvServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	req, err := txnRequest(r)
	if err != nil {
		return nil, err
	}
	resp, err := k.l.Txn(ctx, req)
	if err != nil {
		return nil, err
	}
	return txnResponse(resp), nil
}

func (k *kvServer) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	resp, err := k.l.Compact(ctx, &kvv1.CompactRequest{Revision: r.GetRevision(), Physical: r.GetPhysical()})
	if err != nil {
		return nil, err
	}
	return &pb.CompactionResponse{Header: header(resp.GetHeader())}, nil
}
