package fsm

import (
	"fmt"
	"log/slog"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/kvd-io/kvd/internal/auth"
	fsmv1 "github.com/kvd-io/kvd/proto/fsm/v1"
	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

func BenchmarkEncodeCommand(b *testing.B) {
	benches := []struct {
		name string
		typ  fsmv1.CommandType
		msg  *kvv1.PutRequest
	}{
		{name: "small put", typ: fsmv1.CommandType_COMMAND_TYPE_PUT, msg: put("key", "value")},
		{name: "1KiB put", typ: fsmv1.CommandType_COMMAND_TYPE_PUT, msg: &kvv1.PutRequest{Key: []byte("key"), Value: make([]byte, 1024)}},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := EncodeCommand(bb.typ, bb.msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkApplyBatchPut applies puts of distinct keys; each iteration is one
// batch, one bbolt transaction.
func BenchmarkApplyBatchPut(b *testing.B) { benchApplyBatchPut(b, nil) }

// BenchmarkApplyBatchPutFeed is BenchmarkApplyBatchPut with a Feed that
// counts events, to measure what reporting changes costs.
func BenchmarkApplyBatchPutFeed(b *testing.B) { benchApplyBatchPut(b, &countingFeed{}) }

func benchApplyBatchPut(b *testing.B, feed Feed) {
	for _, size := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			f, l := benchFSM(b, feed), newTestLog(b)
			batch := make([]*raft.Log, size)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				b.StopTimer()
				for i := range batch {
					batch[i] = l.command(put(fmt.Sprintf("key/%09d", n), "value"))
					n++
				}
				b.StartTimer()
				f.ApplyBatch(batch)
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "puts/s")
		})
	}
}

// BenchmarkEncodeBatch packs 200 encoded puts of 8-byte keys and 256-byte
// values, about what one 64 KiB batch entry carries.
func BenchmarkEncodeBatch(b *testing.B) {
	cmds := benchPutCommands(b, 0, 200)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := EncodeBatch(cmds); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkApplyBatchCommand applies one entry carrying a COMMAND_TYPE_BATCH
// of puts of distinct 8-byte keys with 256-byte values, as the leader's
// group commit writes them.
func BenchmarkApplyBatchCommand(b *testing.B) { benchApplyBatchCommand(b, nil) }

// BenchmarkApplyBatchCommandFeed is BenchmarkApplyBatchCommand with a Feed
// that counts events.
func BenchmarkApplyBatchCommandFeed(b *testing.B) { benchApplyBatchCommand(b, &countingFeed{}) }

func benchApplyBatchCommand(b *testing.B, feed Feed) {
	for _, size := range []int{16, 200} {
		b.Run(fmt.Sprintf("commands=%d", size), func(b *testing.B) {
			f, l := benchFSM(b, feed), newTestLog(b)
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				b.StopTimer()
				data, err := EncodeBatch(benchPutCommands(b, n, size))
				if err != nil {
					b.Fatal(err)
				}
				entry := l.raw(raft.LogCommand, data)
				n += size
				b.StartTimer()
				f.ApplyBatch([]*raft.Log{entry})
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "puts/s")
		})
	}
}

// countingFeed counts what it is told, as a cheap consumer would.
type countingFeed struct{ changes, events int }

func (c *countingFeed) Applied(changes []Change) {
	c.changes += len(changes)
	for _, ch := range changes {
		c.events += len(ch.Events)
	}
}

func (c *countingFeed) Restored(int64) {}

func (c *countingFeed) AuthChanged(*auth.State) {}

// benchFSM opens an FSM in a fresh directory with feed (nil: none).
func benchFSM(b *testing.B, feed Feed) *FSM {
	b.Helper()
	f, err := New(Config{Dir: b.TempDir(), Logger: slog.New(slog.DiscardHandler), Feed: feed})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = f.Close() })
	return f
}

// benchPutCommands encodes n puts of keys from first on, with 8-byte keys
// and 256-byte values, as kvctl bench writes them.
func benchPutCommands(b *testing.B, first, n int) [][]byte {
	b.Helper()
	value := make([]byte, 256)
	cmds := make([][]byte, n)
	for i := range cmds {
		data, err := EncodeCommand(fsmv1.CommandType_COMMAND_TYPE_PUT,
			&kvv1.PutRequest{Key: []byte(fmt.Sprintf("%08d", first+i)), Value: value})
		if err != nil {
			b.Fatal(err)
		}
		cmds[i] = data
	}
	return cmds
}

// BenchmarkRange reads from a store of 10,000 keys in 100 prefixes of 100.
func BenchmarkRange(b *testing.B) {
	f, l := newFSM(b), newTestLog(b)
	var batch []*raft.Log
	for p := range 100 {
		for k := range 100 {
			batch = append(batch, l.command(put(fmt.Sprintf("prefix%03d/key%03d", p, k), "value")))
		}
		if len(batch) >= 1000 {
			f.ApplyBatch(batch)
			batch = batch[:0]
		}
	}
	f.ApplyBatch(batch)
	if n, err := f.KeyCount(); err != nil || n != 10000 {
		b.Fatalf("store has %d keys (%v), want 10000", n, err)
	}
	rev := f.Revision()
	prefix := []byte("prefix050/")
	benches := []struct {
		name string
		req  *kvv1.RangeRequest
		want int64
	}{
		{name: "single key", req: get("prefix050/key050", ""), want: 1},
		{name: "100-key prefix", req: &kvv1.RangeRequest{Key: prefix, RangeEnd: PrefixEnd(prefix)}, want: 100},
		{name: "single key at a past revision", req: getAt("prefix050/key050", "", rev-1), want: 1},
		{name: "100-key prefix at a past revision", req: &kvv1.RangeRequest{Key: prefix, RangeEnd: PrefixEnd(prefix), Revision: rev - 1}, want: 100},
		// A range read at a past revision walks every change since: here
		// 1,000 (of other keys). A live single key follows its own links.
		{name: "single key 1000 revisions back", req: getAt("prefix050/key050", "", rev-1000), want: 1},
		{name: "100-key prefix 1000 revisions back", req: &kvv1.RangeRequest{Key: prefix, RangeEnd: PrefixEnd(prefix), Revision: rev - 1000}, want: 100},
		// etcd's benchmark txn-mixed reads pages like this one.
		{name: "page of 100 of every key", req: &kvv1.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Limit: 100}, want: 10000},
		{name: "count of every key", req: &kvv1.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, CountOnly: true}, want: 10000},
	}
	for _, bb := range benches {
		b.Run(bb.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := f.Range(bb.req)
				if err != nil {
					b.Fatal(err)
				}
				if resp.GetCount() != bb.want {
					b.Fatalf("count %d, want %d", resp.GetCount(), bb.want)
				}
			}
		})
	}
}
