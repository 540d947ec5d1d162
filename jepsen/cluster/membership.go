package cluster

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/kvd-io/kvd/client"
)

// Membership changes go through the Go SDK, as an operator's tool would:
// MemberRemove, MemberPromote and LeaderTransfer are sent with a client that
// knows every member (the member that receives a change forwards it to the
// leader), and the membership is read from the leader alone, so that a
// lagging member or a removed one that has not stopped yet cannot answer
// with an old configuration.

// memberListTimeout bounds one MemberList.
const memberListTimeout = 3 * time.Second

// Members returns the membership as the leader lists it: the member that
// answers as leader in the highest term, asked alone, which must still list
// itself as the leader.
func (c *Cluster) Members(ctx context.Context) ([]*client.Member, error) {
	leader, err := c.Leader(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, memberListTimeout)
	defer cancel()
	resp, err := c.direct[leader].MemberList(ctx)
	if err != nil {
		return nil, fmt.Errorf("cluster: member list from the leader %s: %w", leader, err)
	}
	for _, m := range resp.Members {
		if m.GetName() == leader && m.GetIsLeader() {
			return resp.Members, nil
		}
	}
	return nil, fmt.Errorf("cluster: %s no longer lists itself as the leader", leader)
}

// RemoveMember removes a member from the cluster (MemberRemove). The error
// is the SDK's, so status.Code tells a refusal (FailedPrecondition) from a
// failure.
func (c *Cluster) RemoveMember(ctx context.Context, name string) error {
	_, err := c.admin.MemberRemove(ctx, name)
	return err
}

// PromoteMember makes a learner a voter (MemberPromote); the error is the
// SDK's.
func (c *Cluster) PromoteMember(ctx context.Context, name string) error {
	_, err := c.admin.MemberPromote(ctx, name)
	return err
}

// TransferLeader moves leadership to the voter to, or, when to is empty, to
// the voter kvd picks (LeaderTransfer). It returns the leader the old
// leader named after the transfer (empty when it knew none yet); the error
// is the SDK's.
func (c *Cluster) TransferLeader(ctx context.Context, to string) (string, error) {
	resp, err := c.admin.LeaderTransfer(ctx, to)
	if err != nil {
		return "", err
	}
	return resp.GetLeader(), nil
}

// AppliedIndex returns the raft index a member has applied, from its
// Status.
func (c *Cluster) AppliedIndex(ctx context.Context, name string) (uint64, error) {
	n, err := c.node(name)
	if err != nil {
		return 0, err
	}
	st, err := c.status.Status(ctx, n.clientAddr)
	if err != nil {
		return 0, err
	}
	return st.GetAppliedIndex(), nil
}

// Running reports whether a member's process is alive (possibly paused).
func (c *Cluster) Running(name string) bool {
	n, err := c.node(name)
	return err == nil && n.running()
}

// WaitExit waits up to timeout for a member's process to exit on its own
// and returns its exit status (-1 when a signal ended it). exited is false
// when the process still runs. A timeout of 0 asks how the last
// incarnation ended.
func (c *Cluster) WaitExit(name string, timeout time.Duration) (code int, exited bool) {
	n, err := c.node(name)
	if err != nil {
		return 0, true
	}
	return n.waitExit(timeout)
}

// Wipe empties the data directory of a member that is not running.
func (c *Cluster) Wipe(name string) error {
	n, err := c.node(name)
	if err != nil {
		return err
	}
	return n.wipe()
}

// Rejoin brings a member that is not running back as a new member under
// its old name and addresses: it empties its data directory and starts it
// with --join naming the other members' client addresses, and --learner
// when learner. Later restarts (a kill nemesis) keep these flags; kvd
// ignores them once the data directory holds raft state.
func (c *Cluster) Rejoin(name string, learner bool) error {
	n, err := c.node(name)
	if err != nil {
		return err
	}
	if err := n.wipe(); err != nil {
		return err
	}
	args := slices.Concat(n.ownArgs(), []string{"--join", strings.Join(c.joinAddrs(name), ",")})
	if learner {
		args = append(args, "--learner")
	}
	n.setArgs(slices.Concat(args, n.tlsArgs, c.cfg.KvdArgs))
	return n.start()
}

// joinAddrs lists the client addresses of every member but name.
func (c *Cluster) joinAddrs(name string) []string {
	var out []string
	for _, n := range c.nodes {
		if n.name != name {
			out = append(out, n.clientAddr)
		}
	}
	return out
}
