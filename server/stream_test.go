package server_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/kvd-io/kvd/apierr"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/server"
	"github.com/kvd-io/kvd/server/servertest"
)

func putOp(id uint64, key, val string) *kvv1.StreamOp {
	return &kvv1.StreamOp{Id: id, Request: &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestPut{
		RequestPut: &kvv1.PutRequest{Key: []byte(key), Value: []byte(val)}}}}
}

func rangeOp(id uint64, key string, serializable bool) *kvv1.StreamOp {
	return &kvv1.StreamOp{Id: id, Request: &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestRange{
		RequestRange: &kvv1.RangeRequest{Key: []byte(key), Serializable: serializable}}}}
}

// exchange sends ops in one message and returns their results by id.
func exchange(t *testing.T, st kvv1.KVService_StreamClient, ops ...*kvv1.StreamOp) map[uint64]*kvv1.StreamResult {
	t.Helper()
	if err := st.Send(&kvv1.StreamRequest{Ops: ops}); err != nil {
		t.Fatalf("send: %v", err)
	}
	out := make(map[uint64]*kvv1.StreamResult)
	for len(out) < len(ops) {
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("recv after %d of %d results: %v", len(out), len(ops), err)
		}
		for _, r := range resp.GetResults() {
			if _, dup := out[r.GetId()]; dup {
				t.Fatalf("op %d answered twice", r.GetId())
			}
			out[r.GetId()] = r
		}
	}
	return out
}

func TestStreamServesOpsOnEveryMember(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3, servertest.WithConfig(func(cfg *server.Config) { cfg.MaxRequestBytes = 64 << 10 }))
	c.Leader(20 * time.Second)
	for _, name := range c.Names() {
		t.Run(name, func(t *testing.T) {
			ctx := ctxT(t, 20*time.Second)
			var st kvv1.KVService_StreamClient
			c.Eventually(20*time.Second, func() error {
				// Retry until a first put is applied: an election may be
				// under way on a loaded machine.
				var err error
				if st, err = c.KV(name).Stream(ctx); err != nil {
					return err
				}
				res := exchange(t, st, putOp(1, "warm-"+name, "x"))[1]
				if e := res.GetError(); e != nil {
					if !e.GetNotApplied() {
						t.Fatalf("warm-up put: %v", e)
					}
					return errors.New(e.GetMessage())
				}
				return nil
			})

			key := "k-" + name
			res := exchange(t, st, putOp(2, key, "v1"))
			if rev := res[2].GetResponse().GetResponsePut().GetHeader().GetRevision(); rev == 0 {
				t.Fatalf("put: %v", res[2])
			}
			res = exchange(t, st,
				rangeOp(3, key, false),
				rangeOp(4, key, true),
				putOp(5, "", "no key"),
				&kvv1.StreamOp{Id: 6},
				putOp(7, "big", strings.Repeat("x", 65<<10)),
				rangeOp(10, "missing-"+name, false),
				rangeOp(11, "", false),
			)
			// A linearizable read sent after the put was acknowledged sees
			// it; the serializable one in the same message may or may not.
			if kvs := res[3].GetResponse().GetResponseRange().GetKvs(); len(kvs) != 1 || string(kvs[0].GetValue()) != "v1" {
				t.Errorf("linearizable range: %v", res[3])
			}
			if res[4].GetError() != nil {
				t.Errorf("serializable range: %v", res[4].GetError())
			}
			// The linearizable ranges of a message are served together,
			// each with its own answer.
			if r := res[10].GetResponse().GetResponseRange(); r == nil || len(r.GetKvs()) != 0 || r.GetHeader().GetRevision() == 0 {
				t.Errorf("linearizable range of a missing key: %v", res[10])
			}
			for _, id := range []uint64{5, 6, 7, 11} {
				if e := res[id].GetError(); codes.Code(e.GetCode()) != codes.InvalidArgument || e.GetNotApplied() {
					t.Errorf("op %d: error %v, want InvalidArgument", id, e)
				}
			}
			if !strings.Contains(res[7].GetError().GetMessage(), "max-request-bytes") {
				t.Errorf("oversized op: %q does not name the limit", res[7].GetError().GetMessage())
			}
			// Ops in one message run concurrently, so the delete goes in
			// a message of its own.
			res = exchange(t, st, &kvv1.StreamOp{Id: 8, Request: &kvv1.RequestOp{Request: &kvv1.RequestOp_RequestDeleteRange{
				RequestDeleteRange: &kvv1.DeleteRangeRequest{Key: []byte(key)}}}})
			if n := res[8].GetResponse().GetResponseDeleteRange().GetDeleted(); n != 1 {
				t.Errorf("delete: %v", res[8])
			}
			// The stream still serves after the failed ops.
			res = exchange(t, st, rangeOp(9, key, false))
			if kvs := res[9].GetResponse().GetResponseRange().GetKvs(); len(kvs) != 0 {
				t.Errorf("range after delete: %v", res[9])
			}
		})
	}
}

