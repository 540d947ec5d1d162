package etcdapi_test

import (
	"context"
	"encoding/base64"
	"errors"
	"slices"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/authpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/rpc"
	"github.com/kvd-io/kvd/server"
	"github.com/kvd-io/kvd/server/servertest"
)

// authMgmtCases are TestEveryMethodAuthorizedAsKvd's cases of the Auth
// service's management calls: each etcd call and the kv.v1 call it
// delegates to, with requests that leave authCluster as it is (names that
// exist already or do not exist, grants held already). AuthDisable is the
// exception: where it succeeds, the case turns auth on again at once.
func authMgmtCases(cc *grpc.ClientConn) map[string][2]func(context.Context) error {
	ea, ka := pb.NewAuthClient(cc), kvv1.NewAuthServiceClient(cc)
	call := func(fn func(ctx context.Context) (any, error)) func(context.Context) error {
		return func(ctx context.Context) error { _, err := fn(ctx); return err }
	}
	pair := func(e, k func(ctx context.Context) (any, error)) [2]func(context.Context) error {
		return [2]func(context.Context) error{call(e), call(k)}
	}
	reenable := func(ctx context.Context, err error) error {
		if err != nil {
			return err
		}
		_, err = ka.AuthEnable(ctx, &kvv1.AuthEnableRequest{})
		return err
	}
	return map[string][2]func(context.Context) error{
		pb.Auth_AuthStatus_FullMethodName: pair(
			func(ctx context.Context) (any, error) { return ea.AuthStatus(ctx, &pb.AuthStatusRequest{}) },
			func(ctx context.Context) (any, error) { return ka.AuthStatus(ctx, &kvv1.AuthStatusRequest{}) }),
		pb.Auth_AuthEnable_FullMethodName: pair(
			func(ctx context.Context) (any, error) { return ea.AuthEnable(ctx, &pb.AuthEnableRequest{}) },
			func(ctx context.Context) (any, error) { return ka.AuthEnable(ctx, &kvv1.AuthEnableRequest{}) }),
		pb.Auth_AuthDisable_FullMethodName: {
			func(ctx context.Context) error {
				_, err := ea.AuthDisable(ctx, &pb.AuthDisableRequest{})
				return reenable(ctx, err)
			},
			func(ctx context.Context) error {
				_, err := ka.AuthDisable(ctx, &kvv1.AuthDisableRequest{})
				return reenable(ctx, err)
			}},
		pb.Auth_UserAdd_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return ea.UserAdd(ctx, &pb.AuthUserAddRequest{Name: "alice", Password: "x"})
			},
			func(ctx context.Context) (any, error) {
				return ka.UserAdd(ctx, &kvv1.UserAddRequest{Name: "alice", Password: "x"})
			}),
		pb.Auth_UserGet_FullMethodName: pair(
			func(ctx context.Context) (any, error) { return ea.UserGet(ctx, &pb.AuthUserGetRequest{Name: "alice"}) },
			func(ctx context.Context) (any, error) { return ka.UserGet(ctx, &kvv1.UserGetRequest{Name: "alice"}) }),
		pb.Auth_UserList_FullMethodName: pair(
			func(ctx context.Context) (any, error) { return ea.UserList(ctx, &pb.AuthUserListRequest{}) },
			func(ctx context.Context) (any, error) { return ka.UserList(ctx, &kvv1.UserListRequest{}) }),
		pb.Auth_UserDelete_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return ea.UserDelete(ctx, &pb.AuthUserDeleteRequest{Name: "nobody"})
			},
			func(ctx context.Context) (any, error) {
				return ka.UserDelete(ctx, &kvv1.UserDeleteRequest{Name: "nobody"})
			}),
		pb.Auth_UserChangePassword_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return ea.UserChangePassword(ctx, &pb.AuthUserChangePasswordRequest{Name: "nobody", Password: "x"})
			},
			func(ctx context.Context) (any, error) {
				return ka.UserChangePassword(ctx, &kvv1.UserChangePasswordRequest{Name: "nobody", Password: "x"})
			}),
		pb.Auth_UserGrantRole_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return ea.UserGrantRole(ctx, &pb.AuthUserGrantRoleRequest{User: "alice", Role: "alice-role"})
			},
			func(ctx context.Context) (any, error) {
				return ka.UserGrantRole(ctx, &kvv1.UserGrantRoleRequest{User: "alice", Role: "alice-role"})
			}),
		pb.Auth_UserRevokeRole_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return ea.UserRevokeRole(ctx, &pb.AuthUserRevokeRoleRequest{Name: "alice", Role: "bob-role"})
			},
			func(ctx context.Context) (any, error) {
				return ka.UserRevokeRole(ctx, &kvv1.UserRevokeRoleRequest{Name: "alice", Role: "bob-role"})
			}),
		pb.Auth_RoleAdd_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return ea.RoleAdd(ctx, &pb.AuthRoleAddRequest{Name: "alice-role"})
			},
			func(ctx context.Context) (any, error) {
				return ka.RoleAdd(ctx, &kvv1.RoleAddRequest{Name: "alice-role"})
			}),
		pb.Auth_RoleGet_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return ea.RoleGet(ctx, &pb.AuthRoleGetRequest{Role: "alice-role"})
			},
			func(ctx context.Context) (any, error) {
				return ka.RoleGet(ctx, &kvv1.RoleGetRequest{Role: "alice-role"})
			}),
		pb.Auth_RoleList_FullMethodName: pair(
			func(ctx context.Context) (any, error) { return ea.RoleList(ctx, &pb.AuthRoleListRequest{}) },
			func(ctx context.Context) (any, error) { return ka.RoleList(ctx, &kvv1.RoleListRequest{}) }),
		pb.Auth_RoleDelete_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return ea.RoleDelete(ctx, &pb.AuthRoleDeleteRequest{Role: "nobody-role"})
			},
			func(ctx context.Context) (any, error) {
				return ka.RoleDelete(ctx, &kvv1.RoleDeleteRequest{Role: "nobody-role"})
			}),
		pb.Auth_RoleGrantPermission_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return ea.RoleGrantPermission(ctx, &pb.AuthRoleGrantPermissionRequest{Name: "nobody-role",
					Perm: &authpb.Permission{PermType: authpb.READ, Key: []byte("k")}})
			},
			func(ctx context.Context) (any, error) {
				return ka.RoleGrantPermission(ctx, &kvv1.RoleGrantPermissionRequest{Name: "nobody-role",
					Perm: &kvv1.Permission{PermType: kvv1.PermissionType_PERMISSION_TYPE_READ, Key: []byte("k")}})
			}),
		pb.Auth_RoleRevokePermission_FullMethodName: pair(
			func(ctx context.Context) (any, error) {
				return ea.RoleRevokePermission(ctx, &pb.AuthRoleRevokePermissionRequest{Role: "alice-role", Key: []byte("nothing")})
			},
			func(ctx context.Context) (any, error) {
				return ka.RoleRevokePermission(ctx, &kvv1.RoleRevokePermissionRequest{Role: "alice-role", Key: []byte("nothing")})
			}),
	}
}

