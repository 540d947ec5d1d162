package rpc

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/opstream"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Stream serves many requests over one stream. Each op is answered as the
// unary method of its kind would answer it; what the stream saves is gRPC's
// per-call work (a new HTTP/2 stream, headers and trailers, a handler
// goroutine), which was most of a member's CPU per small request.
//
// No op holds a goroutine while it waits. Serializable ranges are answered
// inline, on the goroutine that reads the stream. The linearizable ranges of
// one message wait for a read index together (Node.LinearizeAsync) and are
// read and answered together. Writes are proposed with a callback
// (Node.ProposeAsync).
func (k *kvService) Stream(st kvv1.KVService_StreamServer) error {
	s := &opStream{k: k, ctx: st.Context()}
	s.out = opstream.Server[*kvv1.StreamRequest, *kvv1.StreamResult]{
		Recv: st.Recv,
		Send: func(results []*kvv1.StreamResult, draining bool) error {
			return st.Send(&kvv1.StreamResponse{Results: results, Draining: draining})
		},
		Draining: k.node.Draining(),
		Go:       k.cfg.Workers.Submit,
	}
	return s.out.Serve(func(req *kvv1.StreamRequest) {
		var reads []streamRead
		for _, op := range req.GetOps() {
			if op.GetLeaseRenew() != nil {
				s.renew(op)
				continue
			}
			if err := k.adm.admit(op.GetRequest()); err != nil {
				s.out.Reply(failed(op.GetId(), err))
				continue
			}
			info, err := k.authz.checkOp(s.ctx, requestOf(op.GetRequest()))
			if err != nil {
				s.out.Reply(failed(op.GetId(), err))
				continue
			}
			if r := op.GetRequest().GetRequestRange(); r != nil && !r.GetSerializable() {
				if err := fsm.ValidateRange(r); err != nil {
					s.fail(op, kvv1.KVService_Range_FullMethodName, time.Now(), err)
					continue
				}
				reads = append(reads, streamRead{op, info})
				continue
			}
			if t := op.GetRequest().GetRequestTxn(); t != nil && fsm.ReadOnlyTxn(t) {
				err := fsm.ValidateTxn(t)
				if err == nil {
					err = k.checkFeatures(t)
				}
				if err != nil {
					s.fail(op, kvv1.KVService_Txn_FullMethodName, time.Now(), err)
					continue
				}
				reads = append(reads, streamRead{op, info}) // a read, as for a unary Txn
				continue
			}
			s.dispatch(op, info)
		}
		if len(reads) > 0 {
			s.readTogether(reads)
		}
	})
}

// opStream is the server side of one KVService.Stream.
type opStream struct {
	k *kvService
	// ctx is the stream's: it knows the caller (see authz).
	ctx context.Context
	out opstream.Server[*kvv1.StreamRequest, *kvv1.StreamResult]
}

// requestOf is the request inside op, for authorization.
func requestOf(op *kvv1.RequestOp) proto.Message {
	switch r := op.GetRequest().(type) {
	case *kvv1.RequestOp_RequestRange:
		return r.RequestRange
	case *kvv1.RequestOp_RequestPut:
		return r.RequestPut
	case *kvv1.RequestOp_RequestDeleteRange:
		return r.RequestDeleteRange
	case *kvv1.RequestOp_RequestTxn:
		return r.RequestTxn
	}
	return op
}

// dispatch starts one op that is not a linearizable range; info is who
// sent it, authorized at which auth revision.
func (s *opStream) dispatch(op *kvv1.StreamOp, info *fsmv1.AuthInfo) {
	start := time.Now()
	if r := op.GetRequest().GetRequestRange(); r != nil { // serializable: answered at once
		err := fsm.ValidateRange(r)
		var resp *kvv1.RangeResponse
		if err == nil {
			resp, err = s.k.rangeLocal(r)
		}
		s.answer(op, kvv1.KVService_Range_FullMethodName, start, rangeOp(resp), err)
		return
	}
	w, ok := writeOf(op.GetRequest())
	if !ok {
		s.fail(op, "", start, errEmptyOp)
		return
	}
	if w.invalid == nil {
		w.invalid = s.k.checkFeatures(w.msg)
	}
	if w.invalid != nil {
		s.fail(op, w.method, start, w.invalid)
		return
	}
	cmd, err := fsm.EncodeClientCommand(w.cmd, w.msg, info)
	if err != nil {
		s.fail(op, w.method, start, err)
		return
	}
	s.out.Begin()
	s.k.node.ProposeAsync(cmd, start.Add(s.timeout(op)), func(res any, err error) {
		defer s.out.Done()
		resp, err := w.respond(s.k.node, res, err)
		s.answer(op, w.method, start, resp, err)
	})
}

