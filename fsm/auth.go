package fsm

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/internal/auth"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// The auth state (users, roles, permissions, whether auth is enabled, the
// auth revision and the cluster's secret) is replicated like the members:
// the bucket "auth" holds "enabled", "revision", "secret", "user/NAME"
// (an fsmv1.AuthUser) and "role/NAME" (an fsmv1.AuthRole). It is part of
// snapshots and backups, being in the state file. The FSM keeps it in
// memory as an immutable auth.State, rebuilt after each change.
//
// Every change bumps the auth revision; a refused command (a domain error)
// changes nothing, the revision included.

var bucketAuth = []byte("auth")

var (
	authEnabledKey  = []byte("enabled")
	authRevisionKey = []byte("revision")
	authSecretKey   = []byte("secret")
	authUserPrefix  = "user/"
	authRolePrefix  = "role/"
)

// FeatureAuth: the member can apply COMMAND_TYPE_AUTH and re-authorizes
// commands authorized at an older auth revision.
const FeatureAuth = "auth"

// Auth returns the auth state as of the last applied entry.
func (f *FSM) Auth() *auth.State { return f.auth.Load() }

// loadAuth reads the auth state from its bucket.
func loadAuth(b *bolt.Bucket) (*auth.State, error) {
	s := &auth.State{
		Enabled:  len(b.Get(authEnabledKey)) == 1 && b.Get(authEnabledKey)[0] == 1,
		Revision: readU64(b.Get(authRevisionKey)),
		Users:    map[string]*fsmv1.AuthUser{},
		Roles:    map[string]*fsmv1.AuthRole{},
	}
	if sec := b.Get(authSecretKey); len(sec) > 0 {
		s.Secret = bytes.Clone(sec)
	}
	err := b.ForEach(func(k, v []byte) error {
		switch {
		case bytes.HasPrefix(k, []byte(authUserPrefix)):
			u := &fsmv1.AuthUser{}
			if err := proto.Unmarshal(v, u); err != nil {
				return fmt.Errorf("decode auth %q: %w", k, err)
			}
			s.Users[u.GetName()] = u
		case bytes.HasPrefix(k, []byte(authRolePrefix)):
			r := &fsmv1.AuthRole{}
			if err := proto.Unmarshal(v, r); err != nil {
				return fmt.Errorf("decode auth %q: %w", k, err)
			}
			s.Roles[r.GetName()] = r
		}
		return nil
	})
	return s, err
}

// ValidateAuthCommand checks what an auth command carries, before anything
// is looked up: names, permissions, and that passwords come hashed.
func ValidateAuthCommand(c *fsmv1.AuthCommand) error {
	switch ch := c.GetChange().(type) {
	case *fsmv1.AuthCommand_Enable, *fsmv1.AuthCommand_Disable:
		return nil
	case *fsmv1.AuthCommand_UserAdd:
		r := ch.UserAdd
		if r.GetPassword() != "" {
			return auth.ErrPlainPassword
		}
		if !r.GetOptions().GetNoPassword() {
			if err := auth.ValidateHash(r.GetHashedPassword()); err != nil {
				return err
			}
		}
		return auth.ValidateName("user", r.GetName())
	case *fsmv1.AuthCommand_UserDelete:
		return auth.ValidateName("user", ch.UserDelete.GetName())
	case *fsmv1.AuthCommand_UserChangePassword:
		r := ch.UserChangePassword
		if r.GetPassword() != "" {
			return auth.ErrPlainPassword
		}
		if err := auth.ValidateHash(r.GetHashedPassword()); err != nil {
			return err
		}
		return auth.ValidateName("user", r.GetName())
	case *fsmv1.AuthCommand_UserGrantRole:
		return firstErr(auth.ValidateName("user", ch.UserGrantRole.GetUser()), auth.ValidateName("role", ch.UserGrantRole.GetRole()))
	case *fsmv1.AuthCommand_UserRevokeRole:
		return firstErr(auth.ValidateName("user", ch.UserRevokeRole.GetName()), auth.ValidateName("role", ch.UserRevokeRole.GetRole()))
	case *fsmv1.AuthCommand_RoleAdd:
		return auth.ValidateName("role", ch.RoleAdd.GetName())
	case *fsmv1.AuthCommand_RoleDelete:
		return auth.ValidateName("role", ch.RoleDelete.GetRole())
	case *fsmv1.AuthCommand_RoleGrantPermission:
		return firstErr(auth.ValidateName("role", ch.RoleGrantPermission.GetName()), auth.ValidatePermission(ch.RoleGrantPermission.GetPerm()))
	case *fsmv1.AuthCommand_RoleRevokePermission:
		return auth.ValidateName("role", ch.RoleRevokePermission.GetRole())
	default:
		return fmt.Errorf("%w: an auth command without a change", auth.ErrInvalidPermission)
	}
}

