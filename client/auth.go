package client

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// Auth manages users, roles and permissions, like etcd's Auth API. While
// authentication is enabled every method but Authenticate and AuthStatus
// needs a user with the root role (Config.Username).
type Auth interface {
	// AuthEnable turns authentication on; it fails (FailedPrecondition)
	// unless a user root holds the role root.
	AuthEnable(ctx context.Context) (*kvv1.AuthEnableResponse, error)
	// AuthDisable turns authentication off.
	AuthDisable(ctx context.Context) (*kvv1.AuthDisableResponse, error)
	// AuthStatus reports whether authentication is on, and the auth
	// revision.
	AuthStatus(ctx context.Context) (*kvv1.AuthStatusResponse, error)
	// Authenticate returns a token for a user's name and password. The
	// client does it on its own with Config.Username and Password.
	Authenticate(ctx context.Context, name, password string) (*kvv1.AuthenticateResponse, error)
	// UserAdd creates a user with a password; UserAddNoPassword one that
	// only a client certificate with its name as common name identifies.
	UserAdd(ctx context.Context, name, password string) (*kvv1.UserAddResponse, error)
	UserAddNoPassword(ctx context.Context, name string) (*kvv1.UserAddResponse, error)
	UserGet(ctx context.Context, name string) (*kvv1.UserGetResponse, error)
	UserList(ctx context.Context) (*kvv1.UserListResponse, error)
	UserDelete(ctx context.Context, name string) (*kvv1.UserDeleteResponse, error)
	UserChangePassword(ctx context.Context, name, password string) (*kvv1.UserChangePasswordResponse, error)
	UserGrantRole(ctx context.Context, user, role string) (*kvv1.UserGrantRoleResponse, error)
	UserRevokeRole(ctx context.Context, user, role string) (*kvv1.UserRevokeRoleResponse, error)
	RoleAdd(ctx context.Context, name string) (*kvv1.RoleAddResponse, error)
	RoleGet(ctx context.Context, name string) (*kvv1.RoleGetResponse, error)
	RoleList(ctx context.Context) (*kvv1.RoleListResponse, error)
	RoleDelete(ctx context.Context, name string) (*kvv1.RoleDeleteResponse, error)
	// RoleGrantPermission lets a role read, write or both a key (end
	// empty), a range [key, end), a prefix (end = PrefixEnd(key)) or every
	// key from key on (end "\x00").
	RoleGrantPermission(ctx context.Context, role, key, end string, perm PermissionType) (*kvv1.RoleGrantPermissionResponse, error)
	// RoleRevokePermission removes the permission on exactly key and end.
	RoleRevokePermission(ctx context.Context, role, key, end string) (*kvv1.RoleRevokePermissionResponse, error)
}

// PermissionType is what a permission allows.
type PermissionType = kvv1.PermissionType

// The permission types.
const (
	PermRead      = kvv1.PermissionType_PERMISSION_TYPE_READ
	PermWrite     = kvv1.PermissionType_PERMISSION_TYPE_WRITE
	PermReadWrite = kvv1.PermissionType_PERMISSION_TYPE_READWRITE
)

var _ Auth = (*Client)(nil)

func (c *Client) authCall(ctx context.Context, kind rpcKind, fn func(ctx context.Context, a kvv1.AuthServiceClient) error) error {
	return c.invoke(ctx, kind, func(ctx context.Context, cc grpc.ClientConnInterface) error {
		return fn(ctx, kvv1.NewAuthServiceClient(cc))
	})
}

// authDo is one AuthService call of kind through the retry policy.
func authDo[R any](c *Client, ctx context.Context, kind rpcKind, call func(context.Context, kvv1.AuthServiceClient) (R, error)) (R, error) {
	var resp R
	err := c.authCall(ctx, kind, func(ctx context.Context, a kvv1.AuthServiceClient) (err error) {
		resp, err = call(ctx, a)
		return err
	})
	return resp, err
}