// retryUnavailable calls fn until it answers anything but Unavailable:
// auth commands wait until every member has published its features.
func retryUnavailable(c *servertest.Cluster, fn func() error) error {
	var err error
	c.Eventually(30*time.Second, func() error {
		err = fn()
		if status.Code(err) == codes.Unavailable {
			return err
		}
		return nil
	})
	return err
}

// TestAuthManagement manages users, roles and permissions with clientv3
// as etcd's users do, enables auth, and checks what a user may then do,
// that revoking a role takes effect at once, and etcd's errors.
func TestAuthManagement(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 1, servertest.WithConfig(func(cfg *server.Config) { cfg.Auth.BcryptCost = bcrypt.MinCost }))
	ctx := ctxT(t)
	cli := newClient(t, c)
	ok := func(what string, fn func() error) {
		t.Helper()
		if err := retryUnavailable(c, fn); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	fails := func(what string, want error, fn func() error) {
		t.Helper()
		err := retryUnavailable(c, fn)
		if !errors.Is(err, want) || err.Error() != want.Error() {
			t.Fatalf("%s: %v, want %q", what, err, want)
		}
	}
	fails("enable without root", rpctypes.ErrRootUserNotExist, func() error { _, err := cli.AuthEnable(ctx); return err })
	ok("add root", func() error { _, err := cli.UserAdd(ctx, "root", "rootpw"); return err })
	fails("add root again", rpctypes.ErrUserAlreadyExist, func() error { _, err := cli.UserAdd(ctx, "root", "x"); return err })
	fails("enable before root has the root role", rpctypes.ErrRootRoleNotExist, func() error { _, err := cli.AuthEnable(ctx); return err })
	fails("add an unnamed user", rpctypes.ErrUserEmpty, func() error { _, err := cli.UserAdd(ctx, "", "x"); return err })
	fails("add an unnamed role", rpctypes.ErrRoleEmpty, func() error { _, err := cli.RoleAdd(ctx, ""); return err })

	ok("add role app", func() error { _, err := cli.RoleAdd(ctx, "app"); return err })
	ok("grant app/ prefix", func() error {
		_, err := cli.RoleGrantPermission(ctx, "app", "app/", clientv3.GetPrefixRangeEnd("app/"), clientv3.PermissionType(clientv3.PermReadWrite))
		return err
	})
	ok("grant shared", func() error {
		_, err := cli.RoleGrantPermission(ctx, "app", "shared", "", clientv3.PermissionType(clientv3.PermRead))
		return err
	})
	ok("add role reader", func() error { _, err := cli.RoleAdd(ctx, "reader"); return err })
	ok("grant every key from the empty key", func() error {
		_, err := cli.RoleGrantPermission(ctx, "reader", "", "\x00", clientv3.PermissionType(clientv3.PermRead))
		return err
	})
	ok("add alice", func() error { _, err := cli.UserAdd(ctx, "alice", "alicepw"); return err })
	fails("grant an unknown role", rpctypes.ErrRoleNotFound, func() error { _, err := cli.UserGrantRole(ctx, "alice", "nosuch"); return err })
	fails("grant to an unknown user", rpctypes.ErrUserNotFound, func() error { _, err := cli.UserGrantRole(ctx, "nobody", "app"); return err })
	ok("grant app to alice", func() error { _, err := cli.UserGrantRole(ctx, "alice", "app"); return err })
	ok("grant root to root", func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err })
	// As etcd's, the root role need not exist to be granted; RoleGet
	// knows it only once it is added (etcdctl's auth enable adds it).
	fails("role get root before it is added", rpctypes.ErrRoleNotFound, func() error { _, err := cli.RoleGet(ctx, "root"); return err })
	ok("add role root", func() error { _, err := cli.RoleAdd(ctx, "root"); return err })

	if u, err := cli.UserGet(ctx, "alice"); err != nil || !slices.Equal(u.Roles, []string{"app"}) {
		t.Fatalf("user get alice: %+v, %v; want roles [app]", u, err)
	}
	r, err := cli.RoleGet(ctx, "app")
	if err != nil {
		t.Fatalf("role get app: %v", err)
	}
	want := []*authpb.Permission{
		{PermType: authpb.READWRITE, Key: []byte("app/"), RangeEnd: []byte("app0")},
		{PermType: authpb.READ, Key: []byte("shared")},
	}
	if !permsEqual(r.Perm, want) {
		t.Fatalf("role get app: %v, want %v", r.Perm, want)
	}
	if r, err := cli.RoleGet(ctx, "reader"); err != nil || !permsEqual(r.Perm, []*authpb.Permission{{PermType: authpb.READ, RangeEnd: []byte{0}}}) {
		t.Fatalf("role get reader: %+v, %v; want read on every key from the empty key", r, err)
	}
	fails("role get unknown", rpctypes.ErrRoleNotFound, func() error { _, err := cli.RoleGet(ctx, "nosuch"); return err })
	if users, err := cli.UserList(ctx); err != nil || !slices.Equal(users.Users, []string{"alice", "root"}) {
		t.Fatalf("user list: %+v, %v", users, err)
	}
	if _, err := cli.Put(ctx, "shared", "s"); err != nil {
		t.Fatal(err)
	}

	ok("enable", func() error { _, err := cli.AuthEnable(ctx); return err })
	root := newClientWith(t, c, clientv3.Config{Username: "root", Password: "rootpw"})
	alice := newClientWith(t, c, clientv3.Config{Username: "alice", Password: "alicepw"})
	if _, err := alice.Put(ctx, "app/x", "1"); err != nil {
		t.Fatalf("alice puts inside her prefix: %v", err)
	}
	if resp, err := alice.Get(ctx, "shared"); err != nil || resp.Count != 1 {
		t.Fatalf("alice reads shared: %+v, %v", resp, err)
	}
	if _, err := alice.Put(ctx, "shared", "t"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("alice writes read-only shared: %v, want %v", err, rpctypes.ErrPermissionDenied)
	}
	if _, err := alice.Get(ctx, "other"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("alice reads other: %v, want %v", err, rpctypes.ErrPermissionDenied)
	}
	if _, err := alice.UserList(ctx); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("alice lists users: %v, want %v", err, rpctypes.ErrPermissionDenied)
	}
	st, err := root.AuthStatus(ctx)
	if err != nil || !st.Enabled || st.AuthRevision == 0 {
		t.Fatalf("auth status: %+v, %v; want enabled with an auth revision", st, err)
	}
	if r, err := root.RoleGet(ctx, "root"); err != nil || !permsEqual(r.Perm, []*authpb.Permission{{PermType: authpb.READWRITE, RangeEnd: []byte{0}}}) {
		t.Fatalf("role get root: %+v, %v; want etcd's readwrite on every key", r, err)
	}
	fails("delete root while enabled", rpctypes.ErrInvalidAuthMgmt, func() error { _, err := root.UserDelete(ctx, "root"); return err })

	ok("revoke app from alice", func() error { _, err := root.UserRevokeRole(ctx, "alice", "app"); return err })
	if _, err := alice.Get(ctx, "app/x"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("alice reads app/x right after the revocation: %v, want %v", err, rpctypes.ErrPermissionDenied)
	}
	fails("revoke again", rpctypes.ErrRoleNotGranted, func() error { _, err := root.UserRevokeRole(ctx, "alice", "app"); return err })
	fails("revoke an ungranted permission", rpctypes.ErrPermissionNotGranted, func() error {
		_, err := root.RoleRevokePermission(ctx, "app", "nothing", "")
		return err
	})
	ok("revoke the permission on every key", func() error { _, err := root.RoleRevokePermission(ctx, "reader", "", "\x00"); return err })

	// What clientv3 cannot send: a grant without a permission, and
	// passwords as hashes (etcd's base64 of a bcrypt hash).
	tok, err := root.Authenticate(ctx, "root", "rootpw")
	if err != nil {
		t.Fatal(err)
	}
	rctx := metadata.AppendToOutgoingContext(ctx, rpc.TokenMetadataKey, tok.Token)
	ea := pb.NewAuthClient(c.Member("m1").Conn())
	if _, err := ea.RoleGrantPermission(rctx, &pb.AuthRoleGrantPermissionRequest{Name: "app"}); rpctypes.ErrorDesc(err) != rpctypes.ErrorDesc(rpctypes.ErrGRPCPermissionNotGiven) {
		t.Fatalf("grant without a permission: %v, want %v", err, rpctypes.ErrGRPCPermissionNotGiven)
	}
	if _, err := ea.RoleGrantPermission(rctx, &pb.AuthRoleGrantPermissionRequest{Name: "app", Perm: &authpb.Permission{PermType: 7, Key: []byte("k")}}); status.Code(err) != codes.InvalidArgument {
		t.Fatalf("grant of an unknown permission type: %v, want InvalidArgument", err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("carolpw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ea.UserAdd(rctx, &pb.AuthUserAddRequest{Name: "carol", HashedPassword: base64.StdEncoding.EncodeToString(hash)}); err != nil {
		t.Fatalf("add a user with a hashed password: %v", err)
	}
	if _, err := root.Authenticate(ctx, "carol", "carolpw"); err != nil {
		t.Fatalf("authenticate with the hashed password's password: %v", err)
	}
	for name, req := range map[string]*pb.AuthUserChangePasswordRequest{
		"not base64":     {Name: "carol", HashedPassword: "$2a$not base64"},
		"not bcrypt":     {Name: "carol", HashedPassword: base64.StdEncoding.EncodeToString([]byte("plain"))},
		"hash and plain": {Name: "carol", Password: "x", HashedPassword: base64.StdEncoding.EncodeToString(hash)},
	} {
		if _, err := ea.UserChangePassword(rctx, req); status.Code(err) != codes.InvalidArgument {
			t.Errorf("change password, %s: %v, want InvalidArgument", name, err)
		}
	}
	if _, err := ea.UserAdd(rctx, &pb.AuthUserAddRequest{Name: "dave", Password: "ignored", Options: &authpb.UserAddOptions{NoPassword: true}}); err != nil {
		t.Fatalf("add a user without a password: %v", err)
	}
	if _, err := root.Authenticate(ctx, "dave", "ignored"); !errors.Is(err, rpctypes.ErrAuthFailed) {
		t.Fatalf("authenticate a user without a password: %v, want %v", err, rpctypes.ErrAuthFailed)
	}

	ok("disable", func() error { _, err := root.AuthDisable(ctx); return err })
	if st, err := cli.AuthStatus(ctx); err != nil || st.Enabled {
		t.Fatalf("auth status after disable: %+v, %v", st, err)
	}
	if resp, err := cli.Get(ctx, "app/x"); err != nil || resp.Count != 1 {
		t.Fatalf("anonymous get after disable: %+v, %v", resp, err)
	}
}

func permsEqual(a, b []*authpb.Permission) bool {
	return slices.EqualFunc(a, b, func(p, q *authpb.Permission) bool {
		return p.PermType == q.PermType && string(p.Key) == string(q.Key) && string(p.RangeEnd) == string(q.RangeEnd)
	})
}
