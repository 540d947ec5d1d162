package server_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
	"github.com/kvd-io/kvd/server"
	"github.com/kvd-io/kvd/server/servertest"
)

// Fill the members to their quota under concurrent writers: a NOSPACE
// alarm is raised; writes that grow the state are refused on every member
// (ResourceExhausted) while deletes, reads and compaction go on; nothing
// acknowledged is lost and no transaction is half applied; after compaction,
// defragmentation and disarming, writes work again.
func TestQuotaFillAndRecover(t *testing.T) {
	skipIfShort(t)
	t.Parallel()
	const quota = 4 << 20
	c := servertest.New(t, 3, servertest.WithConfig(func(cfg *server.Config) { cfg.QuotaBackendBytes = quota }))
	c.Leader(20 * time.Second)
	value := strings.Repeat("x", 16<<10)

	var (
		mu    sync.Mutex
		acked = map[string]bool{}
		wg    sync.WaitGroup
	)
	for w := range 4 {
		wg.Go(func() {
			member := c.Names()[w%3]
			for i := 0; ; i++ {
				// Each write puts two keys in one txn: both or neither.
				a, b := fmt.Sprintf("fill/%d/%d/a", w, i), fmt.Sprintf("fill/%d/%d/b", w, i)
				_, err := c.KV(member).Txn(ctxT(t, 10*time.Second), &kvv1.TxnRequest{Success: []*kvv1.RequestOp{
					{Request: &kvv1.RequestOp_RequestPut{RequestPut: &kvv1.PutRequest{Key: []byte(a), Value: []byte(value)}}},
					{Request: &kvv1.RequestOp_RequestPut{RequestPut: &kvv1.PutRequest{Key: []byte(b), Value: []byte(value)}}},
				}})
				switch status.Code(err) {
				case codes.OK:
					mu.Lock()
					acked[a], acked[b] = true, true
					mu.Unlock()
				case codes.ResourceExhausted:
					return
				default:
					// Not applied or unknown: neither counts as acked;
					// keep going.
				}
				if i > 5000 {
					t.Errorf("writer %d: 5000 writes and no NOSPACE", w)
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	// The alarm is raised and replicated: every member refuses.
	var alarms *kvv1.AlarmResponse
	c.Eventually(30*time.Second, func() error {
		var err error
		alarms, err = c.Maintenance(c.Names()[0]).Alarm(ctxT(t, 10*time.Second), &kvv1.AlarmRequest{Action: kvv1.AlarmRequest_ALARM_ACTION_GET})
		if err != nil && !outcomeUnknownOrUnapplied(err) || err == nil && len(alarms.GetAlarms()) == 0 {
			t.Fatalf("alarms after filling: %v, %v", alarms, err)
		}
		return err
	})
	for _, name := range c.Names() {
		c.Eventually(30*time.Second, func() error {
			_, err := c.KV(name).Put(ctxT(t, 10*time.Second), &kvv1.PutRequest{Key: []byte("more"), Value: []byte("v")})
			if outcomeUnknownOrUnapplied(err) {
				return err // a leadership change: ask again
			}
			if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "database space exceeded") {
				t.Fatalf("put via %s with NOSPACE raised: %v", name, err)
			}
			_, err = leases(c, name).LeaseGrant(ctxT(t, 10*time.Second), &kvv1.LeaseGrantRequest{Ttl: 30})
			if outcomeUnknownOrUnapplied(err) {
				return err
			}
			if status.Code(err) != codes.ResourceExhausted {
				t.Fatalf("lease grant via %s with NOSPACE raised: %v", name, err)
			}
			return nil
		})
	}
	c.WaitConverged(30 * time.Second)
	// Nothing acknowledged is lost; no txn half applied.
	all, err := c.KV(c.Names()[1]).Range(ctxT(t, 10*time.Second), &kvv1.RangeRequest{Key: []byte("fill/"), RangeEnd: []byte("fill0"), KeysOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, kv := range all.GetKvs() {
		have[string(kv.GetKey())] = true
	}
	for k := range acked {
		if !have[k] {
			t.Fatalf("acknowledged %s is missing", k)
		}
	}
	for k := range have {
		pair := k[:len(k)-1] + map[byte]string{'a': "b", 'b': "a"}[k[len(k)-1]]
		if !have[pair] {
			t.Fatalf("%s is there without %s: a txn was half applied", k, pair)
		}
	}
	t.Logf("filled to NOSPACE: %d keys acknowledged, %d stored", len(acked), len(have))

	// Free space: delete, compact, defragment every member, disarm. A
	// leadership change during a call leaves its outcome unknown (Unknown)
	// or refuses it unapplied (Unavailable): the call is made again, and
	// a compaction that answers OutOfRange (compacted already) was applied
	// by an earlier attempt. Any other refusal fails the test.
	ctx := ctxT(t, 60*time.Second)
	var delRev int64
	c.Eventually(30*time.Second, func() error {
		del, err := c.KV(c.Names()[2]).DeleteRange(ctx, &kvv1.DeleteRangeRequest{Key: []byte("fill/"), RangeEnd: []byte("fill0")})
		if err != nil && !outcomeUnknownOrUnapplied(err) {
			t.Fatalf("delete with NOSPACE raised: %v", err)
		}
		delRev = del.GetHeader().GetRevision()
		return err
	})
	c.Eventually(30*time.Second, func() error {
		_, err := c.KV(c.Names()[0]).Compact(ctx, &kvv1.CompactRequest{Revision: delRev, Physical: true})
		switch {
		case err == nil, status.Code(err) == codes.OutOfRange && strings.Contains(err.Error(), "compacted"):
			return nil
		case outcomeUnknownOrUnapplied(err):
			return err
		}
		t.Fatalf("compact with NOSPACE raised: %v", err)
		return nil
	})
	c.Eventually(30*time.Second, func() error {
		for _, name := range c.Names() {
			d, err := c.Maintenance(name).Defragment(ctx, &kvv1.DefragmentRequest{})
			if err != nil {
				return err
			}
			if d.GetDbSize() >= quota/2 {
				return fmt.Errorf("%s is %d bytes after defragmentation", name, d.GetDbSize())
			}
		}
		return nil
	})
	// Disarm what is raised now (as kvctl alarm disarm does): members that
	// were over quota too may have raised theirs after the first listing.
	c.Eventually(30*time.Second, func() error {
		alarms, err = c.Maintenance(c.Names()[0]).Alarm(ctx, &kvv1.AlarmRequest{Action: kvv1.AlarmRequest_ALARM_ACTION_GET})
		if err != nil && !outcomeUnknownOrUnapplied(err) {
			t.Fatal(err)
		}
		return err
	})
	for _, a := range alarms.GetAlarms() {
		c.Eventually(30*time.Second, func() error { // disarming twice is harmless
			_, err := c.Maintenance(c.Names()[0]).Alarm(ctx, &kvv1.AlarmRequest{Action: kvv1.AlarmRequest_ALARM_ACTION_DEACTIVATE, MemberId: a.GetMemberId(), Alarm: a.GetAlarm()})
			if err != nil && !outcomeUnknownOrUnapplied(err) {
				t.Fatalf("disarm: %v", err)
			}
			return err
		})
	}
	c.Eventually(20*time.Second, func() error {
		_, err := c.KV(c.Names()[0]).Put(context.Background(), &kvv1.PutRequest{Key: []byte("after"), Value: []byte("v")})
		return err
	})
}

// outcomeUnknownOrUnapplied reports whether a write failed because the
// leadership changed under it: its outcome unknown, or certainly not
// applied. Making it again is how a client recovers.
func outcomeUnknownOrUnapplied(err error) bool {
	return status.Code(err) == codes.Unknown || apierr.IsNotApplied(err) || status.Code(err) == codes.Unavailable
}
