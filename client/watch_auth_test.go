package client

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/internal/opstream"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// fakeAuth answers Authenticate with a new token each time.
type fakeAuth struct {
	kvv1.UnimplementedAuthServiceServer
	mu sync.Mutex
	n  int
}

func (a *fakeAuth) Authenticate(context.Context, *kvv1.AuthenticateRequest) (*kvv1.AuthenticateResponse, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.n++
	return &kvv1.AuthenticateResponse{Token: fmt.Sprintf("token-%d", a.n)}, nil
}

// TestWatchRenewsARefusedToken: a watch stream the member refuses because
// of its token (the user changed since it was issued, or it expired on the
// way) is opened again with a new token, and the watch goes on.
func TestWatchRenewsARefusedToken(t *testing.T) {
	hist := newWatchHistory()
	f := newFake("a", 1)
	f.watch = hist
	var mu sync.Mutex
	var tokens []string
	f.hook = func(ctx context.Context, method string, n int) error {
		if method != "Watch" {
			return nil
		}
		md, _ := metadata.FromIncomingContext(ctx)
		mu.Lock()
		tokens = append(tokens, fmt.Sprint(md.Get("token")))
		mu.Unlock()
		if n == 1 {
			return status.Error(codes.Unauthenticated, `auth: invalid token: user "u" changed since it was issued; authenticate again`)
		}
		return nil
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	kvv1.RegisterKVServiceServer(s, f)
	kvv1.RegisterClusterServiceServer(s, f)
	kvv1.RegisterMaintenanceServiceServer(s, f)
	kvv1.RegisterWatchServiceServer(s, f)
	kvv1.RegisterAuthServiceServer(s, &fakeAuth{})
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	c, err := New(Config{Endpoints: []string{lis.Addr().String()}, DialTimeout: time.Second, Username: "u", Password: "p",
		RetryBackoff: 10 * time.Millisecond, MaxRetryBackoff: 40 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, _ := watchContext(t)
	ch := c.Watch(ctx, "k")
	waitFor(t, "a second watch stream", func() bool { return f.count("Watch") >= 2 })
	hist.put("k", "v")
	if got := describe(recv(t, ch, 1)); got != "2:PUT k=v" {
		t.Fatalf("the watch after its token was refused: %s", got)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(tokens) != 2 || tokens[0] != "[token-1]" || tokens[1] != "[token-2]" {
		t.Fatalf("tokens of the watch streams: %v, want token-1 then a new one", tokens)
	}
}

// TestStreamRenewsARefusedToken: a KV stream the member refuses because of
// its token is opened again with a new token, and the write goes through
// once: the refusal came before any op of the stream ran.
func TestStreamRenewsARefusedToken(t *testing.T) {
	f := newFake("a", 1)
	var mu sync.Mutex
	var tokens []string
	f.streamOpen = func(ctx context.Context, n int) error {
		md, _ := metadata.FromIncomingContext(ctx)
		mu.Lock()
		tokens = append(tokens, fmt.Sprint(md.Get("token")))
		mu.Unlock()
		if n == 1 {
			return status.Error(codes.Unauthenticated, `auth: invalid token: user "u" changed since it was issued; authenticate again`)
		}
		return nil
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := grpc.NewServer()
	kvv1.RegisterKVServiceServer(s, f)
	kvv1.RegisterAuthServiceServer(s, &fakeAuth{})
	go func() { _ = s.Serve(lis) }()
	t.Cleanup(s.Stop)
	c, err := New(Config{Endpoints: []string{lis.Addr().String()}, DialTimeout: time.Second, Username: "u", Password: "p",
		RetryBackoff: 10 * time.Millisecond, MaxRetryBackoff: 40 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "k", "v"); err != nil {
		t.Fatalf("put after the member refused the stream's token: %v", err)
	}
	if n := f.count("Put"); n != 1 {
		t.Fatalf("the put ran %d times, want once", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(tokens) != 2 || tokens[0] != "[token-1]" || tokens[1] != "[token-2]" {
		t.Fatalf("tokens of the KV streams: %v, want token-1 then a new one", tokens)
	}
}

// A stream op fails as unsent or broken when its stream is refused, with
// the refusal as its cause; either is a refused token, which a new one may
// fix. CI once saw the unsent case retried with the old token.
func TestRefusedLooksAtTheCause(t *testing.T) {
	refusal := status.Error(codes.Unauthenticated, "auth: invalid token: user changed")
	for _, tt := range []struct {
		name string
		err  error
		want bool
	}{
		{"the refusal", refusal, true},
		{"unsent on a refused stream", &opstream.UnsentError{Target: "a", Cause: refusal}, true},
		{"broken on a refused stream", &opstream.BrokenError{Target: "a", Cause: refusal}, true},
		{"wrapped", fmt.Errorf("put: %w", refusal), true},
		{"unavailable", &opstream.UnsentError{Target: "a", Cause: status.Error(codes.Unavailable, "gone")}, false},
		{"permission denied", status.Error(codes.PermissionDenied, "auth: permission denied"), false},
		{"nil", nil, false},
	} {
		if got := refused(tt.err); got != tt.want {
			t.Errorf("%s: refused(%v) = %v, want %v", tt.name, tt.err, got, tt.want)
		}
	}
}
