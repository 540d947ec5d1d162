package fsm

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// A defragmentation while entries keep being applied: the file shrinks, no
// applied entry is lost (the state ends equal to a twin's that applied the
// same log without one), and the member stays usable.
func TestDefragmentWhileApplying(t *testing.T) {
	f := newFSM(t)
	twin := newFSM(t)
	log := newTestLog(t)
	apply := func(msg *kvv1.PutRequest) {
		l := log.command(msg)
		f.ApplyBatch([]*raft.Log{l})
		twin.ApplyBatch([]*raft.Log{l})
	}
	big := strings.Repeat("v", 512)
	for i := range 6000 {
		apply(put(fmt.Sprintf("k%04d", i%2000), big+fmt.Sprint(i)))
	}
	// Compact most of it away, so that the file has space to give back.
	rev := f.Revision()
	l := log.command(&kvv1.CompactRequest{Revision: rev})
	f.ApplyBatch([]*raft.Log{l})
	twin.ApplyBatch([]*raft.Log{l})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, g := range []*FSM{f, twin} {
		if err := g.WaitTrimmed(ctx, rev); err != nil {
			t.Fatal(err)
		}
	}

	// Writes go on during the defragmentation.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	longest := time.Duration(0)
	wg.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			start := time.Now()
			mu.Lock()
			apply(put(fmt.Sprintf("during%05d", i), fmt.Sprint(i)))
			mu.Unlock()
			if d := time.Since(start); d > longest {
				longest = d
			}
		}
	})
	before, after, err := f.Defragment(ctx)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	if after >= before {
		t.Fatalf("defragmentation did not shrink the file: %d -> %d bytes", before, after)
	}
	t.Logf("file %d -> %d bytes; the longest apply during it took %s", before, after, longest)
	// A few more writes after the swap, then the twins must agree.
	for i := range 50 {
		apply(put(fmt.Sprintf("after%d", i), "x"))
	}
	if got, want := mustHash(t, f), mustHash(t, twin); got != want {
		t.Fatalf("state after the defragmentation differs from its twin's: %08x vs %08x", got, want)
	}
	if f.AppliedIndex() != twin.AppliedIndex() || f.Revision() != twin.Revision() {
		t.Fatalf("applied %d rev %d, twin applied %d rev %d", f.AppliedIndex(), f.Revision(), twin.AppliedIndex(), twin.Revision())
	}
}
