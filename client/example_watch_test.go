package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/client"
)

// The examples of watches, compaction and defragmentation. Like those in
// example_test.go, they run against the in-process cluster of
// exampleEndpoints.

func ExampleClient_Watch() {
	c, err := client.New(client.Config{Endpoints: exampleEndpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Watch returns once the watcher exists: the put below is seen.
	wch := c.Watch(ctx, "watch-example/", client.WithPrefix())
	if _, err := c.Put(ctx, "watch-example/mode", "fast"); err != nil {
		log.Fatal(err)
	}
	if _, err := c.Delete(ctx, "watch-example/mode"); err != nil {
		log.Fatal(err)
	}
	for n := 0; n < 2; {
		resp, ok := <-wch
		if !ok {
			log.Fatal("watch ended: ", ctx.Err())
		}
		if err := resp.Err(); err != nil {
			log.Fatal(err)
		}
		for _, ev := range resp.Events {
			switch ev.Type {
			case client.EventTypePut:
				fmt.Printf("PUT %s = %s\n", ev.Kv.Key, ev.Kv.Value)
			case client.EventTypeDelete:
				fmt.Printf("DELETE %s\n", ev.Kv.Key)
			}
			n++
		}
	}
	// Output:
	// PUT watch-example/mode = fast
	// DELETE watch-example/mode
}

func ExampleClient_Watch_replay() {
	c, err := client.New(client.Config{Endpoints: exampleEndpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	first, err := c.Put(ctx, "replay-example/jobs/1", "queued")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Put(ctx, "replay-example/jobs/1", "running"); err != nil {
		log.Fatal(err)
	}

	// WithRev replays the history from a past revision, then follows new
	// changes; WithPrevKV adds each key's value before the change.
	wch := c.Watch(ctx, "replay-example/jobs/", client.WithPrefix(), client.WithRev(first.Header.Revision), client.WithPrevKV())
	for n := 0; n < 2; {
		resp := <-wch
		if err := resp.Err(); err != nil {
			log.Fatal(err)
		}
		for _, ev := range resp.Events {
			if ev.PrevKv != nil {
				fmt.Printf("%s: %s -> %s\n", ev.Kv.Key, ev.PrevKv.Value, ev.Kv.Value)
			} else {
				fmt.Printf("%s: %s\n", ev.Kv.Key, ev.Kv.Value)
			}
			n++
		}
	}
	// Output:
	// replay-example/jobs/1: queued
	// replay-example/jobs/1: queued -> running
}

func ExampleClient_RequestProgress() {
	c, err := client.New(client.Config{Endpoints: exampleEndpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	wch := c.Watch(ctx, "progress-example/rarely-changes")
	put, err := c.Put(ctx, "progress-example/something-else", "x")
	if err != nil {
		log.Fatal(err)
	}
	// A progress notification tells how far the watcher is: every event up
	// to its header revision has been delivered, though there was none. The
	// watch is served by one member, from what it has applied: one that has
	// not applied the put yet tells an older revision; ask again.
	for {
		if err := c.RequestProgress(ctx); err != nil {
			log.Fatal(err)
		}
		resp, ok := <-wch
		if !ok {
			log.Fatal("watch ended: ", ctx.Err())
		}
		if !resp.IsProgressNotify() {
			log.Fatalf("not a progress notification: %v", resp)
		}
		if resp.Header.Revision >= put.Header.Revision {
			fmt.Println("the watcher is past the put")
			break
		}
	}
	// Output: the watcher is past the put
}

func ExampleClient_Compact() {
	c, err := client.New(client.Config{Endpoints: exampleEndpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	old, err := c.Put(ctx, "compact-example/counter", "1")
	if err != nil {
		log.Fatal(err)
	}
	now, err := c.Put(ctx, "compact-example/counter", "2")
	if err != nil {
		log.Fatal(err)
	}
	// Keep the history from the current revision on; older revisions go.
	if _, err := c.Compact(ctx, now.Header.Revision, client.WithCompactPhysical()); err != nil {
		log.Fatal(err)
	}
	_, err = c.Get(ctx, "compact-example/counter", client.WithRev(old.Header.Revision))
	fmt.Println(status.Code(err))
	resp, err := c.Get(ctx, "compact-example/counter")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", resp.Kvs[0].Value)
	// Output:
	// OutOfRange
	// 2
}

func ExampleErrCompacted() {
	// A watch is served from its member's state. With one endpoint and a
	// physical compaction, the member that serves the watch below has
	// applied the compaction when Compact returns.
	c, err := client.New(client.Config{Endpoints: exampleEndpoints()[:1]})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	first, err := c.Put(ctx, "compacted-example/a", "1")
	if err != nil {
		log.Fatal(err)
	}
	second, err := c.Put(ctx, "compacted-example/a", "2")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Compact(ctx, second.Header.Revision, client.WithCompactPhysical()); err != nil {
		log.Fatal(err)
	}

	// A watch from a compacted revision ends at once: read the keys anew,
	// then watch from the revision after that read.
	resp := <-c.Watch(ctx, "compacted-example/", client.WithPrefix(), client.WithRev(first.Header.Revision))
	if !errors.Is(resp.Err(), client.ErrCompacted) {
		log.Fatal("not compacted: ", resp.Err())
	}
	fmt.Println(status.Code(resp.Err()), resp.CompactRevision == second.Header.Revision)
	get, err := c.Get(ctx, "compacted-example/", client.WithPrefix())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s = %s\n", get.Kvs[0].Key, get.Kvs[0].Value)
	wch := c.Watch(ctx, "compacted-example/", client.WithPrefix(), client.WithRev(get.Header.Revision+1))
	_ = wch // follow the changes from here
	// Output:
	// OutOfRange true
	// compacted-example/a = 2
}

func ExampleClient_Defragment() {
	endpoints := exampleEndpoints()
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// One member at a time: each rewrites its state file while serving.
	for _, ep := range endpoints {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		resp, err := c.Defragment(ctx, ep)
		cancel()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println("defragmented, not larger than before:", resp.DbSize <= resp.DbSizeBefore)
	}
	// Output:
	// defragmented, not larger than before: true
	// defragmented, not larger than before: true
	// defragmented, not larger than before: true
}
