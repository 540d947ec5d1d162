package rpc

import (
	"context"
	"crypto/rand"
	"slices"
	"time"

	"github.com/kvd-io/kvd/internal/auth"
	"github.com/kvd-io/kvd/member"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// authService serves kv.v1.AuthService. Changes go through the log
// (AuthNode.ProposeAuth); reads wait until this member reflects every
// change acknowledged before them. Passwords are hashed here, on the
// member that receives them, so that only hashes reach the log.
type authService struct {
	kvv1.UnimplementedAuthServiceServer
	node  AuthNode
	authz *authz
	cfg   Config
	now   func() time.Time
}

// change proposes c and returns the header of its answer.
func (a *authService) change(ctx context.Context, c *fsmv1.AuthCommand) (*kvv1.ResponseHeader, error) {
	res, err := a.node.ProposeAuth(ctx, c)
	if err != nil {
		return nil, err
	}
	return a.node.Header(res.GetRevision()), nil
}

// read waits until this member reflects every acknowledged change and
// returns its auth state.
func (a *authService) read(ctx context.Context) (*auth.State, *kvv1.ResponseHeader, error) {
	if err := a.node.Linearize(ctx); err != nil {
		return nil, nil, err
	}
	return a.node.AuthState(), a.node.Header(a.node.Revision()), nil
}

// readRoot is read for a call only root may make: authorized before the
// wait, it is authorized again if auth changed meanwhile (authz.recheck).
func (a *authService) readRoot(ctx context.Context) (*auth.State, *kvv1.ResponseHeader, error) {
	st, h, err := a.read(ctx)
	if err != nil {
		return nil, nil, err
	}
	err = a.authz.recheck(member.AuthInfoFrom(ctx), func(st *auth.State, user string) error { return st.CheckRoot(user) })
	if err != nil {
		return nil, nil, err
	}
	return st, h, nil
}

func (a *authService) AuthEnable(ctx context.Context, _ *kvv1.AuthEnableRequest) (*kvv1.AuthEnableResponse, error) {
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	h, err := a.change(ctx, &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_Enable{Enable: &kvv1.AuthEnableRequest{}}, Secret: secret})
	if err != nil {
		return nil, err
	}
	return &kvv1.AuthEnableResponse{Header: h}, nil
}

func (a *authService) AuthDisable(ctx context.Context, req *kvv1.AuthDisableRequest) (*kvv1.AuthDisableResponse, error) {
	h, err := a.change(ctx, &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_Disable{Disable: req}})
	if err != nil {
		return nil, err
	}
	return &kvv1.AuthDisableResponse{Header: h}, nil
}

func (a *authService) AuthStatus(ctx context.Context, _ *kvv1.AuthStatusRequest) (*kvv1.AuthStatusResponse, error) {
	st, h, err := a.read(ctx)
	if err != nil {
		return nil, err
	}
	return &kvv1.AuthStatusResponse{Header: h, Enabled: st.Enabled, AuthRevision: st.Revision}, nil
}

func (a *authService) Authenticate(ctx context.Context, req *kvv1.AuthenticateRequest) (*kvv1.AuthenticateResponse, error) {
	if err := auth.ValidateName("user", req.GetName()); err != nil {
		return nil, err
	}
	st, h, err := a.read(ctx)
	if err != nil {
		return nil, err
	}
	if !st.Enabled {
		return nil, auth.ErrAuthNotEnabled
	}
	if err := st.CheckPassword(req.GetName(), req.GetPassword()); err != nil {
		return nil, err
	}
	key := a.cfg.TokenKey
	if len(key) == 0 {
		key = st.Secret
	}
	now := a.now()
	tok, err := auth.Sign(key, auth.Claims{User: req.GetName(), Revision: st.Revision, IssuedAt: now.Unix(), Expiry: now.Add(a.cfg.TokenTTL).Unix()})
	if err != nil {
		return nil, err
	}
	return &kvv1.AuthenticateResponse{Header: h, Token: tok}, nil
}

// hash returns the bcrypt hash of a request's password: hashed if the
// client sent a hash, else made here.
func (a *authService) hash(password, hashed string) (string, error) {
	if hashed != "" {
		return hashed, auth.ValidateHash(hashed)
	}
	return auth.HashPassword(password, a.cfg.BcryptCost)
}

func (a *authService) UserAdd(ctx context.Context, req *kvv1.UserAddRequest) (*kvv1.UserAddResponse, error) {
	if err := auth.ValidateName("user", req.GetName()); err != nil {
		return nil, err
	}
	add := &kvv1.UserAddRequest{Name: req.GetName(), Options: req.GetOptions()}
	if !req.GetOptions().GetNoPassword() {
		var err error
		if add.HashedPassword, err = a.hash(req.GetPassword(), req.GetHashedPassword()); err != nil {
			return nil, err
		}
	}
	h, err := a.change(ctx, &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_UserAdd{UserAdd: add}})
	if err != nil {
		return nil, err
	}
	return &kvv1.UserAddResponse{Header: h}, nil
}

