package leadership

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine they started is still
// running once they are done: every one must be stopped by what started it.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
