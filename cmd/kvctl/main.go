// Command kvctl is the command line client of kvd. Its verbs and output
// follow etcdctl: put, get, del, txn and watch for data; lease, lock and
// elect for coordination; member, endpoint, leader, snapshot, check,
// compaction, defrag and alarm for administration; -w simple|json|table to
// choose the output format. kvctl only talks to a cluster and does not link the server's
// storage; the offline tools on snapshot files and data dirs are kvdutil's
// (cmd/kvdutil), as etcdutl's are for etcd.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := newRootCmd(os.Stdin, os.Stdout, os.Stderr).ExecuteContext(ctx)
	stop()
	var exit *exitError
	if errors.As(err, &exit) {
		os.Exit(exit.code) // a command kvctl ran failed, and said why
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "Error:", err)
		os.Exit(1)
	}
}