func TestStreamDrainsWhenTheMemberShutsDown(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 1)
	name := c.Leader(20 * time.Second)
	srv := c.Member(name).Server
	cc, err := grpc.NewClient(srv.ClientAddr(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cc.Close() })
	ctx := ctxT(t, 20*time.Second)
	st, err := kvv1.NewKVServiceClient(cc).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res := exchange(t, st, putOp(1, "k", "v"))[1]; res.GetError() != nil {
		t.Fatalf("put: %v", res.GetError())
	}

	stopped := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		stopped <- srv.Shutdown(sctx)
	}()
	for {
		resp, err := st.Recv()
		if err != nil {
			t.Fatalf("stream ended without a draining notice: %v", err)
		}
		if resp.GetDraining() {
			break
		}
	}
	// An op sent after the notice, before the client half-closes, is
	// still answered, one way or the other.
	if err := st.Send(&kvv1.StreamRequest{Ops: []*kvv1.StreamOp{putOp(2, "late", "v")}}); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	answered := false
	for {
		resp, err := st.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("stream ended with %v, want a clean end after the half-close", err)
		}
		for _, r := range resp.GetResults() {
			if r.GetId() == 2 {
				answered = true
				if e := r.GetError(); e != nil && !e.GetNotApplied() {
					t.Errorf("late put: %v, want success or not applied", e)
				}
			}
		}
	}
	if !answered {
		t.Error("the op sent after the draining notice was not answered")
	}
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("shutdown: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("shutdown did not finish after the stream ended")
	}
}

// A follower forwards writes on a proposal stream. When the leader shuts
// down, the stream drains: every forwarded write is answered as applied or
// as certainly not applied, never as "outcome unknown".
func TestForwardedWritesRideOutLeaderShutdown(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	c := servertest.New(t, 3)
	leader := c.Leader(20 * time.Second)
	follower := others(c, leader)[0]
	put(t, c, follower, "warm", "x") // opens the follower's stream

	ctx := ctxT(t, 60*time.Second)
	stop := make(chan struct{})
	var (
		mu       sync.Mutex
		applied  int
		problems []error
	)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				_, err := c.KV(follower).Put(rctx, &kvv1.PutRequest{Key: []byte(fmt.Sprintf("w%d-%d", w, i)), Value: []byte("v")})
				cancel()
				mu.Lock()
				switch {
				case err == nil:
					applied++
				case !apierr.IsNotApplied(err):
					problems = append(problems, err)
				}
				mu.Unlock()
			}
		}()
	}
	waitApplied := func(n int) {
		c.Eventually(30*time.Second, func() error {
			mu.Lock()
			defer mu.Unlock()
			if applied < n {
				return fmt.Errorf("%d writes applied, want %d", applied, n)
			}
			return nil
		})
	}
	waitApplied(50)
	c.Stop(leader)
	mu.Lock()
	before := applied
	mu.Unlock()
	waitApplied(before + 50) // writes go on under the new leader
	close(stop)
	wg.Wait()
	for _, err := range problems {
		t.Errorf("forwarded write: %v (want success or not applied)", err)
	}
}

// A stream's linearizable reads on a leader cut off from its followers are
// refused, not served from its stale state, and answered before their
// deadline with Unavailable, as unary reads are.
func TestIsolatedLeaderRefusesStreamReadsInTime(t *testing.T) {
	t.Parallel()
	c := servertest.New(t, 3)
	old := c.Leader(20 * time.Second)
	put(t, c, old, "x", "old")
	ctx := ctxT(t, 30*time.Second)
	st, err := c.KV(old).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := exchange(t, st, rangeOp(1, "x", false))[1]; string(r.GetResponse().GetResponseRange().GetKvs()[0].GetValue()) != "old" {
		t.Fatalf("read before the partition: %v", r)
	}

	c.Isolate(old)
	put(t, c, c.Leader(20*time.Second, others(c, old)...), "x", "new")
	// Short deadlines are answered before the old leader gives up
	// confirming its leadership, long ones by its failure to confirm it.
	for round, timeout := range []time.Duration{1500 * time.Millisecond, 1500 * time.Millisecond, 8 * time.Second} {
		var ops []*kvv1.StreamOp
		for i := range 3 {
			op := rangeOp(uint64(10*round+i+2), "x", false)
			op.TimeoutMs = timeout.Milliseconds()
			ops = append(ops, op)
		}
		start := time.Now()
		res := exchange(t, st, ops...)
		if took := time.Since(start); took > timeout {
			t.Errorf("round %d: answered after %v, past the ops' %v deadline", round, took, timeout)
		}
		for id, r := range res {
			if r.GetError() == nil {
				t.Fatalf("round %d: isolated former leader served linearizable read %d: %v", round, id, r.GetResponse())
			}
			if codes.Code(r.GetError().GetCode()) != codes.Unavailable {
				t.Errorf("round %d: read %d failed with %v, want Unavailable", round, id, r.GetError())
			}
		}
	}
	c.Heal()
	c.WaitConverged(10 * time.Second)
}
