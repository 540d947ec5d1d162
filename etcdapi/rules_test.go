package etcdapi

import (
	"testing"

	"google.golang.org/grpc"

	"github.com/kvd-io/kvd/rpc"
)

// TestEveryRegisteredMethodIsDelegated: every method Register serves has
// an authorization rule in rpc (a method without one is refused to
// everybody), and it is the delegated rule, so that each kv.v1 call the
// handler makes through rpc.Local is what is authorized.
func TestEveryRegisteredMethodIsDelegated(t *testing.T) {
	s := grpc.NewServer()
	defer s.Stop()
	a, err := New(rpc.Local{}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	a.Register(s)
	n := 0
	for svc, info := range s.GetServiceInfo() {
		for _, m := range info.Methods {
			n++
			name := "/" + svc + "/" + m.Name
			if r, ok := rpc.MethodRule(name); !ok || r != "delegated" {
				t.Errorf("%s: rule %q (found %v), want delegated", name, r, ok)
			}
		}
	}
	if n < 32 {
		t.Fatalf("checked %d methods: the services are not all registered", n)
	}
}
