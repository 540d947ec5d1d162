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

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/server"
	"github.com/kvd-io/kvd/server/servertest"
)

// TestAuthStreamsFollowPermissions: open streams follow the auth state.
// A watch and an election Observe end (canceled "permission denied", and
// PermissionDenied) when the user's role is revoked, before any event
// written after the revocation; a deleted user's watch ends; a watch stays
// open after its token expires (as etcd), and its new watches are checked
// against the current state. A put on a lease holding a key the user may
// not write is refused.
func TestAuthStreamsFollowPermissions(t *testing.T) {
	const ttl = 3 * time.Second
	c := servertest.New(t, 1, servertest.WithConfig(func(cfg *server.Config) {
		cfg.Auth.BcryptCost = bcrypt.MinCost
		cfg.Auth.TokenTTL = ttl
	}))
	name := c.WaitReady(30 * time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	conn := c.Member(name).Conn()
	admin := kvv1.NewAuthServiceClient(conn)
	c.Eventually(30*time.Second, func() error { // until the member published its features
		_, err := admin.UserAdd(ctx, &kvv1.UserAddRequest{Name: "root", Password: "rootpw"})
		return err
	})
	must[*kvv1.UserGrantRoleResponse](t, "grant root")(admin.UserGrantRole(ctx, &kvv1.UserGrantRoleRequest{User: "root", Role: "root"}))
	must[*kvv1.RoleAddResponse](t, "add role")(admin.RoleAdd(ctx, &kvv1.RoleAddRequest{Name: "app"}))
	must[*kvv1.RoleGrantPermissionResponse](t, "grant permission")(admin.RoleGrantPermission(ctx, &kvv1.RoleGrantPermissionRequest{
		Name: "app", Perm: &kvv1.Permission{PermType: kvv1.PermissionType_PERMISSION_TYPE_READWRITE, Key: []byte("app/"), RangeEnd: []byte("app0")}}))
	for _, u := range []string{"alice", "bob"} {
		must[*kvv1.UserAddResponse](t, "add "+u)(admin.UserAdd(ctx, &kvv1.UserAddRequest{Name: u, Password: u + "pw"}))
		must[*kvv1.UserGrantRoleResponse](t, "grant "+u)(admin.UserGrantRole(ctx, &kvv1.UserGrantRoleRequest{User: u, Role: "app"}))
	}
	must[*kvv1.AuthEnableResponse](t, "enable")(admin.AuthEnable(ctx, &kvv1.AuthEnableRequest{}))
	token := func(user, pw string) context.Context {
		t.Helper()
		resp, err := admin.Authenticate(ctx, &kvv1.AuthenticateRequest{Name: user, Password: pw})
		if err != nil {
			t.Fatalf("authenticate %s: %v", user, err)
		}
		return metadata.AppendToOutgoingContext(ctx, "token", resp.GetToken())
	}
	root, alice, bob := token("root", "rootpw"), token("alice", "alicepw"), token("bob", "bobpw")
	kv := c.KV(name)
	put := func(key string) {
		t.Helper()
		must[*kvv1.PutResponse](t, "root puts "+key)(kv.Put(root, &kvv1.PutRequest{Key: []byte(key), Value: []byte("v")}))
	}

	// A lease holding root's key: alice may not put on it.
	lease := must[*kvv1.LeaseGrantResponse](t, "grant lease")(kvv1.NewLeaseServiceClient(conn).LeaseGrant(root, &kvv1.LeaseGrantRequest{Ttl: 600})).GetId()
	must[*kvv1.PutResponse](t, "root puts on the lease")(kv.Put(root, &kvv1.PutRequest{Key: []byte("secret"), Value: []byte("v"), Lease: lease}))
	_, err := kv.Put(alice, &kvv1.PutRequest{Key: []byte("app/x"), Value: []byte("v"), Lease: lease})
	wantCode(t, "alice puts on root's lease", err, codes.PermissionDenied, `may not write key "secret"`)

	watch := func(ctx context.Context, key, end string) kvv1.WatchService_WatchClient {
		t.Helper()
		ws, err := kvv1.NewWatchServiceClient(conn).Watch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if err := ws.Send(&kvv1.WatchRequest{Request: &kvv1.WatchRequest_CreateRequest{CreateRequest: &kvv1.WatchCreateRequest{Key: []byte(key), RangeEnd: []byte(end)}}}); err != nil {
			t.Fatal(err)
		}
		if r, err := ws.Recv(); err != nil || !r.GetCreated() || r.GetCanceled() {
			t.Fatalf("watch %s: %v, %v", key, r, err)
		}
		return ws
	}
	// next returns the stream's next response that is not a progress
	// notification.
	next := func(ws kvv1.WatchService_WatchClient) *kvv1.WatchResponse {
		t.Helper()
		for {
			r, err := ws.Recv()
			if err != nil {
				t.Fatalf("watch: %v", err)
			}
			if len(r.GetEvents()) > 0 || r.GetCanceled() || r.GetCreated() {
				return r
			}
		}
	}
	aw := watch(alice, "app/", "app0")
	bw := watch(bob, "app/", "app0")
	put("app/1")
	for who, ws := range map[string]kvv1.WatchService_WatchClient{"alice": aw, "bob": bw} {
		if r := next(ws); len(r.GetEvents()) != 1 || string(r.GetEvents()[0].GetKv().GetKey()) != "app/1" {
			t.Fatalf("%s's watch: %v, want the put of app/1", who, r)
		}
	}
	must[*kvv1.CampaignResponse](t, "root campaigns")(kvv1.NewElectionServiceClient(conn).Campaign(root, &kvv1.CampaignRequest{Name: []byte("app/sched"), Lease: lease, Value: []byte("root")}))
	obs, err := kvv1.NewElectionServiceClient(conn).Observe(alice, &kvv1.ObserveRequest{Name: []byte("app/sched")})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := obs.Recv(); err != nil || string(r.GetKv().GetValue()) != "root" {
		t.Fatalf("alice observes: %v, %v", r, err)
	}
	for who, ws := range map[string]kvv1.WatchService_WatchClient{"alice": aw, "bob": bw} {
		if r := next(ws); len(r.GetEvents()) != 1 || !strings.HasPrefix(string(r.GetEvents()[0].GetKv().GetKey()), "app/sched/") {
			t.Fatalf("%s's watch: %v, want root's campaign", who, r)
		}
	}

	// The token expires: the open stream goes on (a new call would need a
	// new token).
	c.Eventually(3*ttl, func() error {
		_, err := kv.Range(alice, &kvv1.RangeRequest{Key: []byte("app/1")})
		if status.Code(err) != codes.Unauthenticated {
			return fmt.Errorf("alice's token after its TTL: %v", err)
		}
		return nil
	})
	root = token("root", "rootpw")
	put("app/2")
	if r := next(aw); len(r.GetEvents()) != 1 || string(r.GetEvents()[0].GetKv().GetKey()) != "app/2" {
		t.Fatalf("alice's watch after her token expired: %v, want the put of app/2", r)
	}
	if r := next(bw); len(r.GetEvents()) != 1 {
		t.Fatalf("bob's watch: %v", r)
	}

	// Alice loses her role: her watch ends before the next put, her
	// Observe fails, and a new watch on her old stream is refused.
	must[*kvv1.UserRevokeRoleResponse](t, "revoke alice's role")(admin.UserRevokeRole(root, &kvv1.UserRevokeRoleRequest{Name: "alice", Role: "app"}))
	put("app/3")
	if r := next(aw); !r.GetCanceled() || len(r.GetEvents()) != 0 || !strings.Contains(r.GetCancelReason(), `auth: permission denied: user "alice" may not read`) {
		t.Fatalf("alice's watch after her role was revoked: %v, want canceled for permission, before app/3", r)
	}
	if r, err := obs.Recv(); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("alice's Observe after her role was revoked: %v, %v; want PermissionDenied", r, err)
	}
	if err := aw.Send(&kvv1.WatchRequest{Request: &kvv1.WatchRequest_CreateRequest{CreateRequest: &kvv1.WatchCreateRequest{Key: []byte("app/1")}}}); err != nil {
		t.Fatal(err)
	}
	if r := next(aw); !r.GetCreated() || !r.GetCanceled() || !strings.Contains(r.GetCancelReason(), "auth: permission denied") {
		t.Fatalf("alice's new watch on her old stream: %v, want refused", r)
	}
	if r := next(bw); len(r.GetEvents()) != 1 || string(r.GetEvents()[0].GetKv().GetKey()) != "app/3" {
		t.Fatalf("bob's watch goes on: %v, want the put of app/3", r)
	}

	// Bob is deleted: his watch ends.
	must[*kvv1.UserDeleteResponse](t, "delete bob")(admin.UserDelete(root, &kvv1.UserDeleteRequest{Name: "bob"}))
	put("app/4")
	if r := next(bw); !r.GetCanceled() || len(r.GetEvents()) != 0 || !strings.Contains(r.GetCancelReason(), `user "bob" does not exist`) {
		t.Fatalf("bob's watch after his deletion: %v, want canceled", r)
	}
}
