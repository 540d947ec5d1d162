package console_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine they started is still
// running once they are done: the console's streams, sampler and session
// clients must all stop with the member.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}
