package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/kvd-io/kvd/internal/opstream"
)

func TestStreamCarriesConcurrentCalls(t *testing.T) {
	f := newFake("a", 1)
	addr, _ := serve(t, f)
	c := newTestClient(t, addr)
	ctx := testContext(t, 10*time.Second)

	const n = 50
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("key-%d", i)
			resp, err := c.Get(ctx, key)
			if err != nil {
				errs <- err
				return
			}
			// The fake echoes the key: a result handed to the wrong call
			// shows here.
			if got := string(resp.Kvs[0].Key); got != key {
				errs <- fmt.Errorf("get %q answered for %q", key, got)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := f.count("Stream"); got != 1 {
		t.Errorf("%d streams opened, want 1 shared by every call", got)
	}
	if got := f.count("Range"); got != n {
		t.Errorf("server served %d ranges, want %d", got, n)
	}
}

func TestEndpointWithoutStreamsGetsUnaryCalls(t *testing.T) {
	f := newFake("a", 1)
	f.noStream = true
	addr, _ := serve(t, f)
	c := newTestClient(t, addr)
	ctx := testContext(t, 10*time.Second)

	for i := range 3 {
		if _, err := c.Put(ctx, "k", fmt.Sprint(i)); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if got := f.count("Put"); got != 3 {
		t.Errorf("server served %d puts, want 3 (each once)", got)
	}
	if _, err := c.pool.Stream(addr); !errors.Is(err, opstream.ErrNotServed) {
		t.Error("the client did not record that the endpoint serves no streams")
	}
}

func TestDrainingStreamIsReplaced(t *testing.T) {
	f := newFake("a", 1)
	f.drainAfter = 1
	addr, _ := serve(t, f)
	c := newTestClient(t, addr)
	ctx := testContext(t, 10*time.Second)

	// Each stream sends a draining notice after its first op; every call
	// must still succeed, on a new stream once the old one drains.
	for i := range 5 {
		if _, err := c.Put(ctx, "k", fmt.Sprint(i)); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if got := f.count("Put"); got != 5 {
		t.Errorf("server served %d puts, want 5", got)
	}
	if got := f.count("Stream"); got < 2 {
		t.Errorf("%d streams opened, want a new one after each drain", got)
	}
}

func TestLargeRequestGoesAsUnaryCall(t *testing.T) {
	f := newFake("a", 1)
	addr, _ := serve(t, f)
	c := newTestClient(t, addr)
	ctx := testContext(t, 10*time.Second)

	if _, err := c.Put(ctx, "big", strings.Repeat("x", maxStreamOpBytes+1)); err != nil {
		t.Fatal(err)
	}
	if got := f.count("Stream"); got != 0 {
		t.Errorf("%d streams opened for a request over %d bytes, want 0", got, maxStreamOpBytes)
	}
	if _, err := c.Put(ctx, "small", "x"); err != nil {
		t.Fatal(err)
	}
	if got := f.count("Stream"); got != 1 {
		t.Errorf("%d streams opened after a small request, want 1", got)
	}
}

func TestCloseEndsCallsInFlightOnStream(t *testing.T) {
	f := newFake("a", 1)
	entered := make(chan struct{})
	var once sync.Once
	f.hook = func(ctx context.Context, method string, _ int) error {
		once.Do(func() { close(entered) })
		<-ctx.Done()
		return ctx.Err()
	}
	addr, _ := serve(t, f)
	c := newTestClient(t, addr)
	ctx := testContext(t, 10*time.Second)

	errc := make(chan error, 1)
	go func() {
		_, err := c.Put(ctx, "k", "v")
		errc <- err
	}()
	select {
	case <-entered:
	case <-ctx.Done():
		t.Fatal("the put never reached the server")
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Error("Put succeeded after Close")
		}
	case <-ctx.Done():
		t.Fatal("Put did not return after Close")
	}
}
