package rpc

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/kvd-io/kvd/internal/auth"
	"github.com/kvd-io/kvd/internal/workers"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// TestLocalCoversEveryMethod: every kv.v1 method but KVService.Stream has
// a method of the same name on Local, so that another API can delegate any
// of them.
func TestLocalCoversEveryMethod(t *testing.T) {
	descs := []grpc.ServiceDesc{
		kvv1.KVService_ServiceDesc, kvv1.WatchService_ServiceDesc, kvv1.LeaseService_ServiceDesc,
		kvv1.ClusterService_ServiceDesc, kvv1.MaintenanceService_ServiceDesc, kvv1.AuthService_ServiceDesc,
		kvv1.LockService_ServiceDesc, kvv1.ElectionService_ServiceDesc,
	}
	lt := reflect.TypeFor[Local]()
	n := 0
	for _, d := range descs {
		var names []string
		for _, m := range d.Methods {
			names = append(names, m.MethodName)
		}
		for _, s := range d.Streams {
			names = append(names, s.StreamName)
		}
		for _, name := range names {
			if d.ServiceName == kvv1.KVService_ServiceDesc.ServiceName && name == "Stream" {
				continue
			}
			n++
			if _, ok := lt.MethodByName(name); !ok {
				t.Errorf("Local has no method %s (of %s)", name, d.ServiceName)
			}
		}
	}
	if n < 40 {
		t.Fatalf("checked %d methods; the services are not all listed", n)
	}
}

// TestLocalAuthorizes: a Local call is authorized by its kv.v1 method's
// rule for the caller its context's metadata names, and passes the
// caller on to the handler.
func TestLocalAuthorizes(t *testing.T) {
	node := &fakeNode{name: "m1", leader: true, kv: map[string]int{"a": 1, "zzz": 1}, drain: make(chan struct{}), auth: testAuthState()}
	api, err := New(Config{MaxRequestBytes: 1 << 10, Version: "test", Workers: workers.New(), TokenKey: testTokenKey}, node, dialer{})
	if err != nil {
		t.Fatal(err)
	}
	l := api.Local()
	as := func(user string) metadata.MD {
		if user == "" {
			return nil
		}
		return metadata.Pairs(TokenMetadataKey, tokenFor(t, user, 5, time.Minute))
	}
	cases := []struct {
		user, key string
		want      error
	}{
		{"", "a", auth.ErrNoCredentials},
		{"nobody", "a", auth.ErrPermissionDenied},
		{"nobody", "zzz", nil},
		{"reader", "a", nil},
	}
	for _, c := range cases {
		ctx := metadata.NewIncomingContext(ctxT(t), as(c.user))
		_, err := l.Range(ctx, &kvv1.RangeRequest{Key: []byte(c.key), Serializable: true})
		if !errors.Is(err, c.want) {
			t.Errorf("Range %q as %q: %v, want %v", c.key, c.user, err, c.want)
		}
	}
	// Compact is root's.
	ctx := metadata.NewIncomingContext(ctxT(t), as("reader"))
	if _, err := l.Compact(ctx, &kvv1.CompactRequest{Revision: 1}); !errors.Is(err, auth.ErrPermissionDenied) {
		t.Errorf("Compact as reader: %v, want permission denied", err)
	}
	// Authorize checks without calling: root's Compact is refused to the
	// reader and to nobody, a read of a key it may read is not.
	for _, c := range []struct {
		user, method string
		want         error
	}{
		{"reader", kvv1.KVService_Compact_FullMethodName, auth.ErrPermissionDenied},
		{"", kvv1.ClusterService_MemberRemove_FullMethodName, auth.ErrNoCredentials},
		{"reader", kvv1.KVService_Range_FullMethodName, nil},
	} {
		ctx := metadata.NewIncomingContext(ctxT(t), as(c.user))
		var req proto.Message = &kvv1.CompactRequest{Revision: 1}
		if c.method == kvv1.KVService_Range_FullMethodName {
			req = &kvv1.RangeRequest{Key: []byte("a")}
		}
		if err := l.Authorize(ctx, c.method, req); !errors.Is(err, c.want) {
			t.Errorf("Authorize %s as %q: %v, want %v", c.method, c.user, err, c.want)
		}
	}
	// Admission: a request over MaxRequestBytes.
	ctx = metadata.NewIncomingContext(ctxT(t), as("reader"))
	_, err = l.Put(ctx, &kvv1.PutRequest{Key: []byte("a"), Value: []byte(strings.Repeat("v", 2<<10))})
	if !errors.Is(err, ErrRequestTooLarge) {
		t.Errorf("Put of 2 KiB: %v, want request too large", err)
	}
}

// TestConfigStatuses: another API's error table is keyed by a method
// prefix; the interceptors use it for that API's methods only.
func TestConfigStatuses(t *testing.T) {
	base := Config{MaxRequestBytes: 1 << 10, Workers: workers.New()}
	for _, bad := range []map[string]func(error) error{
		{"etcdserverpb.": func(err error) error { return err }},
		{"/etcdserverpb.": nil},
	} {
		cfg := base
		cfg.Statuses = bad
		if err := cfg.Validate(); err == nil {
			t.Errorf("Statuses %v: valid, want refused", bad)
		}
	}
	other := errors.New("the other API's status")
	cfg := base
	cfg.Statuses = map[string]func(error) error{"/other.": func(error) error { return other }}
	node := &fakeNode{name: "m1", leader: true, kv: map[string]int{}, drain: make(chan struct{})}
	api, err := New(cfg, node, dialer{})
	if err != nil {
		t.Fatal(err)
	}
	if got := api.statusFor("/other.KV/Range")(auth.ErrPermissionDenied); got != other {
		t.Errorf("the other API's method: %v, want its table's", got)
	}
	if got := api.statusFor(kvv1.KVService_Range_FullMethodName)(auth.ErrPermissionDenied); got == other || got.Error() != toStatus(auth.ErrPermissionDenied).Error() {
		t.Errorf("kvd's method: %v, want kvd's table's", got)
	}
}
