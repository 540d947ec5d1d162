package etcdapi

import (
	"context"
	"errors"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/auth"
	"github.com/kvd-io/kvd/internal/watch"
	"github.com/kvd-io/kvd/member"
	"github.com/kvd-io/kvd/rpc"
)

// errorTable is the one table from kvd's errors to etcd's: the first row
// whose kvd error the error is (errors.Is) gives the status, with etcd's
// exact code and message. Clients match etcd's errors by their message
// (clientv3's rpctypes.Error; kube-apiserver answers 410 Gone only for
// "etcdserver: mvcc: required revision has been compacted"), so the
// message is etcd's alone, without kvd's detail. An error no row names
// keeps kvd's code and message (rpc.ToStatus).
var errorTable = []struct {
	kvd  error
	etcd error
}{
	// Requests.
	{fsm.ErrEmptyKey, rpctypes.ErrGRPCEmptyKey},
	{fsm.ErrKeyNotFound, rpctypes.ErrGRPCKeyNotFound},
	{fsm.ErrValueProvided, rpctypes.ErrGRPCValueProvided},
	{fsm.ErrLeaseProvided, rpctypes.ErrGRPCLeaseProvided},
	{fsm.ErrTooManyOps, rpctypes.ErrGRPCTooManyOps},
	{fsm.ErrDuplicateKey, rpctypes.ErrGRPCDuplicateKey},
	{rpc.ErrRequestTooLarge, rpctypes.ErrGRPCRequestTooLarge},

	// Revisions and space.
	{fsm.ErrCompacted, rpctypes.ErrGRPCCompacted},
	{watch.ErrCompacted, rpctypes.ErrGRPCCompacted},
	{fsm.ErrFutureRevision, rpctypes.ErrGRPCFutureRev},
	{fsm.ErrNoSpace, rpctypes.ErrGRPCNoSpace},

	// Leases.
	{fsm.ErrLeaseNotFound, rpctypes.ErrGRPCLeaseNotFound},
	{fsm.ErrLeaseExists, rpctypes.ErrGRPCLeaseExist},
	{member.ErrLeaseTTLTooLong, rpctypes.ErrGRPCLeaseTTLTooLarge},

	// Members.
	{member.ErrMemberExists, rpctypes.ErrGRPCMemberExist},
	{member.ErrMemberNotFound, rpctypes.ErrGRPCMemberNotFound},
	{member.ErrNotLearner, rpctypes.ErrGRPCMemberNotLearner},
	{member.ErrLearnerLagging, rpctypes.ErrGRPCLearnerNotReady},
	{member.ErrUnsafeReconfig, rpctypes.ErrGRPCMemberNotEnoughStarted},

	// Authentication and authorization. etcd answers a call without
	// credentials, when auth is enabled, with "user name is empty".
	{auth.ErrNoCredentials, rpctypes.ErrGRPCUserEmpty},
	{auth.ErrInvalidToken, rpctypes.ErrGRPCInvalidAuthToken},
	{auth.ErrTokenExpired, rpctypes.ErrGRPCInvalidAuthToken},
	{auth.ErrAuthFailed, rpctypes.ErrGRPCAuthFailed},
	{auth.ErrPermissionDenied, rpctypes.ErrGRPCPermissionDenied},
	{auth.ErrNotMember, rpctypes.ErrGRPCPermissionDenied},
	{auth.ErrRootUserMissing, rpctypes.ErrGRPCRootUserNotExist},
	{auth.ErrRootRoleMissing, rpctypes.ErrGRPCRootRoleNotExist},
	{auth.ErrUserExists, rpctypes.ErrGRPCUserAlreadyExist},
	{auth.ErrUserNotFound, rpctypes.ErrGRPCUserNotFound},
	{auth.ErrRoleExists, rpctypes.ErrGRPCRoleAlreadyExist},
	{auth.ErrRoleNotFound, rpctypes.ErrGRPCRoleNotFound},
	{auth.ErrRoleNotGranted, rpctypes.ErrGRPCRoleNotGranted},
	{auth.ErrPermissionNotGranted, rpctypes.ErrGRPCPermissionNotGranted},
	{auth.ErrAuthNotEnabled, rpctypes.ErrGRPCAuthNotEnabled},
	{auth.ErrInvalidAuthMgmt, rpctypes.ErrGRPCInvalidAuthMgmt},
	{auth.ErrEmptyUserName, rpctypes.ErrGRPCUserEmpty},
	{auth.ErrEmptyRoleName, rpctypes.ErrGRPCRoleEmpty},
	{auth.ErrNoPermission, rpctypes.ErrGRPCPermissionNotGiven},

	// Availability. A leader that has not applied its term's first entry
	// yet, and a proposal refused while leadership moves, are etcd's
	// "leader changed": retry shortly.
	{member.ErrNoLeader, rpctypes.ErrGRPCNoLeader},
	{member.ErrNotReady, rpctypes.ErrGRPCLeaderChanged},
	{member.ErrNotApplied, rpctypes.ErrGRPCLeaderChanged},
	{member.ErrStopped, rpctypes.ErrGRPCStopped},
	// A write whose leader lost its leadership while committing it may or
	// may not have been applied: etcd says the same in these words, and
	// its clients do not retry a write on them.
	{member.ErrOutcomeUnknown, rpctypes.ErrGRPCTimeoutDueToLeaderFail},
	// A member of the cluster, during a rolling upgrade, cannot apply the
	// request yet: etcd's cluster version is not capable of it.
	{member.ErrLeasesUnsupported, rpctypes.ErrGRPCNotCapable},
	{member.ErrAlarmsUnsupported, rpctypes.ErrGRPCNotCapable},
	{member.ErrCompactUnsupported, rpctypes.ErrGRPCNotCapable},
	{member.ErrFeatureUnsupported, rpctypes.ErrGRPCNotCapable},
	{context.DeadlineExceeded, rpctypes.ErrGRPCDeadlineExceeded},
	{context.Canceled, rpctypes.ErrGRPCCanceled},

	// Elections (v3electionpb). etcd's election service answers with
	// clientv3's concurrency errors as they are, code Unknown; its
	// clients match their text.
	{rpc.ErrElectionNoLeader, errElectionNoLeader},
	{rpc.ErrElectionNotLeader, errElectionNotLeader},
}

