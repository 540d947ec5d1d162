package etcdapi_test

import (
	"context"
	"errors"
	"io"
	"maps"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/etcdapi"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/rpc"
	"github.com/kvd-io/kvd/server"
	"github.com/kvd-io/kvd/server/servertest"
)

// authCluster is a one-member cluster with auth enabled: root, alice
// with readwrite on the prefix "app/", bob with readwrite on the key
// "zzz" only. Passwords are the names followed by "pw".
func authCluster(t *testing.T) *servertest.Cluster {
	t.Helper()
	c := servertest.New(t, 1, servertest.WithConfig(func(cfg *server.Config) { cfg.Auth.BcryptCost = bcrypt.MinCost }))
	ctx := ctxT(t)
	admin := kvv1.NewAuthServiceClient(c.Member("m1").Conn())
	steps := []func() error{
		func() error {
			_, err := admin.UserAdd(ctx, &kvv1.UserAddRequest{Name: "root", Password: "rootpw"})
			return err
		},
		func() error {
			_, err := admin.UserGrantRole(ctx, &kvv1.UserGrantRoleRequest{User: "root", Role: "root"})
			return err
		},
	}
	for user, perm := range map[string]*kvv1.Permission{
		"alice": {PermType: kvv1.PermissionType_PERMISSION_TYPE_READWRITE, Key: []byte("app/"), RangeEnd: []byte("app0")},
		"bob":   {PermType: kvv1.PermissionType_PERMISSION_TYPE_READWRITE, Key: []byte("zzz")},
	} {
		steps = append(steps,
			func() error { _, err := admin.RoleAdd(ctx, &kvv1.RoleAddRequest{Name: user + "-role"}); return err },
			func() error {
				_, err := admin.RoleGrantPermission(ctx, &kvv1.RoleGrantPermissionRequest{Name: user + "-role", Perm: perm})
				return err
			},
			func() error {
				_, err := admin.UserAdd(ctx, &kvv1.UserAddRequest{Name: user, Password: user + "pw"})
				return err
			},
			func() error {
				_, err := admin.UserGrantRole(ctx, &kvv1.UserGrantRoleRequest{User: user, Role: user + "-role"})
				return err
			})
	}
	steps = append(steps, func() error { _, err := admin.AuthEnable(ctx, &kvv1.AuthEnableRequest{}); return err })
	for i, step := range steps {
		// Auth commands wait until every member has published its
		// features: retry what is refused as unavailable.
		c.Eventually(30*time.Second, func() error {
			err := step()
			if status.Code(err) == codes.Unavailable {
				return err
			}
			if err != nil {
				t.Fatalf("auth setup step %d: %v", i, err)
			}
			return nil
		})
	}
	return c
}

