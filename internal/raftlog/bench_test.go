package raftlog

import (
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
)

// benchEntry is a follower's append of one put: about what a single
// client's write costs the log.
func benchEntry(i uint64) []*raft.Log {
	return []*raft.Log{{Index: i, Term: 1, Type: raft.LogCommand, Data: make([]byte, 300)}}
}

func openBolt(b *testing.B) *raftboltdb.BoltStore {
	b.Helper()
	bs, err := raftboltdb.New(raftboltdb.Options{
		Path:        filepath.Join(b.TempDir(), "raft.db"),
		BoltOptions: &bolt.Options{NoFreelistSync: true, FreelistType: bolt.FreelistMapType},
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bs.Close() })
	return bs
}

// BenchmarkAppend compares a durable append of one entry through the
// journal (checkpoints into raft-boltdb run as they do in a member) with the
// same append made directly to raft-boltdb, as members did before the
// journal. Both write to the disk under the test's temporary directory and
// fsync, so they measure that disk.
func BenchmarkAppend(b *testing.B) {
	b.Run("journal", func(b *testing.B) {
		// Restored after the store closes (cleanups run last first).
		old := journalPrealloc
		b.Cleanup(func() { journalPrealloc = old })
		journalPrealloc = 16 << 20 // as in a member, not the tests' small files
		s, err := New(Config{Log: openBolt(b), Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		b.ResetTimer()
		for i := uint64(1); i <= uint64(b.N); i++ {
			if err := s.StoreLogs(benchEntry(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("raft-boltdb", func(b *testing.B) {
		bs := openBolt(b)
		b.ResetTimer()
		for i := uint64(1); i <= uint64(b.N); i++ {
			if err := bs.StoreLogs(benchEntry(i)); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkJournalRecord is the CPU cost of encoding an entry as a journal
// record, and of decoding it on replay.
func BenchmarkJournalRecord(b *testing.B) {
	l := benchEntry(1)[0]
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		for range b.N {
			buf = appendJournalRecord(buf[:0], 7, l)
		}
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		rec := appendJournalRecord(nil, 7, l)
		for range b.N {
			if _, ok := decodeJournalPayload(rec[journalRecordHead:]); !ok {
				b.Fatal("does not decode")
			}
		}
	})
}
