package server

import (
	"context"
	"errors"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/opstream"
	"github.com/kvd-io/kvd/internal/readindex"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Stream serves many requests over one stream. Each op runs exactly as the
// unary method of its kind would run it; what the stream saves is gRPC's
// per-call work (a new HTTP/2 stream, headers and trailers, a handler
// goroutine), which was most of a member's CPU per small request.
//
// Serializable ranges are answered inline, on the goroutine that reads the
// stream: they never block. The linearizable ranges of a message wait for a
// read index together (see readAfterIndex). Everything else may wait for
// raft or for the leader, and runs on the member's workers.
func (k *kvService) Stream(st kvv1.KVService_StreamServer) error {
	ks := &opStream{k: k, ctx: st.Context()}
	ks.out = opstream.Server[*kvv1.StreamRequest, *kvv1.StreamResult]{
		Recv: st.Recv,
		Send: func(results []*kvv1.StreamResult, draining bool) error {
			return st.Send(&kvv1.StreamResponse{Results: results, Draining: draining})
		},
		Draining: k.s.draining,
		Go:       k.s.workers.submit,
	}
	return ks.out.Serve(func(req *kvv1.StreamRequest) {
		var reads []*kvv1.StreamOp
		for _, op := range req.GetOps() {
			if ks.linearizableRead(op) {
				reads = append(reads, op)
				continue
			}
			ks.dispatch(op)
		}
		if len(reads) > 0 {
			ks.readAfterIndex(reads)
		}
	})
}

// linearizableRead reports whether op is a range that must see every write
// acknowledged before it, and may be served (it is admitted).
func (ks *opStream) linearizableRead(op *kvv1.StreamOp) bool {
	r := op.GetRequest().GetRequestRange()
	return r != nil && !r.GetSerializable() && !ks.k.s.cfg.UnsafeLocalReads && ks.k.s.admit(op.GetRequest()) == nil
}

// readAfterIndex serves linearizable ranges without a goroutine each: they
// join the read-index queue's next batch together, and once it has an index
// they are read one after another on one worker and answered in one
// message. Each is answered as the unary Range would answer it: if no index
// comes before their deadline draws near (answerBy), they fail as
// unconfirmed.
func (ks *opStream) readAfterIndex(ops []*kvv1.StreamOp) {
	s := ks.k.s
	start := time.Now()
	timeout := s.opTimeout(ops[0].GetTimeoutMs())
	for _, op := range ops[1:] {
		timeout = min(timeout, s.opTimeout(op.GetTimeoutMs()))
	}
	deadline := start.Add(timeout)
	early := deadline.Add(-min(timeout/5, 500*time.Millisecond))

	ks.out.Begin()
	s.reads.Await(early, func(index uint64, err error) {
		defer ks.out.Done()
		if errors.Is(err, readindex.ErrNotConfirmed) {
			err = errReadNotConfirmed
		}
		results := make([]*kvv1.StreamResult, len(ops))
		for i, op := range ops {
			var resp *kvv1.RangeResponse
			opErr := toStatus(err)
			if err == nil {
				resp, opErr = ks.k.rangeAt(op.GetRequest().GetRequestRange(), index, deadline)
			}
			s.metrics.ObserveRequest(kvv1.KVService_Range_FullMethodName, time.Since(start), opErr)
			if opErr != nil {
				results[i] = failed(op.GetId(), opErr)
			} else {
				results[i] = &kvv1.StreamResult{Id: op.GetId(), Response: &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseRange{ResponseRange: resp}}}
			}
		}
		ks.out.Reply(results...)
	})
}

// opStream is the server side of one KVService.Stream.
type opStream struct {
	k   *kvService
	ctx context.Context
	out opstream.Server[*kvv1.StreamRequest, *kvv1.StreamResult]
}

// dispatch starts one op.
func (ks *opStream) dispatch(op *kvv1.StreamOp) {
	req := op.GetRequest()
	if err := ks.k.s.admit(req); err != nil {
		ks.out.Reply(failed(op.GetId(), err))
		return
	}
	if r := req.GetRequestRange(); r != nil && r.GetSerializable() {
		ks.out.Reply(ks.run(op))
		return
	}
	if w, ok := writeOf(req); ok && ks.k.s.IsLeader() {
		ks.submitWrite(op, w)
		return
	}
	ks.out.GoOp(func() *kvv1.StreamResult { return ks.run(op) })
}

// streamWrite is a write op of a stream: the unary method it stands for, its
// command, and how what the state machine returned becomes the op's
// response.
type streamWrite struct {
	method  string
	cmd     fsmv1.CommandType
	msg     proto.Message
	invalid error
	respond func(s *Server, res any, err error) (*kvv1.ResponseOp, error)
}