func firstErr(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// authCommand applies one change of the auth state. A change the state
// does not allow (a user that exists already, enabling without root) is
// a domain error and changes nothing.
func (w *writer) authCommand(c *fsmv1.AuthCommand) (any, error) {
	s := w.authState
	next := s.Revision + 1
	var err error
	switch ch := c.GetChange().(type) {
	case *fsmv1.AuthCommand_Enable:
		if err := s.CanEnable(); err != nil {
			return err, nil
		}
		if err = w.auth.Put(authEnabledKey, []byte{1}); err == nil && len(s.Secret) == 0 && len(c.GetSecret()) > 0 {
			err = w.auth.Put(authSecretKey, c.GetSecret())
		}
	case *fsmv1.AuthCommand_Disable:
		err = w.auth.Put(authEnabledKey, []byte{0})
	case *fsmv1.AuthCommand_UserAdd:
		r := ch.UserAdd
		if _, ok := s.Users[r.GetName()]; ok {
			return fmt.Errorf("%w: %q", auth.ErrUserExists, r.GetName()), nil
		}
		u := &fsmv1.AuthUser{Name: r.GetName(), NoPassword: r.GetOptions().GetNoPassword(), Revision: next}
		if !u.NoPassword {
			u.PasswordHash = []byte(r.GetHashedPassword())
		}
		err = w.putAuth(authUserPrefix, u.Name, u)
	case *fsmv1.AuthCommand_UserDelete:
		name := ch.UserDelete.GetName()
		if _, ok := s.Users[name]; !ok {
			return fmt.Errorf("%w: %q", auth.ErrUserNotFound, name), nil
		}
		if s.Enabled && name == auth.Root {
			return fmt.Errorf("%w: cannot delete root while auth is enabled", auth.ErrInvalidAuthMgmt), nil
		}
		err = w.auth.Delete([]byte(authUserPrefix + name))
	case *fsmv1.AuthCommand_UserChangePassword:
		r := ch.UserChangePassword
		u, ok := s.Users[r.GetName()]
		if !ok {
			return fmt.Errorf("%w: %q", auth.ErrUserNotFound, r.GetName()), nil
		}
		u = proto.CloneOf(u)
		u.PasswordHash, u.NoPassword, u.Revision = []byte(r.GetHashedPassword()), false, next
		err = w.putAuth(authUserPrefix, u.Name, u)
	case *fsmv1.AuthCommand_UserGrantRole:
		r := ch.UserGrantRole
		u, ok := s.Users[r.GetUser()]
		if !ok {
			return fmt.Errorf("%w: %q", auth.ErrUserNotFound, r.GetUser()), nil
		}
		if _, ok := s.Roles[r.GetRole()]; !ok && r.GetRole() != auth.Root {
			return fmt.Errorf("%w: %q", auth.ErrRoleNotFound, r.GetRole()), nil
		}
		if slices.Contains(u.GetRoles(), r.GetRole()) {
			return &fsmv1.AuthResult{AuthRevision: s.Revision, Revision: w.kv.Revision()}, nil // granted already: etcd answers success
		}
		u = proto.CloneOf(u)
		u.Roles = append(u.Roles, r.GetRole())
		slices.Sort(u.Roles)
		u.Revision = next
		err = w.putAuth(authUserPrefix, u.Name, u)
	case *fsmv1.AuthCommand_UserRevokeRole:
		r := ch.UserRevokeRole
		u, ok := s.Users[r.GetName()]
		if !ok {
			return fmt.Errorf("%w: %q", auth.ErrUserNotFound, r.GetName()), nil
		}
		if !slices.Contains(u.GetRoles(), r.GetRole()) {
			return fmt.Errorf("%w: %q does not hold %q", auth.ErrRoleNotGranted, r.GetName(), r.GetRole()), nil
		}
		if s.Enabled && r.GetName() == auth.Root && r.GetRole() == auth.Root {
			return fmt.Errorf("%w: cannot revoke root's root role while auth is enabled", auth.ErrInvalidAuthMgmt), nil
		}
		u = proto.CloneOf(u)
		u.Roles = slices.DeleteFunc(u.Roles, func(role string) bool { return role == r.GetRole() })
		u.Revision = next
		err = w.putAuth(authUserPrefix, u.Name, u)
	case *fsmv1.AuthCommand_RoleAdd:
		name := ch.RoleAdd.GetName()
		if _, ok := s.Roles[name]; ok {
			return fmt.Errorf("%w: %q", auth.ErrRoleExists, name), nil
		}
		err = w.putAuth(authRolePrefix, name, &fsmv1.AuthRole{Name: name})
	case *fsmv1.AuthCommand_RoleDelete:
		name := ch.RoleDelete.GetRole()
		if _, ok := s.Roles[name]; !ok {
			return fmt.Errorf("%w: %q", auth.ErrRoleNotFound, name), nil
		}
		if s.Enabled && name == auth.Root {
			return fmt.Errorf("%w: cannot delete the root role while auth is enabled", auth.ErrInvalidAuthMgmt), nil
		}
		err = w.deleteRole(s, name, next)
	case *fsmv1.AuthCommand_RoleGrantPermission:
		r := ch.RoleGrantPermission
		role, ok := s.Roles[r.GetName()]
		if !ok {
			return fmt.Errorf("%w: %q", auth.ErrRoleNotFound, r.GetName()), nil
		}
		role = proto.CloneOf(role)
		p := r.GetPerm()
		i := slices.IndexFunc(role.Perms, func(q *kvv1.Permission) bool { return samePermKeys(q, p.GetKey(), p.GetRangeEnd()) })
		if i >= 0 {
			role.Perms[i] = p
		} else {
			role.Perms = append(role.Perms, p)
			slices.SortFunc(role.Perms, func(a, b *kvv1.Permission) int {
				if c := bytes.Compare(a.GetKey(), b.GetKey()); c != 0 {
					return c
				}
				return bytes.Compare(a.GetRangeEnd(), b.GetRangeEnd())
			})
		}
		err = w.putAuth(authRolePrefix, role.Name, role)
	case *fsmv1.AuthCommand_RoleRevokePermission:
		r := ch.RoleRevokePermission
		role, ok := s.Roles[r.GetRole()]
		if !ok {
			return fmt.Errorf("%w: %q", auth.ErrRoleNotFound, r.GetRole()), nil
		}
		role = proto.CloneOf(role)
		n := len(role.Perms)
		role.Perms = slices.DeleteFunc(role.Perms, func(q *kvv1.Permission) bool { return samePermKeys(q, r.GetKey(), r.GetRangeEnd()) })
		if len(role.Perms) == n {
			return fmt.Errorf("%w: %q has none on key %q range end %q", auth.ErrPermissionNotGranted, r.GetRole(), r.GetKey(), r.GetRangeEnd()), nil
		}
		err = w.putAuth(authRolePrefix, role.Name, role)
	}
	if err != nil {
		return nil, err
	}
	if err := w.bumpAuth(next); err != nil {
		return nil, err
	}
	return &fsmv1.AuthResult{AuthRevision: next, Revision: w.kv.Revision()}, nil
}

func samePermKeys(p *kvv1.Permission, key, end []byte) bool {
	return bytes.Equal(p.GetKey(), key) && bytes.Equal(p.GetRangeEnd(), end)
}

// deleteRole deletes a role and takes it from every user that holds it.
func (w *writer) deleteRole(s *auth.State, name string, rev uint64) error {
	if err := w.auth.Delete([]byte(authRolePrefix + name)); err != nil {
		return err
	}
	users := make([]string, 0, len(s.Users))
	for n := range s.Users {
		users = append(users, n)
	}
	slices.Sort(users) // the same writes in the same order on every member
	for _, n := range users {
		u := s.Users[n]
		if !slices.Contains(u.GetRoles(), name) {
			continue
		}
		u = proto.CloneOf(u)
		u.Roles = slices.DeleteFunc(u.Roles, func(r string) bool { return r == name })
		u.Revision = rev
		if err := w.putAuth(authUserPrefix, n, u); err != nil {
			return err
		}
	}
	return nil
}

func (w *writer) putAuth(prefix, name string, m proto.Message) error {
	b, err := protoMarshal.Marshal(m)
	if err != nil {
		return err
	}
	return w.auth.Put([]byte(prefix+name), b)
}

// bumpAuth records the auth revision rev and reloads the state.
func (w *writer) bumpAuth(rev uint64) error {
	if err := w.auth.Put(authRevisionKey, u64(rev)); err != nil {
		return err
	}
	s, err := loadAuth(w.auth)
	if err != nil {
		return err
	}
	w.authState, w.authChanged = s, true
	if w.record {
		w.authMarks = append(w.authMarks, authMark{changes: len(w.changes), state: s})
	}
	return nil
}

// reauthorize authorizes again a client's command that was authorized at
// an older auth revision than the state's (the receiving member lagged, or
// users or roles changed while it was in flight), against the state it is
// applied to, so that every member refuses it alike. A refusal is a domain
// error. Lease revocations are checked whatever the revision: they delete
// the lease's keys, which the state knows only now.
func (w *writer) reauthorize(cmd *fsmv1.Command) (error, error) {
	s, info := w.authState, cmd.GetAuth()
	w.leaseUser = ""
	if !s.Enabled || info == nil {
		return nil, nil
	}
	if !s.IsRoot(info.GetUser()) {
		w.leaseUser = info.GetUser() // see checkLeasePuts
	}
	if cmd.GetType() == fsmv1.CommandType_COMMAND_TYPE_LEASE_REVOKE {
		return w.checkLeaseRevoke(info.GetUser(), cmd.GetPayload())
	}
	if info.GetRevision() >= s.Revision {
		return nil, nil
	}
	user := info.GetUser()
	var msg proto.Message
	switch cmd.GetType() {
	case fsmv1.CommandType_COMMAND_TYPE_PUT:
		msg = &kvv1.PutRequest{}
	case fsmv1.CommandType_COMMAND_TYPE_DELETE_RANGE:
		msg = &kvv1.DeleteRangeRequest{}
	case fsmv1.CommandType_COMMAND_TYPE_TXN:
		msg = &kvv1.TxnRequest{}
	case fsmv1.CommandType_COMMAND_TYPE_LEASE_GRANT:
		return s.CheckUser(user), nil
	default: // compaction, alarms, auth: root's
		return s.CheckRoot(user), nil
	}
	if err := proto.Unmarshal(cmd.GetPayload(), msg); err != nil {
		return nil, fmt.Errorf("decode %T: %w", msg, err)
	}
	return s.Check(user, auth.Requirements(msg)), nil
}

// checkLeaseRevoke lets a user revoke a lease only if it may write every
// key attached to it, as etcd does: revoking deletes them.
func (w *writer) checkLeaseRevoke(user string, payload []byte) (error, error) {
	s := w.authState
	if err := s.CheckUser(user); err != nil || s.IsRoot(user) {
		return err, nil
	}
	r := &fsmv1.LeaseRevoke{}
	if err := proto.Unmarshal(payload, r); err != nil {
		return nil, fmt.Errorf("decode lease revoke: %w", err)
	}
	reqs, err := w.leaseWriteReqs(r.GetId())
	if err != nil {
		return nil, err
	}
	return s.Check(user, reqs), nil
}

// leaseWriteReqs is write on every key attached to lease id.
func (w *writer) leaseWriteReqs(id int64) ([]auth.Requirement, error) {
	keys, err := w.kv.Read().LeaseKeys(id)
	if err != nil {
		return nil, err
	}
	reqs := make([]auth.Requirement, len(keys))
	for i, k := range keys {
		reqs[i] = auth.Requirement{Write: true, Key: k}
	}
	return reqs, nil
}

// checkLeasePuts lets the command's user (writer.leaseUser, empty for root
// and when auth is off) attach keys to a lease only if it may write every
// key already attached to it, as etcd does. Otherwise a user could put its
// own key on somebody else's lease: the lease's owner, who may write the
// lease's keys but not that one, could no longer revoke it
// (checkLeaseRevoke), and the intruder's key would share the lifetime of
// keys it may not touch. Like revocations it is checked here, at apply,
// whatever the auth revision: only the state knows a lease's keys. r is a
// PutRequest or a TxnRequest, whose puts in both branches (nested
// transactions included) count whichever branch runs, as for every other
// permission of a transaction.
func (w *writer) checkLeasePuts(r proto.Message) (error, error) {
	if w.leaseUser == "" {
		return nil, nil
	}
	var leases []int64
	var walk func(m proto.Message)
	walk = func(m proto.Message) {
		switch r := m.(type) {
		case *kvv1.PutRequest:
			if id := r.GetLease(); id != 0 && !slices.Contains(leases, id) {
				leases = append(leases, id)
			}
		case *kvv1.TxnRequest:
			for _, op := range slices.Concat(r.GetSuccess(), r.GetFailure()) {
				if p := op.GetRequestPut(); p != nil {
					walk(p)
				} else if t := op.GetRequestTxn(); t != nil {
					walk(t)
				}
			}
		}
	}
	walk(r)
	for _, id := range leases {
		reqs, err := w.leaseWriteReqs(id)
		if err != nil {
			return nil, err
		}
		if err := w.authState.Check(w.leaseUser, reqs); err != nil {
			return fmt.Errorf("attach to lease %x: %w", id, err), nil
		}
	}
	return nil, nil
}

// authHashable reports whether Hash covers an auth bucket key: all but the
// secret, which is the same on every member and should not be guessable
// through a hash.
func authHashable(k []byte) bool {
	return !bytes.Equal(k, authSecretKey) && (strings.HasPrefix(string(k), authUserPrefix) || strings.HasPrefix(string(k), authRolePrefix) ||
		bytes.Equal(k, authEnabledKey) || bytes.Equal(k, authRevisionKey))
}
