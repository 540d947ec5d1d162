package fsm

import (
	"bytes"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/raft"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/internal/auth"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

func mustHashPW(t *testing.T, pw string) string {
	t.Helper()
	h, err := auth.HashPassword(pw, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func userAdd(name, hash string) *fsmv1.AuthCommand {
	return &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_UserAdd{UserAdd: &kvv1.UserAddRequest{Name: name, HashedPassword: hash}}}
}

func grantRole(user, role string) *fsmv1.AuthCommand {
	return &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_UserGrantRole{UserGrantRole: &kvv1.UserGrantRoleRequest{User: user, Role: role}}}
}

func roleAdd(name string) *fsmv1.AuthCommand {
	return &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_RoleAdd{RoleAdd: &kvv1.RoleAddRequest{Name: name}}}
}

func grantPerm(role string, t kvv1.PermissionType, key, end string) *fsmv1.AuthCommand {
	return &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_RoleGrantPermission{RoleGrantPermission: &kvv1.RoleGrantPermissionRequest{
		Name: role, Perm: &kvv1.Permission{PermType: t, Key: []byte(key), RangeEnd: []byte(end)}}}}
}

var enableAuth = &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_Enable{Enable: &kvv1.AuthEnableRequest{}}, Secret: bytes.Repeat([]byte{7}, 32)}

// applyErr applies msg and returns the domain error it answered, failing
// the test if it answered something else.
func applyErr(t *testing.T, l *testLog, f *FSM, msg proto.Message) error {
	t.Helper()
	res := l.applyOne(f, msg)
	err, ok := res.(error)
	if !ok {
		t.Fatalf("%T answered %v, want an error", msg, show(res))
	}
	return err
}

func applyOK(t *testing.T, l *testLog, f *FSM, msg proto.Message) any {
	t.Helper()
	res := l.applyOne(f, msg)
	if err, ok := res.(error); ok {
		t.Fatalf("%v answered %v", msg, err)
	}
	return res
}

func TestAuthApply(t *testing.T) {
	f := newFSM(t)
	l := newTestLog(t)
	hash := mustHashPW(t, "pw")

	// Enable is refused without root, then without its root role.
	if err := applyErr(t, l, f, enableAuth); !errors.Is(err, auth.ErrRootUserMissing) {
		t.Fatalf("enable without root: %v", err)
	}
	applyOK(t, l, f, userAdd("root", hash))
	if err := applyErr(t, l, f, enableAuth); !errors.Is(err, auth.ErrRootRoleMissing) {
		t.Fatalf("enable without the root role: %v", err)
	}
	applyOK(t, l, f, grantRole("root", "root"))
	res := applyOK(t, l, f, enableAuth).(*fsmv1.AuthResult)
	s := f.Auth()
	if !s.Enabled || s.Revision != res.GetAuthRevision() || s.Revision != 3 || len(s.Secret) != 32 {
		t.Fatalf("after enable: enabled %v revision %d (result %d) secret %d bytes; want enabled at 3 with a secret",
			s.Enabled, s.Revision, res.GetAuthRevision(), len(s.Secret))
	}

	cases := []struct {
		name string
		cmd  *fsmv1.AuthCommand
		want error
	}{
		{"plaintext password", &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_UserAdd{UserAdd: &kvv1.UserAddRequest{Name: "a", Password: "x"}}}, auth.ErrPlainPassword},
		{"not a hash", userAdd("a", "nope"), nil},
		{"bad name", userAdd("a b", hash), auth.ErrInvalidName},
		{"user exists", userAdd("root", hash), auth.ErrUserExists},
		{"grant missing role", grantRole("root", "ops"), auth.ErrRoleNotFound},
		{"delete root", &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_UserDelete{UserDelete: &kvv1.UserDeleteRequest{Name: "root"}}}, auth.ErrInvalidAuthMgmt},
		{"revoke root role", &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_UserRevokeRole{UserRevokeRole: &kvv1.UserRevokeRoleRequest{Name: "root", Role: "root"}}}, auth.ErrInvalidAuthMgmt},
		{"bad permission", grantPerm("r", kvv1.PermissionType_PERMISSION_TYPE_UNSPECIFIED, "a", ""), auth.ErrInvalidPermission},
		{"backwards range", grantPerm("r", kvv1.PermissionType_PERMISSION_TYPE_READ, "b", "a"), auth.ErrInvalidPermission},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := f.Auth().Revision
			err := applyErr(t, l, f, c.cmd)
			if c.want != nil && !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			if f.Auth().Revision != before {
				t.Fatalf("a refused command moved the auth revision from %d to %d", before, f.Auth().Revision)
			}
		})
	}

	applyOK(t, l, f, roleAdd("reader"))
	applyOK(t, l, f, grantPerm("reader", kvv1.PermissionType_PERMISSION_TYPE_READ, "app/", "app0"))
	applyOK(t, l, f, userAdd("alice", hash))
	applyOK(t, l, f, grantRole("alice", "reader"))
	s = f.Auth()
	if err := s.Check("alice", auth.Requirements(get("app/x", ""))); err != nil {
		t.Fatalf("alice reads app/x: %v", err)
	}
	if err := s.Check("alice", auth.Requirements(put("app/x", "v"))); !errors.Is(err, auth.ErrPermissionDenied) {
		t.Fatalf("alice writes app/x: %v, want permission denied", err)
	}
	// Deleting the role takes it from alice and moves her revision.
	applyOK(t, l, f, &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_RoleDelete{RoleDelete: &kvv1.RoleDeleteRequest{Role: "reader"}}})
	s = f.Auth()
	if roles := s.Users["alice"].GetRoles(); len(roles) != 0 || s.Users["alice"].GetRevision() != s.Revision {
		t.Fatalf("alice after her role's deletion: roles %v revision %d, want none at %d", roles, s.Users["alice"].GetRevision(), s.Revision)
	}
	if bytes.Contains(snapshotBytes(t, f), []byte("pw")) && !bytes.Contains([]byte(hash), []byte("pw")) {
		t.Fatal("the snapshot holds the plaintext password")
	}
}

