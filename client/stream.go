package client

import (
	"context"
	"errors"
	"fmt"
	"math"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/internal/streammux"
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

// errNoStream reports that the endpoint does not serve KVService.Stream
// (Unimplemented): the op was not run and goes as a unary call instead.
var errNoStream = errors.New("client: endpoint does not serve streams")

// opStream is one KVService.Stream on one endpoint's connection, which every
// call to that endpoint shares (see package streammux).
type opStream struct {
	endpoint string
	mux      *streammux.Mux[*kvv1.StreamOp, *kvv1.StreamResult]
}

// openStream starts a stream on cc. close ends it.
func openStream(cc *grpc.ClientConn, endpoint string) (*opStream, error) {
	ctx, cancel := context.WithCancel(context.Background())
	cs, err := kvv1.NewKVServiceClient(cc).Stream(ctx, grpc.MaxCallRecvMsgSize(maxStreamRecvBytes))
	if err != nil {
		cancel()
		return nil, err
	}
	return &opStream{endpoint: endpoint, mux: streammux.New(kvWire{cs}, cancel, kvCodec)}, nil
}

func (s *opStream) usable() bool { return s.mux.Usable() }
func (s *opStream) ended() bool  { return s.mux.Ended() }
func (s *opStream) close()       { s.mux.Close() }

// call sends req and waits for its result, or for ctx to end. Its errors are
// what a unary call of the same kind would return.
func (s *opStream) call(ctx context.Context, req *kvv1.RequestOp) (*kvv1.ResponseOp, error) {
	res, err := s.mux.Call(ctx, &kvv1.StreamOp{Request: req})
	if err != nil {
		return nil, s.callError(err)
	}
	return resultOf(res)
}

// callError turns the multiplexer's errors into gRPC status errors: an op
// that never left is marked not applied, one that left and got no answer is
// as uncertain as a unary call whose connection broke.
func (s *opStream) callError(err error) error {
	var (
		unsent *streammux.UnsentError
		broken *streammux.BrokenError
	)
	switch {
	case errors.As(err, &unsent):
		if status.Code(unsent.Cause) == codes.Unimplemented {
			return errNoStream
		}
		return apierr.NotApplied(codes.Unavailable, fmt.Sprintf("request not sent to %s: stream closed: %v", s.endpoint, unsent.Cause))
	case errors.As(err, &broken):
		code := status.Code(broken.Cause)
		switch code {
		case codes.Unimplemented:
			return errNoStream // the member refused the stream before reading any op
		case codes.OK, codes.Unknown:
			code = codes.Unavailable // the stream ended without a status
		}
		return status.Errorf(code, "stream to %s ended before the answer came: %v", s.endpoint, broken.Cause)
	default:
		return err
	}
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

// kvWire is a KVService.Stream as streammux sees it.
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

var kvCodec = streammux.Codec[*kvv1.StreamOp, *kvv1.StreamResult]{
	SetID: func(op *kvv1.StreamOp, id uint64, timeoutMs int64) {
		op.Id, op.TimeoutMs = id, timeoutMs
	},
	ID:   (*kvv1.StreamResult).GetId,
	Size: func(op *kvv1.StreamOp) int { return proto.Size(op) },
}
