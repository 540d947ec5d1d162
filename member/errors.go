package member

import (
	"errors"

	"github.com/kvd-io/kvd/internal/proposal"
)

// The member's errors. They are plain sentinels, wrapped with what went
// wrong; callers branch with errors.Is. The RPC layer (package rpc) maps them
// to gRPC codes. Errors relayed from another member (a leader's answer to a
// forwarded write) come back as that member's gRPC status and are passed on
// as they are.
var (
	// ErrNoLeader: the cluster has no leader this member can reach, or the
	// leader could not confirm that it still leads. Nothing was proposed.
	ErrNoLeader = errors.New("no leader")
	// ErrNotReady: the leader has not yet applied the first command of its
	// term, so its commit index may miss entries of earlier terms.
	ErrNotReady = errors.New("leader is not ready to serve linearizable reads yet")
	// ErrNotApplied: the proposal was refused before it reached the log
	// (leadership lost or moving, queue full, stopping). Safe to retry.
	ErrNotApplied = proposal.ErrNotApplied
	// ErrOutcomeUnknown: the proposal may or may not have been committed.
	ErrOutcomeUnknown = proposal.ErrOutcomeUnknown
	// ErrStopped: the member is shutting down.
	ErrStopped = errors.New("member is stopping")

	// ErrMemberExists: a member with that name or raft address exists.
	ErrMemberExists = errors.New("member already exists")
	// ErrMemberNotFound: no member has that name.
	ErrMemberNotFound = errors.New("member not found")
	// ErrInvalidMember: a member request with a missing or malformed field.
	ErrInvalidMember = errors.New("invalid member")
	// ErrUnsafeReconfig: the change would leave the cluster unable to reach
	// quorum with its currently healthy members.
	ErrUnsafeReconfig = errors.New("unsafe reconfiguration")
	// ErrLearnerLagging: a learner is too far behind to be promoted.
	ErrLearnerLagging = errors.New("learner is too far behind the leader to be promoted")
	// ErrNotLearner: promotion of a member that already votes.
	ErrNotLearner = errors.New("member is not a learner")
	// ErrRemoved: this member was removed from the cluster.
	ErrRemoved = errors.New("this member was removed from the cluster")
	// ErrJoinRefused: the cluster refused to add this member.
	ErrJoinRefused = errors.New("the cluster refused to add this member")
	// ErrDataDirNotEmpty: a restore would overwrite existing data.
	ErrDataDirNotEmpty = errors.New("data dir is not empty")

	// ErrSelfIsLeader tells a caller looking for the leader that this
	// member leads: it should do the work itself.
	ErrSelfIsLeader = errors.New("this member is the leader")
)
