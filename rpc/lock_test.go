package rpc

import (
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// The lock service asks the leader whether the caller's lease is alive
// before it reports the lock acquired, even when the lock key is still
// there: the leader may have found the lease expired before its revocation
// (which deletes the key) is applied. etcd 3.4.3 answered "acquired" then.
func TestLockRechecksLeaseBeforeAcquiring(t *testing.T) {
	// Every txn succeeds at revision 7; the queue holds the caller's key
	// alone, created at 7 with lease 5 (what the fake reads for the
	// queue's prefix too).
	own := &kvv1.KeyValue{Key: []byte("job/5"), CreateRevision: 7, ModRevision: 7, Version: 1, Lease: 5}
	node := &fakeNode{name: "a", leader: true, records: map[string]*kvv1.KeyValue{"job/": own, "job/5": own}}
	cc, _ := serve(t, node, 1024)
	locks := kvv1.NewLockServiceClient(cc)
	ctx := ctxT(t)

	// Lease 5 was never granted, as far as the leader's lessor knows.
	_, err := locks.Lock(ctx, &kvv1.LockRequest{Name: []byte("job"), Lease: 5})
	if status.Code(err) != codes.NotFound {
		t.Fatalf("lock with a lease the leader has expired: %v, want NotFound", err)
	}
	// It joined the queue (a txn), then left it again (a second txn).
	if got := node.proposals(); !slices.Equal(got, []string{"COMMAND_TYPE_TXN", "COMMAND_TYPE_TXN"}) {
		t.Fatalf("proposed %v, want the join and the leave", got)
	}

	// The control: with the lease alive, the same queue is acquired, and the
	// token is the key's create revision.
	if _, err := kvv1.NewLeaseServiceClient(cc).LeaseGrant(ctx, &kvv1.LeaseGrantRequest{Id: 5, Ttl: 10}); err != nil {
		t.Fatal(err)
	}
	resp, err := locks.Lock(ctx, &kvv1.LockRequest{Name: []byte("job"), Lease: 5})
	if err != nil || string(resp.GetKey()) != "job/5" || resp.GetCreateRevision() != 7 || resp.GetHeader().GetMemberId() == 0 {
		t.Fatalf("lock with a live lease: %v, %v", resp, err)
	}
}

// proposals returns the types of the commands proposed so far.
func (f *fakeNode) proposals() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.proposed)
}

// A wait that the member's shutdown ends is Unavailable and not applied, so
// that the client retries through another member; the caller's key stays
// queued for that retry.
func TestLockWaitEndsWhenDraining(t *testing.T) {
	node := &fakeNode{name: "a", leader: true, drain: make(chan struct{}), records: map[string]*kvv1.KeyValue{
		// What the fake answers for the queue's prefix: a key ahead.
		"job/":  {Key: []byte("job/4"), CreateRevision: 3, Lease: 4},
		"job/5": {Key: []byte("job/5"), CreateRevision: 7, Lease: 5},
	}}
	cc, _ := serve(t, node, 1024)
	done := make(chan error, 1)
	go func() {
		_, err := kvv1.NewLockServiceClient(cc).Lock(ctxT(t), &kvv1.LockRequest{Name: []byte("job"), Lease: 5})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("lock behind another key answered: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(node.drain)
	select {
	case err := <-done:
		if status.Code(err) != codes.Unavailable || !apierr.IsNotApplied(err) {
			t.Fatalf("lock ended by the shutdown: %v, want Unavailable, not applied", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the shutdown did not end the wait")
	}
	if got := node.proposals(); !slices.Equal(got, []string{"COMMAND_TYPE_TXN"}) {
		t.Fatalf("proposed %v, want the join alone (the key keeps its place)", got)
	}
}
