package server_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/client"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	peerv1 "github.com/kvd-io/kvd/proto/peer/v1"
	"github.com/kvd-io/kvd/server"
	"github.com/kvd-io/kvd/server/servertest"
)

func wantCode(t *testing.T, what string, err error, code codes.Code, msg string) {
	t.Helper()
	if status.Code(err) != code || !strings.Contains(status.Convert(err).Message(), msg) {
		t.Fatalf("%s: %v, want %v %q", what, err, code, msg)
	}
}

func must[T any](t *testing.T, what string) func(T, error) T {
	return func(v T, err error) T {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		return v
	}
}

// TestAuthCluster runs users and roles on a 3-member cluster: enabling
// needs root; a user with read on a prefix reads it on every member and
// nothing else; a txn with one op outside the permission is refused
// whole; a watch outside it is refused; maintenance is root's; a deleted
// user's token stops working on every member; the member API refuses
// clients; tokens expire.
func TestAuthCluster(t *testing.T) {
	const ttl = 4 * time.Second
	c := servertest.New(t, 3, servertest.WithConfig(func(cfg *server.Config) {
		cfg.Auth.BcryptCost = bcrypt.MinCost
		cfg.Auth.TokenTTL = ttl
	}))
	leader := c.WaitReady(30 * time.Second)
	var follower string
	for _, n := range c.Names() {
		if n != leader {
			follower = n
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	admin := kvv1.NewAuthServiceClient(c.Member(follower).Conn())

	// Until every member has published its features, auth commands wait.
	c.Eventually(30*time.Second, func() error {
		_, err := admin.AuthEnable(ctx, &kvv1.AuthEnableRequest{})
		if status.Code(err) == codes.Unavailable {
			return err
		}
		wantCode(t, "enable without root", err, codes.FailedPrecondition, "auth: root user does not exist")
		return nil
	})
	must[*kvv1.UserAddResponse](t, "add root")(admin.UserAdd(ctx, &kvv1.UserAddRequest{Name: "root", Password: "rootpw"}))
	must[*kvv1.UserGrantRoleResponse](t, "grant root")(admin.UserGrantRole(ctx, &kvv1.UserGrantRoleRequest{User: "root", Role: "root"}))
	must[*kvv1.RoleAddResponse](t, "add role")(admin.RoleAdd(ctx, &kvv1.RoleAddRequest{Name: "app-reader"}))
	must[*kvv1.RoleGrantPermissionResponse](t, "grant permission")(admin.RoleGrantPermission(ctx, &kvv1.RoleGrantPermissionRequest{
		Name: "app-reader", Perm: &kvv1.Permission{PermType: kvv1.PermissionType_PERMISSION_TYPE_READ, Key: []byte("app/"), RangeEnd: []byte("app0")}}))
	must[*kvv1.UserAddResponse](t, "add alice")(admin.UserAdd(ctx, &kvv1.UserAddRequest{Name: "alice", Password: "alicepw"}))
	must[*kvv1.UserGrantRoleResponse](t, "grant alice")(admin.UserGrantRole(ctx, &kvv1.UserGrantRoleRequest{User: "alice", Role: "app-reader"}))
	_, err := admin.UserAdd(ctx, &kvv1.UserAddRequest{Name: "bad name", Password: "x"})
	wantCode(t, "bad user name", err, codes.InvalidArgument, "auth: invalid name")
	must[*kvv1.AuthEnableResponse](t, "enable")(admin.AuthEnable(ctx, &kvv1.AuthEnableRequest{}))

	// Every member sees auth on, and refuses a caller without credentials.
	c.Eventually(30*time.Second, func() error {
		for _, n := range c.Names() {
			st, err := kvv1.NewAuthServiceClient(c.Member(n).Conn()).AuthStatus(ctx, &kvv1.AuthStatusRequest{})
			if err != nil || !st.GetEnabled() {
				return fmt.Errorf("%s: status %v, %v", n, st, err)
			}
		}
		return nil
	})
	_, err = c.KV(follower).Put(ctx, &kvv1.PutRequest{Key: []byte("app/x"), Value: []byte("v")})
	wantCode(t, "put without credentials", err, codes.Unauthenticated, "auth: no credentials")
	_, err = admin.UserList(ctx, &kvv1.UserListRequest{})
	wantCode(t, "user list without credentials", err, codes.Unauthenticated, "auth:")
	_, err = admin.Authenticate(ctx, &kvv1.AuthenticateRequest{Name: "alice", Password: "wrong"})
	wantCode(t, "wrong password", err, codes.Unauthenticated, "auth: authentication failed")

	// token authenticates on one member; the token is good on every one.
	token := func(member, user, pw string) context.Context {
		t.Helper()
		resp, err := kvv1.NewAuthServiceClient(c.Member(member).Conn()).Authenticate(ctx, &kvv1.AuthenticateRequest{Name: user, Password: pw})
		if err != nil {
			t.Fatalf("authenticate %s on %s: %v", user, member, err)
		}
		return metadata.AppendToOutgoingContext(ctx, "token", resp.GetToken())
	}
	root := token(follower, "root", "rootpw")
	for _, k := range []string{"app/x", "other"} {
		must[*kvv1.PutResponse](t, "root puts "+k)(c.KV(follower).Put(root, &kvv1.PutRequest{Key: []byte(k), Value: []byte("v")}))
	}
	alice := token(leader, "alice", "alicepw")
	for _, n := range c.Names() {
		kv := c.KV(n)
		resp, err := kv.Range(alice, &kvv1.RangeRequest{Key: []byte("app/"), RangeEnd: []byte("app0")})
		if err != nil || len(resp.GetKvs()) != 1 {
			t.Fatalf("alice reads app/ on %s: %v, %v", n, resp, err)
		}
		_, err = kv.Put(alice, &kvv1.PutRequest{Key: []byte("app/x"), Value: []byte("w")})
		wantCode(t, "alice writes app/x on "+n, err, codes.PermissionDenied, "auth: permission denied")
		_, err = kv.Range(alice, &kvv1.RangeRequest{Key: []byte("other")})
		wantCode(t, "alice reads other on "+n, err, codes.PermissionDenied, "auth: permission denied")
		_, err = kv.Range(alice, &kvv1.RangeRequest{Key: []byte("app"), RangeEnd: []byte("app0")})
		wantCode(t, "alice reads past her prefix on "+n, err, codes.PermissionDenied, "auth: permission denied")
		_, err = kv.Txn(alice, &kvv1.TxnRequest{
			Success: []*kvv1.RequestOp{
				{Request: &kvv1.RequestOp_RequestRange{RequestRange: &kvv1.RangeRequest{Key: []byte("app/x")}}},
				{Request: &kvv1.RequestOp_RequestPut{RequestPut: &kvv1.PutRequest{Key: []byte("app/y"), Value: []byte("v")}}},
			}})
		wantCode(t, "alice's txn with a put on "+n, err, codes.PermissionDenied, "auth: permission denied")
		_, err = c.Maintenance(n).Defragment(alice, &kvv1.DefragmentRequest{})
		wantCode(t, "alice defragments "+n, err, codes.PermissionDenied, "needs the root role")
		_, err = peerv1.NewPeerServiceClient(c.Member(n).Conn()).ReadIndex(root, &peerv1.ReadIndexRequest{})
		wantCode(t, "root calls the member API of "+n, err, codes.PermissionDenied, "only members")
	}
	if resp, err := c.KV(leader).Range(root, &kvv1.RangeRequest{Key: []byte("app/y")}); err != nil || len(resp.GetKvs()) != 0 {
		t.Fatalf("the refused txn wrote app/y: %v, %v", resp, err)
	}
	must[*kvv1.DefragmentResponse](t, "root defragments")(c.Maintenance(follower).Defragment(root, &kvv1.DefragmentRequest{}))

	// A watch outside the permission is refused; inside it works.
	ws, err := kvv1.NewWatchServiceClient(c.Member(follower).Conn()).Watch(alice)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []struct {
		key, end string
		refuse   bool
	}{{"other", "", true}, {"app/", "app0", false}} {
		if err := ws.Send(&kvv1.WatchRequest{Request: &kvv1.WatchRequest_CreateRequest{CreateRequest: &kvv1.WatchCreateRequest{Key: []byte(w.key), RangeEnd: []byte(w.end)}}}); err != nil {
			t.Fatal(err)
		}
		resp, err := ws.Recv()
		if err != nil || resp.GetCanceled() != w.refuse || (w.refuse && !strings.Contains(resp.GetCancelReason(), "auth: permission denied")) {
			t.Fatalf("alice watches from %s: %v, %v; want refused %v", w.key, resp, err, w.refuse)
		}
	}

	// Deleting alice: her token stops working on every member.
	must[*kvv1.UserDeleteResponse](t, "delete alice")(admin.UserDelete(root, &kvv1.UserDeleteRequest{Name: "alice"}))
	c.Eventually(30*time.Second, func() error {
		for _, n := range c.Names() {
			_, err := c.KV(n).Range(alice, &kvv1.RangeRequest{Key: []byte("app/x"), Serializable: true})
			if status.Code(err) != codes.Unauthenticated {
				return fmt.Errorf("%s: deleted alice's token: %v", n, err)
			}
		}
		return nil
	})

	// Tokens expire.
	c.Eventually(3*ttl, func() error {
		_, err := c.KV(leader).Range(root, &kvv1.RangeRequest{Key: []byte("other")})
		if status.Code(err) == codes.Unauthenticated && strings.Contains(status.Convert(err).Message(), "auth: token expired") {
			return nil
		}
		return fmt.Errorf("root's token after its TTL: %v", err)
	})

	// Writes forwarded by a follower still work with auth on (the member
	// token), and auth disable opens the cluster again.
	root = token(follower, "root", "rootpw")
	must[*kvv1.PutResponse](t, "root puts through a follower")(c.KV(follower).Put(root, &kvv1.PutRequest{Key: []byte("k"), Value: []byte("v")}))
	must[*kvv1.AuthDisableResponse](t, "disable")(admin.AuthDisable(root, &kvv1.AuthDisableRequest{}))
	c.Eventually(30*time.Second, func() error {
		_, err := c.KV(follower).Put(ctx, &kvv1.PutRequest{Key: []byte("k"), Value: []byte("v")})
		return err
	})
	c.WaitConverged(30 * time.Second)
}

// TestAuthSDK: a client with Username and Password authenticates on its
// own, and again once its token expired.
func TestAuthSDK(t *testing.T) {
	const ttl = 3 * time.Second
	c := servertest.New(t, 1, servertest.WithConfig(func(cfg *server.Config) {
		cfg.Auth.BcryptCost = bcrypt.MinCost
		cfg.Auth.TokenTTL = ttl
	}))
	name := c.WaitReady(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr := c.Member(name).Server.ClientAddr()
	open := func(user, pw string) *client.Client {
		cl, err := client.New(client.Config{Endpoints: []string{addr}, Username: user, Password: pw})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cl.Close() })
		return cl
	}
	anon := open("", "")
	c.Eventually(30*time.Second, func() error {
		_, err := anon.UserAdd(ctx, "root", "pw")
		return err
	})
	must[*kvv1.UserGrantRoleResponse](t, "grant")(anon.UserGrantRole(ctx, "root", "root"))
	must[*kvv1.AuthEnableResponse](t, "enable")(anon.AuthEnable(ctx))
	if _, err := anon.Put(ctx, "k", "v"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("anonymous put with auth on: %v", err)
	}
	if _, err := open("root", "bad").Put(ctx, "k", "v"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("put with a wrong password: %v", err)
	}
	root := open("root", "pw")
	if _, err := root.Put(ctx, "k", "v1"); err != nil {
		t.Fatalf("root puts: %v", err)
	}
	time.Sleep(ttl + time.Second) // let the token expire: the point of the test
	if _, err := root.Put(ctx, "k", "v2"); err != nil {
		t.Fatalf("root puts after its token expired: %v", err)
	}
	if users := must[*kvv1.UserListResponse](t, "user list")(root.UserList(ctx)).GetUsers(); len(users) != 1 || users[0] != "root" {
		t.Fatalf("users: %v", users)
	}
}
