package console_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/kvd-io/kvd/server"
	"github.com/kvd-io/kvd/server/servertest"
)

// page is an HTTP client of one member's console, as the page's script
// would call it.
type consolePage struct {
	t    *testing.T
	base string
	http *http.Client
}

func openConsole(t *testing.T, c *servertest.Cluster, member string) *consolePage {
	t.Helper()
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &consolePage{t: t, base: "http://" + c.Member(member).Server.HTTPAddr(), http: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
}

// do sends a request (with the console's CSRF header unless bare) and
// decodes the JSON answer into out; it returns the status.
func (p *consolePage) do(method, path string, body any, out any, bare bool) int {
	p.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			p.t.Fatal(err)
		}
		r = strings.NewReader(string(b))
	}
	req, err := http.NewRequest(method, p.base+path, r)
	if err != nil {
		p.t.Fatal(err)
	}
	if !bare {
		req.Header.Set("X-KVD-Console", "1")
	}
	resp, err := p.http.Do(req)
	if err != nil {
		p.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		p.t.Fatal(err)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			p.t.Fatalf("%s %s: %d %q: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

type apiErr struct {
	Error    string `json:"error"`
	Code     string `json:"code"`
	Login    bool   `json:"login"`
	Conflict bool   `json:"conflict"`
}

func TestChangesNeedTheConsoleHeaderAndAreRefusedWhenReadOnly(t *testing.T) {
	c := servertest.New(t, 1, servertest.WithMemberConfig(func(_ string, cfg *server.Config) { cfg.UI.ReadOnly = true }))
	p := openConsole(t, c, c.Names()[0])
	put := map[string]any{"k": b64("a"), "value": "1", "expect": 0}
	var e apiErr
	if code := p.do("POST", "/ui/api/key", put, &e, true); code != http.StatusForbidden || !strings.Contains(e.Error, "X-KVD-Console") {
		t.Fatalf("a put without the header: %d %+v, want 403 naming the header", code, e)
	}
	req, _ := http.NewRequest("POST", p.base+"/ui/api/key", strings.NewReader(`{}`))
	req.Header.Set("X-KVD-Console", "1")
	req.Header.Set("Origin", "http://evil.example")
	resp, err := p.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a put from another origin: %d, want 403", resp.StatusCode)
	}
	if code := p.do("POST", "/ui/api/key", put, &e, false); code != http.StatusForbidden || !strings.Contains(e.Error, "read-only") {
		t.Fatalf("a put on a read-only console: %d %+v, want 403 saying read-only", code, e)
	}
	if code := p.do("DELETE", "/ui/api/key?k="+b64("a")+"&expect=1", nil, &e, false); code != http.StatusForbidden || !strings.Contains(e.Error, "read-only") {
		t.Fatalf("a delete on a read-only console: %d %+v", code, e)
	}
	var s struct {
		ReadOnly bool `json:"read_only"`
	}
	if p.do("GET", "/ui/api/session", nil, &s, true); !s.ReadOnly {
		t.Fatal("the session does not tell the page it is read-only")
	}
	// Reading still works.
	var l struct {
		Entries []any `json:"entries"`
	}
	if code := p.do("GET", "/ui/api/keys?prefix=", nil, &l, true); code != http.StatusOK {
		t.Fatalf("listing on a read-only console: %d", code)
	}
}

func TestConsoleOff(t *testing.T) {
	c := servertest.New(t, 1, servertest.WithMemberConfig(func(_ string, cfg *server.Config) { cfg.UI.Enabled = false }))
	p := openConsole(t, c, c.Names()[0])
	for _, path := range []string{"/ui/", "/ui/api/session", "/"} {
		if code := p.do("GET", path, nil, nil, true); code != http.StatusNotFound {
			t.Errorf("GET %s with --ui=false: %d, want 404", path, code)
		}
	}
	if code := p.do("GET", "/healthz", nil, nil, true); code != http.StatusOK {
		t.Errorf("/healthz with --ui=false: %d", code)
	}
}

type listing struct {
	Entries []struct {
		Name string `json:"name"`
		Dir  bool   `json:"dir"`
		P    string `json:"p"`
	} `json:"entries"`
	Next string `json:"next"`
}

// TestKeyTreePages lists a prefix with 120 keys, a directory of 600 and
// a key after it, page by page: every child once, in order, each page
// within the page size, the directory as one entry.
func TestKeyTreePages(t *testing.T) {
	c := servertest.New(t, 1)
	cli := newClient(t, c, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var want []string
	for i := range 120 {
		k := fmt.Sprintf("k%03d", i)
		want = append(want, k)
		if _, err := cli.Put(ctx, "/t/"+k, "v"); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 600 {
		if _, err := cli.Put(ctx, fmt.Sprintf("/t/m/%04d", i), "v"); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{"/t/z", "/u/outside"} {
		if _, err := cli.Put(ctx, k, "v"); err != nil {
			t.Fatal(err)
		}
	}
	want = append(want, "m/", "z")
	p := openConsole(t, c, c.Names()[0])
	var got []string
	next, pages := "", 0
	for {
		var l listing
		path := "/ui/api/keys?prefix=" + b64("/t/")
		if next != "" {
			path += "&next=" + next
		}
		if code := p.do("GET", path, nil, &l, true); code != http.StatusOK {
			t.Fatalf("page %d: %d", pages, code)
		}
		pages++
		if len(l.Entries) > 50 {
			t.Fatalf("page %d has %d entries, more than the page size", pages, len(l.Entries))
		}
		for _, e := range l.Entries {
			got = append(got, e.Name)
			if e.Dir && e.P != b64("/t/m/") {
				t.Fatalf("directory %q lists as %q", e.Name, e.P)
			}
		}
		if next = l.Next; next == "" || pages > 10 {
			break
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") || pages != 3 {
		t.Fatalf("%d pages listed %v\nwant %v", pages, got, want)
	}
	// A bad parameter is a clear error.
	var e apiErr
	if code := p.do("GET", "/ui/api/keys?prefix=!!!", nil, &e, true); code != http.StatusBadRequest {
		t.Fatalf("bad prefix: %d %+v", code, e)
	}
}

type change struct {
	OK       bool `json:"ok"`
	Conflict bool `json:"conflict"`
	Error    string
	Revision int64 `json:"revision"`
	Current  *struct {
		ModRevision int64  `json:"mod_revision"`
		Value       string `json:"value"`
	} `json:"current"`
}

// TestChangesCompareTheModRevision: a create of an existing key, an edit
// and a delete from a stale revision are conflicts that change nothing;
// the history stops at the compacted revision.
func TestChangesCompareTheModRevision(t *testing.T) {
	c := servertest.New(t, 1)
	cli := newClient(t, c, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	p := openConsole(t, c, c.Names()[0])
	var ch change
	if code := p.do("POST", "/ui/api/key", map[string]any{"k": b64("cfg"), "value": "v1", "expect": 0}, &ch, false); code != http.StatusOK || !ch.OK {
		t.Fatalf("create: %d %+v", code, ch)
	}
	rev1 := ch.Revision
	ch = change{}
	if code := p.do("POST", "/ui/api/key", map[string]any{"k": b64("cfg"), "value": "again", "expect": 0}, &ch, false); code != http.StatusConflict || !ch.Conflict || !strings.Contains(ch.Error, "already exists") {
		t.Fatalf("create of an existing key: %d %+v", code, ch)
	}
	if _, err := cli.Put(ctx, "cfg", "v2"); err != nil {
		t.Fatal(err)
	}
	ch = change{}
	if code := p.do("POST", "/ui/api/key", map[string]any{"k": b64("cfg"), "value": "stale", "expect": rev1}, &ch, false); code != http.StatusConflict || ch.Current == nil || ch.Current.Value != b64("v2") {
		t.Fatalf("an edit from a stale revision: %d %+v", code, ch)
	}
	ch = change{}
	if code := p.do("DELETE", fmt.Sprintf("/ui/api/key?k=%s&expect=%d", b64("cfg"), rev1), nil, &ch, false); code != http.StatusConflict {
		t.Fatalf("a delete from a stale revision: %d %+v", code, ch)
	}
	got, err := cli.Get(ctx, "cfg")
	if err != nil || len(got.Kvs) != 1 || string(got.Kvs[0].Value) != "v2" {
		t.Fatalf("after the refused changes: %v, %v; want v2", got, err)
	}
	rev2 := got.Kvs[0].ModRevision
	for _, v := range []string{"v3", "v4"} {
		if _, err := cli.Put(ctx, "cfg", v); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := cli.Compact(ctx, rev2); err != nil {
		t.Fatal(err)
	}
	var h struct {
		Versions []struct {
			Value string `json:"value"`
		} `json:"versions"`
		End     string `json:"end"`
		Message string `json:"message"`
	}
	if code := p.do("GET", "/ui/api/history?k="+b64("cfg"), nil, &h, true); code != http.StatusOK {
		t.Fatalf("history: %d", code)
	}
	var vals []string
	for _, v := range h.Versions {
		b, _ := base64.StdEncoding.DecodeString(v.Value)
		vals = append(vals, string(b))
	}
	if strings.Join(vals, ",") != "v4,v3,v2" || h.End != "compacted" {
		t.Fatalf("history after compacting at %d: %v, end %q (%s); want v4,v3,v2 then compacted", rev2, vals, h.End, h.Message)
	}
	ch = change{}
	if code := p.do("DELETE", fmt.Sprintf("/ui/api/key?k=%s&expect=%d", b64("cfg"), rev2+2), nil, &ch, false); code != http.StatusOK || !ch.OK {
		t.Fatalf("delete: %d %+v", code, ch)
	}
}

// TestLoginKeepsTheTokenOnTheServer: with auth on, the console refuses
// pages without a session, a login sets an HttpOnly, SameSite=Strict
// cookie that is not the token, and the user's permissions apply.
func TestLoginKeepsTheTokenOnTheServer(t *testing.T) {
	c := servertest.New(t, 1, servertest.WithConfig(func(cfg *server.Config) { cfg.Auth.BcryptCost = bcrypt.MinCost }))
	cli := newClient(t, c, "", "")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	steps := []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "rootpw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.Put(ctx, "/app/a", "1"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	p := openConsole(t, c, c.Names()[0])
	var e apiErr
	if code := p.do("GET", "/ui/api/keys?prefix="+b64("/app/"), nil, &e, true); code != http.StatusUnauthorized || !e.Login {
		t.Fatalf("keys without a session: %d %+v, want 401 asking for a login", code, e)
	}
	if code := p.do("GET", "/ui/api/activity", nil, &e, true); code != http.StatusUnauthorized {
		t.Fatalf("activity without a session: %d %+v, want 401", code, e)
	}
	if code := p.do("POST", "/ui/api/login", map[string]string{"user": "root", "password": "nope"}, &e, false); code != http.StatusUnauthorized {
		t.Fatalf("a wrong password: %d %+v", code, e)
	}
	req, _ := http.NewRequest("POST", p.base+"/ui/api/login", strings.NewReader(`{"user":"root","password":"rootpw"}`))
	req.Header.Set("X-KVD-Console", "1")
	resp, err := p.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || len(resp.Cookies()) != 1 {
		t.Fatalf("login: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	ck := resp.Cookies()[0]
	if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/ui/" || strings.Count(ck.Value, ".") == 2 {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/ui/, and not the token", ck)
	}
	var l listing
	if code := p.do("GET", "/ui/api/keys?prefix="+b64("/app/"), nil, &l, true); code != http.StatusOK || len(l.Entries) != 1 {
		t.Fatalf("keys as root: %d %+v", code, l)
	}
	p.do("POST", "/ui/api/logout", map[string]string{}, nil, false)
	if code := p.do("GET", "/ui/api/keys?prefix="+b64("/app/"), nil, &e, true); code != http.StatusUnauthorized {
		t.Fatalf("keys after logout: %d %+v", code, e)
	}
}