// TestAuth: clientv3 with a user name and password reads and writes its
// prefix and gets etcd's errors elsewhere; without credentials, with a
// wrong password or a bad token, etcd's errors too.
func TestAuth(t *testing.T) {
	t.Parallel()
	c := authCluster(t)
	ctx := ctxT(t)
	alice := newClientWith(t, c, clientv3.Config{Username: "alice", Password: "alicepw"})
	if _, err := alice.Put(ctx, "app/mode", "fast"); err != nil {
		t.Fatalf("put inside the permission: %v", err)
	}
	if resp, err := alice.Get(ctx, "app/", clientv3.WithPrefix()); err != nil || resp.Count != 1 {
		t.Fatalf("get inside the permission: %+v, %v", resp, err)
	}
	if _, err := alice.Put(ctx, "other", "x"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("put outside the permission: %v, want %v", err, rpctypes.ErrPermissionDenied)
	}
	if _, err := alice.Txn(ctx).Then(clientv3.OpPut("app/a", "1"), clientv3.OpGet("other")).Commit(); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("txn with one op outside the permission: %v, want %v", err, rpctypes.ErrPermissionDenied)
	}
	if _, err := alice.Compact(ctx, 1); !errors.Is(err, rpctypes.ErrPermissionDenied) {
		t.Fatalf("compact as a user: %v, want %v", err, rpctypes.ErrPermissionDenied)
	}
	// A watch outside the permission is refused with etcd's reason.
	wresp, ok := <-alice.Watch(ctx, "other")
	if !ok || wresp.Err() == nil || !strings.Contains(wresp.Err().Error(), "etcdserver: permission denied") {
		t.Fatalf("watch outside the permission: %+v (%v), want refused with etcd's permission denied", wresp, wresp.Err())
	}
	if _, err := alice.Grant(ctx, 60); err != nil {
		t.Fatalf("any user may grant a lease: %v", err)
	}

	anonymous := newClient(t, c)
	if _, err := anonymous.Get(ctx, "app/mode"); !errors.Is(err, rpctypes.ErrUserEmpty) {
		t.Fatalf("get without credentials: %v, want %v", err, rpctypes.ErrUserEmpty)
	}
	cfg := clientv3.Config{Endpoints: c.Endpoints(), Username: "alice", Password: "wrong", DialTimeout: 5 * time.Second}
	if cli, err := clientv3.New(cfg); err == nil {
		_, err = cli.Get(ctx, "app/mode")
		_ = cli.Close()
		if !errors.Is(err, rpctypes.ErrAuthFailed) {
			t.Fatalf("wrong password: %v, want %v", err, rpctypes.ErrAuthFailed)
		}
	} else if !errors.Is(err, rpctypes.ErrAuthFailed) {
		t.Fatalf("wrong password: %v, want %v", err, rpctypes.ErrAuthFailed)
	}
	kv := pb.NewKVClient(c.Member("m1").Conn())
	bad := metadata.AppendToOutgoingContext(ctx, rpc.TokenMetadataKey, "not-a-token")
	if _, err := kv.Range(bad, &pb.RangeRequest{Key: []byte("app/mode")}); rpctypes.Error(err) != rpctypes.ErrInvalidAuthToken {
		t.Fatalf("bad token: %v, want %v", err, rpctypes.ErrInvalidAuthToken)
	}
}

