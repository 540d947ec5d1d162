package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/apierr"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// maxResultBatchBytes caps the results packed into one StreamResponse, so
// that a message stays well under a client's receive limit. A single larger
// result still goes alone.
const maxResultBatchBytes = 1 << 20

// Stream serves many requests over one stream. Each op runs exactly as the
// unary method of its kind would run it; what the stream saves is gRPC's
// per-call work (a new HTTP/2 stream, headers and trailers, a handler
// goroutine), which was most of a member's CPU per small request.
//
// Serializable ranges are answered inline, on the goroutine that reads the
// stream: they never block. Everything else may wait for raft or for the
// leader, and runs on the member's workers.
func (k *kvService) Stream(st kvv1.KVService_StreamServer) error {
	ks := &opStream{s: k.s, k: k, st: st, ctx: st.Context()}
	watchDone := make(chan struct{})
	stopWatch := make(chan struct{})
	go func() {
		defer close(watchDone)
		select {
		case <-k.s.draining:
			ks.sendDraining()
		case <-stopWatch:
		}
	}()
	defer func() {
		close(stopWatch)
		<-watchDone
	}()
	for {
		req, err := st.Recv()
		if err != nil {
			// Answer what was received before the stream ends: after a
			// draining notice the client half-closes (io.EOF here) and
			// waits for these.
			ks.inflight.Wait()
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
		for _, op := range req.GetOps() {
			ks.dispatch(op)
		}
	}
}

// opStream is the server side of one Stream.
type opStream struct {
	s   *Server
	k   *kvService
	st  kvv1.KVService_StreamServer
	ctx context.Context

	inflight sync.WaitGroup // ops handed to workers; Add only on the Recv goroutine

	mu       sync.Mutex
	pending  []*kvv1.StreamResult
	sending  bool // a goroutine is in the send loop; only it calls st.Send
	draining bool // the draining notice is still to be sent
	broken   bool // a Send failed: the client is gone, results are dropped
}

// dispatch starts one op.
func (ks *opStream) dispatch(op *kvv1.StreamOp) {
	id := op.GetId()
	if err := ks.s.Err(); err != nil {
		ks.reply(failed(id, toStatus(err)))
		return
	}
	req := op.GetRequest()
	if n := proto.Size(req); n > ks.s.cfg.MaxRequestBytes {
		ks.reply(failed(id, toStatus(fmt.Errorf("%w: %d bytes exceeds the limit of %d (--max-request-bytes)", ErrRequestTooLarge, n, ks.s.cfg.MaxRequestBytes))))
		return
	}
	if r := req.GetRequestRange(); r != nil && r.GetSerializable() {
		ks.reply(ks.run(op))
		return
	}
	ks.inflight.Add(1)
	ks.s.workers.submit(func() {
		defer ks.inflight.Done()
		ks.reply(ks.run(op))
	})
}

// run serves one op with the unary method of its kind, under the op's
// timeout, and records it in the request metrics under that method's name.
func (ks *opStream) run(op *kvv1.StreamOp) *kvv1.StreamResult {
	ctx := ks.ctx
	if ms := op.GetTimeoutMs(); ms > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(ms)*time.Millisecond)
		defer cancel()
	}
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
	ks.s.metrics.ObserveRequest(method, time.Since(start), err)
	if err != nil {
		return failed(op.GetId(), err)
	}
	return &kvv1.StreamResult{Id: op.GetId(), Response: resp}
}

// failed is the result of an op that failed with err, a gRPC status error.
func failed(id uint64, err error) *kvv1.StreamResult {
	st := status.Convert(err)
	return &kvv1.StreamResult{Id: id, Error: &kvv1.StreamError{
		Code:       int32(st.Code()),
		Message:    st.Message(),
		NotApplied: apierr.IsNotApplied(err),
	}}
}

// reply queues r for sending. Whichever goroutine finds no send loop running
// becomes it, and sends everything queued meanwhile in as few messages as
// fit: replies that complete together share a message, and no goroutine is
// woken only to send.
func (ks *opStream) reply(r *kvv1.StreamResult) {
	ks.mu.Lock()
	if ks.broken {
		ks.mu.Unlock()
		return
	}
	ks.pending = append(ks.pending, r)
	ks.sendLoop()
}

// sendDraining tells the client that this member is shutting down.
func (ks *opStream) sendDraining() {
	ks.mu.Lock()
	ks.draining = true
	ks.sendLoop()
}

// sendLoop is entered with ks.mu held and returns with it released.
func (ks *opStream) sendLoop() {
	if ks.sending {
		ks.mu.Unlock()
		return
	}
	ks.sending = true
	for !ks.broken && (len(ks.pending) > 0 || ks.draining) {
		msg := &kvv1.StreamResponse{Draining: ks.draining}
		ks.draining = false
		size := 0
		n := 0
		for n < len(ks.pending) {
			rs := proto.Size(ks.pending[n])
			if n > 0 && size+rs > maxResultBatchBytes {
				break
			}
			size += rs
			n++
		}
		msg.Results = ks.pending[:n:n]
		ks.pending = ks.pending[n:]
		if len(ks.pending) == 0 {
			ks.pending = nil
		}
		ks.mu.Unlock()
		err := ks.st.Send(msg)
		ks.mu.Lock()
		if err != nil {
			ks.broken = true
			ks.pending = nil
		}
	}
	ks.sending = false
	ks.mu.Unlock()
}
