package workers

import (
	"context"
	"sync"
	"testing"
)

func TestSubmitNeverWaits(t *testing.T) {
	p := New()
	// No worker runs: every task gets a goroutine of its own.
	var wg sync.WaitGroup
	for range 10 {
		wg.Add(1)
		p.Submit(wg.Done)
	}
	wg.Wait()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	ran := make(chan int, 100)
	for i := range 100 {
		p.Submit(func() { ran <- i })
	}
	seen := map[int]bool{}
	for range 100 {
		seen[<-ran] = true
	}
	if len(seen) != 100 {
		t.Fatalf("%d distinct tasks ran, want 100", len(seen))
	}
	cancel()
	<-done
}
