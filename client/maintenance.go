package client

import (
	"context"
	"fmt"
	"slices"

	"google.golang.org/grpc"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Maintenance reports on single members. *Client implements it.
//
// Each call goes to the one endpoint it names, which must be one of the
// client's endpoints (as host:port, or as given in Config.Endpoints, such
// as https://host:port), and is never sent to another: an endpoint that is
// down is an error.
type Maintenance interface {
	// Status asks the member at endpoint for its raft and store state.
	Status(ctx context.Context, endpoint string) (*StatusResponse, error)

	// HashKV asks the member at endpoint for a hash of its key-value history
	// up to revision rev (zero: its current revision). The member first
	// catches up with the cluster (a linearizable wait), so members that
	// applied the same log return the same hash for the same revision;
	// comparing them finds a member whose data differs. A revision below the
	// compacted one, or above the current one, is an OutOfRange error.
	HashKV(ctx context.Context, endpoint string, rev int64) (*HashKVResponse, error)

	// Snapshot streams a consistent copy of the state database of the member
	// at endpoint, as of its last applied entry. The stream lives until ctx
	// ends or the reader is closed; give ctx no shorter deadline than the
	// transfer needs. Snapshot returns once the member has started sending,
	// so that the size is known. The reader checks what it returns against
	// the SHA-256 that ends the stream; see SnapshotReader.
	Snapshot(ctx context.Context, endpoint string) (SnapshotReader, error)

	// Defragment asks the member at endpoint to rewrite its state file
	// without the free space that deleted and compacted data left, and
	// returns the file's size before and after. The member goes on serving
	// meanwhile; reads and writes wait only for the final swap of the files.
	// Give ctx a deadline long enough for a copy of the file.
	Defragment(ctx context.Context, endpoint string) (*DefragmentResponse, error)
}

// StatusResponse is one member's status. Besides the raft state, DbSize is
// the size of its state file, DbSizeInUse how much of it holds data (the
// rest is free space that Defragment gives back), and CompactRevision the
// revision below which its history was compacted.
type StatusResponse struct{ *kvv1.StatusResponse }

// DefragmentResponse is the result of a defragmentation: DbSizeBefore and
// DbSize are the member's state file size before and after, in bytes.
type DefragmentResponse struct{ *kvv1.DefragmentResponse }

// IsLeader reports whether the member that answered is the leader it knows.
func (r *StatusResponse) IsLeader() bool {
	id := r.GetHeader().GetMemberId()
	return id != 0 && id == r.GetLeaderId()
}

// HashKVResponse is one member's hash: Hash is a CRC-32C of every key-value
// version up to HashRevision; CompactRevision is the member's compacted
// revision.
type HashKVResponse struct{ *kvv1.HashKVResponse }

// Status returns the status of the member at endpoint. See
// Maintenance.Status.
func (c *Client) Status(ctx context.Context, endpoint string) (*StatusResponse, error) {
	e, err := c.endpoint(endpoint)
	if err != nil {
		return nil, err
	}
	var resp *kvv1.StatusResponse
	err = c.try(ctx, e, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = kvv1.NewMaintenanceServiceClient(cc).Status(ctx, &kvv1.StatusRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &StatusResponse{resp}, nil
}

// HashKV returns the hash of the key-value history of the member at
// endpoint. See Maintenance.HashKV.
func (c *Client) HashKV(ctx context.Context, endpoint string, rev int64) (*HashKVResponse, error) {
	if rev < 0 {
		return nil, fmt.Errorf("client: HashKV revision %d is negative", rev)
	}
	e, err := c.endpoint(endpoint)
	if err != nil {
		return nil, err
	}
	var resp *kvv1.HashKVResponse
	err = c.try(ctx, e, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = kvv1.NewMaintenanceServiceClient(cc).HashKV(ctx, &kvv1.HashKVRequest{Revision: rev})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &HashKVResponse{resp}, nil
}

// Defragment defragments the state file of the member at endpoint. See
// Maintenance.Defragment.
func (c *Client) Defragment(ctx context.Context, endpoint string) (*DefragmentResponse, error) {
	e, err := c.endpoint(endpoint)
	if err != nil {
		return nil, err
	}
	var resp *kvv1.DefragmentResponse
	err = c.try(ctx, e, func(ctx context.Context, cc grpc.ClientConnInterface) (err error) {
		resp, err = kvv1.NewMaintenanceServiceClient(cc).Defragment(ctx, &kvv1.DefragmentRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	return &DefragmentResponse{resp}, nil
}

// endpoint checks that endpoint is one of the client's endpoints, given as
// host:port or as it was in Config.Endpoints (https://host:port), and
// returns its host:port.
func (c *Client) endpoint(endpoint string) (string, error) {
	if c.closed.Load() {
		return "", ErrClosed
	}
	_, addr := splitScheme(endpoint)
	if !slices.Contains(c.cfg.Endpoints, addr) {
		return "", fmt.Errorf("client: %q is not one of the client's endpoints %q", endpoint, c.cfg.Endpoints)
	}
	return addr, nil
}
