package main

import (
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// serverSide are the packages kvctl must not link: the server and its
// storage. Offline tools that need them belong in kvdutil.
var serverSide = []string{
	"github.com/hashicorp/raft",
	"github.com/hashicorp/raft-boltdb",
	"go.etcd.io/bbolt",
	"github.com/kvd-io/kvd/server",
	"github.com/kvd-io/kvd/fsm",
	"github.com/kvd-io/kvd/internal/raftlog",
}

// TestNoServerDependencies lists kvctl's dependencies with the go command
// and fails if any is a server-side package or one below it.
func TestNoServerDependencies(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skipf("the go command is not found: %v", err)
	}
	cmd := exec.Command(goBin, "list", "-deps", ".")
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			t.Fatalf("go list -deps: %v\n%s", err, exit.Stderr)
		}
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) == 0 || !slices.Contains(deps, "github.com/kvd-io/kvd/cmd/kvctl") {
		t.Fatalf("go list -deps printed no kvctl:\n%s", out)
	}
	for _, dep := range deps {
		for _, bad := range serverSide {
			if dep == bad || strings.HasPrefix(dep, bad+"/") {
				t.Errorf("kvctl depends on %s (under %s): move the code that needs it to kvdutil", dep, bad)
			}
		}
	}
}
