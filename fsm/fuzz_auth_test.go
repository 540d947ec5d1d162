package fsm

import (
	"errors"
	"fmt"
	"testing"
	"unicode/utf8"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/internal/auth"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// isAuthDomainError reports whether err is an answer of the auth checks or
// of an auth command, rather than a failure.
func isAuthDomainError(err error) bool {
	for _, d := range []error{auth.ErrPermissionDenied, auth.ErrNoCredentials, auth.ErrRootUserMissing, auth.ErrRootRoleMissing,
		auth.ErrInvalidAuthMgmt, auth.ErrInvalidName, auth.ErrInvalidPermission, auth.ErrInvalidPassword, auth.ErrPlainPassword,
		auth.ErrUserExists, auth.ErrUserNotFound, auth.ErrRoleExists, auth.ErrRoleNotFound, auth.ErrRoleNotGranted,
		auth.ErrPermissionNotGranted, ErrInvalidAlarm} {
		if errors.Is(err, d) {
			return true
		}
	}
	return isDomainError(err)
}

// FuzzAuthCommandsApply extends FuzzValidatedRequestsApply to auth: auth
// commands (COMMAND_TYPE_AUTH) and alarms that pass their validation, and
// client writes carrying any user at the current or a stale auth revision
// (re-authorized at apply, lease puts and revocations checked against the
// lease's keys), on a state with auth enabled, users and roles. Whatever
// the input, applying answers a result or a domain error, never panics or
// fails, and the auth state it keeps in memory is the one its bucket
// decodes to.
//
// kind picks the command; data is decoded as it; user and stale make the
// auth info of client commands.
func FuzzAuthCommandsApply(f *testing.F) {
	seed := func(kind byte, m proto.Message, user string, stale bool) {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(kind, b, user, stale)
	}
	seed(0, roleAdd("ops"), "root", false)
	seed(0, grantPerm("w", kvv1.PermissionType_PERMISSION_TYPE_WRITE, "m", "\x00"), "root", true)
	seed(0, &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_UserDelete{UserDelete: &kvv1.UserDeleteRequest{Name: "bob"}}}, "bob", false)
	seed(0, &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_RoleRevokePermission{RoleRevokePermission: &kvv1.RoleRevokePermissionRequest{Role: "w", Key: []byte("a"), RangeEnd: []byte("m")}}}, "root", false)
	seed(0, &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_Disable{Disable: &kvv1.AuthDisableRequest{}}}, "root", false)
	seed(1, &kvv1.AlarmRequest{Action: kvv1.AlarmRequest_ALARM_ACTION_ACTIVATE, Alarm: kvv1.AlarmType_ALARM_TYPE_NOSPACE, MemberId: 1}, "root", false)
	seed(2, putWithLease("b", "v", 1), "bob", false)
	seed(2, putWithLease("zz", "v", 1), "root", false)
	seed(3, txn(nil, ops(opPut(putWithLease("c", "v", 1))), ops(opTxn(txn(nil, ops(opPut(put("d", "v"))), nil)))), "bob", true)
	seed(4, &fsmv1.LeaseRevoke{Id: 1}, "bob", false)
	seed(5, &fsmv1.LeaseGrant{Id: 1, Ttl: 60}, "", false)
	seed(6, del("a", "\x00"), "bob", true)

	fs := newFSM(f)
	l := newTestLog(f)
	hash, err := auth.HashPassword("pw", bcrypt.MinCost)
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range []proto.Message{
		userAdd("root", hash), grantRole("root", "root"),
		roleAdd("w"), grantPerm("w", kvv1.PermissionType_PERMISSION_TYPE_READWRITE, "a", "m"),
		userAdd("bob", hash), grantRole("bob", "w"), enableAuth,
		&fsmv1.LeaseGrant{Id: 1, Ttl: 600}, putWithLease("a1", "v", 1),
	} {
		if err, ok := l.applyOne(fs, c).(error); ok {
			f.Fatalf("setup %v: %v", c, err)
		}
	}
	f.Fuzz(func(t *testing.T, kind byte, data []byte, user string, stale bool) {
		var (
			typ   fsmv1.CommandType
			msg   proto.Message
			valid error
		)
		switch kind % 7 {
		case 0:
			m := &fsmv1.AuthCommand{}
			typ, msg, valid = fsmv1.CommandType_COMMAND_TYPE_AUTH, m, unmarshalThen(data, m, func() error { return ValidateAuthCommand(m) })
		case 1:
			m := &kvv1.AlarmRequest{}
			typ, msg, valid = fsmv1.CommandType_COMMAND_TYPE_ALARM, m, unmarshalThen(data, m, func() error { return ValidateAlarm(m) })
		case 2:
			m := &kvv1.PutRequest{}
			typ, msg, valid = fsmv1.CommandType_COMMAND_TYPE_PUT, m, unmarshalThen(data, m, func() error { return ValidatePut(m) })
		case 3:
			m := &kvv1.TxnRequest{}
			typ, msg, valid = fsmv1.CommandType_COMMAND_TYPE_TXN, m, unmarshalThen(data, m, func() error { return ValidateTxn(m) })
		case 4:
			m := &fsmv1.LeaseRevoke{}
			typ, msg, valid = fsmv1.CommandType_COMMAND_TYPE_LEASE_REVOKE, m, unmarshalThen(data, m, func() error { return nil })
		case 5:
			m := &fsmv1.LeaseGrant{}
			typ, msg, valid = fsmv1.CommandType_COMMAND_TYPE_LEASE_GRANT, m, unmarshalThen(data, m, func() error { return nil })
		default:
			m := &kvv1.DeleteRangeRequest{}
			typ, msg, valid = fsmv1.CommandType_COMMAND_TYPE_DELETE_RANGE, m, unmarshalThen(data, m, func() error { return ValidateDeleteRange(m) })
		}
		if valid != nil || !utf8.ValidString(user) {
			return // refused before it reaches the log; user names are UTF-8 (auth.ValidateName)
		}
		rev := fs.Auth().Revision
		if stale && rev > 0 {
			rev--
		}
		cmd, err := EncodeClientCommand(typ, msg, &fsmv1.AuthInfo{User: user, Revision: rev})
		if err != nil {
			t.Fatalf("encode a validated %T: %v", msg, err)
		}
		var res any
		func() {
			defer func() {
				if p := recover(); p != nil {
					t.Fatalf("POISON: applying a validated %T of %q panicked: %v\nrequest: %v", msg, user, p, msg)
				}
			}()
			res = fs.ApplyBatch([]*raft.Log{l.raw(raft.LogCommand, cmd)})[0]
		}()
		if err, ok := res.(error); ok && !isAuthDomainError(err) {
			t.Fatalf("applying a validated %T of %q answered %v", msg, user, err)
		}
		// The state in memory is what the bucket decodes to.
		var stored *auth.State
		if err := fs.view(func(tx *bolt.Tx) error {
			var err error
			stored, err = loadAuth(tx.Bucket(bucketAuth))
			return err
		}); err != nil {
			t.Fatalf("decode the auth bucket: %v", err)
		}
		if got := fs.Auth(); !sameAuth(got, stored) {
			t.Fatalf("after %T %v: the auth state in memory (%s) is not the stored one (%s)", msg, msg, showAuth(got), showAuth(stored))
		}
	})
}

