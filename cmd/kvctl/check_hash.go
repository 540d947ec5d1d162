package main

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/kvd-io/kvd/client"
)

type checkHashOptions struct {
	g   *globalOptions
	rev int64
}

func newCheckHashCmd(g *globalOptions) *cobra.Command {
	o := &checkHashOptions{g: g}
	cmd := &cobra.Command{
		Use:   "hash",
		Short: "Checks that every member holds the same data",
		Long: `Lists the members through --endpoints, reads the current revision (or takes
--rev), then asks every member for a hash of its key-value history up to that
revision; each member first catches up with the cluster. Members that applied
the same log agree, so a member whose hash differs from the majority's holds
damaged or diverged data.

Every member that answered is printed (simple: name, id, endpoint, hash, hash
revision, compact revision, matches). The command fails, naming the members on
stderr, when a member differs from the majority, when there is no majority,
or when a member could not be asked.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.rev < 0 {
				return fmt.Errorf("invalid --rev %d: must not be negative", o.rev)
			}
			return o.Run(cmd.Context())
		},
	}
	cmd.Flags().Int64Var(&o.rev, "rev", 0, "revision to hash up to (0: the current one)")
	return cmd
}

// Run hashes every member and compares the hashes.
func (o *checkHashOptions) Run(ctx context.Context) error {
	members, err := o.g.clusterMembers(ctx)
	if err != nil {
		return err
	}
	var (
		targets  []memberHash
		problems []string
	)
	for _, m := range members {
		if m.GetClientAddr() == "" {
			problems = append(problems, fmt.Sprintf("member %s (%s) has not published a client address, so it cannot be checked", m.GetName(), hexID(m.GetId())))
			continue
		}
		targets = append(targets, memberHash{Name: m.GetName(), ID: m.GetId(), Endpoint: m.GetClientAddr()})
	}
	if len(targets) == 0 {
		return fmt.Errorf("no member of the cluster can be checked: %s", strings.Join(problems, "; "))
	}
	rev := o.rev
	if rev == 0 {
		if rev, err = o.currentRevision(ctx); err != nil {
			return err
		}
	}

	var endpoints []string
	for _, t := range targets {
		if !slices.Contains(endpoints, t.Endpoint) {
			endpoints = append(endpoints, t.Endpoint)
		}
	}
	c, err := o.g.newClient(endpoints...)
	if err != nil {
		return err
	}
	defer c.Close()
	errs := make([]error, len(targets))
	o.g.forEachEndpoint(ctx, targetEndpoints(targets), func(ctx context.Context, i int, ep string) {
		targets[i].Resp, errs[i] = c.HashKV(ctx, ep, rev)
	})

	var answered []memberHash
	for i, t := range targets {
		if errs[i] != nil {
			problems = append(problems, fmt.Sprintf("member %s (%s) at %s: %v", t.Name, hexID(t.ID), t.Endpoint, errs[i]))
			continue
		}
		answered = append(answered, t)
	}
	differ := markMajority(answered)
	if err := o.g.printer().HashCheck(answered); err != nil {
		return err
	}
	for _, p := range problems {
		fmt.Fprintln(o.g.errOut, p)
	}
	if len(differ) > 0 {
		return fmt.Errorf("%d of %d members differ from the majority's hash at revision %d: %s",
			len(differ), len(answered), rev, strings.Join(differ, ", "))
	}
	if !slices.ContainsFunc(answered, func(h memberHash) bool { return h.Matches }) {
		var each []string
		for _, h := range answered {
			each = append(each, fmt.Sprintf("%s %08x", h.Name, h.Resp.GetHash()))
		}
		return fmt.Errorf("no hash is shared by a majority of the %d members that answered at revision %d: %s",
			len(answered), rev, strings.Join(each, ", "))
	}
	if len(problems) > 0 {
		return fmt.Errorf("%d of %d members could not be checked", len(problems), len(members))
	}
	return nil
}

// currentRevision reads the cluster's revision with a linearizable read.
func (o *checkHashOptions) currentRevision(ctx context.Context) (int64, error) {
	c, err := o.g.newClient()
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ctx, cancel := o.g.commandContext(ctx)
	defer cancel()
	resp, err := c.Get(ctx, healthKey, client.WithCountOnly())
	if err != nil {
		return 0, fmt.Errorf("read the current revision: %w", err)
	}
	return resp.GetHeader().GetRevision(), nil
}

func targetEndpoints(targets []memberHash) []string {
	eps := make([]string, len(targets))
	for i, t := range targets {
		eps[i] = t.Endpoint
	}
	return eps
}

// markMajority sets Matches on the members whose hash (and hash revision)
// more than half of hashes share, and describes the others, each with its
// hash. With no majority it sets nothing and returns nothing: no one can tell
// which members are right.
func markMajority(hashes []memberHash) (differ []string) {
	type key struct {
		hash uint32
		rev  int64
	}
	keyOf := func(h memberHash) key { return key{h.Resp.GetHash(), h.Resp.GetHashRevision()} }
	counts := map[key]int{}
	for _, h := range hashes {
		counts[keyOf(h)]++
	}
	var majority *key
	for k, n := range counts {
		if 2*n > len(hashes) {
			majority = &k
		}
	}
	if majority == nil {
		return nil
	}
	for i, h := range hashes {
		if keyOf(h) == *majority {
			hashes[i].Matches = true
			continue
		}
		differ = append(differ, fmt.Sprintf("%s (%08x at revision %d, majority %08x)", h.Name, h.Resp.GetHash(), h.Resp.GetHashRevision(), majority.hash))
	}
	return differ
}
