package console

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/kvd-io/kvd/client"
)

// statusTimeout bounds one member's Status call: a member that does not
// answer within it is shown as unreachable, not waited for.
const statusTimeout = 1500 * time.Millisecond

// peerStatus asks members for their Status, through a client whose
// endpoints are the members' client addresses, remade when they change.
// Status is public (any caller may ask), so this client carries no user.
type peerStatus struct {
	dial []grpc.DialOption

	mu    sync.Mutex
	addrs []string
	cli   *client.Client
}

func newPeerStatus(dial []grpc.DialOption) *peerStatus { return &peerStatus{dial: dial} }

// client returns a client for addrs (sorted, no duplicates).
func (p *peerStatus) client(addrs []string) (*client.Client, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cli != nil && slices.Equal(p.addrs, addrs) {
		return p.cli, nil
	}
	cli, err := client.New(client.Config{Endpoints: addrs, DialTimeout: statusTimeout, UnaryCalls: true, DialOptions: p.dial})
	if err != nil {
		return nil, err
	}
	if p.cli != nil {
		old := p.cli
		// Calls in flight on the old client end; their pages poll again.
		go func() { _ = old.Close() }()
	}
	p.cli, p.addrs = cli, addrs
	return cli, nil
}

func (p *peerStatus) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cli == nil {
		return nil
	}
	err := p.cli.Close()
	p.cli = nil
	return err
}

// memberJSON is one row of the members table.
type memberJSON struct {
	Name       string `json:"name"`
	ID         string `json:"id"`
	ClientAddr string `json:"client_addr"`
	RaftAddr   string `json:"raft_addr"`
	Learner    bool   `json:"learner"`
	// Leader and Healthy are the serving member's view (MemberList).
	Leader  bool `json:"leader"`
	Healthy bool `json:"healthy"`
	// Status is the member's own answer, nil when it did not answer; Error
	// then says why.
	Status *statusJSON `json:"status,omitempty"`
	Error  string      `json:"error,omitempty"`
	// Lag is how many log entries the member has yet to apply to reach
	// the leader's commit index; nil when either is unknown.
	Lag *int64 `json:"lag,omitempty"`
}

type statusJSON struct {
	RaftState       string `json:"raft_state"`
	Term            uint64 `json:"term"`
	CommitIndex     uint64 `json:"commit_index"`
	AppliedIndex    uint64 `json:"applied_index"`
	LeaderName      string `json:"leader_name"`
	DBSize          int64  `json:"db_size"`
	DBSizeInUse     int64  `json:"db_size_in_use"`
	Version         string `json:"version"`
	Revision        int64  `json:"revision"`
	CompactRevision int64  `json:"compact_revision"`
}

type clusterJSON struct {
	// Member is the member serving the console; HasLeader is whether it
	// knows a leader now.
	Member    string       `json:"member"`
	HasLeader bool         `json:"has_leader"`
	Leader    string       `json:"leader,omitempty"`
	Members   []memberJSON `json:"members"`
	Alarms    []string     `json:"alarms"`
	// AlarmsError says why the alarms are unknown (listing them is
	// root's).
	AlarmsError string `json:"alarms_error,omitempty"`
	Time        string `json:"time"`
}

func (c *Console) handleCluster(w http.ResponseWriter, r *http.Request, who caller) error {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	ml, err := who.cli.MemberList(ctx)
	if err != nil {
		return err
	}
	out := clusterJSON{Member: c.cfg.MemberName, Members: make([]memberJSON, len(ml.GetMembers())), Alarms: []string{}, Time: time.Now().UTC().Format(time.RFC3339Nano)}
	var addrs []string
	for i, m := range ml.GetMembers() {
		out.Members[i] = memberJSON{
			Name: m.GetName(), ID: strconv.FormatUint(m.GetId(), 16), ClientAddr: m.GetClientAddr(), RaftAddr: m.GetRaftAddr(),
			Learner: m.GetIsLearner(), Leader: m.GetIsLeader(), Healthy: m.GetHealthy(),
		}
		if a := m.GetClientAddr(); a != "" && !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	slices.Sort(addrs)
	var wg sync.WaitGroup
	if len(addrs) > 0 {
		peers, err := c.peers.client(addrs)
		if err != nil {
			return err
		}
		for i := range out.Members {
			m := &out.Members[i]
			if m.ClientAddr == "" {
				m.Error = "the member has not published its client address yet"
				continue
			}
			wg.Go(func() {
				sctx, scancel := context.WithTimeout(ctx, statusTimeout)
				defer scancel()
				st, err := peers.Status(sctx, m.ClientAddr)
				if err != nil {
					m.Error = grpcMessage(err)
					return
				}
				m.Status = &statusJSON{
					RaftState: st.GetRaftState(), Term: st.GetRaftTerm(), CommitIndex: st.GetCommitIndex(), AppliedIndex: st.GetAppliedIndex(),
					LeaderName: st.GetLeaderName(), DBSize: st.GetDbSize(), DBSizeInUse: st.GetDbSizeInUse(), Version: st.GetVersion(),
					Revision: st.GetHeader().GetRevision(), CompactRevision: st.GetCompactRevision(),
				}
			})
		}
	}
	wg.Go(func() {
		actx, acancel := context.WithTimeout(ctx, statusTimeout)
		defer acancel()
		al, err := who.cli.AlarmList(actx)
		if err != nil {
			out.AlarmsError = grpcMessage(err)
			return
		}
		names := map[uint64]string{}
		for _, m := range ml.GetMembers() {
			names[m.GetId()] = m.GetName()
		}
		for _, a := range al.GetAlarms() {
			who := names[a.GetMemberId()]
			if who == "" {
				who = strconv.FormatUint(a.GetMemberId(), 16)
			}
			out.Alarms = append(out.Alarms, who+": "+a.GetAlarm().String())
		}
	})
	wg.Wait()
	// The leader is the one the serving member knows (its Status); lag is
	// measured against that leader's commit index.
	var leaderCommit *uint64
	for _, m := range out.Members {
		if m.Name == c.cfg.MemberName && m.Status != nil {
			out.HasLeader, out.Leader = m.Status.LeaderName != "", m.Status.LeaderName
		}
	}
	if out.Leader != "" {
		for i := range out.Members {
			m := &out.Members[i]
			m.Leader = m.Name == out.Leader
			if m.Leader && m.Status != nil {
				ci := m.Status.CommitIndex
				leaderCommit = &ci
			}
		}
	}
	if leaderCommit != nil {
		for i, m := range out.Members {
			if m.Status != nil {
				lag := int64(*leaderCommit) - int64(m.Status.AppliedIndex)
				lag = max(lag, 0)
				out.Members[i].Lag = &lag
			}
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
