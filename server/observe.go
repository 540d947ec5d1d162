package server

import (
	"time"

	"github.com/hashicorp/raft"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/kvd-io/kvd/observe"
)

// source shows the member to package observe.
type source struct{ s *Server }

var _ observe.Source = source{}

func (o source) RaftState() string   { return o.s.raft.State().String() }
func (o source) RaftTerm() uint64    { return o.s.raft.CurrentTerm() }
func (o source) CommitIndex() uint64 { return o.s.raft.CommitIndex() }
func (o source) LastLogIndex() uint64 {
	return o.s.raft.LastIndex()
}
func (o source) DBSizeBytes() int64 {
	st, err := o.s.fsm.Stats()
	if err != nil {
		return 0
	}
	return st.DBSize
}
func (o source) Revision() int64 { return o.s.fsm.Revision() }
func (o source) KnownLeader() bool {
	_, id := o.s.raft.LeaderWithID()
	return id != ""
}
func (o source) IsLearner() bool {
	cfg, _, err := o.s.configuration()
	if err != nil {
		return false
	}
	for _, srv := range cfg.Servers {
		if string(srv.ID) == o.s.cfg.Name {
			return srv.Suffrage != raft.Voter
		}
	}
	return false
}

// AppliedIndex is the highest index whose effect reads can see: raft's
// no-op entries count once everything before them is applied.
func (o source) AppliedIndex() uint64 {
	applied := o.s.fsm.AppliedIndex()
	if commit := o.s.raft.CommitIndex(); commit > applied && o.s.onlyRaftEntries(applied+1, commit) {
		return commit
	}
	return applied
}

// startObserve starts the HTTP listener for metrics and probes.
func (s *Server) startObserve() error {
	if s.cfg.HTTPAddr == "" {
		return nil
	}
	o, err := observe.NewServer(observe.Config{Addr: s.cfg.HTTPAddr, Logger: s.log}, source{s}, s.metrics)
	if err != nil {
		return err
	}
	s.observe = o
	return nil
}

// HTTPAddr returns the address of the metrics and probes listener, empty when
// it is off.
func (s *Server) HTTPAddr() string {
	if s.observe == nil {
		return ""
	}
	return s.observe.Addr()
}

// watchHealth keeps the gRPC health service (grpc.health.v1) in step with
// readiness: SERVING while a leader is known and this member serves.
func (s *Server) watchHealth(h *health.Server) {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		st := healthpb.HealthCheckResponse_NOT_SERVING
		if (source{s}).KnownLeader() && s.Err() == nil {
			st = healthpb.HealthCheckResponse_SERVING
		}
		h.SetServingStatus("", st)
		h.SetServingStatus("kv.v1.KVService", st)
		select {
		case <-s.stop:
			h.Shutdown()
			return
		case <-tick.C:
		}
	}
}