func writeOf(req *kvv1.RequestOp) (streamWrite, bool) {
	switch r := req.GetRequest().(type) {
	case *kvv1.RequestOp_RequestPut:
		return streamWrite{kvv1.KVService_Put_FullMethodName, fsmv1.CommandType_COMMAND_TYPE_PUT, r.RequestPut, fsm.ValidatePut(r.RequestPut),
			func(s *Server, res any, err error) (*kvv1.ResponseOp, error) {
				out, err := written[*kvv1.PutResponse](s, res, err)
				return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponsePut{ResponsePut: out}}, err
			}}, true
	case *kvv1.RequestOp_RequestDeleteRange:
		return streamWrite{kvv1.KVService_DeleteRange_FullMethodName, fsmv1.CommandType_COMMAND_TYPE_DELETE_RANGE, r.RequestDeleteRange, fsm.ValidateDeleteRange(r.RequestDeleteRange),
			func(s *Server, res any, err error) (*kvv1.ResponseOp, error) {
				out, err := written[*kvv1.DeleteRangeResponse](s, res, err)
				return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: out}}, err
			}}, true
	case *kvv1.RequestOp_RequestTxn:
		return streamWrite{kvv1.KVService_Txn_FullMethodName, fsmv1.CommandType_COMMAND_TYPE_TXN, r.RequestTxn, fsm.ValidateTxn(r.RequestTxn),
			func(s *Server, res any, err error) (*kvv1.ResponseOp, error) {
				out, err := written[*kvv1.TxnResponse](s, res, err)
				return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseTxn{ResponseTxn: out}}, err
			}}, true
	}
	return streamWrite{}, false
}

// submitWrite proposes a write on the leader with no goroutine waiting for
// it: the commit queue calls back once it is applied, or given up at its
// deadline, and the result is sent from there. It is answered as the unary
// method would answer it.
func (ks *opStream) submitWrite(op *kvv1.StreamOp, w streamWrite) {
	s := ks.k.s
	start := time.Now()
	finish := func(resp *kvv1.ResponseOp, err error) {
		s.metrics.ObserveRequest(w.method, time.Since(start), err)
		if err != nil {
			ks.out.Reply(failed(op.GetId(), err))
			return
		}
		ks.out.Reply(&kvv1.StreamResult{Id: op.GetId(), Response: resp})
	}
	if w.invalid != nil {
		finish(nil, toStatus(w.invalid))
		return
	}
	data, err := fsm.EncodeCommand(w.cmd, w.msg)
	if err != nil {
		finish(nil, toStatus(err))
		return
	}
	ks.out.Begin()
	s.submitEncoded(data, start.Add(s.opTimeout(op.GetTimeoutMs())), func(res any, err error) {
		defer ks.out.Done()
		finish(w.respond(s, res, err))
	})
}

// run serves one op with the unary method of its kind, under the op's
// timeout, and records it in the request metrics under that method's name.
func (ks *opStream) run(op *kvv1.StreamOp) *kvv1.StreamResult {
	ctx, cancel := opContext(ks.ctx, op.GetTimeoutMs())
	defer cancel()
	start := time.Now()
	var (
		method string
		resp   *kvv1.ResponseOp
		err    error
	)
	switch r := op.GetRequest().GetRequest().(type) {
	case *kvv1.RequestOp_RequestRange:
		method = kvv1.KVService_Range_FullMethodName
		var out *kvv1.RangeResponse
		if out, err = ks.k.Range(ctx, r.RequestRange); err == nil {
			resp = &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseRange{ResponseRange: out}}
		}
	case *kvv1.RequestOp_RequestPut:
		method = kvv1.KVService_Put_FullMethodName
		var out *kvv1.PutResponse
		if out, err = ks.k.Put(ctx, r.RequestPut); err == nil {
			resp = &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponsePut{ResponsePut: out}}
		}
	case *kvv1.RequestOp_RequestDeleteRange:
		method = kvv1.KVService_DeleteRange_FullMethodName
		var out *kvv1.DeleteRangeResponse
		if out, err = ks.k.DeleteRange(ctx, r.RequestDeleteRange); err == nil {
			resp = &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: out}}
		}
	case *kvv1.RequestOp_RequestTxn:
		method = kvv1.KVService_Txn_FullMethodName
		var out *kvv1.TxnResponse
		if out, err = ks.k.Txn(ctx, r.RequestTxn); err == nil {
			resp = &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseTxn{ResponseTxn: out}}
		}
	default:
		return failed(op.GetId(), status.Error(codes.InvalidArgument, "stream op has no request"))
	}
	ks.k.s.metrics.ObserveRequest(method, time.Since(start), err)
	if err != nil {
		return failed(op.GetId(), err)
	}
	return &kvv1.StreamResult{Id: op.GetId(), Response: resp}
}

// failed is the result of an op that failed with err, a gRPC status error.
func failed(id uint64, err error) *kvv1.StreamResult {
	return &kvv1.StreamResult{Id: id, Error: apierr.ToStream(err)}
}

// opContext bounds a stream op's work by its timeout, as a deadline bounds
// a unary call; zero leaves it to the member's request timeout.
//
// The op does not end with the stream: a write goes on to its commit
// either way, and a stream waits for its ops before it ends (see
// opstream.Server.Serve). Not deriving each op from the stream's context also
// spares registering every op with it, which was 5% of the leader's CPU at
// 1000 concurrent clients.
func opContext(ctx context.Context, timeoutMs int64) (context.Context, context.CancelFunc) {
	ctx = context.WithoutCancel(ctx)
	if timeoutMs <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, time.Duration(timeoutMs)*time.Millisecond)
}