func sameAuth(a, b *auth.State) bool {
	if a.Enabled != b.Enabled || a.Revision != b.Revision || string(a.Secret) != string(b.Secret) ||
		len(a.Users) != len(b.Users) || len(a.Roles) != len(b.Roles) {
		return false
	}
	for n, u := range a.Users {
		if !proto.Equal(u, b.Users[n]) {
			return false
		}
	}
	for n, r := range a.Roles {
		if !proto.Equal(r, b.Roles[n]) {
			return false
		}
	}
	return true
}

func showAuth(s *auth.State) string {
	return fmt.Sprintf("enabled %v revision %d, %d users, %d roles", s.Enabled, s.Revision, len(s.Users), len(s.Roles))
}

// FuzzLoadAuth: the auth bucket is decoded when a state file is opened or
// a snapshot restored. Whatever its records hold (a corrupt or hostile
// snapshot), decoding fails with an error or gives a state whose checks
// answer without panicking, and what it decodes encodes and decodes to the
// same state.
func FuzzLoadAuth(f *testing.F) {
	user := func(u *fsmv1.AuthUser) []byte {
		b, _ := proto.Marshal(u)
		return b
	}
	role := func(r *fsmv1.AuthRole) []byte {
		b, _ := proto.Marshal(r)
		return b
	}
	f.Add([]byte{1}, []byte{0, 0, 0, 0, 0, 0, 0, 9}, user(&fsmv1.AuthUser{Name: "alice", Roles: []string{"r", "root"}, Revision: 3}),
		role(&fsmv1.AuthRole{Name: "r", Perms: []*kvv1.Permission{{PermType: kvv1.PermissionType_PERMISSION_TYPE_READ, Key: []byte("a"), RangeEnd: []byte{0}}}}),
		[]byte("a"), []byte("b"))
	f.Add([]byte{}, []byte{1}, []byte{0xff}, []byte{}, []byte{}, []byte{0})
	db, err := bolt.Open(f.TempDir()+"/auth.db", 0o600, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { _ = db.Close() })
	errRollback := errors.New("rollback")
	f.Fuzz(func(t *testing.T, enabled, revision, userRec, roleRec, key, end []byte) {
		err := db.Update(func(tx *bolt.Tx) error {
			b, err := tx.CreateBucket(bucketAuth)
			if err != nil {
				return err
			}
			for k, v := range map[string][]byte{"enabled": enabled, "revision": revision, "user/x": userRec, "role/x": roleRec} {
				if err := b.Put([]byte(k), v); err != nil {
					return err
				}
			}
			s, err := loadAuth(b)
			if err != nil {
				return errRollback // refused: fine
			}
			req := []auth.Requirement{{Key: key, RangeEnd: end}, {Write: true, Key: key, RangeEnd: end}}
			for n := range s.Users {
				_ = s.Check(n, req)
				_ = s.CheckRoot(n)
			}
			_ = s.CanEnable()
			// Encoded again, the state decodes to itself.
			b2, err := tx.CreateBucket([]byte("again"))
			if err != nil {
				return err
			}
			w := &writer{auth: b2}
			for _, k := range [][]byte{authEnabledKey, authRevisionKey, authSecretKey} {
				if v := b.Get(k); v != nil {
					if err := b2.Put(k, v); err != nil {
						return err
					}
				}
			}
			for n, u := range s.Users {
				if err := w.putAuth(authUserPrefix, n, u); err != nil {
					return err
				}
			}
			for n, r := range s.Roles {
				if err := w.putAuth(authRolePrefix, n, r); err != nil {
					return err
				}
			}
			s2, err := loadAuth(b2)
			if err != nil {
				t.Fatalf("a decoded auth state does not decode again: %v", err)
			}
			if !sameAuth(s, s2) {
				t.Fatalf("decoded %s, encoded and decoded again %s", showAuth(s), showAuth(s2))
			}
			return errRollback
		})
		if !errors.Is(err, errRollback) {
			t.Fatal(err)
		}
	})
}