func (c *Client) AuthEnable(ctx context.Context) (*kvv1.AuthEnableResponse, error) {
	return authDo(c, ctx, kindWrite, func(ctx context.Context, a kvv1.AuthServiceClient) (*kvv1.AuthEnableResponse, error) {
		return a.AuthEnable(ctx, &kvv1.AuthEnableRequest{})
	})
}

func (c *Client) AuthDisable(ctx context.Context) (*kvv1.AuthDisableResponse, error) {
	return authDo(c, ctx, kindWrite, func(ctx context.Context, a kvv1.AuthServiceClient) (*kvv1.AuthDisableResponse, error) {
		return a.AuthDisable(ctx, &kvv1.AuthDisableRequest{})
	})
}

func (c *Client) AuthStatus(ctx context.Context) (*kvv1.AuthStatusResponse, error) {
	return authDo(c, ctx, kindRead, func(ctx context.Context, a kvv1.AuthServiceClient) (*kvv1.AuthStatusResponse, error) {
		return a.AuthStatus(ctx, &kvv1.AuthStatusRequest{})
	})
}

func (c *Client) Authenticate(ctx context.Context, name, password string) (*kvv1.AuthenticateResponse, error) {
	return authDo(c, ctx, kindRead, func(ctx context.Context, a kvv1.AuthServiceClient) (*kvv1.AuthenticateResponse, error) {
		return a.Authenticate(ctx, &kvv1.AuthenticateRequest{Name: name, Password: password})
	})
}

func (c *Client) UserAdd(ctx context.Context, name, password string) (*kvv1.UserAddResponse, error) {
	return authDo(c, ctx, kindWrite, func(ctx context.Context, a kvv1.AuthServiceClient) (*kvv1.UserAddResponse, error) {
		return a.UserAdd(ctx, &kvv1.UserAddRequest{Name: name, Password: password})
	})
}

func (c *Client) UserAddNoPassword(ctx context.Context, name string) (*kvv1.UserAddResponse, error) {
	return authDo(c, ctx, kindWrite, func(ctx context.Context, a kvv1.AuthServiceClient) (*kvv1.UserAddResponse, error) {
		return a.UserAdd(ctx, &kvv1.UserAddRequest{Name: name, Options: &kvv1.UserAddOptions{NoPassword: true}})
	})
}

func (c *Client) UserGet(ctx context.Context, name string) (*kvv1.UserGetResponse, error) {
	return authDo(c, ctx, kindRead, func(ctx context.Context, a kvv1.AuthServiceClient) (*kvv1.UserGetResponse, error) {
		return a.UserGet(ctx, &kvv1.UserGetRequest{Name: name})
	})
}

func (c *Client) UserList(ctx context.Context) (*kvv1.UserListResponse, error) {
	return authDo(c, ctx, kindRead, func(ctx context.Context, a kvv1.AuthServiceClient) (*kvv1.UserListResponse, error) {
		return a.UserList(ctx, &kvv1.UserListRequest{})
	})
}

func (c *Client) UserDelete(ctx context.Context, name string) (*kvv1.UserDeleteResponse, error) {
	return authDo(c, ctx, kindWrite, func(ctx context.Context, a kvv1.AuthServiceClient) (*kvv1.UserDeleteResponse, error) {
		return a.UserDelete(ctx, &kvv1.UserDeleteRequest{Name: name})
	})
}

func (c *Client) UserChangePassword(ctx context.Context, name, password string) (*kvv1.UserChangePasswordResponse, error) {
	return authDo(c, ctx, kindWrite, func(ctx context.Context, a kvv1.AuthServiceClient) (*kvv1.UserChangePasswordResponse, error) {
		return a.UserChangePassword(ctx, &kvv1.UserChangePasswordRequest{Name: name, Password: password})
	})
}

