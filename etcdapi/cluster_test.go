package etcdapi_test

import (
	"errors"
	"fmt"
	"net"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/internal/memberid"
	"github.com/kvd-io/kvd/server/servertest"
)

// freeAddr is a local address nobody listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

// TestMemberList: etcd's member list, linearizable or not, names every
// member with kvd's id, its raft address as peer URL and its client
// address as client URL.
func TestMemberList(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	f := follower(t, c)
	cli := newClient(t, c, f)
	ctx := ctxT(t)
	for _, opts := range [][]clientv3.OpOption{nil, {clientv3.WithSerializable()}} {
		resp, err := cli.MemberList(ctx, opts...)
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.Members) != 3 || resp.Header.MemberId != c.Member(f).Server.ID() {
			t.Fatalf("members %v from %x: want 3, from %s", resp.Members, resp.Header.MemberId, f)
		}
		for _, m := range resp.Members {
			srv := c.Member(m.Name).Server
			want := fmt.Sprintf("id %x peer [http://%s] client [http://%s] learner false", srv.ID(), srv.RaftAddr(), srv.ClientAddr())
			if got := fmt.Sprintf("id %x peer %v client %v learner %v", m.ID, m.PeerURLs, m.ClientURLs, m.IsLearner); got != want {
				t.Errorf("%s: %s, want %s", m.Name, got, want)
			}
		}
	}
}

// TestMemberChanges: etcd's add (named after the peer URL), promote,
// update and remove, each by etcd's id, and their refusals with etcd's
// errors.
func TestMemberChanges(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	f := follower(t, c)
	cli := newClient(t, c, f)
	ctx := ctxT(t)
	if _, err := cli.Put(ctx, "members/a", "1"); err != nil { // the leader is ready
		t.Fatal(err)
	}

	addr := freeAddr(t)
	add, err := cli.MemberAddAsLearner(ctx, []string{"http://" + addr})
	if err != nil {
		t.Fatalf("add learner at %s: %v", addr, err)
	}
	m := add.Member
	if m.Name != addr || m.ID != memberid.FromName(addr) || !m.IsLearner || fmt.Sprint(m.PeerURLs) != fmt.Sprintf("[http://%s]", addr) {
		t.Fatalf("added %+v: want learner %q with id %x", m, addr, memberid.FromName(addr))
	}
	if len(add.Members) != 4 {
		t.Fatalf("members after the add: %v", add.Members)
	}

	_, err = cli.MemberAdd(ctx, []string{"http://" + addr})
	if !errors.Is(err, rpctypes.ErrPeerURLExist) {
		t.Errorf("add at the same peer URL: %v, want %v", err, rpctypes.ErrPeerURLExist)
	}
	// Raw calls: clientv3 checks some of these URLs itself.
	cc := pb.NewClusterClient(cli.ActiveConnection())
	for _, urls := range [][]string{nil, {"http://" + freeAddr(t), "http://" + freeAddr(t)}, {"unix:///tmp/x"}, {"http://127.0.0.1"}, {"http://127.0.0.1:1/path"}} {
		if _, err := cc.MemberAdd(ctx, &pb.MemberAddRequest{PeerURLs: urls}); status.Code(err) != codes.InvalidArgument {
			t.Errorf("add at %q: %v, want InvalidArgument", urls, err)
		}
	}
	if _, err := cli.MemberPromote(ctx, m.ID); !errors.Is(err, rpctypes.ErrMemberLearnerNotReady) {
		t.Errorf("promote a learner that never started: %v, want %v", err, rpctypes.ErrMemberLearnerNotReady)
	}
	if _, err := cli.MemberPromote(ctx, c.Member(f).Server.ID()); !errors.Is(err, rpctypes.ErrMemberNotLearner) {
		t.Errorf("promote a voter: %v, want %v", err, rpctypes.ErrMemberNotLearner)
	}
	if _, err := cli.MemberUpdate(ctx, m.ID, []string{"http://" + addr}); err != nil {
		t.Errorf("update to the same peer URL: %v", err)
	}
	if _, err := cli.MemberUpdate(ctx, m.ID, []string{"http://" + freeAddr(t)}); status.Code(err) != codes.FailedPrecondition {
		t.Errorf("update to another peer URL: %v, want FailedPrecondition", err)
	}

	rm, err := cli.MemberRemove(ctx, m.ID)
	if err != nil {
		t.Fatalf("remove the learner: %v", err)
	}
	if len(rm.Members) != 3 {
		t.Fatalf("members after the removal: %v", rm.Members)
	}
	for _, call := range map[string]func() error{
		"remove":  func() error { _, err := cli.MemberRemove(ctx, m.ID); return err },
		"promote": func() error { _, err := cli.MemberPromote(ctx, m.ID); return err },
		"update":  func() error { _, err := cli.MemberUpdate(ctx, m.ID, []string{"http://" + addr}); return err },
	} {
		if err := call(); !errors.Is(err, rpctypes.ErrMemberNotFound) {
			t.Errorf("a removed member: %v, want %v", err, rpctypes.ErrMemberNotFound)
		}
	}
}
