package e2e

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/kvd-io/kvd/internal/memberid"
)

// TestEtcdctlMembership runs etcd's membership workflow with etcd's own
// CLI against a three-member kvd: member add names the new member after
// its peer URL (kvd's members have names, etcd's request has none); a kvd
// started with that name and raft address joins as the learner added;
// member promote makes it a voter, move-leader hands it leadership, and
// member remove takes a founding member out.
func TestEtcdctlMembership(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	t.Parallel()
	ctl := &etcdctl{bin: etcdctlBinary(t)}
	ec := newEtcdAPICluster(t)
	if ec.kind != "kvd" {
		t.Skip("kvd's naming of added members; etcd's is checked by etcd's own tests")
	}
	ctl.endpoints = ec.endpoints
	ec.waitServing(t, ctl)
	c := ec.kvd

	raftAddr := fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0])
	id := memberid.FromName(raftAddr)
	out := ctl.ok(t, "member", "add", "n4", "--peer-urls", "http://"+raftAddr, "--learner")
	if !strings.HasPrefix(out, fmt.Sprintf("Member %16x added as learner to cluster ", id)) {
		t.Fatalf("member add printed %q, want member %x (the id of the name %q)", out, id, raftAddr)
	}
	ctl.fails(t, "etcdserver: Peer URLs already exists", "member", "add", "n5", "--peer-urls", "http://"+raftAddr)

	nd := c.addNode(raftAddr, c.nodes[:3], "--raft-addr", raftAddr, "--learner")
	nd.raftAddr = raftAddr
	c.start(nd)
	type member struct {
		ID         uint64   `json:"ID"`
		Name       string   `json:"name"`
		PeerURLs   []string `json:"peerURLs"`
		ClientURLs []string `json:"clientURLs"`
		IsLearner  bool     `json:"isLearner"`
	}
	members := func() ([]member, error) {
		out, err := ctl.run("", "member", "list", "-w", "json")
		if err != nil {
			return nil, err
		}
		var list struct {
			Members []member `json:"members"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			return nil, fmt.Errorf("decode %q: %w", out, err)
		}
		return list.Members, nil
	}
	find := func(want func(member) error) {
		t.Helper()
		eventually(t, 60*time.Second, func() error {
			ms, err := members()
			if err != nil {
				return err
			}
			for _, m := range ms {
				if m.ID == id {
					return want(m)
				}
			}
			return fmt.Errorf("member %x not listed in %+v", id, ms)
		})
	}
	// The new member publishes its client address once it runs.
	find(func(m member) error {
		if m.Name != raftAddr || !m.IsLearner || !slices.Equal(m.PeerURLs, []string{"http://" + raftAddr}) ||
			!slices.Equal(m.ClientURLs, []string{"http://" + nd.clientAddr}) {
			return fmt.Errorf("the added member is %+v, want learner %s at %s serving %s", m, raftAddr, raftAddr, nd.clientAddr)
		}
		return nil
	})

	// Promotion waits until the learner has caught up.
	hexID := fmt.Sprintf("%x", id)
	eventually(t, 60*time.Second, func() error {
		_, err := ctl.run("", "member", "promote", hexID)
		return err
	})
	find(func(m member) error {
		if m.IsLearner {
			return fmt.Errorf("%+v is still a learner after promote", m)
		}
		return nil
	})

	// move-leader asks the leader, which it finds among the endpoints.
	out = ctl.ok(t, "move-leader", hexID)
	if !strings.HasPrefix(out, "Leadership transferred from ") || !strings.HasSuffix(out, " to "+hexID+"\n") {
		t.Fatalf("move-leader printed %q, want a transfer to %s", out, hexID)
	}
	var st []struct {
		Status struct {
			Leader uint64 `json:"leader"`
		} `json:"Status"`
	}
	decodeJSON(t, ctl.at(nd.clientAddr).ok(t, "endpoint", "status", "-w", "json"), &st)
	if len(st) != 1 || st[0].Status.Leader != id {
		t.Fatalf("endpoint status after move-leader: %+v, want leader %x", st, id)
	}

	// A leader that just took over has not yet heard from every member,
	// and refuses a removal it cannot prove safe until it has (etcd's
	// "not enough started members").
	n1 := memberid.FromName("n1")
	eventually(t, 60*time.Second, func() error {
		out, err := ctl.at(nd.clientAddr).run("", "member", "remove", fmt.Sprintf("%x", n1))
		if err != nil {
			return err
		}
		if !strings.HasPrefix(out, fmt.Sprintf("Member %16x removed from cluster ", n1)) {
			t.Fatalf("member remove printed %q", out)
		}
		return nil
	})
	ms, err := members()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 3 || slices.ContainsFunc(ms, func(m member) bool { return m.ID == n1 }) {
		t.Fatalf("members after removing n1: %+v", ms)
	}
}