func (c *Client) UserGrantRole(ctx context.Context, user, role string) (*kvv1.UserGrantRoleResponse, error) {
	return authDo(c, ctx, kindWrite, func(ctx context.Context, a kvv1.AuthServiceClient) (*kvv1.UserGrantRoleResponse, error) {
		return a.UserGrantRole(ctx, &kvv1.UserGrantRoleRequest{User: user, Role: role})
	})
}

func (c *Client) UserRevokeRole(ctx context.Context, user, role string) (*kvv1.UserRevokeRoleResponse, error) {
	return authDo(c, ctx, kindWrite, func(ctx context.Context, a kvv1.AuthServiceClient) (*kvv1.UserRevokeRoleResponse, error) {
		return a.UserRevokeRole(ctx, &kvv1.UserRevokeRoleRequest{Name: user, Role: role})
	})
}

func (c *Client) RoleAdd(ctx context.Context, name string) (*kvv1.RoleAddResponse, error) {
	return authDo(c, ctx, kindWrite, func(ctx context.Context, a kvv1.AuthServiceClient) (*kvv1.RoleAddResponse, error) {
		return a.RoleAdd(ctx, &kvv1.RoleAddRequest{Name: name})
	})
}

func (c *Client) RoleGet(ctx context.Context, name string) (*kvv1.RoleGetResponse, error) {
	return authDo(c, ctx, kindRead, func(ctx context.Context, a kvv1.AuthServiceClient) (*kvv1.RoleGetResponse, error) {
		return a.RoleGet(ctx, &kvv1.RoleGetRequest{Role: name})
	})
}

func (c *Client) RoleList(ctx context.Context) (*kvv1.RoleListResponse, error) {
	return authDo(c, ctx, kindRead, func(ctx context.Context, a kvv1.AuthServiceClient) (*kvv1.RoleListResponse, error) {
		return a.RoleList(ctx, &kvv1.RoleListRequest{})
	})
}

func (c *Client) RoleDelete(ctx context.Context, name string) (*kvv1.RoleDeleteResponse, error) {
	return authDo(c, ctx, kindWrite, func(ctx context.Context, a kvv1.AuthServiceClient) (*kvv1.RoleDeleteResponse, error) {
		return a.RoleDelete(ctx, &kvv1.RoleDeleteRequest{Role: name})
	})
}

func (c *Client) RoleGrantPermission(ctx context.Context, role, key, end string, perm PermissionType) (*kvv1.RoleGrantPermissionResponse, error) {
	return authDo(c, ctx, kindWrite, func(ctx context.Context, a kvv1.AuthServiceClient) (*kvv1.RoleGrantPermissionResponse, error) {
		return a.RoleGrantPermission(ctx, &kvv1.RoleGrantPermissionRequest{Name: role, Perm: &kvv1.Permission{PermType: perm, Key: []byte(key), RangeEnd: []byte(end)}})
	})
}

func (c *Client) RoleRevokePermission(ctx context.Context, role, key, end string) (*kvv1.RoleRevokePermissionResponse, error) {
	return authDo(c, ctx, kindWrite, func(ctx context.Context, a kvv1.AuthServiceClient) (*kvv1.RoleRevokePermissionResponse, error) {
		return a.RoleRevokePermission(ctx, &kvv1.RoleRevokePermissionRequest{Role: role, Key: []byte(key), RangeEnd: []byte(end)})
	})
}

// tokens keeps the client's token for Config.Username: it authenticates
// before the first call that needs one, again shortly before the token
// expires, and again when a member refuses it (expired, or the user
// changed), retrying that call once. A token is good on every member, so
// the client keeps one for all its connections.
type tokens struct {
	c *Client

	mu     sync.Mutex
	token  string
	expiry time.Time
	// off is until when the cluster is taken to have auth disabled (its
	// members refused to authenticate for that reason): calls go without
	// a token meanwhile.
	off time.Time
}

// refreshMargin is how long before its expiry a token is replaced.
const refreshMargin = 10 * time.Second