func (a *authService) UserChangePassword(ctx context.Context, req *kvv1.UserChangePasswordRequest) (*kvv1.UserChangePasswordResponse, error) {
	if err := auth.ValidateName("user", req.GetName()); err != nil {
		return nil, err
	}
	hashed, err := a.hash(req.GetPassword(), req.GetHashedPassword())
	if err != nil {
		return nil, err
	}
	h, err := a.change(ctx, &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_UserChangePassword{UserChangePassword: &kvv1.UserChangePasswordRequest{Name: req.GetName(), HashedPassword: hashed}}})
	if err != nil {
		return nil, err
	}
	return &kvv1.UserChangePasswordResponse{Header: h}, nil
}

func (a *authService) UserGet(ctx context.Context, req *kvv1.UserGetRequest) (*kvv1.UserGetResponse, error) {
	if err := auth.ValidateName("user", req.GetName()); err != nil {
		return nil, err
	}
	st, h, err := a.readRoot(ctx)
	if err != nil {
		return nil, err
	}
	u, ok := st.Users[req.GetName()]
	if !ok {
		return nil, auth.ErrUserNotFound
	}
	return &kvv1.UserGetResponse{Header: h, Roles: slices.Clone(u.GetRoles())}, nil
}

func (a *authService) UserList(ctx context.Context, _ *kvv1.UserListRequest) (*kvv1.UserListResponse, error) {
	st, h, err := a.readRoot(ctx)
	if err != nil {
		return nil, err
	}
	users := make([]string, 0, len(st.Users))
	for n := range st.Users {
		users = append(users, n)
	}
	slices.Sort(users)
	return &kvv1.UserListResponse{Header: h, Users: users}, nil
}

func (a *authService) UserDelete(ctx context.Context, req *kvv1.UserDeleteRequest) (*kvv1.UserDeleteResponse, error) {
	h, err := a.change(ctx, &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_UserDelete{UserDelete: req}})
	if err != nil {
		return nil, err
	}
	return &kvv1.UserDeleteResponse{Header: h}, nil
}

func (a *authService) UserGrantRole(ctx context.Context, req *kvv1.UserGrantRoleRequest) (*kvv1.UserGrantRoleResponse, error) {
	h, err := a.change(ctx, &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_UserGrantRole{UserGrantRole: req}})
	if err != nil {
		return nil, err
	}
	return &kvv1.UserGrantRoleResponse{Header: h}, nil
}

func (a *authService) UserRevokeRole(ctx context.Context, req *kvv1.UserRevokeRoleRequest) (*kvv1.UserRevokeRoleResponse, error) {
	h, err := a.change(ctx, &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_UserRevokeRole{UserRevokeRole: req}})
	if err != nil {
		return nil, err
	}
	return &kvv1.UserRevokeRoleResponse{Header: h}, nil
}

func (a *authService) RoleAdd(ctx context.Context, req *kvv1.RoleAddRequest) (*kvv1.RoleAddResponse, error) {
	h, err := a.change(ctx, &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_RoleAdd{RoleAdd: req}})
	if err != nil {
		return nil, err
	}
	return &kvv1.RoleAddResponse{Header: h}, nil
}

func (a *authService) RoleGet(ctx context.Context, req *kvv1.RoleGetRequest) (*kvv1.RoleGetResponse, error) {
	if err := auth.ValidateName("role", req.GetRole()); err != nil {
		return nil, err
	}
	st, h, err := a.readRoot(ctx)
	if err != nil {
		return nil, err
	}
	r, ok := st.Roles[req.GetRole()]
	if !ok {
		return nil, auth.ErrRoleNotFound
	}
	return &kvv1.RoleGetResponse{Header: h, Perms: r.GetPerms()}, nil
}

func (a *authService) RoleList(ctx context.Context, _ *kvv1.RoleListRequest) (*kvv1.RoleListResponse, error) {
	st, h, err := a.readRoot(ctx)
	if err != nil {
		return nil, err
	}
	roles := make([]string, 0, len(st.Roles))
	for n := range st.Roles {
		roles = append(roles, n)
	}
	slices.Sort(roles)
	return &kvv1.RoleListResponse{Header: h, Roles: roles}, nil
}

func (a *authService) RoleDelete(ctx context.Context, req *kvv1.RoleDeleteRequest) (*kvv1.RoleDeleteResponse, error) {
	h, err := a.change(ctx, &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_RoleDelete{RoleDelete: req}})
	if err != nil {
		return nil, err
	}
	return &kvv1.RoleDeleteResponse{Header: h}, nil
}

func (a *authService) RoleGrantPermission(ctx context.Context, req *kvv1.RoleGrantPermissionRequest) (*kvv1.RoleGrantPermissionResponse, error) {
	h, err := a.change(ctx, &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_RoleGrantPermission{RoleGrantPermission: req}})
	if err != nil {
		return nil, err
	}
	return &kvv1.RoleGrantPermissionResponse{Header: h}, nil
}

func (a *authService) RoleRevokePermission(ctx context.Context, req *kvv1.RoleRevokePermissionRequest) (*kvv1.RoleRevokePermissionResponse, error) {
	h, err := a.change(ctx, &fsmv1.AuthCommand{Change: &fsmv1.AuthCommand_RoleRevokePermission{RoleRevokePermission: req}})
	if err != nil {
		return nil, err
	}
	return &kvv1.RoleRevokePermissionResponse{Header: h}, nil
}
