package member

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// The core knows nothing of gRPC: no package of it imports gRPC or the
// API's error marks, and gRPC reaches it only through the generated
// protobuf packages, whose service stubs share a Go package with the
// messages the core stores (kv.v1's requests are the log's payloads).
// Statuses are made in package rpc alone.
func TestCoreDoesNotImportGRPC(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command")
	}
	out, err := exec.Command(goCmd, "list", "-deps", "-json", "github.com/kvd-io/kvd/member").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	forbidden := []string{"google.golang.org/grpc", "github.com/kvd-io/kvd/apierr", "github.com/kvd-io/kvd/rpc", "github.com/kvd-io/kvd/internal/peer"}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	checked := 0
	for {
		var p struct {
			ImportPath string
			Imports    []string
			Standard   bool
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(p.ImportPath, "github.com/kvd-io/kvd/") || strings.HasPrefix(p.ImportPath, "github.com/kvd-io/kvd/proto/") {
			continue // others' packages, and the generated code
		}
		checked++
		for _, imp := range p.Imports {
			for _, f := range forbidden {
				if imp == f || strings.HasPrefix(imp, f+"/") {
					t.Errorf("%s imports %s", p.ImportPath, imp)
				}
			}
		}
	}
	if checked < 5 {
		t.Fatalf("checked only %d of kvd's packages; is go list working?", checked)
	}
}
