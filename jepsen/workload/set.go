package workload

import (
	"context"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/kvd-io/kvd/client"
	"github.com/kvd-io/kvd/jepsen/checker"
	"github.com/kvd-io/kvd/jepsen/history"
)

// DefaultSetPrefix starts the set's keys.
const DefaultSetPrefix = "jepsen/s/"

// Set is the set workload: every add puts a unique element as a key under
// a prefix; the final reads list the prefix on every member.
type Set struct {
	prefix string
	next   atomic.Int64
}

// NewSet returns a set workload whose elements live under prefix.
func NewSet(prefix string) *Set { return &Set{prefix: prefix} }

// Name implements Workload.
func (s *Set) Name() string { return "set" }

// IsWrite implements Workload.
func (s *Set) IsWrite(f string) bool { return f == checker.FAdd }

// Next implements Workload.
func (s *Set) Next(*rand.Rand) history.Event {
	return history.Event{F: checker.FAdd, Value: history.Str(strconv.FormatInt(s.next.Add(1), 10))}
}

// key returns the key of element e; zero-padded so keys sort like numbers.
func (s *Set) key(e string) string {
	n, _ := strconv.ParseInt(e, 10, 64)
	return fmt.Sprintf("%s%012d", s.prefix, n)
}

// Apply implements Workload.
func (s *Set) Apply(ctx context.Context, kv client.KV, op history.Event) history.Event {
	if op.F != checker.FAdd {
		return history.Event{Type: history.Fail, F: op.F, Error: "unknown operation " + op.F}
	}
	_, err := kv.Put(ctx, s.key(*op.Value), *op.Value)
	c := completion(op, err, false)
	c.Value = op.Value
	return c
}

// finalPage is how many keys one final read page asks for: kvd caps a
// response at 512 KiB, so a large set is read in pages, all at the revision
// of the first page, which makes the pages one consistent snapshot.
const finalPage = 2000

// Final implements Workload: a linearizable read of the whole set on each
// member in turn, retried until it succeeds or the member's share of ctx
// ends (so one member that never answers cannot starve the others).
func (s *Set) Final(ctx context.Context, env FinalEnv) error {
	share := 5 * time.Second
	if dl, ok := ctx.Deadline(); ok {
		share = max(share, time.Until(dl)/time.Duration(len(env.Members)))
	}
	return readEveryMember(env, func(name string) error {
		mctx, cancel := context.WithTimeout(ctx, share)
		defer cancel()
		return s.finalRead(mctx, env, name)
	})
}

func (s *Set) finalRead(ctx context.Context, env FinalEnv, name string) error {
	cli, err := env.client(env.Members[name])
	if err != nil {
		return err
	}
	defer cli.Close()
	proc := env.NewProcess()
	for {
		env.Record(history.Event{Type: history.Invoke, Process: proc, F: checker.FReadAll, Node: name})
		values, err := s.readAll(ctx, cli, env.OpTimeout)
		c := history.Event{Type: Classify(err, true), Process: proc, F: checker.FReadAll, Node: name}
		if err != nil {
			c.Error = err.Error()
		} else {
			c.Values = values
		}
		env.Record(c)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// readAll lists the set's elements in pages: the first page is a
// linearizable read, the others read at its revision.
func (s *Set) readAll(ctx context.Context, cli *client.Client, timeout time.Duration) ([]string, error) {
	end := client.PrefixEnd(s.prefix)
	from, rev := s.prefix, int64(0)
	values := []string{}
	for {
		opts := []client.OpOption{client.WithRange(end), client.WithKeysOnly(), client.WithLimit(finalPage)}
		if rev > 0 {
			opts = append(opts, client.WithRev(rev))
		}
		rctx, cancel := context.WithTimeout(ctx, timeout)
		resp, err := cli.Get(rctx, from, opts...)
		cancel()
		if err != nil {
			return nil, err
		}
		if rev == 0 {
			rev = resp.Header.GetRevision()
		}
		for _, kv := range resp.Kvs {
			e, err := s.element(string(kv.Key))
			if err != nil {
				return nil, err
			}
			values = append(values, e)
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return values, nil
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}

// element returns the element a key holds; the inverse of key.
func (s *Set) element(key string) (string, error) {
	n, err := strconv.ParseInt(strings.TrimPrefix(key, s.prefix), 10, 64)
	if err != nil || !strings.HasPrefix(key, s.prefix) {
		return "", fmt.Errorf("set: unexpected key %q under %q", key, s.prefix)
	}
	return strconv.FormatInt(n, 10), nil
}

// Check implements Workload: lost, phantom and unexpected elements.
func (s *Set) Check(events []history.Event, opts CheckOptions) (Report, error) {
	res, err := checker.CheckSet(events, opts.Members)
	if err != nil {
		return Report{}, err
	}
	return Report{Verdict: res.Verdict, Problems: res.Problems, Details: res}, nil
}