// freshToken makes sure the client holds a valid token (if it has a user)
// before it opens a KV stream. The stream pool opens a stream under its
// lock, and gRPC asks the credentials for the token as the stream opens:
// authenticating from there would call back into the pool and wait on that
// lock for ever. With the token already held, the credentials only read it.
func (c *Client) freshToken(ctx context.Context) error {
	if c.tokens == nil {
		return nil
	}
	_, err := c.tokens.get(ctx)
	return err
}

// get returns a valid token, authenticating if need be.
func (t *tokens) get(ctx context.Context) (string, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.token != "" && time.Now().Before(t.expiry.Add(-refreshMargin)) {
		return t.token, nil
	}
	if time.Now().Before(t.off) {
		return "", nil
	}
	resp, err := t.c.Authenticate(ctx, t.c.cfg.Username, t.c.cfg.Password)
	if status.Code(err) == codes.FailedPrecondition && strings.Contains(status.Convert(err).Message(), "auth: authentication is not enabled") {
		t.off = time.Now().Add(5 * time.Second)
		return "", nil
	}
	if err != nil {
		return "", err
	}
	t.token, t.expiry = resp.GetToken(), tokenExpiry(resp.GetToken())
	return t.token, nil
}

// tokenExpiry reads a JWT's expiry without verifying it (the members do);
// a token it cannot read is used until a member refuses it.
func tokenExpiry(tok string) time.Time {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return time.Now().Add(time.Hour)
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	var claims struct {
		Exp int64 `json:"exp"`
	}
	if err != nil || json.Unmarshal(payload, &claims) != nil || claims.Exp == 0 {
		return time.Now().Add(time.Hour)
	}
	exp := time.Unix(claims.Exp, 0)
	// A short-lived token is refreshed at half its life rather than within
	// refreshMargin of its end.
	if life := time.Until(exp); life < 2*refreshMargin {
		return time.Now().Add(life/2 + refreshMargin)
	}
	return exp
}

// GetRequestMetadata adds the token to every call but Authenticate's
// (grpc.PerRPCCredentials).
func (t *tokens) GetRequestMetadata(ctx context.Context, _ ...string) (map[string]string, error) {
	if ri, ok := credentials.RequestInfoFromContext(ctx); ok && ri.Method == kvv1.AuthService_Authenticate_FullMethodName {
		return nil, nil
	}
	tok, err := t.get(ctx)
	if err != nil || tok == "" {
		return nil, err
	}
	return map[string]string{"token": tok}, nil
}

func (*tokens) RequireTransportSecurity() bool { return false }

// refused reports whether a member refused a call's token, so that a new
// one may fix it. It looks down the chain of causes: a stream op that had
// not left when its stream was refused fails as unsent (Unavailable),
// caused by the refusal.
func refused(err error) bool {
	for ; err != nil; err = errors.Unwrap(err) {
		s, ok := status.FromError(err)
		if ok && s.Code() == codes.Unauthenticated &&
			(strings.Contains(s.Message(), "auth: token expired") || strings.Contains(s.Message(), "auth: invalid token")) {
			return true
		}
	}
	return false
}

// unary retries a call once with a new token when a member refused the
// one it carried.
func (t *tokens) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if err == nil || !refused(err) || method == kvv1.AuthService_Authenticate_FullMethodName {
		return err
	}
	t.forget()
	return invoker(ctx, method, req, reply, cc, opts...)
}

// forget drops the token, so that the next call authenticates again.
func (t *tokens) forget() {
	t.mu.Lock()
	t.token = ""
	t.mu.Unlock()
}

// renewAfter reports whether a stream that failed with err may be opened
// again with a new token: a member refused the one it carried (expired, or
// its user changed since). It then drops that token. A client without a
// user (t nil) has none to renew.
func (t *tokens) renewAfter(err error) bool {
	if t == nil || !refused(err) {
		return false
	}
	t.forget()
	return true
}

// errNoUser: Password without Username.
var errNoUser = errors.New("client: Config.Password is set without Config.Username")
