package server

import (
	"context"
	"testing"
	"time"
)

// A read that arrives while a fetch is in flight must wait for the next
// fetch: the index of one that began before the read arrived could miss a
// write acknowledged before the read.
func TestReadIndexerNeverAnswersWithAFetchThatBeganBeforeTheRead(t *testing.T) {
	type fetch struct {
		answer chan uint64
	}
	fetches := make(chan fetch)
	stop := make(chan struct{})
	r := newReadIndexer(func(ctx context.Context) (uint64, error) {
		f := fetch{answer: make(chan uint64)}
		fetches <- f
		return <-f.answer, nil
	}, 10*time.Second, stop, nil, func(fn func()) { go fn() })
	done := make(chan struct{})
	go func() { r.run(); close(done) }()
	defer func() { close(stop); <-done }()

	read := func() chan uint64 {
		got := make(chan uint64, 1)
		r.await(func(res readIndexResult) {
			if res.err != nil {
				t.Errorf("read index: %v", res.err)
			}
			got <- res.index
		})
		return got
	}
	first := read()
	f1 := <-fetches // the first fetch has begun, for the first read only
	second := read()
	f1.answer <- 10
	if got := <-first; got != 10 {
		t.Fatalf("first read got index %d, want 10", got)
	}
	select {
	case got := <-second:
		t.Fatalf("a read that arrived during a fetch was answered by it (index %d)", got)
	case f2 := <-fetches:
		f2.answer <- 20
	}
	if got := <-second; got != 20 {
		t.Fatalf("second read got index %d, want 20 from the fetch that began after it", got)
	}
}
