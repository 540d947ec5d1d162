// Command kvdutil holds kvd's offline tools, the ones that work on files and
// data dirs rather than on a running cluster, as etcdutl does for etcd:
// snapshot status and restore, and member id. It links the server's storage
// (raft, bbolt) so that kvctl, the network client, does not have to. Output
// follows kvctl: -w simple|json|table chooses the format.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd(os.Stdin, os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
