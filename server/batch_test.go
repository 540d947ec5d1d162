package server_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/server/servertest"
)

// Writes that arrive while the leader commits an entry share the next one,
// and each still gets a revision of its own, in the order they were applied.
func TestConcurrentWritesShareLogEntries(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	names := c.Names()

	const writes = 100
	round := 0
	var revs []int64
	// Members publish that they apply batches shortly after they start;
	// until all have, every write gets an entry of its own.
	c.Eventually(30*time.Second, func() error {
		round++
		before := appliedIndex(t, c, leader)
		revs = make([]int64, writes)
		errs := make([]error, writes)
		var wg sync.WaitGroup
		for i := range writes {
			wg.Go(func() {
				member := names[i%len(names)] // followers forward theirs
				resp, err := c.KV(member).Put(ctxT(t, 10*time.Second), &kvv1.PutRequest{
					Key: fmt.Appendf(nil, "r%d/k%03d", round, i), Value: fmt.Appendf(nil, "v%d", i)})
				errs[i] = err
				revs[i] = resp.GetHeader().GetRevision()
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, put %d: %v", round, i, err)
			}
		}
		if entries := appliedIndex(t, c, leader) - before; entries >= writes {
			return fmt.Errorf("round %d: %d writes took %d log entries", round, writes, entries)
		}
		return nil
	})

	slices.Sort(revs)
	for i := 1; i < len(revs); i++ {
		if revs[i] != revs[i-1]+1 {
			t.Fatalf("revisions of the last round are not %d consecutive ones: %v", writes, revs)
		}
	}
	c.WaitConverged(20 * time.Second)
	for _, name := range names {
		resp, err := c.KV(name).Range(ctxT(t, 5*time.Second), &kvv1.RangeRequest{
			Key: fmt.Appendf(nil, "r%d/", round), RangeEnd: fmt.Appendf(nil, "r%d0", round), Serializable: true})
		if err != nil {
			t.Fatal(err)
		}
		if len(resp.GetKvs()) != writes {
			t.Fatalf("%s holds %d keys of the last round, want %d", name, len(resp.GetKvs()), writes)
		}
		for _, kv := range resp.GetKvs() {
			var i int
			if _, err := fmt.Sscanf(string(kv.GetKey()), fmt.Sprintf("r%d/k%%03d", round), &i); err != nil || string(kv.GetValue()) != fmt.Sprintf("v%d", i) || kv.GetVersion() != 1 {
				t.Fatalf("%s: %s=%s version %d", name, kv.GetKey(), kv.GetValue(), kv.GetVersion())
			}
			if !slices.Contains(revs, kv.GetModRevision()) {
				t.Fatalf("%s: %s has mod revision %d, which no put answered", name, kv.GetKey(), kv.GetModRevision())
			}
		}
	}
}

func appliedIndex(t *testing.T, c *servertest.Cluster, member string) uint64 {
	t.Helper()
	st, err := c.Maintenance(member).Status(ctxT(t, 5*time.Second), &kvv1.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return st.GetAppliedIndex()
}
