package etcdapi

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/kvd-io/kvd/rpc"
)

// authServer serves etcdserverpb.Auth over kv.v1's AuthService: users,
// roles, their permissions and the switch of authentication, with etcd's
// requests, answers and errors. kv.v1's AuthService has etcd's shapes and
// rules (root for every management call, AuthStatus and Authenticate open
// to all), so each method is a field-for-field translation; the few
// places where etcd's wire differs (permission types numbered from READ 0,
// the empty key of an every-key permission, the base64 of a hashed
// password, root's implied permission) are in convert.go.
type authServer struct {
	pb.UnimplementedAuthServer
	l rpc.Local
}

// Authenticate gives a token for a user's name and password: kvd's
// token, which every etcd and kv.v1 method accepts in the metadata
// "token", where clientv3 puts it.
func (s *authServer) Authenticate(ctx context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	return unary(ctx, s.l, r, total(authenticateRequest), s.l.Authenticate, authenticateResponse)
}

// AuthEnable turns authentication on; etcd's "root user does not have
// root role" is what etcdctl's auth enable answers by creating and
// granting the root role.
func (s *authServer) AuthEnable(ctx context.Context, r *pb.AuthEnableRequest) (*pb.AuthEnableResponse, error) {
	return unary(ctx, s.l, r, total(authEnableRequest), s.l.AuthEnable, authEnableResponse)
}

// AuthDisable turns authentication off.
func (s *authServer) AuthDisable(ctx context.Context, r *pb.AuthDisableRequest) (*pb.AuthDisableResponse, error) {
	return unary(ctx, s.l, r, total(authDisableRequest), s.l.AuthDisable, authDisableResponse)
}

// AuthStatus says whether authentication is on, and the auth revision.
func (s *authServer) AuthStatus(ctx context.Context, r *pb.AuthStatusRequest) (*pb.AuthStatusResponse, error) {
	return unary(ctx, s.l, r, total(authStatusRequest), s.l.AuthStatus, authStatusResponse)
}

// UserAdd creates a user, with a password or, with options.no_password,
// one that only a client certificate names.
func (s *authServer) UserAdd(ctx context.Context, r *pb.AuthUserAddRequest) (*pb.AuthUserAddResponse, error) {
	return unary(ctx, s.l, r, userAddRequest, s.l.UserAdd, userAddResponse)
}

// UserGet gives a user's roles.
func (s *authServer) UserGet(ctx context.Context, r *pb.AuthUserGetRequest) (*pb.AuthUserGetResponse, error) {
	return unary(ctx, s.l, r, total(userGetRequest), s.l.UserGet, userGetResponse)
}

// UserList gives every user's name, sorted.
func (s *authServer) UserList(ctx context.Context, r *pb.AuthUserListRequest) (*pb.AuthUserListResponse, error) {
	return unary(ctx, s.l, r, total(userListRequest), s.l.UserList, userListResponse)
}

// UserDelete deletes a user; its tokens stop working at once.
func (s *authServer) UserDelete(ctx context.Context, r *pb.AuthUserDeleteRequest) (*pb.AuthUserDeleteResponse, error) {
	return unary(ctx, s.l, r, total(userDeleteRequest), s.l.UserDelete, userDeleteResponse)
}

// UserChangePassword sets a user's password; its tokens stop working at
// once.
func (s *authServer) UserChangePassword(ctx context.Context, r *pb.AuthUserChangePasswordRequest) (*pb.AuthUserChangePasswordResponse, error) {
	return unary(ctx, s.l, r, userChangePasswordRequest, s.l.UserChangePassword, userChangePasswordResponse)
}

// UserGrantRole gives a user a role.
func (s *authServer) UserGrantRole(ctx context.Context, r *pb.AuthUserGrantRoleRequest) (*pb.AuthUserGrantRoleResponse, error) {
	return unary(ctx, s.l, r, total(userGrantRoleRequest), s.l.UserGrantRole, userGrantRoleResponse)
}

// UserRevokeRole takes a role from a user, effective for the user's next
// request.
func (s *authServer) UserRevokeRole(ctx context.Context, r *pb.AuthUserRevokeRoleRequest) (*pb.AuthUserRevokeRoleResponse, error) {
	return unary(ctx, s.l, r, total(userRevokeRoleRequest), s.l.UserRevokeRole, userRevokeRoleResponse)
}

// RoleAdd creates a role without permissions.
func (s *authServer) RoleAdd(ctx context.Context, r *pb.AuthRoleAddRequest) (*pb.AuthRoleAddResponse, error) {
	return unary(ctx, s.l, r, total(roleAddRequest), s.l.RoleAdd, roleAddResponse)
}

// RoleGet gives a role's permissions; root's, as etcd's, is readwrite
// on every key.
func (s *authServer) RoleGet(ctx context.Context, r *pb.AuthRoleGetRequest) (*pb.AuthRoleGetResponse, error) {
	return unary(ctx, s.l, r, total(roleGetRequest), s.l.RoleGet, roleGetResponse(r.GetRole()))
}

// RoleList gives every role's name, sorted.
func (s *authServer) RoleList(ctx context.Context, r *pb.AuthRoleListRequest) (*pb.AuthRoleListResponse, error) {
	return unary(ctx, s.l, r, total(roleListRequest), s.l.RoleList, roleListResponse)
}

// RoleDelete deletes a role and takes it from every user.
func (s *authServer) RoleDelete(ctx context.Context, r *pb.AuthRoleDeleteRequest) (*pb.AuthRoleDeleteResponse, error) {
	return unary(ctx, s.l, r, total(roleDeleteRequest), s.l.RoleDelete, roleDeleteResponse)
}

// RoleGrantPermission adds a permission to a role, replacing one on the
// same key and range end.
func (s *authServer) RoleGrantPermission(ctx context.Context, r *pb.AuthRoleGrantPermissionRequest) (*pb.AuthRoleGrantPermissionResponse, error) {
	return unary(ctx, s.l, r, roleGrantPermissionRequest, s.l.RoleGrantPermission, roleGrantPermissionResponse)
}

// RoleRevokePermission removes the permission on exactly a key and range
// end from a role.
func (s *authServer) RoleRevokePermission(ctx context.Context, r *pb.AuthRoleRevokePermissionRequest) (*pb.AuthRoleRevokePermissionResponse, error) {
	return unary(ctx, s.l, r, total(roleRevokePermissionRequest), s.l.RoleRevokePermission, roleRevokePermissionResponse)
}
