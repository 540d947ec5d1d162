package console

import (
	"net/http"
	"time"

	"github.com/kvd-io/kvd/client"
)

// eventJSON is one change of a watched prefix.
type eventJSON struct {
	Type     string  `json:"type"` // PUT or DELETE
	KV       *kvJSON `json:"kv"`
	Revision int64   `json:"revision"`
}

// handleWatch streams the changes of the keys under a prefix as they
// happen (WatchService through the session's client, so the user's read
// permission on the prefix is checked by the member) until the page goes.
func (c *Console) handleWatch(w http.ResponseWriter, r *http.Request) {
	who, err := c.sessions.caller(r)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	prefix, err := keyParam(r, "prefix", true)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	rev, err := intParam(r, "rev")
	if err != nil {
		writeAPIError(w, err)
		return
	}
	ctx, cancel := mergeCancel(r, c)
	defer cancel()
	opts := []client.OpOption{client.WithCreatedNotify()}
	if prefix == "" {
		opts = append(opts, client.WithFromKey())
		prefix = "\x00"
	} else {
		opts = append(opts, client.WithPrefix())
	}
	if rev > 0 {
		opts = append(opts, client.WithRev(rev))
	}
	wch := who.cli.Watch(ctx, prefix, opts...)
	// The first response says whether the member took the watch: a refusal
	// (no permission, compacted revision) is an ordinary error answer.
	var first client.WatchResponse
	select {
	case first = <-wch:
	case <-ctx.Done():
		return
	case <-time.After(requestTimeout):
		writeError(w, http.StatusGatewayTimeout, "the member did not start the watch in time")
		return
	}
	if err := first.Err(); err != nil {
		writeAPIError(w, err)
		return
	}
	sse, err := startSSE(w)
	if err != nil {
		return
	}
	if err := sse.send("created", map[string]int64{"revision": first.Header.GetRevision()}); err != nil {
		return
	}
	ping := time.NewTicker(pingInterval)
	defer ping.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-ping.C:
			if sse.ping() != nil {
				return
			}
		case resp, ok := <-wch:
			if !ok {
				_ = sse.send("end", map[string]string{"error": "the watch ended"})
				return
			}
			if err := resp.Err(); err != nil {
				_ = sse.send("end", map[string]string{"error": grpcMessage(err)})
				return
			}
			for _, ev := range resp.Events {
				t := "PUT"
				if ev.GetType() == client.EventTypeDelete {
					t = "DELETE"
				}
				if sse.send("event", eventJSON{Type: t, KV: newKV(ev.GetKv(), true), Revision: ev.GetKv().GetModRevision()}) != nil {
					return
				}
			}
		}
	}
}
