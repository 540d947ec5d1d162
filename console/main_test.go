package console_test

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if a goroutine they started is still
// running once they are done: the console's streams, sampler and session
// clients must all stop with the member.
//
// Raft's TCP transport (TestConsoleOverTLS runs one; the other tests use
// raft's in-memory one) does not close the connections it accepted when
// it shuts down: their readers end only when the other side's pooled
// connection goes, which hashicorp/raft leaves to the garbage collector.
// That is raft's, not the console's, so it is not counted.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, goleak.IgnoreAnyFunction("github.com/hashicorp/raft.(*NetworkTransport).handleConn"))
}