// TestAuthReauthorize: a client's command authorized at an older auth
// revision is authorized again against the state it is applied to.
func TestAuthReauthorize(t *testing.T) {
	f := newFSM(t)
	l := newTestLog(t)
	hash := mustHashPW(t, "pw")
	for _, c := range []*fsmv1.AuthCommand{
		userAdd("root", hash), grantRole("root", "root"),
		roleAdd("w"), grantPerm("w", kvv1.PermissionType_PERMISSION_TYPE_WRITE, "a", "b"),
		userAdd("bob", hash), grantRole("bob", "w"),
	} {
		applyOK(t, l, f, c)
	}
	before := f.Auth().Revision // auth still off here
	applyOK(t, l, f, enableAuth)
	now := f.Auth().Revision

	clientCmd := func(msg proto.Message, user string, rev uint64) *raft.Log {
		data, err := EncodeClientCommand(commandType(t, msg), msg, &fsmv1.AuthInfo{User: user, Revision: rev})
		if err != nil {
			t.Fatal(err)
		}
		return l.raw(raft.LogCommand, data)
	}
	apply := func(e *raft.Log) any { return f.ApplyBatch([]*raft.Log{e})[0] }

	cases := []struct {
		name string
		msg  proto.Message
		user string
		rev  uint64
		deny bool
	}{
		{"anonymous, authorized while auth was off", put("a1", "v"), "", before, true},
		{"bob outside his range, stale", put("c", "v"), "bob", before, true},
		{"bob inside his range, stale", put("a2", "v"), "bob", before, false},
		{"bob outside his range, current", put("c", "v"), "bob", now, false}, // the receiving member's check stands
		{"txn with one op outside, stale", txn(nil, ops(opPut(put("a3", "v")), opPut(put("z", "v"))), nil), "bob", before, true},
		{"compaction by bob, stale", &kvv1.CompactRequest{Revision: 1}, "bob", before, true},
		{"auth change by bob, stale", roleAdd("x"), "bob", before, true},
		{"auth change by root, stale", roleAdd("x"), "root", before, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := apply(clientCmd(c.msg, c.user, c.rev))
			err, _ := res.(error)
			if c.deny != (err != nil) || (err != nil && !errors.Is(err, auth.ErrPermissionDenied) && !errors.Is(err, auth.ErrNoCredentials)) {
				t.Fatalf("answered %v, want denied %v", show(res), c.deny)
			}
		})
	}
	if got := mustRange(t, f, get("c", "")).GetKvs(); len(got) != 1 {
		t.Fatalf("c: %v, want the one write authorized at the current revision", got)
	}
	if got := mustRange(t, f, get("z", "")).GetKvs(); len(got) != 0 {
		t.Fatal("a refused txn wrote z")
	}

	// A lease revocation needs write on every key attached to the lease.
	applyOK(t, l, f, &fsmv1.LeaseGrant{Id: 9, Ttl: 60})
	applyOK(t, l, f, &kvv1.PutRequest{Key: []byte("zz"), Value: []byte("v"), Lease: 9})
	if res := apply(clientCmd(&fsmv1.LeaseRevoke{Id: 9}, "bob", f.Auth().Revision)); !errors.Is(res.(error), auth.ErrPermissionDenied) {
		t.Fatalf("bob revokes a lease holding zz: %v, want permission denied", show(res))
	}
	if res := apply(clientCmd(&fsmv1.LeaseRevoke{Id: 9}, "root", f.Auth().Revision)); res == nil {
		t.Fatal("root's revocation answered nothing")
	} else if err, ok := res.(error); ok {
		t.Fatalf("root revokes: %v", err)
	}
}