// TestEveryMethodAuthorizedAsKvd calls every etcd method and the kv.v1
// method it delegates to, with the same request, as nobody, as a user
// without the permission, as one with it and as root: each etcd call is
// let in exactly when the kv.v1 call is, and refused with etcd's error
// where kvd's is refused. A method without a rule, or without a case
// here, fails.
func TestEveryMethodAuthorizedAsKvd(t *testing.T) {
	t.Parallel()
	c := authCluster(t)
	ctx := ctxT(t)
	cc := c.Member("m1").Conn()
	ekv, kkv := pb.NewKVClient(cc), kvv1.NewKVServiceClient(cc)
	elease, klease := pb.NewLeaseClient(cc), kvv1.NewLeaseServiceClient(cc)
	eauth, kauth := pb.NewAuthClient(cc), kvv1.NewAuthServiceClient(cc)
	key := []byte("app/k")
	pair := func(e, k func(ctx context.Context) error) [2]func(context.Context) error {
		return [2]func(context.Context) error{e, k}
	}
	cases := map[string][2]func(context.Context) error{
		pb.KV_Range_FullMethodName: pair(
			func(ctx context.Context) error { _, err := ekv.Range(ctx, &pb.RangeRequest{Key: key}); return err },
			func(ctx context.Context) error { _, err := kkv.Range(ctx, &kvv1.RangeRequest{Key: key}); return err }),
		pb.KV_Put_FullMethodName: pair(
			func(ctx context.Context) error { _, err := ekv.Put(ctx, &pb.PutRequest{Key: key}); return err },
			func(ctx context.Context) error { _, err := kkv.Put(ctx, &kvv1.PutRequest{Key: key}); return err }),
		pb.KV_DeleteRange_FullMethodName: pair(
			func(ctx context.Context) error {
				_, err := ekv.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: key})
				return err
			},
			func(ctx context.Context) error {
				_, err := kkv.DeleteRange(ctx, &kvv1.DeleteRangeRequest{Key: key})
				return err
			}),
		pb.KV_Txn_FullMethodName: pair(
			func(ctx context.Context) error {
				_, err := ekv.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: key}}}}})
				return err
			},
			func(ctx context.Context) error {
				_, err := kkv.Txn(ctx, &kvv1.TxnRequest{Success: []*kvv1.RequestOp{{Request: &kvv1.RequestOp_RequestPut{RequestPut: &kvv1.PutRequest{Key: key}}}}})
				return err
			}),
		pb.KV_Compact_FullMethodName: pair(
			func(ctx context.Context) error {
				_, err := ekv.Compact(ctx, &pb.CompactionRequest{Revision: 1})
				return err
			},
			func(ctx context.Context) error {
				_, err := kkv.Compact(ctx, &kvv1.CompactRequest{Revision: 1})
				return err
			}),
		pb.Watch_Watch_FullMethodName: pair(
			func(ctx context.Context) error {
				return firstOnStream(ctx, cc, pb.Watch_ServiceDesc.Streams[0], "/etcdserverpb.Watch/Watch",
					&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: key}}}, new(pb.WatchResponse))
			},
			func(ctx context.Context) error {
				return firstOnStream(ctx, cc, kvv1.WatchService_ServiceDesc.Streams[0], kvv1.WatchService_Watch_FullMethodName,
					&kvv1.WatchRequest{Request: &kvv1.WatchRequest_CreateRequest{CreateRequest: &kvv1.WatchCreateRequest{Key: key}}}, new(kvv1.WatchResponse))
			}),
		pb.Lease_LeaseGrant_FullMethodName: pair(
			func(ctx context.Context) error {
				_, err := elease.LeaseGrant(ctx, &pb.LeaseGrantRequest{TTL: 60})
				return err
			},
			func(ctx context.Context) error {
				_, err := klease.LeaseGrant(ctx, &kvv1.LeaseGrantRequest{Ttl: 60})
				return err
			}),
		pb.Lease_LeaseRevoke_FullMethodName: pair(
			func(ctx context.Context) error {
				_, err := elease.LeaseRevoke(ctx, &pb.LeaseRevokeRequest{ID: 1})
				return err
			},
			func(ctx context.Context) error {
				_, err := klease.LeaseRevoke(ctx, &kvv1.LeaseRevokeRequest{Id: 1})
				return err
			}),
		pb.Lease_LeaseTimeToLive_FullMethodName: pair(
			func(ctx context.Context) error {
				_, err := elease.LeaseTimeToLive(ctx, &pb.LeaseTimeToLiveRequest{ID: 1})
				return err
			},
			func(ctx context.Context) error {
				_, err := klease.LeaseTimeToLive(ctx, &kvv1.LeaseTimeToLiveRequest{Id: 1})
				return err
			}),
		pb.Lease_LeaseLeases_FullMethodName: pair(
			func(ctx context.Context) error {
				_, err := elease.LeaseLeases(ctx, &pb.LeaseLeasesRequest{})
				return err
			},
			func(ctx context.Context) error {
				_, err := klease.LeaseLeases(ctx, &kvv1.LeaseLeasesRequest{})
				return err
			}),
		pb.Lease_LeaseKeepAlive_FullMethodName: pair(
			func(ctx context.Context) error {
				return firstOnStream(ctx, cc, pb.Lease_ServiceDesc.Streams[0], pb.Lease_LeaseKeepAlive_FullMethodName,
					&pb.LeaseKeepAliveRequest{ID: 1}, new(pb.LeaseKeepAliveResponse))
			},
			func(ctx context.Context) error {
				return firstOnStream(ctx, cc, kvv1.LeaseService_ServiceDesc.Streams[0], kvv1.LeaseService_LeaseKeepAlive_FullMethodName,
					&kvv1.LeaseKeepAliveRequest{Id: 1}, new(kvv1.LeaseKeepAliveResponse))
			}),
		pb.KV_RangeStream_FullMethodName: pair(
			func(ctx context.Context) error {
				st, err := ekv.RangeStream(ctx, &pb.RangeRequest{Key: key})
				if err == nil {
					_, err = st.Recv()
				}
				return err
			}, nil),
		pb.Auth_Authenticate_FullMethodName: pair(
			func(ctx context.Context) error {
				_, err := eauth.Authenticate(ctx, &pb.AuthenticateRequest{Name: "alice", Password: "alicepw"})
				return err
			},
			func(ctx context.Context) error {
				_, err := kauth.Authenticate(ctx, &kvv1.AuthenticateRequest{Name: "alice", Password: "alicepw"})
				return err
			}),
	}

	maps.Copy(cases, adminAuthCases(c, cc)) // admin_auth_test.go
	maps.Copy(cases, authMgmtCases(cc))     // auth_mgmt_test.go
	tokens := map[string]string{}
	for _, user := range []string{"bob", "alice", "root"} {
		resp, err := eauth.Authenticate(ctx, &pb.AuthenticateRequest{Name: user, Password: user + "pw"})
		if err != nil {
			t.Fatalf("authenticate %s: %v", user, err)
		}
		tokens[user] = resp.GetToken()
	}
	callers := []string{"", "bob", "alice", "root"}

	n := 0
	for _, desc := range etcdapi.ServiceDescs() {
		var names []string
		for _, m := range desc.Methods {
			names = append(names, m.MethodName)
		}
		for _, s := range desc.Streams {
			names = append(names, s.StreamName)
		}
		for _, name := range names {
			method := "/" + desc.ServiceName + "/" + name
			n++
			if r, ok := rpc.MethodRule(method); !ok || r != "delegated" {
				t.Errorf("%s: rule %q (%v), want delegated", method, r, ok)
				continue
			}
			calls, ok := cases[method]
			if !ok {
				// Registered but not served yet: it must answer
				// Unimplemented to everybody, root included.
				if err := unimplemented(ctx, cc, method, tokens["root"]); err != nil {
					t.Errorf("%s has no case here: %v", method, err)
				}
				continue
			}
			for _, user := range callers {
				cctx := ctx
				if user != "" {
					cctx = metadata.AppendToOutgoingContext(ctx, rpc.TokenMetadataKey, tokens[user])
				}
				eerr := calls[0](cctx)
				if calls[1] == nil { // RangeStream: unimplemented for all
					if status.Code(eerr) != codes.Unimplemented {
						t.Errorf("%s as %q: %v, want Unimplemented", method, user, eerr)
					}
					continue
				}
				kerr := calls[1](cctx)
				kvdRefused := status.Code(kerr) == codes.Unauthenticated || status.Code(kerr) == codes.PermissionDenied
				var want error
				switch {
				case !kvdRefused:
				case user == "":
					want = rpctypes.ErrUserEmpty
				default:
					want = rpctypes.ErrPermissionDenied
				}
				got := rpctypes.Error(eerr)
				if want == nil && (got == rpctypes.ErrUserEmpty || got == rpctypes.ErrPermissionDenied || got == rpctypes.ErrInvalidAuthToken) {
					t.Errorf("%s as %q: etcd refused (%v) what kvd let in (%v)", method, user, eerr, kerr)
				}
				if want != nil && got != want {
					t.Errorf("%s as %q: etcd answered %v where kvd refused (%v); want %v", method, user, eerr, kerr, want)
				}
			}
		}
	}
	if n < 13 {
		t.Fatalf("checked %d methods: the services are not all listed", n)
	}
}

// firstOnStream opens a bidi stream of method, sends req and receives
// the first response into resp: the stream's error, or nil once it
// answers.
func firstOnStream(ctx context.Context, cc *grpc.ClientConn, desc grpc.StreamDesc, method string, req, resp any) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	st, err := cc.NewStream(ctx, &desc, method)
	if err != nil {
		return err
	}
	if err := st.SendMsg(req); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return st.RecvMsg(resp)
}

// unimplemented checks that method answers Unimplemented to root.
func unimplemented(ctx context.Context, cc *grpc.ClientConn, method, rootToken string) error {
	ctx = metadata.AppendToOutgoingContext(ctx, rpc.TokenMetadataKey, rootToken)
	err := cc.Invoke(ctx, method, &pb.AuthStatusRequest{}, &pb.AuthStatusResponse{})
	if status.Code(err) != codes.Unimplemented {
		return errors.New("answers " + status.Convert(err).String() + ", want Unimplemented until it is served")
	}
	return nil
}
