package main

import (
	"context"
	"errors"
	"fmt"
	"net"

	"github.com/spf13/cobra"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/internal/memberid"
)

type memberAddOptions struct {
	g          *globalOptions
	name       string
	raftAddr   string
	clientAddr string
	learner    bool
}

func newMemberAddCmd(g *globalOptions) *cobra.Command {
	o := &memberAddOptions{g: g}
	cmd := &cobra.Command{
		Use:   "add NAME --raft-addr ADDR",
		Short: "Adds a member into the cluster",
		Long: `Adds the member NAME, whose raft transport listens on --raft-addr, to the
cluster, then prints "Member <id> added to cluster <id>", the members after the
change, and the kvd command that starts the new member on an empty data dir.

A voter is refused when the cluster could not reach quorum with its healthy
members after the change; add a --learner instead, let it catch up, and
promote it with "kvctl member promote".`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := o.setArgs(args); err != nil {
				return err
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().StringVar(&o.raftAddr, "raft-addr", "", "the new member's advertised raft address, host:port (required)")
	cmd.Flags().StringVar(&o.clientAddr, "client-addr", "", "the new member's advertised client address, host:port (the member publishes it itself once it runs)")
	cmd.Flags().BoolVar(&o.learner, "learner", false, "add the member as a non-voting learner")
	return cmd
}

// setArgs takes NAME and checks the flags.
func (o *memberAddOptions) setArgs(args []string) error {
	if len(args) != 1 {
		return fmt.Errorf("member add needs a member name, got %d arguments", len(args))
	}
	o.name = args[0]
	if err := checkMemberName(o.name); err != nil {
		return err
	}
	if o.raftAddr == "" {
		return errors.New("member add needs --raft-addr")
	}
	if err := checkHostPort("--raft-addr", o.raftAddr); err != nil {
		return err
	}
	if o.clientAddr != "" {
		if err := checkHostPort("--client-addr", o.clientAddr); err != nil {
			return err
		}
	}
	return nil
}

// Run adds the member and prints the result.
func (o *memberAddOptions) Run(ctx context.Context) error {
	c, err := o.g.newClient()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := o.g.commandContext(ctx)
	defer cancel()
	var opts []client.MemberOption
	if o.learner {
		opts = append(opts, client.WithLearner())
	}
	if o.clientAddr != "" {
		opts = append(opts, client.WithClientAddr(o.clientAddr))
	}
	resp, err := c.MemberAdd(ctx, o.name, o.raftAddr, opts...)
	if err != nil {
		return err
	}
	ch := memberChange{
		Action:  memberAdded,
		ID:      resp.GetMember().GetId(),
		Name:    o.name,
		Header:  resp.GetHeader(),
		Member:  resp.GetMember(),
		Members: resp.GetMembers(),
	}
	if ch.Member == nil {
		ch.Member = &client.Member{Name: o.name, RaftAddr: o.raftAddr, ClientAddr: o.clientAddr, IsLearner: o.learner}
	}
	if ch.ID == 0 {
		ch.ID = memberID(ch.Members, o.name)
	}
	ch.Join = joinAddrs(ch.Members, o.name)
	return o.g.printer().MemberChange(ch)
}

// joinAddrs returns the client addresses a new member can join through:
// those of the healthy members other than it, or, when none is known to be
// healthy, of every other member that has one.
func joinAddrs(members []*client.Member, newName string) []string {
	var healthy, all []string
	for _, m := range members {
		if m.GetName() == newName || m.GetClientAddr() == "" {
			continue
		}
		all = append(all, m.GetClientAddr())
		if m.GetHealthy() {
			healthy = append(healthy, m.GetClientAddr())
		}
	}
	if len(healthy) > 0 {
		return healthy
	}
	return all
}

// memberID returns the id of the member name in members, or, when it is not
// there, the id kvd derives from the name.
func memberID(members []*client.Member, name string) uint64 {
	for _, m := range members {
		if m.GetName() == name {
			return m.GetId()
		}
	}
	return memberid.FromName(name)
}

// checkMemberName rejects names no member can have, before anything is sent.
func checkMemberName(name string) error {
	if name == "" {
		return errors.New("member name is empty")
	}
	return memberid.CheckName(name)
}

// checkHostPort checks that addr is host:port.
func checkHostPort(flag, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid %s %q: want host:port: %w", flag, addr, err)
	}
	if host == "" || port == "" {
		return fmt.Errorf("invalid %s %q: want host:port", flag, addr)
	}
	return nil
}