// TestAuthLeasePuts: with auth on, a user may attach a key to a lease only
// if it may write every key already attached to it, in a put or in either
// branch of a transaction (nested ones included), whatever the auth
// revision it was authorized at; root and commands without a user (the
// members' own) are not limited.
func TestAuthLeasePuts(t *testing.T) {
	f := newFSM(t)
	l := newTestLog(t)
	hash := mustHashPW(t, "pw")
	for _, c := range []*fsmv1.AuthCommand{
		userAdd("root", hash), grantRole("root", "root"),
		roleAdd("w"), grantPerm("w", kvv1.PermissionType_PERMISSION_TYPE_READWRITE, "a", "b"),
		userAdd("bob", hash), grantRole("bob", "w"),
		enableAuth,
	} {
		applyOK(t, l, f, c)
	}
	// Lease 9 holds root's key zz; lease 10 holds bob's a0; lease 11 none.
	for _, m := range []proto.Message{
		&fsmv1.LeaseGrant{Id: 9, Ttl: 60}, &fsmv1.LeaseGrant{Id: 10, Ttl: 60}, &fsmv1.LeaseGrant{Id: 11, Ttl: 60},
		putWithLease("zz", "root's", 9), putWithLease("a0", "bob's", 10),
	} {
		applyOK(t, l, f, m)
	}
	cur := f.Auth().Revision
	clientCmd := func(msg proto.Message, user string) *raft.Log {
		var info *fsmv1.AuthInfo
		if user != "-" {
			info = &fsmv1.AuthInfo{User: user, Revision: cur}
		}
		data, err := EncodeClientCommand(commandType(t, msg), msg, info)
		if err != nil {
			t.Fatal(err)
		}
		return l.raw(raft.LogCommand, data)
	}
	nested := txn(nil, ops(opGet(get("a1", ""))), ops(opTxn(txn(nil, ops(opPut(putWithLease("a1", "v", 9))), nil))))
	cases := []struct {
		name string
		msg  proto.Message
		user string // "-": no auth info, a member's own command
		deny bool
	}{
		{"bob on root's lease", putWithLease("a1", "v", 9), "bob", true},
		{"bob on his lease", putWithLease("a2", "v", 10), "bob", false},
		{"bob on an empty lease", putWithLease("a3", "v", 11), "bob", false},
		{"bob on root's lease in the branch that does not run", txn(cmps(cmpValue("a0", kvv1.Compare_COMPARE_RESULT_EQUAL, "bob's")),
			ops(opPut(put("a4", "v"))), ops(opPut(putWithLease("a4", "v", 9)))), "bob", true},
		{"bob on root's lease in a nested txn", nested, "bob", true},
		{"bob, txn on his own leases", txn(nil, ops(opPut(putWithLease("a5", "v", 10)), opPut(putWithLease("a6", "v", 11))), nil), "bob", false},
		{"root on lease 10", putWithLease("b1", "v", 10), "root", false},
		{"a member's own command on lease 9", putWithLease("a7", "v", 9), "-", false},
		{"bob on lease 10, which now holds root's b1", putWithLease("a8", "v", 10), "bob", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			before := f.Revision()
			res := f.ApplyBatch([]*raft.Log{clientCmd(c.msg, c.user)})[0]
			err, _ := res.(error)
			if c.deny != (err != nil) || (err != nil && !errors.Is(err, auth.ErrPermissionDenied)) {
				t.Fatalf("answered %v, want denied %v", show(res), c.deny)
			}
			after := f.Revision()
			if c.deny && after != before {
				t.Fatalf("a refused command moved the revision from %d to %d", before, after)
			}
			if c.deny && !strings.Contains(err.Error(), "attach to lease") {
				t.Fatalf("the refusal %q does not say which lease", err)
			}
		})
	}
	// Nothing refused was attached; the member's own a7 was.
	keys, err := f.LeaseKeys(9)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 2 || string(keys[0]) != "a7" || string(keys[1]) != "zz" {
		t.Fatalf("lease 9 holds %q, want a7 and zz: a refused put attached a key", keys)
	}
}

// TestAuthSnapshotRestore: the auth state travels in snapshots and is
// loaded on restore and reopen, and counts in the state hash.
func TestAuthSnapshotRestore(t *testing.T) {
	dir := t.TempDir()
	f := openFSM(t, dir)
	l := newTestLog(t)
	empty := mustHash(t, f)
	applyOK(t, l, f, userAdd("root", mustHashPW(t, "pw")))
	applyOK(t, l, f, grantRole("root", "root"))
	applyOK(t, l, f, enableAuth)
	if mustHash(t, f) == empty {
		t.Fatal("the state hash ignores the auth state")
	}
	data := snapshotBytes(t, f)

	g := newFSM(t)
	mustRestore(t, g, data)
	if s := g.Auth(); !s.Enabled || !s.IsRoot("root") || s.Revision != f.Auth().Revision || !bytes.Equal(s.Secret, f.Auth().Secret) {
		t.Fatalf("restored auth: enabled %v root %v revision %d secret %d bytes", s.Enabled, s.IsRoot("root"), s.Revision, len(s.Secret))
	}
	if err := g.Auth().CheckPassword("root", "pw"); err != nil {
		t.Fatalf("root's password after restore: %v", err)
	}
	if mustHash(t, g) != mustHash(t, f) {
		t.Fatal("restored state hashes differently")
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	h := openFSM(t, dir)
	if s := h.Auth(); !s.Enabled || s.Revision != g.Auth().Revision {
		t.Fatalf("reopened auth: enabled %v revision %d", s.Enabled, s.Revision)
	}
}
