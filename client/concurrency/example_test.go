package concurrency_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/client/concurrency"
)

func ExampleMutex() {
	cli, err := client.New(client.Config{Endpoints: exampleEndpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// A session is a lease kept alive in the background; the lock is held
	// at most as long as the session lives.
	s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	m := concurrency.NewMutex(s, "example-mutex/lock/")
	if err := m.Lock(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("locked")
	if err := m.Unlock(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("unlocked")
	// Output:
	// locked
	// unlocked
}

// A lock cannot stop a holder that paused past its lease from acting as if
// it still held it; the fencing token lets the protected resource refuse
// it. Here the resource is a key of kvd itself: each write to it is guarded
// by a compare of the lock key's create revision, which is the token.
func ExampleMutex_Token() {
	cli, err := client.New(client.Config{Endpoints: exampleEndpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	const lock, protected = "example-token/lock/", "example-token/config"
	// guardedPut writes the protected key only while the lock key that
	// carries the token still exists with it as its create revision
	// (Mutex.IsOwner is the same compare).
	guardedPut := func(key string, token int64, value string) bool {
		resp, err := cli.Txn(ctx).
			If(client.Compare(client.CreateRevision(key), "=", token)).
			Then(client.OpPut(protected, value)).
			Commit()
		if err != nil {
			log.Fatal(err)
		}
		return resp.Succeeded
	}

	// A takes the lock and writes with its token.
	sa, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		log.Fatal(err)
	}
	a := concurrency.NewMutex(sa, lock)
	if err := a.Lock(ctx); err != nil {
		log.Fatal(err)
	}
	keyA, tokenA := a.Key(), a.Token()
	fmt.Println("A's write applied:", guardedPut(keyA, tokenA, "written by A"))

	// A pauses past its TTL: its lease is gone (revoked here rather than
	// waited out), and with it A's lock key. B takes the lock.
	sa.Orphan()
	if _, err := cli.Revoke(ctx, sa.Lease()); err != nil {
		log.Fatal(err)
	}
	sb, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		log.Fatal(err)
	}
	defer sb.Close()
	b := concurrency.NewMutex(sb, lock)
	if err := b.Lock(ctx); err != nil {
		log.Fatal(err)
	}
	fmt.Println("B's token is larger:", b.Token() > tokenA)

	// A resumes, still believing it holds the lock: its write is refused.
	fmt.Println("A's stale write applied:", guardedPut(keyA, tokenA, "written by A after its lease"))
	fmt.Println("B's write applied:", guardedPut(b.Key(), b.Token(), "written by B"))
	resp, err := cli.Get(ctx, protected)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s = %s\n", protected, resp.Kvs[0].Value)
	// Output:
	// A's write applied: true
	// B's token is larger: true
	// A's stale write applied: false
	// B's write applied: true
	// example-token/config = written by B
}

func ExampleElection() {
	cli, err := client.New(client.Config{Endpoints: exampleEndpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	s, err := concurrency.NewSession(cli, concurrency.WithTTL(10))
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	e := concurrency.NewElection(s, "example-election/")
	// Campaign returns once this candidate leads.
	if err := e.Campaign(ctx, "node-1"); err != nil {
		log.Fatal(err)
	}
	// A leader announces a new value without giving up leadership.
	if err := e.Proclaim(ctx, "node-1 at v2"); err != nil {
		log.Fatal(err)
	}
	leader, err := e.Leader(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("leader: %s\n", leader.Kvs[0].Value)
	if err := e.Resign(ctx); err != nil {
		log.Fatal(err)
	}
	_, err = e.Leader(ctx)
	fmt.Println(err)
	// Output:
	// leader: node-1 at v2
	// concurrency: election: no leader
}
