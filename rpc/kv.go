package rpc

import (
	"context"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/member"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// kvService serves kv.v1.KVService.
type kvService struct {
	kvv1.UnimplementedKVServiceServer
	node  KVNode
	cfg   Config
	adm   admission
	authz *authz
}

func (k *kvService) Put(ctx context.Context, req *kvv1.PutRequest) (*kvv1.PutResponse, error) {
	if err := fsm.ValidatePut(req); err != nil {
		return nil, err
	}
	res, err := k.propose(ctx, fsmv1.CommandType_COMMAND_TYPE_PUT, req)
	return written[*kvv1.PutResponse](k.node, res, err)
}

func (k *kvService) DeleteRange(ctx context.Context, req *kvv1.DeleteRangeRequest) (*kvv1.DeleteRangeResponse, error) {
	if err := fsm.ValidateDeleteRange(req); err != nil {
		return nil, err
	}
	res, err := k.propose(ctx, fsmv1.CommandType_COMMAND_TYPE_DELETE_RANGE, req)
	return written[*kvv1.DeleteRangeResponse](k.node, res, err)
}

func (k *kvService) Txn(ctx context.Context, req *kvv1.TxnRequest) (*kvv1.TxnResponse, error) {
	if err := fsm.ValidateTxn(req); err != nil {
		return nil, err
	}
	if fsm.ReadOnlyTxn(req) {
		// A txn that writes nothing is a read: it waits for a read index,
		// as a linearizable range does, instead of a log append.
		if err := k.checkFeatures(req); err != nil {
			return nil, err
		}
		if err := k.node.Linearize(ctx); err != nil {
			return nil, err
		}
		if err := k.authz.recheck(member.AuthInfoFrom(ctx), mayRead(req)); err != nil {
			return nil, err
		}
		return k.readTxnLocal(req)
	}
	res, err := k.propose(ctx, fsmv1.CommandType_COMMAND_TYPE_TXN, req)
	return written[*kvv1.TxnResponse](k.node, res, err)
}

// readTxnLocal answers a read-only txn from this member's state as it is.
func (k *kvService) readTxnLocal(req *kvv1.TxnRequest) (*kvv1.TxnResponse, error) {
	resp, err := k.node.ReadTxn(req)
	if err != nil {
		return nil, err
	}
	resp.Header = k.node.Header(resp.GetHeader().GetRevision())
	return resp, nil
}

func (k *kvService) propose(ctx context.Context, t fsmv1.CommandType, msg proto.Message) (any, error) {
	if err := k.checkFeatures(msg); err != nil {
		return nil, err
	}
	cmd, err := fsm.EncodeClientCommand(t, msg, member.AuthInfoFrom(ctx))
	if err != nil {
		return nil, err
	}
	return k.node.Propose(ctx, cmd)
}

// checkFeatures refuses a write that every member must be able to apply
// but some cannot yet (during a rolling upgrade), and one that would grow
// the state past its quota.
func (k *kvService) checkFeatures(msg proto.Message) error {
	if fsm.UsesLeases(msg) {
		if err := k.node.RequireFeature(fsm.FeatureLeases); err != nil {
			return err
		}
	}
	if t, ok := msg.(*kvv1.TxnRequest); ok {
		if err := fsm.CheckTxnOps(t, k.cfg.maxTxnOps()); err != nil {
			return err
		}
		if fsm.CheckTxnOps(t, fsm.MaxTxnOps) != nil {
			// Larger than an older member applies.
			if err := k.node.RequireFeature(fsm.FeatureLargeTxns); err != nil {
				return err
			}
		}
	}
	if fsm.Grows(msg) {
		return k.node.CheckQuota(proto.Size(msg))
	}
	return nil
}

// writeResponse is the response of a write.
type writeResponse interface {
	*kvv1.PutResponse | *kvv1.DeleteRangeResponse | *kvv1.TxnResponse
	GetHeader() *kvv1.ResponseHeader
}

// errUnexpectedResult: the state machine answered a write with a result of
// another kind; it cannot happen with this member's state machine.
var errUnexpectedResult = fmt.Errorf("unexpected result type from state machine")

// written turns what a write's proposal returned into its response, with
// this member's header.
func written[R writeResponse](node KVNode, res any, err error) (R, error) {
	var zero R
	if err != nil {
		return zero, err
	}
	r, ok := res.(R)
	if !ok {
		return zero, fmt.Errorf("%w: %T for a %T", errUnexpectedResult, res, zero)
	}
	h := node.Header(r.GetHeader().GetRevision())
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
		return nil, err
	}
	if !req.GetSerializable() {
		if err := k.node.Linearize(ctx); err != nil {
			return nil, err
		}
		if err := k.authz.recheck(member.AuthInfoFrom(ctx), mayRead(req)); err != nil {
			return nil, err
		}
	}
	return k.rangeLocal(req)
}

// Compact discards history below a revision, through the log.
func (k *kvService) Compact(ctx context.Context, req *kvv1.CompactRequest) (*kvv1.CompactResponse, error) {
	resp, err := k.node.Compact(ctx, req.GetRevision(), req.GetPhysical())
	if err != nil {
		return nil, err
	}
	resp.Header = k.node.Header(resp.GetHeader().GetRevision())
	return resp, nil
}

// rangeLocal reads from this member's state as it is.
func (k *kvService) rangeLocal(req *kvv1.RangeRequest) (*kvv1.RangeResponse, error) {
	resp, err := k.node.Range(req)
	if err != nil {
		return nil, err
	}
	resp.Header = k.node.Header(resp.GetHeader().GetRevision())
	return resp, nil
}

// admission refuses a request larger than MaxRequestBytes, and every request
// once the member was removed from its cluster. Unary calls (through
// admitUnary) and the ops of streams go through it alike.
type admission struct {
	maxBytes int
	err      func() error // the member's Err
}

func (a admission) admit(req proto.Message) error {
	if err := a.err(); err != nil {
		return err
	}
	if n := proto.Size(req); n > a.maxBytes {
		return fmt.Errorf("%w: %d bytes exceeds the limit of %d (--max-request-bytes)", ErrRequestTooLarge, n, a.maxBytes)
	}
	return nil
}

// unary is admit as a unary interceptor.
func (a admission) unary(ctx context.Context, req any, _ *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	if m, ok := req.(proto.Message); ok {
		if err := a.admit(m); err != nil {
			return nil, err
		}
	}
	return handler(ctx, req)
}
