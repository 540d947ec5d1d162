package client_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/apierr"
	"github.com/kvd-io/kvd/client"
)

// The examples without an Output comment need a running cluster: they
// compile, but go test does not run them.

func ExampleNew() {
	c, err := client.New(client.Config{
		Endpoints:   []string{"127.0.0.1:7379", "127.0.0.1:7479", "127.0.0.1:7579"},
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
}

func ExampleConfig_Validate() {
	cfg := client.Config{Endpoints: []string{"unix://127.0.0.1:7379"}}
	fmt.Println(cfg.Validate())
	// Output: invalid client config: endpoint "unix://127.0.0.1:7379": want host:port, https://host:port or http://host:port
}

func ExampleClient_Put() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	resp, err := c.Put(ctx, "config/mode", "fast", client.WithPrevKV())
	switch {
	case apierr.IsNotApplied(err):
		// Certainly not applied (for example no leader before ctx ended):
		// safe to try again later.
		log.Fatal(err)
	case err != nil:
		// The outcome is unknown: the write may have been applied.
		log.Fatal(err)
	}
	fmt.Println("written at revision", resp.Header.Revision)
	if resp.PrevKv != nil {
		fmt.Printf("replaced %q\n", resp.PrevKv.Value)
	}
}

func ExampleClient_Get() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	resp, err := c.Get(ctx, "config/", client.WithPrefix(), client.WithLimit(10))
	if err != nil {
		log.Fatal(err)
	}
	for _, kv := range resp.Kvs {
		fmt.Printf("%s = %s (version %d)\n", kv.Key, kv.Value, kv.Version)
	}
	if resp.More {
		fmt.Printf("... and %d more\n", resp.Count-int64(len(resp.Kvs)))
	}
}

func ExampleClient_Delete() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	resp, err := c.Delete(ctx, "config/", client.WithPrefix())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("deleted", resp.Deleted)
}

func ExampleClient_Txn() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	// Compare-and-swap: replace the value only if nobody changed it.
	resp, err := c.Txn(ctx).
		If(client.Compare(client.Value("leader"), "=", "node-1")).
		Then(client.OpPut("leader", "node-2")).
		Else(client.OpGet("leader")).
		Commit()
	if err != nil {
		log.Fatal(err)
	}
	if resp.Succeeded {
		fmt.Println("swapped")
		return
	}
	current := resp.Responses[0].GetResponseRange().GetKvs()
	fmt.Printf("not swapped, leader is %q\n", current[0].Value)
}

func ExampleCompare() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Create the key only if it does not exist yet.
	_, err = c.Txn(context.Background()).
		If(client.Compare(client.CreateRevision("lock"), "=", 0)).
		Then(client.OpPut("lock", "me")).
		Commit()
	if err != nil {
		log.Fatal(err)
	}
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
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// Count the keys under "jobs/" without fetching them.
	resp, err := c.Get(context.Background(), "jobs/", client.WithPrefix(), client.WithCountOnly())
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(resp.Count, "jobs")
}

func ExampleClient_Do() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ops := []client.Op{
		client.OpPut("a", "1"),
		client.OpGet("a"),
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
}

func ExampleClient_Status() {
	endpoints := []string{"127.0.0.1:7379", "127.0.0.1:7479"}
	c, err := client.New(client.Config{Endpoints: endpoints})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	for _, ep := range endpoints {
		st, err := c.Status(context.Background(), ep)
		if err != nil {
			fmt.Println(ep, "is down:", err)
			continue
		}
		fmt.Println(ep, st.Name, st.RaftState, "leader:", st.LeaderName)
	}
}

func ExampleErrClosed() {
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
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7379"}})
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
	fmt.Printf("added %s (%x), the cluster has %d members\n", resp.Member.Name, resp.Member.Id, len(resp.Members))
}

func ExampleClient_MemberPromote() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// A learner that lags far behind is refused with FailedPrecondition:
	// wait and try again.
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := c.MemberPromote(ctx, "n4")
		cancel()
		if status.Code(err) == codes.FailedPrecondition {
			time.Sleep(time.Second)
			continue
		}
		if err != nil {
			log.Fatal(err)
		}
		break
	}
	fmt.Println("n4 votes")
}

func ExampleClient_MemberRemove() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7379", "127.0.0.1:7479"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	resp, err := c.MemberRemove(ctx, "n3")
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range resp.Members {
		fmt.Println("still a member:", m.Name)
	}
}

func ExampleClient_LeaderTransfer() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// An empty name lets raft pick the most up-to-date voter.
	resp, err := c.LeaderTransfer(ctx, "")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("the leader is now", resp.Leader)
}

func ExampleClient_HashKV() {
	endpoints := []string{"127.0.0.1:7379", "127.0.0.1:7479", "127.0.0.1:7579"}
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
	}
}

func ExampleClient_Snapshot() {
	c, err := client.New(client.Config{Endpoints: []string{"127.0.0.1:7379"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	// No deadline shorter than the transfer needs.
	sr, err := c.Snapshot(context.Background(), "127.0.0.1:7379")
	if err != nil {
		log.Fatal(err)
	}
	defer sr.Close()
	f, err := os.CreateTemp(".", "state-*.db")
	if err != nil {
		log.Fatal(err)
	}
	defer f.Close()
	// io.Copy fails unless every byte arrived and matched the checksum the
	// member sent; then the copy must be discarded.
	n, err := io.Copy(f, sr)
	if err != nil {
		_ = os.Remove(f.Name())
		log.Fatal(err)
	}
	fmt.Printf("%d of %d bytes, sha256 %x\n", n, sr.Size(), sr.SHA256())
}
