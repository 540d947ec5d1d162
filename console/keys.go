package console

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/client"
)

// Keys and values are bytes. The API carries them base64-encoded ("k",
// "value"), beside a display form of the key ("key": the key itself when
// it is UTF-8, escaped otherwise), so that a key of any bytes can be read,
// changed and deleted exactly.

// kvJSON is one key-value pair as the page gets it.
type kvJSON struct {
	Key            string `json:"key"`
	K              string `json:"k"`
	Value          string `json:"value,omitempty"`      // base64
	ValueSize      int    `json:"value_size,omitempty"` // only with the value
	CreateRevision int64  `json:"create_revision"`
	ModRevision    int64  `json:"mod_revision"`
	Version        int64  `json:"version"`
	Lease          string `json:"lease,omitempty"` // hex, as kvctl prints it
}

func newKV(kv *client.KeyValue, withValue bool) *kvJSON {
	if kv == nil {
		return nil
	}
	out := &kvJSON{
		Key: display(kv.GetKey()), K: base64.StdEncoding.EncodeToString(kv.GetKey()),
		CreateRevision: kv.GetCreateRevision(), ModRevision: kv.GetModRevision(), Version: kv.GetVersion(),
	}
	if withValue {
		out.Value, out.ValueSize = base64.StdEncoding.EncodeToString(kv.GetValue()), len(kv.GetValue())
	}
	if kv.GetLease() != 0 {
		out.Lease = strconv.FormatInt(kv.GetLease(), 16)
	}
	return out
}

// display is a key as the page shows it: itself when it is UTF-8 text, Go
// quoted (without the quotes) otherwise.
func display(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	q := strconv.Quote(string(b))
	return q[1 : len(q)-1]
}

// keyParam reads a base64 key from the query parameter name; empty is
// allowed only when allowEmpty.
func keyParam(r *http.Request, name string, allowEmpty bool) (string, error) {
	v := r.URL.Query().Get(name)
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil {
		return "", badRequest(fmt.Sprintf("parameter %s=%q: want base64: %v", name, v, err))
	}
	if len(b) == 0 && !allowEmpty {
		return "", badRequest("parameter " + name + ": the key is empty")
	}
	return string(b), nil
}

// intParam reads a non-negative integer parameter; absent means 0.
func intParam(r *http.Request, name string) (int64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequest(fmt.Sprintf("parameter %s=%q: want a non-negative integer", name, v))
	}
	return n, nil
}

// requestTimeout bounds one handler's calls to the API.
const requestTimeout = 10 * time.Second

// entry is one child of a prefix in the key tree: a key, or a "directory"
// (the keys that continue the prefix with the same name up to a '/').
type entry struct {
	// Name is the child's part after the prefix, a directory's with its
	// trailing '/'.
	Name string `json:"name"`
	Dir  bool   `json:"dir,omitempty"`
	// P is a directory's whole prefix (base64), to list it.
	P  string  `json:"p,omitempty"`
	KV *kvJSON `json:"kv,omitempty"`
}

type listing struct {
	Prefix   string  `json:"prefix"`
	Entries  []entry `json:"entries"`
	Next     string  `json:"next,omitempty"` // base64 start of the next page
	Revision int64   `json:"revision"`
}

// children lists up to limit children of prefix from start on, at one
// revision, reading keys only and at most limit keys per range: a
// directory with a million keys costs the same as one with one, because
// the next range starts after it.
func children(ctx context.Context, cli *client.Client, prefix, start string, limit int) (*listing, error) {
	out := &listing{Prefix: display([]byte(prefix)), Entries: []entry{}}
	if start < prefix {
		start = prefix
	}
	end := client.PrefixEnd(prefix)
	var rev int64
	// Each round adds at least one entry, or finds the page full.
	for round := 0; round < limit+2; round++ {
		opts := []client.OpOption{client.WithKeysOnly(), client.WithLimit(int64(limit))}
		if prefix == "" {
			opts = append(opts, client.WithFromKey())
		} else {
			opts = append(opts, client.WithRange(end))
		}
		if rev > 0 {
			opts = append(opts, client.WithRev(rev))
		}
		resp, err := cli.Get(ctx, start, opts...)
		if err != nil {
			return nil, err
		}
		if rev == 0 {
			rev = resp.GetHeader().GetRevision()
			out.Revision = rev
		}
		kvs := resp.GetKvs()
		for i := 0; i < len(kvs); i++ {
			key := string(kvs[i].GetKey())
			if len(out.Entries) == limit {
				out.Next = base64.StdEncoding.EncodeToString([]byte(key))
				return out, nil
			}
			rest := key[len(prefix):]
			if j := strings.IndexByte(rest, '/'); j >= 0 {
				dir := prefix + rest[:j+1]
				out.Entries = append(out.Entries, entry{Name: display([]byte(rest[:j+1])), Dir: true, P: base64.StdEncoding.EncodeToString([]byte(dir))})
				// Skip the directory's keys in this batch; the next range
				// starts past it.
				for i+1 < len(kvs) && strings.HasPrefix(string(kvs[i+1].GetKey()), dir) {
					i++
				}
				start = client.PrefixEnd(dir)
				continue
			}
			out.Entries = append(out.Entries, entry{Name: display([]byte(rest)), KV: newKV(kvs[i], false)})
			start = key + "\x00"
		}
		if !resp.GetMore() || start == "\x00" || (prefix != "" && start >= end) {
			break
		}
	}
	return out, nil
}

