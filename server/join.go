package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// ErrJoinRefused: the cluster refused to add this member.
var ErrJoinRefused = errors.New("the cluster refused to add this member")

// join asks the members named in Config.Join to add this member, trying each
// in turn until one accepts, the request is refused for good, or the member
// stops. raft is already running, so the leader can replicate to this member
// as soon as it is added.
func (s *Server) join() {
	req := &kvv1.MemberAddRequest{
		Name:       s.cfg.Name,
		RaftAddr:   s.raftAddr,
		ClientAddr: s.clientAddr,
		IsLearner:  s.cfg.JoinAsLearner,
	}
	backoff := 100 * time.Millisecond
	for attempt := 0; ; attempt++ {
		addr := s.cfg.Join[attempt%len(s.cfg.Join)]
		err := s.askToJoin(addr, req)
		if err == nil {
			s.log.Info("joined the cluster", "via", addr, "learner", req.IsLearner)
			return
		}
		switch status.Code(err) {
		case codes.InvalidArgument, codes.AlreadyExists, codes.FailedPrecondition:
			// A member that will never be added must not sit there looking
			// alive: stop, so that a supervisor sees the failure.
			s.log.Error("the cluster refused to add this member; fix the cause and restart", "via", addr, "error", err)
			s.stopServing(fmt.Errorf("%w: %w", ErrJoinRefused, err), nil)
			return
		}
		s.log.Warn("join attempt failed; retrying", "via", addr, "error", err)
		select {
		case <-s.stop:
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (s *Server) askToJoin(addr string, req *kvv1.MemberAddRequest) error {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.RequestTimeout)
	defer cancel()
	conn, err := s.peers.Ready(ctx, addr)
	if err != nil {
		return err
	}
	_, err = kvv1.NewClusterServiceClient(conn).MemberAdd(ctx, req)
	return err
}
