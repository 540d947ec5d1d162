package rpc

import (
	"context"
	"io"
	"time"

	"github.com/kvd-io/kvd/member"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// The member as each service sees it: small interfaces, declared here, that
// *member.Member implements and tests fake.

// KVNode is what KVService needs.
type KVNode interface {
	// Propose and ProposeAsync put an encoded command through the log
	// (member.Member.Propose).
	Propose(ctx context.Context, cmd []byte) (any, error)
	ProposeAsync(cmd []byte, deadline time.Time, fn func(res any, err error))
	// Linearize and LinearizeAsync wait until this member reflects every
	// write acknowledged before the call.
	Linearize(ctx context.Context) error
	LinearizeAsync(ready, deadline time.Time, fn func(err error))
	// Range reads this member's state as it is.
	Range(req *kvv1.RangeRequest) (*kvv1.RangeResponse, error)
	// ReadTxn answers a read-only txn (fsm.ReadOnlyTxn) from this member's
	// state as it is.
	ReadTxn(req *kvv1.TxnRequest) (*kvv1.TxnResponse, error)
	// Compact discards history below a revision through the log; with
	// physical it waits for this member's trim.
	Compact(ctx context.Context, rev int64, physical bool) (*kvv1.CompactResponse, error)
	// LeaseRenewAsync renews a lease as LeaseNode.LeaseRenew does and
	// hands the outcome to fn, which must not block; it does not wait
	// itself (member.Member.LeaseRenewAsync).
	LeaseRenewAsync(id int64, fn func(ttl int64, err error))
	// Header describes the member for a response at a revision.
	Header(rev int64) *kvv1.ResponseHeader
	// Revision is the revision of this member's state.
	Revision() int64
	// RequireFeature fails unless every member can apply commands that
	// need feature (fsm.Feature*): member.ErrLeasesUnsupported and the
	// like, or member.ErrNotReady while one has not said.
	RequireFeature(feature string) error
	// CheckQuota refuses a write of about cost bytes that would grow the
	// state past its quota (member.ErrNoSpace), raising the alarm.
	CheckQuota(cost int) error
	// RequestTimeout bounds a request that set no deadline.
	RequestTimeout() time.Duration
	// Draining is closed when the member begins to shut down.
	Draining() <-chan struct{}
	// Err is set once the member stopped serving on its own (removed).
	Err() error
}

// ClusterNode is what ClusterService needs.
type ClusterNode interface {
	Name() string
	IsLeader() bool
	Members() ([]*kvv1.Member, error)
	AddMember(ctx context.Context, req *kvv1.MemberAddRequest) error
	PromoteMember(ctx context.Context, name string) error
	RemoveMember(ctx context.Context, name string) error
	TransferLeadership(ctx context.Context, to string) (string, error)
	// LeaderAddr finds the leader's API address, waiting through an
	// election; member.ErrSelfIsLeader when this member leads.
	LeaderAddr(ctx context.Context) (addr, name string, err error)
	Header(rev int64) *kvv1.ResponseHeader
	Revision() int64
	RequestTimeout() time.Duration
}

// MaintenanceNode is what MaintenanceService needs.
type MaintenanceNode interface {
	Status() (member.Status, error)
	Linearize(ctx context.Context) error
	Backup(w io.Writer, size func(int64)) (int64, error)
	HashKV(rev int64) (hash uint32, hashRev, compactRev int64, err error)
	Defragment(ctx context.Context) (before, after int64, err error)
	// Alarm lists, raises or clears alarms.
	Alarm(ctx context.Context, req *kvv1.AlarmRequest) (*kvv1.AlarmResponse, error)
	Header(rev int64) *kvv1.ResponseHeader
	Revision() int64
	Err() error
}

// PeerNode is what PeerService needs.
type PeerNode interface {
	// ProposeLocal appends a command another member forwarded; it is never
	// forwarded again.
	ProposeLocal(cmd []byte, deadline time.Time, fn func(res any, err error))
	// ReadIndex is the leader's read index for a follower's read.
	ReadIndex(ctx context.Context) (uint64, error)
	// RemovedNotice is the leader's notice that a member was removed.
	RemovedNotice(name string)
	// LeaseRenewLocal and LeaseTimeToLiveLocal answer a follower's
	// forwarded lease calls; only the leader does.
	LeaseRenewLocal(ctx context.Context, id int64) (int64, error)
	LeaseRenewBatchLocal(ctx context.Context, ids []int64) ([]int64, error)
	LeaseTimeToLiveLocal(ctx context.Context, id int64, keys bool) (*kvv1.LeaseTimeToLiveResponse, error)
	RequestTimeout() time.Duration
	Draining() <-chan struct{}
}

// Node is the whole member as the API serves it.
type Node interface {
	KVNode
	ClusterNode
	MaintenanceNode
	PeerNode
	WatchNode
	LeaseNode
	RecipeNode
	AuthNode
}

var _ Node = (*member.Member)(nil)
