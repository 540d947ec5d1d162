package auth

import (
	"errors"
	"fmt"
)

// The errors of authentication and authorization. Their texts follow
// etcd's, so that operators recognise them.
var (
	// ErrInvalidToken: a token that is malformed, not signed by the
	// cluster's key, or issued before its user last changed.
	ErrInvalidToken = errors.New("auth: invalid token")
	// ErrTokenExpired: a token past its expiry.
	ErrTokenExpired = errors.New("auth: token expired")
	// ErrNoCredentials: auth is enabled and the caller sent no token and no
	// client certificate.
	ErrNoCredentials = errors.New("auth: no credentials: authenticate with a user name and password, or present a client certificate")
	// ErrAuthFailed: a wrong user name or password.
	ErrAuthFailed = errors.New("auth: authentication failed, invalid user ID or password")
	// ErrPermissionDenied: the user may not do what it asked.
	ErrPermissionDenied = errors.New("auth: permission denied")
	// ErrNotMember: a member-to-member call from a caller that did not prove
	// to be a member.
	ErrNotMember = errors.New("auth: permission denied: only members may call the member API")

	// ErrRootUserMissing and ErrRootRoleMissing: auth cannot be enabled
	// without a root user holding the root role.
	ErrRootUserMissing = errors.New("auth: root user does not exist")
	ErrRootRoleMissing = errors.New("auth: root user does not have root role")
	// ErrInvalidAuthMgmt: a change that would lock root out while auth is
	// enabled (deleting root, or its root role).
	ErrInvalidAuthMgmt = errors.New("auth: invalid auth management")

	// ErrInvalidName: an empty or malformed user or role name.
	ErrInvalidName = errors.New("auth: invalid name")
	// ErrEmptyUserName and ErrEmptyRoleName are the ErrInvalidName of an
	// empty name: etcd's API has a word of its own for each.
	ErrEmptyUserName = fmt.Errorf("%w: empty user name", ErrInvalidName)
	ErrEmptyRoleName = fmt.Errorf("%w: empty role name", ErrInvalidName)
	// ErrInvalidPermission: a permission without a type, or with an empty
	// key or a range end not after its key.
	ErrInvalidPermission = errors.New("auth: invalid permission")
	// ErrNoPermission is the ErrInvalidPermission of a grant without a
	// permission: etcd's API has a word of its own for it.
	ErrNoPermission = fmt.Errorf("%w: no permission given", ErrInvalidPermission)
	// ErrInvalidPassword: an empty password, or a hash that is not bcrypt's.
	ErrInvalidPassword = errors.New("auth: invalid password")
	// ErrPlainPassword: an auth command carrying a password rather than its
	// hash; the log carries hashes only.
	ErrPlainPassword = errors.New("auth: the command carries a plaintext password")

	ErrUserExists           = errors.New("auth: user name already exists")
	ErrUserNotFound         = errors.New("auth: user name not found")
	ErrRoleExists           = errors.New("auth: role name already exists")
	ErrRoleNotFound         = errors.New("auth: role name not found")
	ErrRoleNotGranted       = errors.New("auth: role is not granted to the user")
	ErrPermissionNotGranted = errors.New("auth: permission is not granted to the role")
)

// ErrAuthNotEnabled: Authenticate while authentication is disabled.
var ErrAuthNotEnabled = errors.New("auth: authentication is not enabled")
