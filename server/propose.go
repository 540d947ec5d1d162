package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/fsm"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
)

// propose puts a command through the log: directly on the leader, forwarded
// to it from a follower. It returns the state machine's response; a domain
// error from the state machine comes back as the error.
func (s *Server) propose(ctx context.Context, t fsmv1.CommandType, msg proto.Message) (any, error) {
	data, err := fsm.EncodeCommand(t, msg)
	if err != nil {
		return nil, err
	}
	return s.proposeEncoded(ctx, data)
}

func (s *Server) proposeEncoded(ctx context.Context, data []byte) (any, error) {
	if s.raft.State() == raft.Leader {
		return s.applyEncoded(ctx, data)
	}
	return s.forward(ctx, data)
}

// applyLocal encodes and applies a command on this member, which must lead.
func (s *Server) applyLocal(ctx context.Context, t fsmv1.CommandType, msg proto.Message) (any, error) {
	data, err := fsm.EncodeCommand(t, msg)
	if err != nil {
		return nil, err
	}
	return s.applyEncoded(ctx, data)
}

// applyEncoded appends an encoded command to the log (through the proposal
// buffer, which groups concurrent writes into one entry) and waits for it to be applied, or for ctx to end.
func (s *Server) applyEncoded(ctx context.Context, data []byte) (any, error) {
	if err := s.enterProposal(); err != nil {
		return nil, err
	}
	defer s.proposals.leave()
	ctx, cancel := s.withDefaultTimeout(ctx)
	defer cancel()
	return s.buffer.Propose(ctx, data)
}

// submitEncoded is applyEncoded for a caller that does not wait, such as a
// stream with many writes in flight: fn is called once, on a worker, with
// what applyEncoded would return for a context ending at deadline. No
// goroutine waits for the write meanwhile.
func (s *Server) submitEncoded(data []byte, deadline time.Time, fn func(res any, err error)) {
	if err := s.enterProposal(); err != nil {
		fn(nil, err)
		return
	}
	s.buffer.Submit(data, deadline, func(res any, err error) {
		s.proposals.leave()
		fn(res, err)
	})
}

// enterProposal admits a proposal through the proposals gate, which
// Shutdown closes and waits on; the caller leaves it once the proposal is
// answered.
func (s *Server) enterProposal() error {
	if !s.proposals.enter() {
		return fmt.Errorf("%w: %s is shutting down", ErrNotApplied, s.cfg.Name)
	}
	if err := s.Err(); err != nil {
		s.proposals.leave()
		return err
	}
	return nil
}

// opTimeout is how long an op of a stream may take: its own timeout, or the
// member's request timeout when it has none (as for a unary call without a
// deadline).
func (s *Server) opTimeout(timeoutMs int64) time.Duration {
	if timeoutMs > 0 {
		return time.Duration(timeoutMs) * time.Millisecond
	}
	return s.cfg.RequestTimeout
}

// membersCanBatch reports whether every server in the raft configuration
// can apply batch commands.
func (s *Server) membersCanBatch() bool {
	members, err := s.fsm.Members()
	if err != nil {
		return false
	}
	cfg := s.raft.GetConfiguration()
	if cfg.Error() != nil {
		return false
	}
	return allHaveFeature(cfg.Configuration(), members, fsm.FeatureBatchCommands)
}

// allHaveFeature reports whether every server in cfg has published feature.
// A server that has published nothing yet (a member just added) may be of
// an older version, so it counts as lacking it.
func allHaveFeature(cfg raft.Configuration, members map[string]*fsmv1.MemberAttributes, feature string) bool {
	for _, srv := range cfg.Servers {
		if !fsm.HasFeature(members[string(srv.ID)], feature) {
			return false
		}
	}
	return true
}

// forward sends an encoded command to the leader and relays its answer.
func (s *Server) forward(ctx context.Context, data []byte) (any, error) {
	ctx, cancel := s.withDefaultTimeout(ctx)
	defer cancel()
	conn, leader, addr, err := s.leaderConn(ctx)
	if errors.Is(err, errSelfIsLeader) {
		return s.applyEncoded(ctx, data) // this member won the election meanwhile
	}
	if err != nil {
		return nil, err
	}
	encoded, err := s.forwardOnStream(ctx, conn, addr, data)
	if err != nil {
		s.peerFailed(addr, err)
		return nil, relayError(leader, err)
	}
	result := &fsmv1.Result{}
	if err := proto.Unmarshal(encoded, result); err != nil {
		return nil, fmt.Errorf("%w: decode leader's result: %w", ErrOutcomeUnknown, err)
	}
	return fsm.DecodeResult(result), nil
}

