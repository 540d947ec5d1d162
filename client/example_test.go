package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"sort"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/client"
)

// The examples run against an in-process three-member cluster (see
// exampleEndpoints in main_test.go); in a program, Endpoints lists the
// client addresses of kvd members, such as "127.0.0.1:7379".

func ExampleNew() {
	c, err := client.New(client.Config{
		Endpoints:   exampleEndpoints(),
		DialTimeout: 2 * time.Second,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, "greeting", "hello"); err != nil {
		log.Fatal(err)
	}
	resp, err := c.Get(ctx, "greeting")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s = %s\n", resp.Kvs[0].Key, resp.Kvs[0].Value)
	// Output: greeting = hello
}

func ExampleConfig_Validate() {
	cfg := client.Config{Endpoints: []string{"unix://127.0.0.1:7379"}}
	fmt.Println(cfg.Validate())
	// Output: invalid client config: endpoint "unix://127.0.0.1:7379": want host:port, https://host:port or http://host:port
}

func ExampleClient_Put() {
	c, err := client.New(client.Config{Endpoints: exampleEndpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	first, err := c.Put(ctx, "put-example/mode", "slow")
	if err != nil {
		log.Fatal(err)
	}
	resp, err := c.Put(ctx, "put-example/mode", "fast", client.WithPrevKV())
	switch {
	case apierr.IsNotApplied(err):
		// Certainly not applied (for example no leader before ctx ended):
		// safe to try again later.
		log.Fatal(err)
	case err != nil:
		// The outcome is unknown: the write may have been applied.
		log.Fatal(err)
	}
	fmt.Println("written at a later revision:", resp.Header.Revision > first.Header.Revision)
	if resp.PrevKv != nil {
		fmt.Printf("replaced %q\n", resp.PrevKv.Value)
	}
	// Output:
	// written at a later revision: true
	// replaced "slow"
}

func ExampleClient_Get() {
	c, err := client.New(client.Config{Endpoints: exampleEndpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	for i := range 4 {
		if _, err := c.Put(ctx, fmt.Sprintf("get-example/%d", i), "on"); err != nil {
			log.Fatal(err)
		}
	}
	if _, err := c.Put(ctx, "get-example/0", "off"); err != nil {
		log.Fatal(err)
	}

	resp, err := c.Get(ctx, "get-example/", client.WithPrefix(), client.WithLimit(3))
	if err != nil {
		log.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		fmt.Printf("%s = %s (version %d)\n", kv.Key, kv.Value, kv.Version)
	}
	if resp.More {
		fmt.Printf("... and %d more\n", resp.Count-int64(len(resp.Kvs)))
	}
	// Output:
	// get-example/0 = off (version 2)
	// get-example/1 = on (version 1)
	// get-example/2 = on (version 1)
	// ... and 1 more
}

func ExampleClient_Delete() {
	c, err := client.New(client.Config{Endpoints: exampleEndpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	for _, k := range []string{"delete-example/a", "delete-example/b"} {
		if _, err := c.Put(ctx, k, "v"); err != nil {
			log.Fatal(err)
		}
	}

	resp, err := c.Delete(ctx, "delete-example/", client.WithPrefix())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("deleted", resp.Deleted)
	// Output: deleted 2
}

func ExampleClient_Txn() {
	c, err := client.New(client.Config{Endpoints: exampleEndpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	if _, err := c.Put(ctx, "txn-example/leader", "node-1"); err != nil {
		log.Fatal(err)
	}
	// Compare-and-swap: replace the value only if nobody changed it. The
	// second swap finds node-2 and changes nothing.
	for range 2 {
		resp, err := c.Txn(ctx).
			If(client.Compare(client.Value("txn-example/leader"), "=", "node-1")).
			Then(client.OpPut("txn-example/leader", "node-2")).
			Else(client.OpGet("txn-example/leader")).
			Commit()
		if err != nil {
			log.Fatal(err)
		}
		if resp.Succeeded {
			fmt.Println("swapped")
			continue
		}
		current := resp.Responses[0].GetResponseRange().GetKvs()
		fmt.Printf("not swapped, leader is %q\n", current[0].Value)
	}
	// Output:
	// swapped
	// not swapped, leader is "node-2"
}

func ExampleCompare() {
	c, err := client.New(client.Config{Endpoints: exampleEndpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Create the key only if it does not exist yet: the second attempt
	// finds it.
	for _, who := range []string{"me", "someone else"} {
		resp, err := c.Txn(context.Background()).
			If(client.Compare(client.CreateRevision("compare-example/lock"), "=", 0)).
			Then(client.OpPut("compare-example/lock", who)).
			Commit()
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(who, "created it:", resp.Succeeded)
	}
	// Output:
	// me created it: true
	// someone else created it: false
}

func ExampleCompare_invalidOperator() {
	cmp := client.Compare(client.Version("k"), "<=", 3)
	fmt.Println(cmp.Err())
	// Output: client: compare of "k": invalid operator "<=": want =, !=, < or >
}

func ExamplePrefixEnd() {
	fmt.Printf("%q\n", client.PrefixEnd("config/"))
	fmt.Printf("%q\n", client.PrefixEnd("a\xff"))
	fmt.Printf("%q\n", client.PrefixEnd(""))
	// Output:
	// "config0"
	// "b"
	// "\x00"
}

func ExampleWithPrefix() {
	c, err := client.New(client.Config{Endpoints: exampleEndpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	for _, job := range []string{"build", "test", "deploy"} {
		if _, err := c.Put(context.Background(), "prefix-example/jobs/"+job, "queued"); err != nil {
			log.Fatal(err)
		}
	}

	// Count the keys under "prefix-example/jobs/" without fetching them.
	resp, err := c.Get(context.Background(), "prefix-example/jobs/", client.WithPrefix(), client.WithCountOnly())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Count, "jobs")
	// Output: 3 jobs
}

func ExampleClient_Do() {
	c, err := client.New(client.Config{Endpoints: exampleEndpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ops := []client.Op{
		client.OpPut("do-example/a", "1"),
		client.OpGet("do-example/a"),
	}
	for _, op := range ops {
		resp, err := c.Do(context.Background(), op)
		if err != nil {
			log.Fatal(err)
		}
		if g := resp.Get(); g != nil {
			fmt.Println(g.Count)
		}
	}
	// Output: 1
}

func ExampleClient_Status() {
	endpoints := exampleEndpoints()
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Status asks one member about itself (its raft state, the leader it
	// knows, its indexes); it is not forwarded.
	for _, ep := range endpoints {
		st, err := c.Status(context.Background(), ep)
		if err != nil {
			fmt.Println(ep, "is down:", err)
			continue
		}
		fmt.Println(st.Name, "runs kvd", st.Version)
	}
	// Output:
	// m1 runs kvd dev
	// m2 runs kvd dev
	// m3 runs kvd dev
}

func ExampleErrClosed() {
	// No member is reached: New does not wait for a connection.
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7379"}})
	if err != nil {
		log.Fatal(err)
	}
	_ = c.Close()
	_, err = c.Get(context.Background(), "k")
	fmt.Println(errors.Is(err, client.ErrClosed))
	// Output: true
}

func ExampleClient_MemberAdd() {
	c, err := client.New(client.Config{Endpoints: exampleEndpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Add the new member as a learner: it catches up without counting
	// towards quorum. Then start kvd on it with --join and --learner.
	resp, err := c.MemberAdd(ctx, "n4", "10.0.0.4:7380",
		client.WithLearner(), client.WithClientAddr("10.0.0.4:7379"))
	if status.Code(err) == codes.AlreadyExists {
		log.Fatal("n4 is already a member: ", err)
	}
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("added %s (learner: %t), the cluster has %d members\n", resp.Member.Name, resp.Member.IsLearner, len(resp.Members))

	// (Nothing runs on 10.0.0.4 here: remove it again.)
	if _, err := c.MemberRemove(ctx, "n4"); err != nil {
		log.Fatal(err)
	}
	// Output: added n4 (learner: true), the cluster has 4 members
}

func ExampleClient_MemberPromote() {
	c, err := client.New(client.Config{Endpoints: exampleEndpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// A learner to promote; here nothing runs on its address, so it never
	// catches up.
	if _, err := c.MemberAdd(context.Background(), "n5", "10.0.0.5:7380", client.WithLearner()); err != nil {
		log.Fatal(err)
	}
	defer func() {
		if _, err := c.MemberRemove(context.Background(), "n5"); err != nil {
			log.Fatal(err)
		}
	}()

	// A learner that lags far behind is refused with FailedPrecondition:
	// wait and try again, for as long as the caller can wait.
	giveUp := time.Now().Add(2 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.MemberPromote(ctx, "n5")
		cancel()
		if status.Code(err) != codes.FailedPrecondition {
			if err != nil {
				log.Fatal(err)
			}
			fmt.Println("n5 votes")
			break
		}
		if time.Now().After(giveUp) {
			fmt.Println("n5 has not caught up yet")
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Output: n5 has not caught up yet
}

func ExampleClient_MemberRemove() {
	c, err := client.New(client.Config{Endpoints: exampleEndpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A member to remove (a learner that never started, here).
	if _, err := c.MemberAdd(ctx, "n6", "10.0.0.6:7380", client.WithLearner()); err != nil {
		log.Fatal(err)
	}

	resp, err := c.MemberRemove(ctx, "n6")
	if err != nil {
		log.Fatal(err)
	}
	var names []string
	for _, m := range resp.Members {
		names = append(names, m.Name)
	}
	sort.Strings(names)
	fmt.Println("still members:", names)
	// Output: still members: [m1 m2 m3]
}

func ExampleClient_LeaderTransfer() {
	c, err := client.New(client.Config{Endpoints: exampleEndpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	before, err := c.Status(ctx, exampleEndpoints()[0])
	if err != nil {
		log.Fatal(err)
	}
	// An empty name lets raft pick the most up-to-date voter.
	resp, err := c.LeaderTransfer(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("the leader moved:", resp.Leader != before.LeaderName)
	// Output: the leader moved: true
}

func ExampleClient_HashKV() {
	endpoints := exampleEndpoints()
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// Hash every member at the same revision; members that applied the
	// same log agree.
	cur, err := c.Get(ctx, "health", client.WithCountOnly())
	if err != nil {
		log.Fatal(err)
	}
	hashes := map[uint32][]string{}
	for _, ep := range endpoints {
		h, err := c.HashKV(ctx, ep, cur.Header.Revision)
		if err != nil {
			log.Fatal(err)
		}
		hashes[h.Hash] = append(hashes[h.Hash], ep)
	}
	if len(hashes) > 1 {
		fmt.Println("members disagree:", hashes)
		return
	}
	fmt.Println("the members agree")
	// Output: the members agree
}

func ExampleClient_Snapshot() {
	c, err := client.New(client.Config{Endpoints: exampleEndpoints()})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// No deadline shorter than the transfer needs.
	sr, err := c.Snapshot(context.Background(), exampleEndpoints()[0])
	if err != nil {
		log.Fatal(err)
	}
	defer sr.Close()
	f, err := os.CreateTemp("", "state-*.db")
	if err != nil {
		log.Fatal(err)
	}
	defer os.Remove(f.Name()) // an example: keep nothing
	defer f.Close()
	// io.Copy fails unless every byte arrived and matched the checksum the
	// member sent; then the copy must be discarded.
	n, err := io.Copy(f, sr)
	if err != nil {
		_ = os.Remove(f.Name())
		log.Fatal(err)
	}
	fmt.Println("every byte arrived and matched:", n == sr.Size())
	// Output: every byte arrived and matched: true
}
