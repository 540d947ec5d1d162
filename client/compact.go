package client

import (
	"context"
	"fmt"

	"google.golang.org/grpc"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// CompactResponse is the result of a compaction: Header describes the member
// that served it.
type CompactResponse struct{ *kvv1.CompactResponse }

// CompactOption configures Compact.
type CompactOption func(*kvv1.CompactRequest)

// WithCompactPhysical makes Compact return only once the serving member has
// deleted the compacted history, rather than once the compaction is
// committed.
func WithCompactPhysical() CompactOption {
	return func(r *kvv1.CompactRequest) { r.Physical = true }
}

// Compact discards the history below revision rev on every member, through
// the raft log: reads at an older revision, and watches that need one, then
// fail with OutOfRange ("required revision has been compacted"), while a
// read at rev itself still works and the newest version of every key stays.
// rev must be at least 1 and not above the current revision; compacting at
// or below the revision already compacted is an error. Options:
// WithCompactPhysical.
//
// It is retried like a write: on another endpoint only when it certainly was
// not applied.
func (c *Client) Compact(ctx context.Context, rev int64, opts ...CompactOption) (*CompactResponse, error) {
	if rev < 1 {
		return nil, fmt.Errorf("client: Compact revision %d: must be at least 1", rev)
	}
	req := &kvv1.CompactRequest{Revision: rev}
	for _, o := range opts {
		o(req)
	}
	var resp *kvv1.CompactResponse
	err := c.invoke(ctx, kindWrite, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = kvv1.NewKVServiceClient(cc).Compact(ctx, req)
		return err
	})
	if err != nil {
		return nil, err
	}
	return &CompactResponse{resp}, nil
}
