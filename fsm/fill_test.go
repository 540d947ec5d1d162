package fsm

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"

	kvv1 "github.com/kvd-io/kvd/proto/kv/v1"
)

// TestPagesStayFullUnderOrderedLoad loads keys in order, as a bulk load or
// kvctl bench --sequential-keys does, and checks that bbolt's leaf pages of
// history end up mostly full rather than half empty (its default
// split point), which would double state.db and every snapshot.
func TestPagesStayFullUnderOrderedLoad(t *testing.T) {
	f := newFSM(t)
	l := newTestLog(t)
	value := bytes.Repeat([]byte("v"), 256)
	for batch := range 40 {
		var logs []*raft.Log
		for i := range 100 {
			key := binary.BigEndian.AppendUint64(nil, uint64(batch*100+i))
			logs = append(logs, l.command(&kvv1.PutRequest{Key: key, Value: value}))
		}
		for _, res := range f.ApplyBatch(logs) {
			if err, ok := res.(error); ok {
				t.Fatal(err)
			}
		}
	}
	err := f.view(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketHistory} {
			s := tx.Bucket(name).Stats()
			fill := float64(s.LeafInuse) / float64(s.LeafAlloc)
			t.Logf("%s: %d leaf pages, %.0f%% in use", name, s.LeafPageN, 100*fill)
			if fill < 0.8 {
				t.Errorf("%s: leaf pages %.0f%% full after an ordered load, want at least 80%%", name, 100*fill)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