// relayError passes on what the leader answered. A status the leader raised
// itself is passed through; a failure of the connection after the request
// was sent leaves a write's outcome unknown.
func relayError(leader string, err error) error {
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("%w: forward to leader %s: %w", ErrOutcomeUnknown, leader, err)
	}
	switch st.Code() {
	case codes.Unavailable, codes.Canceled, codes.Internal:
		if apierr.IsNotApplied(err) {
			return err
		}
		return status.Errorf(codes.Unknown, "forwarding to leader %s failed after sending; the write may or may not have been applied: %s", leader, st.Message())
	case codes.DeadlineExceeded:
		return status.Errorf(codes.DeadlineExceeded, "forwarding to leader %s timed out; the write may or may not have been applied", leader)
	default:
		return err
	}
}

// peerFailed drops a member connection on which a call failed in a way that
// may mean the connection itself is dead.
func (s *Server) peerFailed(addr string, err error) {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		if !apierr.IsNotApplied(err) {
			s.peers.Reset(addr)
		}
	}
}

// leaderConn returns a connection to the leader's API, the leader's name and
// its address. During
// an election, or while this member has not yet learned the new leader's
// address, it waits up to leaderWait (bounded by ctx). It returns ErrNoLeader
// when there is still no leader it can reach; then nothing has been sent.
func (s *Server) leaderConn(ctx context.Context) (*grpc.ClientConn, string, string, error) {
	wait := s.leaderWait()
	if dl, ok := answerBy(ctx); ok {
		wait = min(wait, time.Until(dl))
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	poll := time.NewTicker(10 * time.Millisecond)
	defer poll.Stop()
	for {
		changed := s.fsm.AppliedChanged()
		conn, leader, addr, err := s.tryLeaderConn(ctx)
		if err == nil || !errors.Is(err, ErrNoLeader) {
			return conn, leader, addr, err
		}
		select {
		case <-changed:
		case <-poll.C:
		case <-deadline.C:
			return nil, leader, addr, err
		case <-ctx.Done():
			return nil, leader, addr, err
		case <-s.stop:
			return nil, leader, addr, ErrStopped
		}
	}
}

// leaderWait is how long a request waits for a leader to appear: long
// enough to ride out one election.
func (s *Server) leaderWait() time.Duration {
	return 2*s.cfg.ElectionTimeout + s.cfg.HeartbeatTimeout
}

func (s *Server) tryLeaderConn(ctx context.Context) (*grpc.ClientConn, string, string, error) {
	select {
	case <-s.stop:
		return nil, "", "", ErrStopped
	default:
	}
	_, leaderID := s.raft.LeaderWithID()
	if leaderID == "" {
		return nil, "", "", ErrNoLeader
	}
	leader := string(leaderID)
	if leader == s.cfg.Name {
		if s.raft.State() == raft.Leader {
			return nil, leader, "", errSelfIsLeader
		}
		return nil, leader, "", fmt.Errorf("%w: leadership is changing", ErrNoLeader)
	}
	members, err := s.fsm.Members()
	if err != nil {
		return nil, leader, "", err
	}
	addr := members[leader].GetClientAddr()
	if addr == "" {
		return nil, leader, "", fmt.Errorf("%w: leader %s has not published its address yet", ErrNoLeader, leader)
	}
	conn, err := s.peers.Ready(ctx, addr)
	if err != nil {
		return nil, leader, addr, fmt.Errorf("%w: leader %s at %s is unreachable: %w", ErrNoLeader, leader, addr, err)
	}
	return conn, leader, addr, nil
}

// answerBy returns when a member should give up waiting for the cluster
// and answer "no leader": a little before the caller's deadline, so that the
// caller hears that certain answer rather than its own timeout.
func answerBy(ctx context.Context) (time.Time, bool) {
	dl, ok := ctx.Deadline()
	if !ok {
		return dl, false
	}
	left := time.Until(dl)
	return dl.Add(-min(left/5, 500*time.Millisecond)), true
}

func (s *Server) withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.cfg.RequestTimeout)
}

// errSelfIsLeader tells a caller looking for the leader that it is the leader.
var errSelfIsLeader = errors.New("this member is the leader")

var errUnexpectedResult = errors.New("unexpected result type from state machine")
