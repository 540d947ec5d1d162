package client

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/internal/opstream"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// KV reads and writes keys. *Client implements it; code that only needs keys
// can depend on KV alone. Every method is safe for concurrent use, follows the
// retry policy in the package documentation, and returns the server's gRPC
// status errors unchanged (test them with status.Code and
// apierr.IsNotApplied).
type KV interface {
	// Put stores val under key. It returns once the write is committed and
	// applied. Options: WithPrevKV, WithLease.
	Put(ctx context.Context, key, val string, opts ...OpOption) (*PutResponse, error)

	// Get reads key, or the range its options select. It is linearizable
	// unless WithSerializable is given. Options: WithRange, WithPrefix,
	// WithFromKey, WithRev, WithLimit, WithKeysOnly, WithCountOnly,
	// WithSerializable.
	Get(ctx context.Context, key string, opts ...OpOption) (*GetResponse, error)

	// Delete deletes key, or the range its options select. Options:
	// WithRange, WithPrefix, WithFromKey, WithPrevKV.
	Delete(ctx context.Context, key string, opts ...OpOption) (*DeleteResponse, error)

	// Do runs an Op built by OpGet, OpPut, OpDelete or OpTxn; the result is in
	// the OpResponse accessor that matches the op.
	Do(ctx context.Context, op Op) (OpResponse, error)

	// Txn starts a transaction that Commit sends with ctx.
	Txn(ctx context.Context) Txn
}

// KeyValue is a key with its value and revisions.
type KeyValue = kvv1.KeyValue

// ResponseHeader describes the member and revision that served a response.
type ResponseHeader = kvv1.ResponseHeader

// PutResponse is the result of a put: Header.Revision is the revision of the
// write, PrevKv the previous pair when WithPrevKV asked for it.
type PutResponse struct{ *kvv1.PutResponse }

// GetResponse is the result of a get: Kvs in key order, Count the number of
// keys in the range regardless of any limit, More true when the limit cut
// the result short.
type GetResponse struct{ *kvv1.RangeResponse }

// DeleteResponse is the result of a delete: Deleted counts the keys removed,
// PrevKvs holds them when WithPrevKV asked for it.
type DeleteResponse struct{ *kvv1.DeleteRangeResponse }

// TxnResponse is the result of a transaction: Succeeded tells whether every
// compare held, Responses holds the results of the operations that ran.
type TxnResponse struct{ *kvv1.TxnResponse }

// OpResponse is the result of Do; only the accessor matching the op returns
// non-nil.
type OpResponse struct {
	put *PutResponse
	get *GetResponse
	del *DeleteResponse
	txn *TxnResponse
}

// Put returns the result of an OpPut, or nil.
func (r OpResponse) Put() *PutResponse { return r.put }

// Get returns the result of an OpGet, or nil.
func (r OpResponse) Get() *GetResponse { return r.get }

// Del returns the result of an OpDelete, or nil.
func (r OpResponse) Del() *DeleteResponse { return r.del }

// Txn returns the result of an OpTxn, or nil.
func (r OpResponse) Txn() *TxnResponse { return r.txn }

// Put stores val under key. See KV.Put.
func (c *Client) Put(ctx context.Context, key, val string, opts ...OpOption) (*PutResponse, error) {
	r, err := c.Do(ctx, OpPut(key, val, opts...))
	return r.put, err
}

// Get reads key or a range of keys. See KV.Get.
func (c *Client) Get(ctx context.Context, key string, opts ...OpOption) (*GetResponse, error) {
	r, err := c.Do(ctx, OpGet(key, opts...))
	return r.get, err
}

// Delete deletes key or a range of keys. See KV.Delete.
func (c *Client) Delete(ctx context.Context, key string, opts ...OpOption) (*DeleteResponse, error) {
	r, err := c.Do(ctx, OpDelete(key, opts...))
	return r.del, err
}

