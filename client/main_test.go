package client_test

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/kvd-io/kvd/server/servertest"
)

// TestMain runs the tests and examples, stops the examples' cluster, and
// then fails if a goroutine they started is still running: every one must
// be stopped by what started it.
func TestMain(m *testing.M) {
	code := m.Run()
	stopExampleCluster()
	if code == 0 {
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

var (
	exampleOnce    sync.Once
	exampleCluster *servertest.Cluster
)

// exampleEndpoints returns the client addresses of an in-process
// three-member cluster that the examples share, started on first use and
// stopped by TestMain. Each example writes keys of its own.
func exampleEndpoints() []string {
	exampleOnce.Do(func() {
		c, err := servertest.Start(3)
		if err != nil {
			panic(fmt.Sprintf("start the examples' cluster: %v", err))
		}
		exampleCluster = c
	})
	return exampleCluster.Endpoints()
}

func stopExampleCluster() {
	if exampleCluster != nil {
		exampleCluster.Close()
	}
}