// errRenewWithRequest refuses an op that is both a request and a renewal.
var errRenewWithRequest = fmt.Errorf("%w: stream op has both a request and a lease renewal", fsm.ErrEmptyRequest)

// renew renews the lease of a lease_renew op, answering as one request of
// a LeaseService.LeaseKeepAlive stream would: ttl 0 for a lease that does
// not exist. A renewal changes no key, so it is not admitted against the
// quota, and needs only a valid user, as LeaseKeepAlive does. Its batch is
// bounded by the member's request timeout, not by the op's timeout_ms.
func (s *opStream) renew(op *kvv1.StreamOp) {
	const method = kvv1.LeaseService_LeaseKeepAlive_FullMethodName
	start := time.Now()
	if op.GetRequest() != nil {
		s.fail(op, method, start, errRenewWithRequest)
		return
	}
	if _, err := s.k.authz.checkOp(s.ctx, op.GetLeaseRenew()); err != nil {
		s.fail(op, method, start, err)
		return
	}
	s.out.Begin()
	s.k.node.LeaseRenewAsync(op.GetLeaseRenew().GetId(), func(ttl int64, err error) {
		defer s.out.Done()
		if leaseNotFound(err) {
			ttl, err = 0, nil
		}
		if err != nil {
			s.fail(op, method, start, err)
			return
		}
		s.k.cfg.Metrics.ObserveRequest(method, time.Since(start), toStatus(nil))
		s.out.Reply(&kvv1.StreamResult{Id: op.GetId(), LeaseRenewed: &kvv1.StreamLeaseRenewed{
			Header: s.k.node.Header(s.k.node.Revision()),
			Ttl:    ttl,
		}})
	})
}

// readTogether serves the linearizable reads (ranges and read-only txns) of one message: they wait for
// one read index, are authorized again if auth changed meanwhile
// (authz.recheck), are read one after another on one worker and answered
// in one message. If no index comes before their deadline draws near, they
// fail as unconfirmed, as a unary Range would.
func (s *opStream) readTogether(reads []streamRead) {
	start := time.Now()
	timeout := s.timeout(reads[0].op)
	for _, r := range reads[1:] {
		timeout = min(timeout, s.timeout(r.op))
	}
	deadline := start.Add(timeout)
	ready := deadline.Add(-min(timeout/5, 500*time.Millisecond))
	fromMember := callerFrom(s.ctx).member
	s.out.Begin()
	s.k.node.LinearizeAsync(ready, deadline, func(err error) {
		defer s.out.Done()
		results := make([]*kvv1.StreamResult, len(reads))
		for i, r := range reads {
			op, opErr := r.op, err
			if opErr == nil && !fromMember {
				opErr = s.k.authz.recheck(r.auth, mayRead(requestOf(op.GetRequest())))
			}
			if t := op.GetRequest().GetRequestTxn(); t != nil {
				var resp *kvv1.TxnResponse
				if opErr == nil {
					resp, opErr = s.k.readTxnLocal(t)
				}
				results[i] = s.result(op, kvv1.KVService_Txn_FullMethodName, start, &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseTxn{ResponseTxn: resp}}, opErr)
				continue
			}
			var resp *kvv1.RangeResponse
			if opErr == nil {
				resp, opErr = s.k.rangeLocal(op.GetRequest().GetRequestRange())
			}
			results[i] = s.result(op, kvv1.KVService_Range_FullMethodName, start, rangeOp(resp), opErr)
		}
		s.out.Reply(results...)
	})
}

