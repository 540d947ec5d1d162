package raftlog

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	bolt "go.etcd.io/bbolt"
)

// File is the raft log and stable store on disk: a raft-boltdb file that can
// be rewritten without its free pages while the member runs.
//
// bbolt never gives pages back to the file system. A burst of writes leaves
// the log file as big as the most entries it ever held between two
// snapshots, long after raft has trimmed them; Compact copies what the file
// still holds into a new one and swaps it in. Every call waits while it
// does: the copy is of the live log only (the entries after the last
// snapshot, and raft's trailing entries), so it is short.
type File struct {
	path string
	opts raftboltdb.Options

	mu    sync.RWMutex
	store *raftboltdb.BoltStore // nil once closed, or after a failed swap
}

var (
	_ raft.LogStore    = (*File)(nil)
	_ raft.StableStore = (*File)(nil)
)

// ErrFileClosed: the log file was closed, or a compaction could not reopen
// it.
var ErrFileClosed = errors.New("raft log file is closed")

// OpenFile opens (or creates) the raft-boltdb file at path. opts.Path is
// ignored.
func OpenFile(path string, opts raftboltdb.Options) (*File, error) {
	opts.Path = path
	store, err := raftboltdb.New(opts)
	if err != nil {
		return nil, err
	}
	return &File{path: path, opts: opts, store: store}, nil
}

// use runs fn on the open store, under the shared lock.
func (f *File) use(fn func(s *raftboltdb.BoltStore) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.store == nil {
		return ErrFileClosed
	}
	return fn(f.store)
}

func (f *File) FirstIndex() (i uint64, err error) {
	err = f.use(func(s *raftboltdb.BoltStore) error { i, err = s.FirstIndex(); return err })
	return i, err
}

func (f *File) LastIndex() (i uint64, err error) {
	err = f.use(func(s *raftboltdb.BoltStore) error { i, err = s.LastIndex(); return err })
	return i, err
}

func (f *File) GetLog(index uint64, log *raft.Log) error {
	return f.use(func(s *raftboltdb.BoltStore) error { return s.GetLog(index, log) })
}

func (f *File) StoreLog(log *raft.Log) error {
	return f.use(func(s *raftboltdb.BoltStore) error { return s.StoreLog(log) })
}

func (f *File) StoreLogs(logs []*raft.Log) error {
	return f.use(func(s *raftboltdb.BoltStore) error { return s.StoreLogs(logs) })
}

func (f *File) DeleteRange(min, max uint64) error {
	return f.use(func(s *raftboltdb.BoltStore) error { return s.DeleteRange(min, max) })
}

func (f *File) Set(k, v []byte) error {
	return f.use(func(s *raftboltdb.BoltStore) error { return s.Set(k, v) })
}

func (f *File) Get(k []byte) (v []byte, err error) {
	err = f.use(func(s *raftboltdb.BoltStore) error { v, err = s.Get(k); return err })
	return v, err
}

func (f *File) SetUint64(k []byte, v uint64) error {
	return f.use(func(s *raftboltdb.BoltStore) error { return s.SetUint64(k, v) })
}

func (f *File) GetUint64(k []byte) (v uint64, err error) {
	err = f.use(func(s *raftboltdb.BoltStore) error { v, err = s.GetUint64(k); return err })
	return v, err
}

// Close closes the file; it may be called more than once.
func (f *File) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.store == nil {
		return nil
	}
	err := f.store.Close()
	f.store = nil
	return err
}

// Size returns the size of the file and of its pages in use.
func (f *File) Size() (size, inUse int64, err error) {
	err = f.use(func(s *raftboltdb.BoltStore) error {
		fi, err := os.Stat(f.path)
		if err != nil {
			return err
		}
		st := s.Stats()
		size = fi.Size()
		inUse = size - int64(st.FreePageN+st.PendingPageN)*int64(os.Getpagesize())
		return nil
	})
	return size, max(inUse, 0), err
}

// Compact rewrites the file without its free pages and returns its size
// before and after. Every other call waits until it is done. A copy that
// fails leaves the old file in place; a file that cannot be reopened after
// the swap fails every later call with ErrFileClosed.
func (f *File) Compact(ctx context.Context) (before, after int64, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.store == nil {
		return 0, 0, ErrFileClosed
	}
	fi, err := os.Stat(f.path)
	if err != nil {
		return 0, 0, err
	}
	before = fi.Size()
	if err := ctx.Err(); err != nil {
		return before, before, err
	}
	if err := f.store.Close(); err != nil {
		f.store = nil
		return before, before, fmt.Errorf("%w: close: %w", ErrFileClosed, err)
	}
	f.store = nil
	tmp := f.path + ".compact"
	copyErr := compactFile(f.path, tmp)
	if copyErr == nil {
		if err := os.Rename(tmp, f.path); err != nil {
			copyErr = err
		} else if err := syncDir(filepath.Dir(f.path)); err != nil {
			copyErr = err
		}
	}
	if copyErr != nil {
		_ = os.Remove(tmp)
	}
	store, err := raftboltdb.New(f.opts)
	if err != nil {
		return before, before, fmt.Errorf("%w: reopen: %w", ErrFileClosed, errors.Join(copyErr, err))
	}
	f.store = store
	if copyErr != nil {
		return before, before, fmt.Errorf("compact raft log: %w", copyErr)
	}
	if fi, err := os.Stat(f.path); err == nil {
		after = fi.Size()
	}
	return before, after, nil
}

// compactFile copies the bbolt file src into a new, synced file dst.
func compactFile(src, dst string) error {
	_ = os.Remove(dst)
	in, err := bolt.Open(src, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := bolt.Open(dst, 0o600, &bolt.Options{NoSync: true, NoFreelistSync: true})
	if err != nil {
		return err
	}
	if err := bolt.Compact(out, in, 64<<20); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
