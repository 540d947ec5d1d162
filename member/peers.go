package member

import (
	"context"
	"errors"
	"time"

	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/raftlog"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Peers is how a member calls the other members' APIs. Package
// internal/peer implements it over gRPC; the server wires it in. Every
// method is safe for concurrent use and honours ctx.
//
// Errors that come back from another member are that member's answer (a
// gRPC status, which the RPC layer passes on as it is). An error that says
// nothing was sent (the member is unreachable) wraps ErrUnreachable; a
// member's refusal that a retry cannot change (invalid, already exists,
// failed precondition) wraps ErrRefused.
type Peers interface {
	// Ready connects to the member at addr, or fails (ErrUnreachable) when
	// it cannot be reached now.
	Ready(ctx context.Context, addr string) error
	// Propose forwards an encoded fsm.v1.Command to the leader at addr and
	// returns its encoded fsm.v1.Result. When it fails after the command
	// may have left, the write's outcome is unknown unless the leader said
	// otherwise.
	Propose(ctx context.Context, addr string, cmd []byte) ([]byte, error)
	// ReadIndex asks the leader at addr for a read index.
	ReadIndex(ctx context.Context, addr string) (uint64, error)
	// Status asks the member at addr how it is.
	Status(ctx context.Context, addr string) (PeerStatus, error)
	// AddMember asks the member at addr (any member: it passes the request
	// to its leader) to add a member.
	AddMember(ctx context.Context, addr string, req *kvv1.MemberAddRequest) error
	// Members asks the leader at addr for the members it lists.
	Members(ctx context.Context, addr string) ([]*kvv1.Member, error)
	// LeaseRenewBatch asks the leader at addr to renew several leases
	// and returns their TTLs in the order of ids, 0 for a lease that does
	// not exist.
	LeaseRenewBatch(ctx context.Context, addr string, ids []int64) ([]int64, error)
	// LeaseTimeToLive asks the leader at addr about a lease.
	LeaseTimeToLive(ctx context.Context, addr string, req *kvv1.LeaseTimeToLiveRequest) (*kvv1.LeaseTimeToLiveResponse, error)
	// NotifyRemoved tells the member at addr that it, name, was removed
	// from the cluster clusterID.
	NotifyRemoved(ctx context.Context, addr, name string, clusterID uint64) error
}

// PeerStatus is what a member says of itself (Peers.Status).
type PeerStatus struct {
	Name         string
	LeaderName   string
	AppliedIndex uint64
	Revision     int64
}

// Errors a Peers implementation wraps (see Peers).
var (
	// ErrUnreachable: the member could not be reached; nothing was sent.
	ErrUnreachable = errors.New("member unreachable")
	// ErrRefused: the member refused the request, and would refuse it
	// again.
	ErrRefused = errors.New("refused")
)

// Observer is told what the member does, for its metrics. Its methods must
// return quickly; they are called on raft's and the request path's
// goroutines. *observe.Metrics implements it.
type Observer interface {
	fsm.Observer
	raftlog.Observer
	// LeaderChanged is told each time this member sees the leader change.
	LeaderChanged()
	// ObserveEntry is told how many proposals each log entry this member
	// appended as leader carried.
	ObserveEntry(proposals int)
	// ObserveReadIndex is told how long each read index took to obtain.
	ObserveReadIndex(d time.Duration)
	// LeadershipRoundBegun is told of each round of leadership confirmation
	// this member began as leader.
	LeadershipRoundBegun()
}
