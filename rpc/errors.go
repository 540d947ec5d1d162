package rpc

import (
	"context"
	"errors"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/auth"
	"github.com/kvd-io/kvd/member"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// ErrRequestTooLarge: the request exceeds Config.MaxRequestBytes.
var ErrRequestTooLarge = errors.New("request is too large")

// Handlers return the member's errors as they are. Only this file turns them
// into gRPC statuses: unaryErrors and streamErrors at the return of every
// call, and streamError for each op of a stream.

// ToStatus is kvd's table from internal errors to gRPC statuses; another
// API's table (Config.Statuses) falls back to it for the errors it does not
// name.
func ToStatus(err error) error { return toStatus(err) }

// toStatus is the one table from internal errors to gRPC status codes.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err // already a status, e.g. relayed from the leader
	}
	msg := err.Error()
	switch {
	case errors.Is(err, fsm.ErrEmptyKey), errors.Is(err, fsm.ErrInvalidRange),
		errors.Is(err, fsm.ErrDuplicateKey), errors.Is(err, fsm.ErrTooManyOps),
		errors.Is(err, fsm.ErrInvalidCompare), errors.Is(err, fsm.ErrEmptyRequest),
		errors.Is(err, ErrRequestTooLarge), errors.Is(err, member.ErrInvalidMember),
		errors.Is(err, fsm.ErrInvalidCompaction), errors.Is(err, fsm.ErrInvalidLease),
		errors.Is(err, fsm.ErrValueProvided), errors.Is(err, fsm.ErrLeaseProvided),
		errors.Is(err, fsm.ErrKeyNotFound), errors.Is(err, member.ErrLeaseTTLTooShort),
		errors.Is(err, member.ErrLeaseTTLTooLong), errors.Is(err, fsm.ErrInvalidAlarm),
		errors.Is(err, ErrEmptyName), errors.Is(err, ErrLeaseRequired), errors.Is(err, ErrInvalidLeaderKey):
		return status.Error(codes.InvalidArgument, msg)
	case errors.Is(err, auth.ErrInvalidToken), errors.Is(err, auth.ErrTokenExpired),
		errors.Is(err, auth.ErrNoCredentials), errors.Is(err, auth.ErrAuthFailed):
		return status.Error(codes.Unauthenticated, msg)
	case errors.Is(err, auth.ErrPermissionDenied), errors.Is(err, auth.ErrNotMember):
		return status.Error(codes.PermissionDenied, msg)
	case errors.Is(err, auth.ErrInvalidName), errors.Is(err, auth.ErrInvalidPermission),
		errors.Is(err, auth.ErrInvalidPassword), errors.Is(err, auth.ErrPlainPassword):
		return status.Error(codes.InvalidArgument, msg)
	case errors.Is(err, auth.ErrRootUserMissing), errors.Is(err, auth.ErrRootRoleMissing),
		errors.Is(err, auth.ErrInvalidAuthMgmt), errors.Is(err, auth.ErrAuthNotEnabled),
		errors.Is(err, auth.ErrRoleNotGranted), errors.Is(err, auth.ErrPermissionNotGranted):
		return status.Error(codes.FailedPrecondition, msg)
	case errors.Is(err, auth.ErrUserExists), errors.Is(err, auth.ErrRoleExists):
		return status.Error(codes.AlreadyExists, msg)
	case errors.Is(err, auth.ErrUserNotFound), errors.Is(err, auth.ErrRoleNotFound):
		return status.Error(codes.NotFound, msg)
	case errors.Is(err, fsm.ErrNoSpace):
		return status.Error(codes.ResourceExhausted, msg)
	case errors.Is(err, fsm.ErrLeaseNotFound), errors.Is(err, member.ErrMemberNotFound),
		errors.Is(err, ErrElectionNoLeader):
		return status.Error(codes.NotFound, msg)
	case errors.Is(err, member.ErrMemberExists):
		return status.Error(codes.AlreadyExists, msg)
	case errors.Is(err, member.ErrUnsafeReconfig), errors.Is(err, member.ErrLearnerLagging),
		errors.Is(err, member.ErrNotLearner), errors.Is(err, member.ErrRemoved),
		errors.Is(err, member.ErrCompactUnsupported), errors.Is(err, member.ErrLeasesUnsupported),
		errors.Is(err, fsm.ErrLeaseExists), errors.Is(err, member.ErrAlarmsUnsupported),
		errors.Is(err, member.ErrFeatureUnsupported), errors.Is(err, ErrElectionNotLeader),
		errors.Is(err, ErrQueueKeyTaken):
		return status.Error(codes.FailedPrecondition, msg)
	case errors.Is(err, fsm.ErrDefragBusy):
		return status.Error(codes.Aborted, msg)
	case errors.Is(err, fsm.ErrFutureRevision), errors.Is(err, fsm.ErrCompacted):
		return status.Error(codes.OutOfRange, msg)
	case errors.Is(err, member.ErrNoLeader), errors.Is(err, member.ErrNotReady),
		errors.Is(err, member.ErrNotApplied), errors.Is(err, member.ErrUnreachable),
		errors.Is(err, fsm.ErrOvertaken):
		return apierr.NotApplied(codes.Unavailable, msg)
	case errors.Is(err, member.ErrStopped):
		return status.Error(codes.Unavailable, msg)
	case errors.Is(err, member.ErrOutcomeUnknown):
		return status.Error(codes.Unknown, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "request timed out; a write may or may not have been applied")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, msg)
	default:
		return status.Error(codes.Internal, msg)
	}
}

// statusFor is the table that turns the errors of method into statuses:
// kvd's, or another API's (Config.Statuses).
func (a *API) statusFor(method string) func(error) error {
	if fn := a.foreignStatus(method); fn != nil {
		return fn
	}
	return toStatus
}

// foreignStatus is another API's table for method (Config.Statuses), or
// nil for a method of kvd's.
func (a *API) foreignStatus(method string) func(error) error {
	for prefix, fn := range a.cfg.Statuses {
		if strings.HasPrefix(method, prefix) {
			return fn
		}
	}
	return nil
}

// unaryErrors is the unary interceptor that turns a handler's error into a
// gRPC status.
func (a *API) unaryErrors(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	resp, err := handler(ctx, req)
	if err != nil {
		return nil, a.statusFor(info.FullMethod)(err)
	}
	return resp, nil
}

// streamErrors is the stream interceptor that turns a handler's error into
// a gRPC status.
func (a *API) streamErrors(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	err := handler(srv, ss)
	if err == nil {
		return nil
	}
	return a.statusFor(info.FullMethod)(err)
}

// streamError is the error of one op of a stream, as the unary call of its
// kind would have returned it.
func streamError(err error) *kvv1.StreamError {
	return apierr.ToStream(toStatus(err))
}
