package console

import (
	"context"
	"encoding/base64"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/kvd-io/kvd/client"
)

// maxLeases bounds the leases one page lists with their keys; the total
// is still reported.
const maxLeases = 200

type leaseJSON struct {
	ID         string   `json:"id"` // hex
	TTL        int64    `json:"ttl"`
	GrantedTTL int64    `json:"granted_ttl"`
	Keys       []string `json:"keys"`
	// Error says why the TTL is unknown (the lease ended meanwhile).
	Error string `json:"error,omitempty"`
}

type leasesJSON struct {
	Leases []leaseJSON `json:"leases"`
	Total  int         `json:"total"`
}

func (c *Console) handleLeases(w http.ResponseWriter, r *http.Request, who caller) error {
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	resp, err := who.cli.Leases(ctx)
	if err != nil {
		return err
	}
	ids := make([]int64, 0, len(resp.GetLeases()))
	for _, l := range resp.GetLeases() {
		ids = append(ids, l.GetId())
	}
	slices.Sort(ids)
	out := leasesJSON{Total: len(ids), Leases: make([]leaseJSON, min(len(ids), maxLeases))}
	// A few at a time: each asks the leader.
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range out.Leases {
		l := &out.Leases[i]
		l.ID, l.Keys = strconv.FormatInt(ids[i], 16), []string{}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			ttl, err := who.cli.TimeToLive(ctx, ids[i], client.WithAttachedKeys())
			if err != nil {
				l.Error = grpcMessage(err)
				return
			}
			l.TTL, l.GrantedTTL = ttl.GetTtl(), ttl.GetGrantedTtl()
			for _, k := range ttl.GetKeys() {
				l.Keys = append(l.Keys, display(k))
			}
		})
	}
	wg.Wait()
	writeJSON(w, http.StatusOK, out)
	return nil
}

// queueJSON is one lock or election: its name, who holds or leads it, and
// how many wait behind.
type queueJSON struct {
	Name    string  `json:"name"`
	Holder  *kvJSON `json:"holder"`
	Waiters int64   `json:"waiters"`
}

type queuesJSON struct {
	Prefix string      `json:"prefix"`
	Queues []queueJSON `json:"queues"`
	// More is set when the prefix has more children than one page.
	More bool `json:"more,omitempty"`
}

// handleLocks lists the locks and elections under a prefix. The recipes
// (rpc/recipe.go, client/concurrency) keep a queue of keys under
// "name/", one per lease ("name/" and the lease id in hex); the key with
// the lowest create revision holds the lock or leads the election, and
// its value is an election's proclamation. A name is the prefix itself
// (when it has such keys) or any directory under it.
func (c *Console) handleLocks(w http.ResponseWriter, r *http.Request, who caller) error {
	prefix, err := keyParam(r, "prefix", true)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	var names []string
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		names = append(names, prefix)
	}
	l, err := children(ctx, who.cli, prefix, "", c.cfg.PageSize)
	if err != nil {
		return err
	}
	for _, e := range l.Entries {
		if e.Dir {
			p, _ := base64.StdEncoding.DecodeString(e.P)
			names = append(names, strings.TrimSuffix(string(p), "/"))
		}
	}
	out := queuesJSON{Prefix: display([]byte(prefix)), Queues: []queueJSON{}, More: l.Next != ""}
	for _, name := range names {
		q, err := queueOf(ctx, who.cli, name)
		if err != nil {
			return err
		}
		if q != nil {
			out.Queues = append(out.Queues, *q)
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// queueOf reads the queue of the lock or election name, nil when its
// first key is not a recipe's (the lease id in hex, written with that
// lease).
func queueOf(ctx context.Context, cli *client.Client, name string) (*queueJSON, error) {
	qp := name + "/"
	first, err := cli.Get(ctx, qp, append([]client.OpOption{client.WithPrefix()}, client.WithFirstCreate()...)...)
	if err != nil || len(first.GetKvs()) == 0 {
		return nil, err
	}
	kv := first.GetKvs()[0]
	if kv.GetLease() == 0 || string(kv.GetKey()) != qp+strconv.FormatInt(kv.GetLease(), 16) {
		return nil, nil
	}
	n, err := cli.Get(ctx, qp, client.WithPrefix(), client.WithCountOnly(), client.WithRev(first.GetHeader().GetRevision()))
	if err != nil {
		return nil, err
	}
	return &queueJSON{Name: display([]byte(name)), Holder: newKV(kv, true), Waiters: max(n.GetCount()-1, 0)}, nil
}
