package client

import (
	"context"
	"math"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/internal/opstream"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

const (
	// maxStreamOpBytes is the largest request sent on a stream; larger ones
	// go as unary calls. A request over the member's size limit fails alone
	// that way, instead of ending the stream under every op in flight on it.
	maxStreamOpBytes = 256 << 10
	// maxStreamRecvBytes lets a stream carry results as large as unary calls
	// with a raised receive limit would.
	maxStreamRecvBytes = math.MaxInt32
)

// openStream starts the KVService.Stream that every call to endpoint
// shares (see package opstream).
func openStream(cc *grpc.ClientConn, endpoint string) (*opstream.Mux[*kvv1.StreamOp, *kvv1.StreamResult], error) {
	ctx, cancel := context.WithCancel(context.Background())
	cs, err := kvv1.NewKVServiceClient(cc).Stream(ctx, grpc.MaxCallRecvMsgSize(maxStreamRecvBytes))
	if err != nil {
		cancel()
		return nil, err
	}
	return opstream.New(endpoint, kvWire{cs}, cancel, kvCodec), nil
}

// resultOf turns a result off the wire into the call's response or error.
func resultOf(r *kvv1.StreamResult) (*kvv1.ResponseOp, error) {
	if e := r.GetError(); e != nil {
		return nil, apierr.FromStream(e)
	}
	if r.GetResponse() == nil {
		return nil, status.Error(codes.Internal, "stream result has neither a response nor an error")
	}
	return r.GetResponse(), nil
}

// kvWire is a KVService.Stream as opstream sees it.
type kvWire struct{ cs kvv1.KVService_StreamClient }

func (w kvWire) Send(ops []*kvv1.StreamOp) error {
	return w.cs.Send(&kvv1.StreamRequest{Ops: ops})
}

func (w kvWire) Recv() ([]*kvv1.StreamResult, bool, error) {
	resp, err := w.cs.Recv()
	if err != nil {
		return nil, false, err
	}
	return resp.GetResults(), resp.GetDraining(), nil
}

func (w kvWire) CloseSend() error { return w.cs.CloseSend() }

var kvCodec = opstream.Codec[*kvv1.StreamOp, *kvv1.StreamResult]{
	SetID: func(op *kvv1.StreamOp, id uint64, timeoutMs int64) {
		op.Id, op.TimeoutMs = id, timeoutMs
	},
	ID:   (*kvv1.StreamResult).GetId,
	Size: func(op *kvv1.StreamOp) int { return proto.Size(op) },
}
