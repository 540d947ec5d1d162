package auth

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"unicode"

	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Root is the name of the user and of the role that may do everything.
const Root = "root"

// maxNameLen bounds user and role names.
const maxNameLen = 256

// State is the replicated auth state as of one applied entry. It is never
// changed once built: the state machine builds a new one after each change,
// so readers may keep and share it without locks.
type State struct {
	// Enabled says authentication is on.
	Enabled bool
	// Revision moves with every change.
	Revision uint64
	// Users and Roles by name.
	Users map[string]*fsmv1.AuthUser
	Roles map[string]*fsmv1.AuthRole
	// Secret is the cluster's secret, drawn when auth was first enabled;
	// nil before.
	Secret []byte
}

// Empty is the state of a cluster that never configured auth.
var Empty = &State{Users: map[string]*fsmv1.AuthUser{}, Roles: map[string]*fsmv1.AuthRole{}}

// ValidateName checks a user or role name: not empty, at most 256 bytes,
// no spaces or control characters (they make names ambiguous in the CLI
// and logs).
func ValidateName(kind, name string) error {
	if name == "" {
		switch kind {
		case "user":
			return ErrEmptyUserName
		case "role":
			return ErrEmptyRoleName
		}
		return fmt.Errorf("%w: empty %s name", ErrInvalidName, kind)
	}
	if len(name) > maxNameLen {
		return fmt.Errorf("%w: %s name of %d bytes (at most %d)", ErrInvalidName, kind, len(name), maxNameLen)
	}
	if strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar }) >= 0 {
		return fmt.Errorf("%w: %s name %q holds a space or control character", ErrInvalidName, kind, name)
	}
	return nil
}

// ValidatePermission checks a permission to grant.
func ValidatePermission(p *kvv1.Permission) error {
	if p == nil {
		return ErrNoPermission
	}
	switch p.GetPermType() {
	case kvv1.PermissionType_PERMISSION_TYPE_READ, kvv1.PermissionType_PERMISSION_TYPE_WRITE, kvv1.PermissionType_PERMISSION_TYPE_READWRITE:
	default:
		return fmt.Errorf("%w: type %v (want read, write or readwrite)", ErrInvalidPermission, p.GetPermType())
	}
	if len(p.GetKey()) == 0 {
		return fmt.Errorf("%w: empty key", ErrInvalidPermission)
	}
	if end := p.GetRangeEnd(); len(end) > 0 && !isFromKey(end) && bytes.Compare(end, p.GetKey()) <= 0 {
		return fmt.Errorf("%w: range end %q is not after key %q", ErrInvalidPermission, end, p.GetKey())
	}
	return nil
}

// HasRole reports whether user exists and holds role.
func (s *State) HasRole(user, role string) bool {
	u, ok := s.Users[user]
	return ok && slices.Contains(u.GetRoles(), role)
}

// IsRoot reports whether user holds the root role.
func (s *State) IsRoot(user string) bool { return s.HasRole(user, Root) }

// CanEnable reports why auth cannot be enabled, or nil.
func (s *State) CanEnable() error {
	if _, ok := s.Users[Root]; !ok {
		return ErrRootUserMissing
	}
	if !s.IsRoot(Root) {
		return ErrRootRoleMissing
	}
	return nil
}

// CheckUser fails unless auth is off or user exists.
func (s *State) CheckUser(user string) error {
	if !s.Enabled {
		return nil
	}
	if user == "" {
		return ErrNoCredentials
	}
	if _, ok := s.Users[user]; !ok {
		return fmt.Errorf("%w: user %q does not exist", ErrPermissionDenied, user)
	}
	return nil
}

// CheckRoot fails unless auth is off or user holds the root role.
func (s *State) CheckRoot(user string) error {
	if err := s.CheckUser(user); err != nil || !s.Enabled {
		return err
	}
	if !s.IsRoot(user) {
		return fmt.Errorf("%w: user %q needs the root role", ErrPermissionDenied, user)
	}
	return nil
}

// Check fails unless user may do everything reqs asks: auth is off, the
// user holds the root role, or its roles' permissions cover each range.
func (s *State) Check(user string, reqs []Requirement) error {
	if err := s.CheckUser(user); err != nil || !s.Enabled {
		return err
	}
	if s.IsRoot(user) {
		return nil
	}
	for _, r := range reqs {
		if !s.covered(user, r) {
			return fmt.Errorf("%w: user %q may not %s %s", ErrPermissionDenied, user, r.verb(), r.describe())
		}
	}
	return nil
}

// covered reports whether the user's permissions of r's kind cover r's
// keys, together if need be: read on [a, m) and on [m, z) cover [a, z).
func (s *State) covered(user string, r Requirement) bool {
	var have []interval
	for _, role := range s.Users[user].GetRoles() {
		for _, p := range s.Roles[role].GetPerms() {
			if allows(p.GetPermType(), r.Write) {
				have = append(have, toInterval(p.GetKey(), p.GetRangeEnd()))
			}
		}
	}
	return covers(have, toInterval(r.Key, r.RangeEnd))
}

func allows(t kvv1.PermissionType, write bool) bool {
	switch t {
	case kvv1.PermissionType_PERMISSION_TYPE_READWRITE:
		return true
	case kvv1.PermissionType_PERMISSION_TYPE_WRITE:
		return write
	case kvv1.PermissionType_PERMISSION_TYPE_READ:
		return !write
	}
	return false
}
