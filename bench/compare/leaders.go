package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/kvd-io/kvd/client"
)

// leaderPlacementTimeout bounds how long sameLeaders waits for a member to
// take the lead.
const leaderPlacementTimeout = 30 * time.Second

// sameLeaders makes member 1 lead on both clusters. Where the leader is
// decides some rows: in watch latency, a put acknowledged by the leader
// races its events to the watchers on the followers, and with the leader
// on member 2 both stores' p50 is about 0.15 ms, elsewhere about zero. So
// every row runs with the leader in the same place on both.
func (r *runner) sameLeaders(ctx context.Context) error {
	if err := r.kvd.moveLeader(ctx, 0); err != nil {
		return fmt.Errorf("kvd: %w", err)
	}
	if err := moveEtcdLeader(ctx, 0); err != nil {
		return fmt.Errorf("etcd: %w", err)
	}
	return nil
}

// moveLeader hands leadership to member i and waits until it leads.
func (c *kvdCluster) moveLeader(ctx context.Context, i int) error {
	want := c.members[i]
	deadline := time.Now().Add(leaderPlacementTimeout)
	for {
		m, err := c.leaderMember(ctx)
		if err == nil && m == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not take the lead in %v (last: %v)", want.name, leaderPlacementTimeout, err)
		}
		if err == nil {
			if err := c.transfer(ctx, m.clientAddr, want.name); err != nil {
				return err
			}
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// transfer asks the leader at addr to hand leadership to the member named to.
func (c *kvdCluster) transfer(ctx context.Context, addr, to string) error {
	cli, err := client.New(c.clientConfig([]string{addr}))
	if err != nil {
		return err
	}
	defer cli.Close()
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err = cli.LeaderTransfer(tctx, to)
	return err
}

// moveEtcdLeader hands the etcd cluster's leadership to member i (e1 for
// 0) with Maintenance.MoveLeader and waits until it leads.
func moveEtcdLeader(ctx context.Context, i int) error {
	addrs := strings.Split(etcdEndpoints, ",")
	sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	target, _, err := etcdStatus(sctx, addrs[i])
	cancel()
	if err != nil || target == 0 {
		return fmt.Errorf("the id of e%d: %v", i+1, err)
	}
	deadline := time.Now().Add(leaderPlacementTimeout)
	for {
		leaderAddr, err := etcdLeaderAddr(ctx, addrs)
		if err == nil && leaderAddr == addrs[i] {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("e%d did not take the lead in %v (last: %v)", i+1, leaderPlacementTimeout, err)
		}
		if err == nil {
			req := protowire.AppendVarint(protowire.AppendTag(nil, 1, protowire.VarintType), target)
			mctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err = rawCall(mctx, leaderAddr, "/etcdserverpb.Maintenance/MoveLeader", req)
			cancel()
			if err != nil {
				return fmt.Errorf("MoveLeader to e%d: %w", i+1, err)
			}
		}
		if err := sleepCtx(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// etcdLeaderAddr returns the client address of the member that leads.
func etcdLeaderAddr(ctx context.Context, addrs []string) (string, error) {
	for _, addr := range addrs {
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		member, leader, err := etcdStatus(sctx, addr)
		cancel()
		if err == nil && member != 0 && member == leader {
			return addr, nil
		}
	}
	return "", errors.New("no member is the leader")
}
