package client_test

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/kvd-io/kvd/server/servertest"
)

// TestMain runs the tests and examples, stops the examples' cluster, and
// then fails if a goroutine they started is still running: every one must
// be stopped by what started it.
func TestMain(m *testing.M) {
	code := m.Run()
	examples.Close()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// examples is the in-process three-member cluster the examples share;
// each example writes keys of its own.
var examples = servertest.Shared{N: 3}

// exampleEndpoints returns the client addresses of the examples' cluster.
func exampleEndpoints() []string { return examples.Endpoints() }