// kvdCodes are the codes kvd gives the errors of errorTable, row by row,
// for relayed.
var kvdCodes = func() []codes.Code {
	cs := make([]codes.Code, len(errorTable))
	for i, row := range errorTable {
		cs[i] = status.Code(rpc.ToStatus(row.kvd))
	}
	return cs
}()

// etcd's election errors (clientv3/concurrency's), as etcd's election
// service sends them.
var (
	errElectionNoLeader  = status.Error(codes.Unknown, "election: no leader")
	errElectionNotLeader = status.Error(codes.Unknown, "election: not leader")
)

// ToStatus turns an error of an etcd method into a gRPC status: etcd's
// (errorTable), or kvd's for an error etcd has no word for. It is the
// etcd API's entry in rpc.Config.Statuses, for the errors of its handlers
// and of kvd's interceptors alike.
func ToStatus(err error) error {
	if err == nil {
		return nil
	}
	if st, ok := status.FromError(err); ok {
		return relayed(st)
	}
	for _, row := range errorTable {
		if errors.Is(err, row.kvd) {
			return etcdStatus(err, row.etcd)
		}
	}
	return rpc.ToStatus(err)
}

// etcdStatus is etcd's status e for kvd's error err; it keeps kvd's mark
// that the request certainly was not applied (apierr), which etcd's
// clients ignore and kvd's use.
func etcdStatus(err, e error) error {
	if !apierr.IsNotApplied(rpc.ToStatus(err)) {
		return e
	}
	st := status.Convert(e)
	return apierr.NotApplied(st.Code(), st.Message())
}

// relayed passes on a status: one of etcd's as it is, and one another
// member raised in kvd's words (a leader's answer to a forwarded write)
// in etcd's, found by the kvd error's text that it carries. The text is
// all that crosses from the leader; the code must agree too.
func relayed(st *status.Status) error {
	msg := st.Message()
	if strings.HasPrefix(msg, "etcdserver: ") {
		return st.Err()
	}
	for i, row := range errorTable {
		if kvdCodes[i] == st.Code() && strings.Contains(msg, row.kvd.Error()) {
			return etcdStatus(st.Err(), row.etcd)
		}
	}
	return st.Err()
}