// Do runs op. See KV.Do.
func (c *Client) Do(ctx context.Context, op Op) (OpResponse, error) {
	if err := op.check(); err != nil {
		return OpResponse{}, err
	}
	req, err := op.requestOp()
	if err != nil {
		return OpResponse{}, err
	}
	resp, err := c.send(ctx, op.kind(), req)
	if err != nil {
		return OpResponse{}, err
	}
	switch r := resp.GetResponse().(type) {
	case *kvv1.ResponseOp_ResponseRange:
		return OpResponse{get: &GetResponse{r.ResponseRange}}, nil
	case *kvv1.ResponseOp_ResponsePut:
		return OpResponse{put: &PutResponse{r.ResponsePut}}, nil
	case *kvv1.ResponseOp_ResponseDeleteRange:
		return OpResponse{del: &DeleteResponse{r.ResponseDeleteRange}}, nil
	case *kvv1.ResponseOp_ResponseTxn:
		return OpResponse{txn: &TxnResponse{r.ResponseTxn}}, nil
	default:
		return OpResponse{}, status.Errorf(codes.Internal, "client: %T answered a %s", resp.GetResponse(), op.t)
	}
}

// send runs req under the retry policy: on the endpoint's stream when it is
// small enough and streams are on, as a unary call otherwise.
func (c *Client) send(ctx context.Context, kind rpcKind, req *kvv1.RequestOp) (*kvv1.ResponseOp, error) {
	stream := !c.cfg.UnaryCalls && proto.Size(req) <= maxStreamOpBytes
	var resp *kvv1.ResponseOp
	err := c.retry(ctx, kind, func(ctx context.Context, endpoint string) error {
		cc, err := c.ready(ctx, endpoint)
		if err != nil {
			return err
		}
		if stream {
			res, err := c.streamOp(ctx, endpoint, func() *kvv1.StreamOp { return &kvv1.StreamOp{Request: req} })
			if !errors.Is(err, opstream.ErrNotServed) {
				if err == nil {
					resp, err = resultOf(res)
				}
				return err
			}
			// Nothing ran: send it as a call.
		}
		resp, err = unary(ctx, cc, req)
		return err
	})
	return resp, err
}

// streamOp sends the op newOp builds on endpoint's stream and returns its
// result, or the error it failed with as the unary call would have
// returned it. It fails with opstream.ErrNotServed, having run nothing,
// when the member does not serve streams.
func (c *Client) streamOp(ctx context.Context, endpoint string, newOp func() *kvv1.StreamOp) (*kvv1.StreamResult, error) {
	for attempt := 0; ; attempt++ {
		if err := c.freshToken(ctx); err != nil {
			return nil, err
		}
		s, err := c.pool.Stream(endpoint)
		if errors.Is(err, opstream.ErrClosed) {
			return nil, ErrClosed
		}
		var res *kvv1.StreamResult
		if err == nil {
			res, err = s.Call(ctx, newOp())
		}
		if err == nil && res.GetError() != nil {
			err = apierr.FromStream(res.GetError())
		}
		if attempt == 0 && c.tokens.renewAfter(err) {
			// The member refused the token the stream opened with
			// (expired, or its user changed since). A stream's
			// credentials are checked only as it opens, so no op of it
			// ran: open another with a new token.
			continue
		}
		if errors.Is(err, opstream.ErrNotServed) {
			c.pool.NotServed(endpoint)
		}
		return res, err
	}
}

// unary sends req as the unary call of its kind.
func unary(ctx context.Context, cc grpc.ClientConnInterface, req *kvv1.RequestOp) (*kvv1.ResponseOp, error) {
	kv := kvv1.NewKVServiceClient(cc)
	switch r := req.GetRequest().(type) {
	case *kvv1.RequestOp_RequestRange:
		out, err := kv.Range(ctx, r.RequestRange)
		return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseRange{ResponseRange: out}}, err
	case *kvv1.RequestOp_RequestPut:
		out, err := kv.Put(ctx, r.RequestPut)
		return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponsePut{ResponsePut: out}}, err
	case *kvv1.RequestOp_RequestDeleteRange:
		out, err := kv.DeleteRange(ctx, r.RequestDeleteRange)
		return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: out}}, err
	case *kvv1.RequestOp_RequestTxn:
		out, err := kv.Txn(ctx, r.RequestTxn)
		return &kvv1.ResponseOp{Response: &kvv1.ResponseOp_ResponseTxn{ResponseTxn: out}}, err
	default:
		return nil, fmt.Errorf("client: request op %T has no request", req.GetRequest())
	}
}
