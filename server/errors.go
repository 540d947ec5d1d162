package server

import (
	"context"
	"errors"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/proposal"
)

// Errors raised by the member itself. Raft's errors are translated into these
// where raft is called (proposal.Outcome), and all of them are mapped to
// gRPC codes by toStatus.
var (
	// ErrNoLeader: the cluster has no leader this member can reach. Nothing
	// was proposed.
	ErrNoLeader = errors.New("no leader")
	// ErrNotReady: the leader has not yet applied the first command of its
	// term, so its commit index may miss entries of earlier terms.
	ErrNotReady = errors.New("leader is not ready to serve linearizable reads yet")
	// ErrNotApplied: the leader refused the proposal before it reached the
	// log (leadership lost or moving, queue full). Safe to retry.
	ErrNotApplied = proposal.ErrNotApplied
	// ErrOutcomeUnknown: the proposal may or may not have been committed.
	ErrOutcomeUnknown = proposal.ErrOutcomeUnknown
	// ErrRequestTooLarge: the request exceeds MaxRequestBytes.
	ErrRequestTooLarge = errors.New("request is too large")
	// ErrStopped: the member is shutting down.
	ErrStopped = errors.New("member is stopping")
)

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
		errors.Is(err, ErrRequestTooLarge):
		return status.Error(codes.InvalidArgument, msg)
	case errors.Is(err, ErrInvalidMember):
		return status.Error(codes.InvalidArgument, msg)
	case errors.Is(err, fsm.ErrLeaseNotFound), errors.Is(err, ErrMemberNotFound):
		return status.Error(codes.NotFound, msg)
	case errors.Is(err, ErrMemberExists):
		return status.Error(codes.AlreadyExists, msg)
	case errors.Is(err, ErrUnsafeReconfig), errors.Is(err, ErrLearnerLagging),
		errors.Is(err, ErrNotLearner), errors.Is(err, ErrRemoved):
		return status.Error(codes.FailedPrecondition, msg)
	case errors.Is(err, fsm.ErrFutureRevision), errors.Is(err, fsm.ErrCompacted):
		return status.Error(codes.OutOfRange, msg)
	case errors.Is(err, ErrNoLeader), errors.Is(err, ErrNotReady), errors.Is(err, ErrNotApplied):
		return apierr.NotApplied(codes.Unavailable, msg)
	case errors.Is(err, ErrStopped):
		return status.Error(codes.Unavailable, msg)
	case errors.Is(err, ErrOutcomeUnknown):
		return status.Error(codes.Unknown, msg)
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, "request timed out; a write may or may not have been applied")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, msg)
	default:
		return status.Error(codes.Internal, msg)
	}
}
