package main

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// fakeAuth is an AuthService that keeps users and roles in memory, hands
// out the token "tok-<user>" for the password "pw-<user>", and requires
// root's token for everything else once enabled.
type fakeAuth struct {
	kvv1.UnimplementedAuthServiceServer
	mu      sync.Mutex
	enabled bool
	users   map[string][]string // roles
	pw      map[string]string
	roles   map[string][]*kvv1.Permission
}

func (f *fakeAuth) check(ctx context.Context) error {
	if !f.enabled {
		return nil
	}
	md, _ := metadata.FromIncomingContext(ctx)
	if toks := md.Get("token"); len(toks) == 1 && toks[0] == "tok-root" {
		return nil
	}
	return status.Error(codes.Unauthenticated, "auth: invalid token")
}

func (f *fakeAuth) AuthEnable(ctx context.Context, _ *kvv1.AuthEnableRequest) (*kvv1.AuthEnableResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !slices.Contains(f.users["root"], "root") {
		return nil, status.Error(codes.FailedPrecondition, "auth: root user does not have root role")
	}
	f.enabled = true
	return &kvv1.AuthEnableResponse{}, nil
}

func (f *fakeAuth) Authenticate(_ context.Context, r *kvv1.AuthenticateRequest) (*kvv1.AuthenticateResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pw[r.GetName()] != r.GetPassword() || r.GetPassword() == "" {
		return nil, status.Error(codes.Unauthenticated, "auth: authentication failed, invalid user ID or password")
	}
	return &kvv1.AuthenticateResponse{Token: "tok-" + r.GetName()}, nil
}

func (f *fakeAuth) UserAdd(ctx context.Context, r *kvv1.UserAddRequest) (*kvv1.UserAddResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(ctx); err != nil {
		return nil, err
	}
	f.users[r.GetName()], f.pw[r.GetName()] = nil, r.GetPassword()
	return &kvv1.UserAddResponse{}, nil
}

func (f *fakeAuth) UserGrantRole(ctx context.Context, r *kvv1.UserGrantRoleRequest) (*kvv1.UserGrantRoleResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(ctx); err != nil {
		return nil, err
	}
	f.users[r.GetUser()] = append(f.users[r.GetUser()], r.GetRole())
	return &kvv1.UserGrantRoleResponse{}, nil
}

func (f *fakeAuth) UserList(ctx context.Context, _ *kvv1.UserListRequest) (*kvv1.UserListResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(ctx); err != nil {
		return nil, err
	}
	var names []string
	for n := range f.users {
		names = append(names, n)
	}
	slices.Sort(names)
	return &kvv1.UserListResponse{Users: names}, nil
}

func (f *fakeAuth) RoleGrantPermission(ctx context.Context, r *kvv1.RoleGrantPermissionRequest) (*kvv1.RoleGrantPermissionResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(ctx); err != nil {
		return nil, err
	}
	f.roles[r.GetName()] = append(f.roles[r.GetName()], r.GetPerm())
	return &kvv1.RoleGrantPermissionResponse{}, nil
}

func (f *fakeAuth) RoleGet(ctx context.Context, r *kvv1.RoleGetRequest) (*kvv1.RoleGetResponse, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.check(ctx); err != nil {
		return nil, err
	}
	return &kvv1.RoleGetResponse{Perms: f.roles[r.GetRole()]}, nil
}

func serveFakeAuth(t *testing.T) (*fakeAuth, string) {
	t.Helper()
	f := &fakeAuth{users: map[string][]string{}, pw: map[string]string{}, roles: map[string][]*kvv1.Permission{}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	kvv1.RegisterAuthServiceServer(s, f)
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	return f, lis.Addr().String()
}

func TestAuthCommands(t *testing.T) {
	f, ep := serveFakeAuth(t)
	// A password on stdin with --interactive=false, as etcdctl.
	if out := mustRun(t, ep, "pw-root\n", "user", "add", "root", "--interactive=false"); out != "User root created\n" {
		t.Fatalf("user add: %q", out)
	}
	if f.pw["root"] != "pw-root" {
		t.Fatalf("root's password: %q", f.pw["root"])
	}
	// auth enable grants root the role root when it lacks it, as etcdctl.
	if out := mustRun(t, ep, "", "auth", "enable"); out != "Authentication Enabled\n" {
		t.Fatalf("auth enable: %q", out)
	}
	if !f.enabled || !slices.Contains(f.users["root"], "root") {
		t.Fatalf("after enable: enabled %v, root's roles %v", f.enabled, f.users["root"])
	}
	if _, _, err := runKvctl(t, nil, "", "--endpoints", ep, "user", "list"); err == nil || !strings.Contains(err.Error(), "auth: invalid token") {
		t.Fatalf("user list without a user: %v", err)
	}
	if _, _, err := runKvctl(t, nil, "", "--endpoints", ep, "--user", "root:wrong", "user", "list"); err == nil || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("user list with a wrong password: %v", err)
	}
	if out := mustRun(t, ep, "", "--user", "root:pw-root", "user", "add", "alice:pw-alice"); out != "User alice created\n" {
		t.Fatalf("user add alice: %q", out)
	}
	if out := mustRun(t, ep, "", "--user", "root", "--password", "pw-root", "user", "list"); out != "alice\nroot\n" {
		t.Fatalf("user list: %q", out)
	}
	mustRun(t, ep, "", "--user", "root:pw-root", "role", "grant-permission", "r", "read", "app/", "--prefix")
	mustRun(t, ep, "", "--user", "root:pw-root", "role", "grant-permission", "r", "readwrite", "x", "--from-key")
	out := mustRun(t, ep, "", "--user", "root:pw-root", "role", "get", "r")
	if want := "Role r\nKV Read:\n\t[app/, app0) (prefix app/)\n\t[x, <open ended>\nKV Write:\n\t[x, <open ended>\n"; out != want {
		t.Fatalf("role get:\n%q\nwant\n%q", out, want)
	}
	// -w json and table, as for every other command.
	zero := `{"header":{"cluster_id":0,"member_id":0,"revision":0,"raft_term":0}`
	if out := mustRun(t, ep, "", "--user", "root:pw-root", "-w", "json", "user", "list"); out != zero+`,"users":["alice","root"]}`+"\n" {
		t.Fatalf("user list -w json: %q", out)
	}
	if out := mustRun(t, ep, "", "--user", "root:pw-root", "-w", "json", "user", "grant-role", "alice", "r"); out != zero+"}\n" {
		t.Fatalf("user grant-role -w json: %q", out)
	}
	out = mustRun(t, ep, "", "--user", "root:pw-root", "-w", "table", "role", "get", "r")
	if want := "+------+------------+------+--------------------+\n" +
		"| ROLE | PERMISSION | KEY  | RANGE END          |\n" +
		"+------+------------+------+--------------------+\n" +
		"| r    | READ       | app/ | app0 (prefix app/) |\n" +
		"| r    | READWRITE  | x    | <open ended>       |\n" +
		"+------+------------+------+--------------------+\n"; out != want {
		t.Fatalf("role get -w table:\n%s\nwant\n%s", out, want)
	}
	for _, bad := range [][]string{
		{"role", "grant-permission", "r", "admin", "k"},
		{"role", "grant-permission", "r", "read", "k", "--prefix", "--from-key"},
		{"role", "grant-permission", "r", "read", "k", "z", "--prefix"},
		{"--password", "x", "user", "list"},
	} {
		if _, _, err := runKvctl(t, nil, "", append([]string{"--endpoints", ep}, bad...)...); err == nil {
			t.Errorf("kvctl %q succeeded", bad)
		}
	}
}
