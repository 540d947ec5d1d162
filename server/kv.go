package server

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/fsm"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// grpcOverheadBytes is allowed above MaxRequestBytes at the gRPC layer, so
// that a slightly oversized request reaches limitRequestSize and gets a clear
// InvalidArgument rather than gRPC's ResourceExhausted.
const grpcOverheadBytes = 512 * 1024

// kvService serves kv.v1.KVService.
type kvService struct {
	kvv1.UnimplementedKVServiceServer
	s *Server
}

func (k *kvService) Put(ctx context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	if err := fsm.ValidatePut(req); err != nil {
		return nil, toStatus(err)
	}
	res, err := k.s.propose(ctx, fsmv1.CommandType_COMMAND_TYPE_PUT, req)
	return written[*kvv1.PutResponse](k.s, res, err)
}

func (k *kvService) DeleteRange(ctx context.Context, req *kvv1.DeleteRangeRequest) (*kvv1.DeleteRangeResponse, error) {
	if err := fsm.ValidateDeleteRange(req); err != nil {
		return nil, toStatus(err)
	}
	res, err := k.s.propose(ctx, fsmv1.CommandType_COMMAND_TYPE_DELETE_RANGE, req)
	return written[*kvv1.DeleteRangeResponse](k.s, res, err)
}

func (k *kvService) Txn(ctx context.Context, req *kvv1.TxnRequest) (*kvv1.TxnResponse, error) {
	if err := fsm.ValidateTxn(req); err != nil {
		return nil, toStatus(err)
	}
	// Every txn goes through the log, read-only ones included: that makes
	// its compares and reads linearizable without a separate path.
	res, err := k.s.propose(ctx, fsmv1.CommandType_COMMAND_TYPE_TXN, req)
	return written[*kvv1.TxnResponse](k.s, res, err)
}

// writeResponse is the response of a write.
type writeResponse interface {
	*kvv1.PutResponse | *kvv1.DeleteRangeResponse | *kvv1.TxnResponse
	GetHeader() *kvv1.ResponseHeader
}

// written turns what a write's proposal returned into its response, with
// this member's header, or into a gRPC status error.
func written[R writeResponse](s *Server, res any, err error) (R, error) {
	var zero R
	if err != nil {
		return zero, toStatus(err)
	}
	r, ok := res.(R)
	if !ok {
		return zero, toStatus(fmt.Errorf("%w: %T for a %T", errUnexpectedResult, res, zero))
	}
	h := s.header(r.GetHeader().GetRevision())
	switch r := any(r).(type) {
	case *kvv1.PutResponse:
		r.Header = h
	case *kvv1.DeleteRangeResponse:
		r.Header = h
	case *kvv1.TxnResponse:
		r.Header = h
	}
	return r, nil
}

func (k *kvService) Range(ctx context.Context, req *kvv1.RangeRequest) (*kvv1.RangeResponse, error) {
	if err := fsm.ValidateRange(req); err != nil {
		return nil, toStatus(err)
	}
	if !req.GetSerializable() {
		if err := k.s.linearize(ctx); err != nil {
			return nil, toStatus(err)
		}
	}
	return k.rangeLocal(req)
}

// rangeAt is Range for a linearizable read whose read index is known:
// it waits, until deadline, for the state machine to apply it, then reads.
func (k *kvService) rangeAt(req *kvv1.RangeRequest, index uint64, deadline time.Time) (*kvv1.RangeResponse, error) {
	if err := fsm.ValidateRange(req); err != nil {
		return nil, toStatus(err)
	}
	if err := k.s.waitAppliedBy(deadline, index); err != nil {
		return nil, toStatus(err)
	}
	return k.rangeLocal(req)
}

// rangeLocal reads from this member's state as it is.
func (k *kvService) rangeLocal(req *kvv1.RangeRequest) (*kvv1.RangeResponse, error) {
	resp, err := k.s.fsm.Range(req)
	if err != nil {
		return nil, toStatus(err)
	}
	resp.Header = k.s.header(resp.GetHeader().GetRevision())
	return resp, nil
}

// header describes this member for a response at the given revision.
func (s *Server) header(rev int64) *kvv1.ResponseHeader {
	id := s.clusterID.Load()
	if id == 0 {
		id = s.fsm.ClusterID()
		s.clusterID.Store(id)
	}
	return &kvv1.ResponseHeader{ClusterId: id, MemberId: s.id, Revision: rev, RaftTerm: s.raft.CurrentTerm()}
}

// limitRequestSize is the unary interceptor of admit.
func (s *Server) limitRequestSize(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if m, ok := req.(proto.Message); ok {
		if err := s.admit(m); err != nil {
			return nil, err
		}
	}
	return handler(ctx, req)
}

// admit refuses a request larger than MaxRequestBytes, and every request
// once the member was removed from its cluster, with a gRPC status error.
// Unary calls and the ops of streams go through it alike.
func (s *Server) admit(req proto.Message) error {
	if err := s.Err(); err != nil {
		return toStatus(err)
	}
	if n := proto.Size(req); n > s.cfg.MaxRequestBytes {
		return toStatus(fmt.Errorf("%w: %d bytes exceeds the limit of %d (--max-request-bytes)", ErrRequestTooLarge, n, s.cfg.MaxRequestBytes))
	}
	return nil
}