// streamRead is a linearizable read of a stream, and the AuthInfo it was
// authorized with (authz.recheck).
type streamRead struct {
	op   *kvv1.StreamOp
	auth *fsmv1.AuthInfo
}

// timeout is how long an op may take: its own timeout, or the member's
// request timeout when it has none (as for a unary call without a deadline).
func (s *opStream) timeout(op *kvv1.StreamOp) time.Duration {
	if ms := op.GetTimeoutMs(); ms > 0 {
		return time.Duration(ms) * time.Millisecond
	}
	return s.k.node.RequestTimeout()
}

// answer sends op's result: resp, or err as the unary method would have
// returned it.
func (s *opStream) answer(op *kvv1.StreamOp, method string, start time.Time, resp *kvv1.ResponseOp, err error) {
	s.out.Reply(s.result(op, method, start, resp, err))
}

func (s *opStream) fail(op *kvv1.StreamOp, method string, start time.Time, err error) {
	s.answer(op, method, start, nil, err)
}

// result is op's result, recorded in the request metrics under the unary
// method's name.
func (s *opStream) result(op *kvv1.StreamOp, method string, start time.Time, resp *kvv1.ResponseOp, err error) *kvv1.StreamResult {
	if method != "" {
		s.k.cfg.Metrics.ObserveRequest(method, time.Since(start), toStatus(err))
	}
	if err != nil {
		return failed(op.GetId(), err)
	}
	return &kvv1.StreamResult{Id: op.GetId(), Response: resp}
}

// failed is the result of an op that failed with err.
func failed(id uint64, err error) *kvv1.StreamResult {
	return &kvv1.StreamResult{Id: id, Error: streamError(err)}
}

// errEmptyOp's text is how members before lease renewals on streams
// refused one, and clients look for it (client.renewNotStreamed): keep it.
var errEmptyOp = fmt.Errorf("%w: stream op has no request", fsm.ErrEmptyRequest)

func rangeOp(resp *kvv1.RangeResponse) *kvv1.ResponseOp {
	return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseRange{ResponseRange: resp}}
}

// streamWrite is a write op of a stream: the unary method it stands for, its
// command, and how what the state machine returned becomes the op's
// response.
type streamWrite struct {
	method  string
	cmd     fsmv1.CommandType
	msg     proto.Message
	invalid error
	respond func(node KVNode, res any, err error) (*kvv1.ResponseOp, error)
}

func writeOf(req *kvv1.RequestOp) (streamWrite, bool) {
	switch r := req.GetRequest().(type) {
	case *kvv1.RequestOp_RequestPut:
		return streamWrite{kvv1.KVService_Put_FullMethodName, fsmv1.CommandType_COMMAND_TYPE_PUT, r.RequestPut, fsm.ValidatePut(r.RequestPut),
			func(node KVNode, res any, err error) (*kvv1.ResponseOp, error) {
				out, err := written[*kvv1.PutResponse](node, res, err)
				return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponsePut{ResponsePut: out}}, err
			}}, true
	case *kvv1.RequestOp_RequestDeleteRange:
		return streamWrite{kvv1.KVService_DeleteRange_FullMethodName, fsmv1.CommandType_COMMAND_TYPE_DELETE_RANGE, r.RequestDeleteRange, fsm.ValidateDeleteRange(r.RequestDeleteRange),
			func(node KVNode, res any, err error) (*kvv1.ResponseOp, error) {
				out, err := written[*kvv1.DeleteRangeResponse](node, res, err)
				return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: out}}, err
			}}, true
	case *kvv1.RequestOp_RequestTxn:
		return streamWrite{kvv1.KVService_Txn_FullMethodName, fsmv1.CommandType_COMMAND_TYPE_TXN, r.RequestTxn, fsm.ValidateTxn(r.RequestTxn),
			func(node KVNode, res any, err error) (*kvv1.ResponseOp, error) {
				out, err := written[*kvv1.TxnResponse](node, res, err)
				return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseTxn{ResponseTxn: out}}, err
			}}, true
	}
	return streamWrite{}, false
}
