package etcdapi_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/snapshot"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/fsm"
	"github.com/kvd-io/kvd/internal/poll"
	"github.com/kvd-io/kvd/server"
	"github.com/kvd-io/kvd/server/servertest"
)

// TestStatus: every member reports the configured etcd version, the
// leader, raft's term and indexes and its state file's size, as
// etcdctl endpoint status shows them.
func TestStatus(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3, servertest.WithConfig(func(cfg *server.Config) { cfg.EtcdVersion = "3.5.21" }))
	leader := c.Leader(servertest.StartTimeout)
	cli := newClient(t, c)
	ctx := ctxT(t)
	if _, err := cli.Put(ctx, "status/a", "1"); err != nil {
		t.Fatal(err)
	}
	for _, n := range c.Names() {
		srv := c.Member(n).Server
		st, err := cli.Status(ctx, srv.ClientAddr())
		if err != nil {
			t.Fatalf("status of %s: %v", n, err)
		}
		if st.Version != "3.5.21" || st.StorageVersion != "3.5.0" {
			t.Errorf("%s: version %q, storage version %q: want the configured 3.5.21 and 3.5.0", n, st.Version, st.StorageVersion)
		}
		if st.Header.MemberId != srv.ID() || st.Leader != c.Member(leader).Server.ID() {
			t.Errorf("%s: member %x, leader %x: want %x and %s's %x", n, st.Header.MemberId, st.Leader, srv.ID(), leader, c.Member(leader).Server.ID())
		}
		if st.RaftTerm == 0 || st.RaftAppliedIndex == 0 || st.RaftIndex == 0 || st.Header.RaftTerm != st.RaftTerm {
			t.Errorf("%s: term %d (header %d), index %d, applied %d: want them set", n, st.RaftTerm, st.Header.RaftTerm, st.RaftIndex, st.RaftAppliedIndex)
		}
		if st.DbSize <= 0 || st.DbSizeInUse <= 0 || st.DbSizeInUse > st.DbSize {
			t.Errorf("%s: db size %d, in use %d", n, st.DbSize, st.DbSizeInUse)
		}
		if st.IsLearner || len(st.Errors) != 0 || st.DowngradeInfo == nil || st.DowngradeInfo.Enabled {
			t.Errorf("%s: learner %v, errors %q, downgrade %v: want a voter without errors or downgrade", n, st.IsLearner, st.Errors, st.DowngradeInfo)
		}
	}
}

// TestMoveLeader: a follower passes MoveLeader on to the leader, and the
// target leads after it; an unknown target is etcd's "bad leader
// transferee".
func TestMoveLeader(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	leader := c.Leader(servertest.StartTimeout)
	var target, via string
	for _, n := range c.Names() {
		switch {
		case n == leader:
		case target == "":
			target = n
		default:
			via = n
		}
	}
	cli := newClient(t, c, via)
	ctx := ctxT(t)
	if _, err := cli.Put(ctx, "move/a", "1"); err != nil { // the leader is ready
		t.Fatal(err)
	}
	if _, err := cli.MoveLeader(ctx, c.Member(target).Server.ID()); err != nil {
		t.Fatalf("move leader to %s through %s: %v", target, via, err)
	}
	st, err := cli.Status(ctx, c.Member(target).Server.ClientAddr())
	if err != nil {
		t.Fatal(err)
	}
	if st.Leader != c.Member(target).Server.ID() {
		t.Fatalf("leader %x after the move, want %s's %x", st.Leader, target, c.Member(target).Server.ID())
	}
	if _, err := cli.MoveLeader(ctx, 12345); !errors.Is(err, rpctypes.ErrBadLeaderTransferee) {
		t.Fatalf("move to an unknown member: %v, want %v", err, rpctypes.ErrBadLeaderTransferee)
	}
}

// TestAlarm: an alarm raised through etcd's API is listed by AlarmList
// and in Status's errors, refuses puts with etcd's "database space
// exceeded", and AlarmDisarm clears it. kvd has no CORRUPT alarm.
func TestAlarm(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	f := follower(t, c)
	cli := newClient(t, c, f)
	ctx := ctxT(t)
	id := c.Member(f).Server.ID()

	// A write through clientv3, which retries, waits out the start: the
	// raw activation below does not retry.
	if _, err := cli.Put(ctx, "alarm/a", "0"); err != nil {
		t.Fatal(err)
	}
	list, err := cli.AlarmList(ctx)
	if err != nil || len(list.Alarms) != 0 {
		t.Fatalf("alarms of a new cluster: %v, %v", list, err)
	}
	mc := pb.NewMaintenanceClient(cli.ActiveConnection())
	if _, err := mc.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: id, Alarm: pb.AlarmType_NOSPACE}); err != nil {
		t.Fatalf("activate NOSPACE: %v", err)
	}
	list, err = cli.AlarmList(ctx)
	if err != nil || len(list.Alarms) != 1 || list.Alarms[0].MemberID != id || list.Alarms[0].Alarm != pb.AlarmType_NOSPACE {
		t.Fatalf("alarms: %v, %v: want NOSPACE of %x", list, err, id)
	}
	if l, err := mc.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_GET, Alarm: pb.AlarmType_CORRUPT}); err != nil || len(l.Alarms) != 0 {
		t.Fatalf("CORRUPT alarms: %v, %v: want none", l, err)
	}
	// Status lists alarms only if it could read them in time: on a
	// loaded machine, ask again.
	poll.Eventually(t, 30*time.Second, func() error {
		st, err := cli.Status(ctx, c.Member(f).Server.ClientAddr())
		if want := fmt.Sprintf("memberID:%d alarm:NOSPACE", id); err != nil || len(st.Errors) != 1 || st.Errors[0] != want {
			return fmt.Errorf("status %v, %v: want the errors [%s]", st, err, want)
		}
		return nil
	})
	if _, err := cli.Put(ctx, "alarm/a", "1"); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("put under NOSPACE: %v, want %v", err, rpctypes.ErrNoSpace)
	}
	if _, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{}); err != nil {
		t.Fatalf("disarm all: %v", err)
	}
	if list, err := cli.AlarmList(ctx); err != nil || len(list.Alarms) != 0 {
		t.Fatalf("alarms after disarm: %v, %v", list, err)
	}
	if _, err := cli.Put(ctx, "alarm/a", "1"); err != nil {
		t.Fatalf("put after disarm: %v", err)
	}
	_, err = mc.Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: id, Alarm: pb.AlarmType_CORRUPT})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "no CORRUPT alarm") {
		t.Fatalf("activate CORRUPT: %v, want InvalidArgument", err)
	}
}

