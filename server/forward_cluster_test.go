package server_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/server/servertest"
)

// TestFollowerBatchesForwardedWrites sends many concurrent writes, and some
// that the state machine refuses, through one follower: each must get its
// own answer, every acknowledged write must be readable, and the leader must
// have received some of them batched (peer.v1.PeerService/ProposeBatch).
func TestFollowerBatchesForwardedWrites(t *testing.T) {
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	follower := others(c, leader)[0]
	kv := c.KV(follower)
	ctx := ctxT(t, 30*time.Second)

	const writers, perWriter = 64, 20
	revs := make(map[int64]string)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				key := fmt.Sprintf("fwd-%02d-%02d", w, i)
				if i%10 == 9 { // refused by the state machine: no such lease
					_, err := kv.Put(ctx, &kvv1.PutRequest{Key: []byte(key), Value: []byte("v"), Lease: 12345})
					if status.Code(err) != codes.NotFound {
						t.Errorf("put %s with a missing lease: %v, want NotFound", key, err)
					}
					continue
				}
				resp, err := kv.Put(ctx, &kvv1.PutRequest{Key: []byte(key), Value: []byte(key)})
				if err != nil {
					t.Errorf("put %s: %v", key, err)
					return
				}
				mu.Lock()
				if other, dup := revs[resp.GetHeader().GetRevision()]; dup {
					t.Errorf("puts %s and %s both answered revision %d", key, other, resp.GetHeader().GetRevision())
				}
				revs[resp.GetHeader().GetRevision()] = key
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for rev, key := range revs {
		got, err := c.KV(leader).Range(ctx, &kvv1.RangeRequest{Key: []byte(key)})
		if err != nil {
			t.Fatal(err)
		}
		if len(got.GetKvs()) != 1 || string(got.GetKvs()[0].GetValue()) != key || got.GetKvs()[0].GetModRevision() != rev {
			t.Fatalf("read %s: %v, want its value at revision %d", key, got.GetKvs(), rev)
		}
	}
	if n := proposeBatchCalls(t, c.Member(leader).Server.HTTPAddr()); n == 0 {
		t.Error("the leader served no ProposeBatch call for 1,280 concurrent forwarded writes")
	}
}

// proposeBatchCalls reads the count of ProposeBatch calls from a member's
// metrics.
func proposeBatchCalls(t *testing.T, httpAddr string) int {
	t.Helper()
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "kvd_grpc_requests_total{") && strings.Contains(line, "ProposeBatch") {
			var n float64
			if _, err := fmt.Sscanf(line[strings.LastIndex(line, " ")+1:], "%g", &n); err == nil {
				total += int(n)
			}
		}
	}
	return total
}