func (c *Console) handleKeys(w http.ResponseWriter, r *http.Request, who caller) error {
	prefix, err := keyParam(r, "prefix", true)
	if err != nil {
		return err
	}
	start, err := keyParam(r, "next", true)
	if err != nil {
		return err
	}
	if start != "" && !strings.HasPrefix(start, prefix) {
		return badRequest("parameter next: the page does not start under the prefix")
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	l, err := children(ctx, who.cli, prefix, start, c.cfg.PageSize)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, l)
	return nil
}

type keyJSON struct {
	KV       *kvJSON `json:"kv"`
	Revision int64   `json:"revision"`
	// LeaseTTL and LeaseGrantedTTL are the remaining and granted TTL of
	// the key's lease, in seconds; LeaseTTL is -1 when the lease is gone.
	LeaseTTL        *int64 `json:"lease_ttl,omitempty"`
	LeaseGrantedTTL int64  `json:"lease_granted_ttl,omitempty"`
	// LeaseError says why the lease's TTL is unknown.
	LeaseError string `json:"lease_error,omitempty"`
}

func (c *Console) handleKey(w http.ResponseWriter, r *http.Request, who caller) error {
	key, err := keyParam(r, "k", false)
	if err != nil {
		return err
	}
	rev, err := intParam(r, "rev")
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	var opts []client.OpOption
	if rev > 0 {
		opts = append(opts, client.WithRev(rev))
	}
	resp, err := who.cli.Get(ctx, key, opts...)
	if err != nil {
		return err
	}
	if len(resp.GetKvs()) == 0 {
		return &httpError{http.StatusNotFound, fmt.Sprintf("key %q does not exist (revision %d)", display([]byte(key)), resp.GetHeader().GetRevision())}
	}
	kv := resp.GetKvs()[0]
	out := keyJSON{KV: newKV(kv, true), Revision: resp.GetHeader().GetRevision()}
	if id := kv.GetLease(); id != 0 && rev == 0 {
		// The key is shown even when its lease's TTL cannot be had (the
		// leader, who times leases, is being elected): the page says why.
		if ttl, err := who.cli.TimeToLive(ctx, id); err != nil {
			out.LeaseError = grpcMessage(err)
		} else {
			t := ttl.GetTtl()
			out.LeaseTTL, out.LeaseGrantedTTL = &t, ttl.GetGrantedTtl()
		}
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// maxHistory bounds the versions one history request reads.
const maxHistory = 50

type historyJSON struct {
	Versions []*kvJSON `json:"versions"`
	// Before is where the next page starts (a revision), zero at the end.
	Before int64 `json:"before,omitempty"`
	// End says why the history stops: "created" (the first version of
	// this incarnation), "compacted" (older revisions are gone) or
	// "absent" (the key did not exist at that revision).
	End string `json:"end,omitempty"`
	// CompactRevision is set when End is "compacted".
	Message string `json:"message,omitempty"`
}

// handleHistory reads a key's versions backwards: the version at a
// revision, then at the revision before its mod revision, and so on until
// its creation or the compacted revision.
func (c *Console) handleHistory(w http.ResponseWriter, r *http.Request, who caller) error {
	key, err := keyParam(r, "k", false)
	if err != nil {
		return err
	}
	rev, err := intParam(r, "before")
	if err != nil {
		return err
	}
	limit, err := intParam(r, "limit")
	if err != nil {
		return err
	}
	if limit == 0 || limit > maxHistory {
		limit = maxHistory
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	out := historyJSON{Versions: []*kvJSON{}}
	for len(out.Versions) < int(limit) {
		var opts []client.OpOption
		if rev > 0 {
			opts = append(opts, client.WithRev(rev))
		}
		resp, err := who.cli.Get(ctx, key, opts...)
		if status.Code(err) == codes.OutOfRange {
			out.End, out.Message = "compacted", fmt.Sprintf("older versions were compacted (%s)", grpcMessage(err))
			break
		}
		if err != nil {
			return err
		}
		if len(resp.GetKvs()) == 0 {
			out.End = "absent"
			break
		}
		kv := resp.GetKvs()[0]
		out.Versions = append(out.Versions, newKV(kv, true))
		if kv.GetVersion() <= 1 || kv.GetModRevision() <= 1 {
			out.End = "created"
			break
		}
		rev = kv.GetModRevision() - 1
	}
	if out.End == "" {
		out.Before = rev
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// maxValueBody bounds a put's body: the member refuses larger requests
// anyway (--max-request-bytes), with a clear error.
const maxValueBody = 8 << 20

type putRequest struct {
	K string `json:"k"`
	// Value is the new value as text, or Value64 as base64 (for bytes).
	Value   *string `json:"value"`
	Value64 *string `json:"value64"`
	// Expect is the mod revision the page showed: the change applies only
	// if the key is still at it; 0 means the key must not exist.
	Expect int64 `json:"expect"`
	// Lease, in hex, attaches the key to a lease; empty keeps the key's
	// lease on an edit and means none on a create.
	Lease string `json:"lease"`
}

type changeJSON struct {
	OK       bool    `json:"ok"`
	Revision int64   `json:"revision,omitempty"`
	Conflict bool    `json:"conflict,omitempty"`
	Error    string  `json:"error,omitempty"`
	Current  *kvJSON `json:"current,omitempty"`
}

func (c *Console) handlePut(w http.ResponseWriter, r *http.Request, who caller) error {
	var req putRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxValueBody)).Decode(&req); err != nil {
		return badRequest("put: want a JSON object with k, value and expect: " + err.Error())
	}
	kb, err := base64.StdEncoding.DecodeString(req.K)
	if err != nil || len(kb) == 0 {
		return badRequest(fmt.Sprintf("put: k %q: want a non-empty base64 key", req.K))
	}
	key := string(kb)
	var val string
	switch {
	case req.Value != nil && req.Value64 != nil:
		return badRequest("put: give value or value64, not both")
	case req.Value != nil:
		val = *req.Value
	case req.Value64 != nil:
		b, err := base64.StdEncoding.DecodeString(*req.Value64)
		if err != nil {
			return badRequest("put: value64: want base64: " + err.Error())
		}
		val = string(b)
	default:
		return badRequest("put: the value is missing")
	}
	if req.Expect < 0 {
		return badRequest(fmt.Sprintf("put: expect %d is negative", req.Expect))
	}
	var opts []client.OpOption
	switch {
	case req.Lease != "":
		id, err := strconv.ParseInt(req.Lease, 16, 64)
		if err != nil || id <= 0 {
			return badRequest(fmt.Sprintf("put: lease %q: want a lease id in hex", req.Lease))
		}
		opts = append(opts, client.WithLease(id))
	case req.Expect > 0:
		opts = append(opts, client.WithIgnoreLease())
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	resp, err := who.cli.Txn(ctx).
		If(client.Compare(client.ModRevision(key), "=", req.Expect)).
		Then(client.OpPut(key, val, opts...)).
		Else(client.OpGet(key)).
		Commit()
	op := "create"
	if req.Expect > 0 {
		op = "update"
	}
	return c.answerChange(w, r, who, op, key, req.Expect, resp, err)
}

func (c *Console) handleDelete(w http.ResponseWriter, r *http.Request, who caller) error {
	key, err := keyParam(r, "k", false)
	if err != nil {
		return err
	}
	expect, err := intParam(r, "expect")
	if err != nil {
		return err
	}
	if expect == 0 {
		return badRequest("delete: parameter expect (the mod revision the page showed) is required")
	}
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	resp, err := who.cli.Txn(ctx).
		If(client.Compare(client.ModRevision(key), "=", expect)).
		Then(client.OpDelete(key)).
		Else(client.OpGet(key)).
		Commit()
	return c.answerChange(w, r, who, "delete", key, expect, resp, err)
}

// answerChange logs a change the console made (or tried) in the member's
// log and answers the page: the new revision, or the conflict with the
// key's current version.
func (c *Console) answerChange(w http.ResponseWriter, r *http.Request, who caller, op, key string, expect int64, resp *client.TxnResponse, err error) error {
	log := c.log.With("op", op, "key", display([]byte(key)), "expect_mod_revision", expect, "user", who.user, "remote", r.RemoteAddr)
	if err != nil {
		log.Warn("console change failed", "error", err)
		return err
	}
	rev := resp.GetHeader().GetRevision()
	if resp.GetSucceeded() {
		log.Info("console change", "revision", rev)
		writeJSON(w, http.StatusOK, changeJSON{OK: true, Revision: rev})
		return nil
	}
	var cur *kvJSON
	if rs := resp.GetResponses(); len(rs) == 1 {
		if kvs := rs[0].GetResponseRange().GetKvs(); len(kvs) == 1 {
			cur = newKV(kvs[0], true)
		}
	}
	msg := fmt.Sprintf("conflict: %q changed since the page read it (mod revision %d)", display([]byte(key)), expect)
	switch {
	case cur == nil && expect > 0:
		msg = fmt.Sprintf("conflict: %q was deleted since the page read it (mod revision %d)", display([]byte(key)), expect)
	case cur != nil && expect == 0:
		msg = fmt.Sprintf("conflict: %q already exists (mod revision %d)", display([]byte(key)), cur.ModRevision)
	case cur != nil:
		msg = fmt.Sprintf("conflict: %q changed since the page read it: mod revision %d, now %d", display([]byte(key)), expect, cur.ModRevision)
	}
	log.Info("console change refused: conflict", "revision", rev)
	writeJSON(w, http.StatusConflict, changeJSON{Conflict: true, Error: msg, Current: cur, Revision: rev})
	return nil
}
