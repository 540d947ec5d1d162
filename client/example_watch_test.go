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
// example_test.go without an Output comment, they need a running cluster:
// they compile, but go test does not run them.

func ExampleClient_Watch() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7379", "127.0.0.1:7479"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Watch returns once the watcher exists: the put below is seen.
	wch := c.Watch(ctx, "config/", client.WithPrefix())
	if _, err := c.Put(ctx, "config/mode", "fast"); err != nil {
		log.Fatal(err)
	}
	if _, err := c.Delete(ctx, "config/mode"); err != nil {
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
}

func ExampleClient_Watch_replay() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	first, err := c.Put(ctx, "jobs/1", "queued")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Put(ctx, "jobs/1", "running"); err != nil {
		log.Fatal(err)
	}

	// WithRev replays the history from a past revision, then follows new
	// changes; WithPrevKV adds each key's value before the change.
	wch := c.Watch(ctx, "jobs/", client.WithPrefix(), client.WithRev(first.Header.Revision), client.WithPrevKV())
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
}

func ExampleClient_RequestProgress() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	wch := c.Watch(ctx, "rarely-changes")
	put, err := c.Put(ctx, "something-else", "x")
	if err != nil {
		log.Fatal(err)
	}
	// A progress notification tells how far the watcher is: every event up
	// to its header revision has been delivered, though there was none.
	if err := c.RequestProgress(ctx); err != nil {
		log.Fatal(err)
	}
	resp := <-wch
	fmt.Println(resp.IsProgressNotify(), resp.Header.Revision >= put.Header.Revision)
}

func ExampleClient_Compact() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	old, err := c.Put(ctx, "counter", "1")
	if err != nil {
		log.Fatal(err)
	}
	now, err := c.Put(ctx, "counter", "2")
	if err != nil {
		log.Fatal(err)
	}
	// Keep the history from the current revision on; older revisions go.
	if _, err := c.Compact(ctx, now.Header.Revision, client.WithCompactPhysical()); err != nil {
		log.Fatal(err)
	}
	_, err = c.Get(ctx, "counter", client.WithRev(old.Header.Revision))
	fmt.Println(status.Code(err))
	resp, err := c.Get(ctx, "counter")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", resp.Kvs[0].Value)
}

func ExampleErrCompacted() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	first, err := c.Put(ctx, "config/a", "1")
	if err != nil {
		log.Fatal(err)
	}
	second, err := c.Put(ctx, "config/a", "2")
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Compact(ctx, second.Header.Revision); err != nil {
		log.Fatal(err)
	}

	// A watch from a compacted revision ends at once: read the keys anew,
	// then watch from the revision after that read.
	resp := <-c.Watch(ctx, "config/", client.WithPrefix(), client.WithRev(first.Header.Revision))
	if !errors.Is(resp.Err(), client.ErrCompacted) {
		log.Fatal("not compacted: ", resp.Err())
	}
	fmt.Println(status.Code(resp.Err()), resp.CompactRevision == second.Header.Revision)
	get, err := c.Get(ctx, "config/", client.WithPrefix())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("config/a = %s\n", get.Kvs[0].Value)
	wch := c.Watch(ctx, "config/", client.WithPrefix(), client.WithRev(get.Header.Revision+1))
	_ = wch // follow the changes from here
}

func ExampleClient_Defragment() {
	endpoints := []string{"127.0.0.1:7379", "127.0.0.1:7479", "127.0.0.1:7579"}
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
		fmt.Printf("%s: %d -> %d bytes\n", ep, resp.DbSizeBefore, resp.DbSize)
	}
}