// TestHashKVAndDefragment: every member hashes the same history alike at
// a revision, and still after each defragments.
func TestHashKVAndDefragment(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	cli := newClient(t, c)
	ctx := ctxT(t)
	var rev int64
	for i := range 50 {
		resp, err := cli.Put(ctx, fmt.Sprintf("hash/%02d", i), strings.Repeat("v", i))
		if err != nil {
			t.Fatal(err)
		}
		rev = resp.Header.Revision
	}
	if _, err := cli.Delete(ctx, "hash/", clientv3.WithPrefix()); err != nil {
		t.Fatal(err)
	}
	hashes := func() map[string]uint32 {
		t.Helper()
		out := map[string]uint32{}
		for _, n := range c.Names() {
			resp, err := cli.HashKV(ctx, c.Member(n).Server.ClientAddr(), rev)
			if err != nil {
				t.Fatalf("hashkv of %s: %v", n, err)
			}
			if resp.HashRevision != rev || resp.Header.MemberId != c.Member(n).Server.ID() {
				t.Fatalf("%s: hash revision %d of member %x: want %d of %x", n, resp.HashRevision, resp.Header.MemberId, rev, c.Member(n).Server.ID())
			}
			out[n] = resp.Hash
		}
		return out
	}
	before := hashes()
	for _, n := range c.Names() {
		if before[n] != before[c.Names()[0]] {
			t.Fatalf("hashes differ at revision %d: %v", rev, before)
		}
		if _, err := cli.Defragment(ctx, c.Member(n).Server.ClientAddr()); err != nil {
			t.Fatalf("defragment %s: %v", n, err)
		}
	}
	if after := hashes(); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("hashes after defragmenting %v, before %v", after, before)
	}
}

// TestSnapshot: clientv3's snapshot.SaveWithVersion, which etcdctl
// snapshot save runs, accepts kvd's stream (its size and SHA-256
// trailer) and writes a kvd snapshot file: the state database, then its
// checksum.
func TestSnapshot(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	f := follower(t, c)
	cli := newClient(t, c, f)
	ctx := ctxT(t)
	var rev int64
	for i := range 20 {
		resp, err := cli.Put(ctx, fmt.Sprintf("snap/%02d", i), strings.Repeat("x", 1000))
		if err != nil {
			t.Fatal(err)
		}
		rev = resp.Header.Revision
	}
	if _, err := cli.Get(ctx, "snap/00"); err != nil { // the follower has applied rev
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	cfg := clientv3.Config{Endpoints: []string{c.Member(f).Server.ClientAddr()}, DialTimeout: 5 * time.Second}
	version, err := snapshot.SaveWithVersion(ctx, zap.NewNop(), cfg, path)
	if err != nil {
		t.Fatalf("save snapshot: %v", err)
	}
	if version != "3.6.0" {
		t.Errorf("snapshot version %q, want the storage version 3.6.0", version)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	db, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(db); !bytes.Equal(got[:], sum) {
		t.Fatal("the file's trailer is not the SHA-256 of the database before it")
	}
	dbPath := filepath.Join(t.TempDir(), "state.db")
	if err := os.WriteFile(dbPath, db, 0o600); err != nil {
		t.Fatal(err)
	}
	info, err := fsm.InspectState(dbPath)
	if err != nil {
		t.Fatalf("the snapshot's database is not kvd's: %v", err)
	}
	if info.Revision < rev || info.Keys < 20 {
		t.Fatalf("snapshot at revision %d with %d keys: want at least %d and 20", info.Revision, info.Keys, rev)
	}
}

// TestDowngrade: kvd has no downgrade; cancelling finds none in flight,
// as etcd says when there is none.
func TestDowngrade(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 1)
	cli := newClient(t, c)
	ctx := ctxT(t)
	if _, err := cli.Downgrade(ctx, clientv3.DowngradeCancel, ""); !errors.Is(err, rpctypes.ErrNoInflightDowngrade) {
		t.Errorf("cancel: %v, want %v", err, rpctypes.ErrNoInflightDowngrade)
	}
	_, err := cli.Downgrade(ctx, clientv3.DowngradeEnable, "3.5.0")
	if status.Code(err) != codes.Unimplemented || !strings.HasPrefix(status.Convert(err).Message(), "etcdserver: downgrade is not supported by kvd") {
		t.Errorf("enable: %v, want Unimplemented", err)
	}
}
