package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/client"
)

//go:embed static
var staticFiles embed.FS

// Console serves the web console. New builds it; Handler serves it; Close
// ends its streams and sessions.
type Console struct {
	cfg Config
	log *slog.Logger

	// ctx ends with Close: the page's streams (activity, watches) end
	// with it, so that the HTTP server's shutdown need not wait for them.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	sessions *sessions
	peers    *peerStatus
	activity *sampler
	mux      *http.ServeMux
}

// New returns the console of the member cfg describes. It starts nothing:
// connections are made when a page first needs them.
func New(cfg Config) (*Console, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	c := &Console{cfg: cfg, log: cfg.Logger.With("component", "console")}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.sessions = newSessions(cfg)
	c.peers = newPeerStatus(cfg.Peers)
	c.activity = newSampler(cfg.Metrics, cfg.SampleInterval, cfg.History)
	c.routes()
	return c, nil
}

// Handler serves the console: mount it at /ui/.
func (c *Console) Handler() http.Handler { return c.mux }

// Close ends the page's streams, the sampler and every session, and closes
// the console's clients. Pages still open get errors and ask to reload.
func (c *Console) Close() error {
	c.cancel()
	c.wg.Wait()
	c.activity.stop()
	return errors.Join(c.sessions.close(), c.peers.close())
}

func (c *Console) routes() {
	c.mux = http.NewServeMux()
	static, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.FileServerFS(static)
	c.mux.Handle("/ui/", http.StripPrefix("/ui/", noCache(files)))

	c.mux.HandleFunc("GET /ui/api/session", c.handleSession)
	c.mux.HandleFunc("POST /ui/api/login", c.guard(c.handleLogin))
	c.mux.HandleFunc("POST /ui/api/logout", c.guard(c.handleLogout))

	c.mux.HandleFunc("GET /ui/api/cluster", c.read(c.handleCluster))
	c.mux.HandleFunc("GET /ui/api/activity", c.handleActivity)
	c.mux.HandleFunc("GET /ui/api/keys", c.read(c.handleKeys))
	c.mux.HandleFunc("GET /ui/api/key", c.read(c.handleKey))
	c.mux.HandleFunc("GET /ui/api/history", c.read(c.handleHistory))
	c.mux.HandleFunc("POST /ui/api/key", c.guard(c.write(c.handlePut)))
	c.mux.HandleFunc("DELETE /ui/api/key", c.guard(c.write(c.handleDelete)))
	c.mux.HandleFunc("GET /ui/api/watch", c.handleWatch)
	c.mux.HandleFunc("GET /ui/api/leases", c.read(c.handleLeases))
	c.mux.HandleFunc("GET /ui/api/locks", c.read(c.handleLocks))
	c.mux.HandleFunc("/ui/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such console API: "+r.Method+" "+r.URL.Path)
	})
}

// caller is who makes a request: the session's user and the client that
// carries their token (the anonymous client without a session).
type caller struct {
	user string // "" without a session
	cli  *client.Client
}

// apiFunc is a handler of the JSON API; an error it returns is written as
// the response (see writeAPIError).
type apiFunc func(w http.ResponseWriter, r *http.Request, who caller) error

// read wraps a handler with the caller's lookup and the error mapping.
func (c *Console) read(fn apiFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		who, err := c.sessions.caller(r)
		if err != nil {
			writeAPIError(w, err)
			return
		}
		if err := fn(w, r, who); err != nil {
			writeAPIError(w, err)
		}
	}
}

// write is read for handlers that change keys: it refuses them in
// read-only mode.
func (c *Console) write(fn apiFunc) http.HandlerFunc {
	h := c.read(fn)
	return func(w http.ResponseWriter, r *http.Request) {
		if c.cfg.ReadOnly {
			writeError(w, http.StatusForbidden, "the console is read-only on this member (--ui-read-only): use kvctl or the API to make changes")
			return
		}
		h(w, r)
	}
}

// csrfHeader must be on every request that changes something. Browsers
// let a page of another site send it only after a CORS preflight, which
// the console never answers, so a forged form or image cannot.
const csrfHeader = "X-KVD-Console"

// guard refuses state-changing requests that may come from another site:
// without the console's header, or with an Origin other than the
// console's own host.
func (c *Console) guard(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(csrfHeader) == "" {
			writeError(w, http.StatusForbidden, "missing the "+csrfHeader+" header: changes are accepted from the console's own page only")
			return
		}
		if o := r.Header.Get("Origin"); o != "" {
			u, err := url.Parse(o)
			if err != nil || u.Host != r.Host {
				writeError(w, http.StatusForbidden, "cross-origin request refused (origin "+o+")")
				return
			}
		}
		h(w, r)
	}
}

// noCache serves the page's files (GET and HEAD only) with the headers
// that keep them fresh and unframeable.
func noCache(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, r.Method+" "+r.URL.Path+": the console's files are read with GET")
			return
		}
		w.Header().Set("Cache-Control", "no-cache")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		h.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// apiError is the body of every error response.
type apiError struct {
	Error string `json:"error"`
	// Code is the gRPC code of an API error ("PermissionDenied").
	Code string `json:"code,omitempty"`
	// Login is set when the page should ask for a user (again).
	Login bool `json:"login,omitempty"`
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, apiError{Error: msg})
}

// httpError is an error with the HTTP status to answer it with.
type httpError struct {
	code int
	msg  string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(msg string) error { return &httpError{http.StatusBadRequest, msg} }

// writeAPIError answers with err: a gRPC status keeps its code and
// message, mapped to the nearest HTTP status.
func writeAPIError(w http.ResponseWriter, err error) {
	var he *httpError
	if errors.As(err, &he) {
		writeError(w, he.code, he.msg)
		return
	}
	st, ok := status.FromError(err)
	if !ok {
		// The client wraps statuses; find the one inside.
		var se interface{ GRPCStatus() *status.Status }
		if errors.As(err, &se) {
			st, ok = se.GRPCStatus(), true
		}
	}
	if !ok {
		if errors.Is(err, context.DeadlineExceeded) {
			writeError(w, http.StatusGatewayTimeout, err.Error())
			return
		}
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	code := map[codes.Code]int{
		codes.InvalidArgument:    http.StatusBadRequest,
		codes.Unauthenticated:    http.StatusUnauthorized,
		codes.PermissionDenied:   http.StatusForbidden,
		codes.NotFound:           http.StatusNotFound,
		codes.AlreadyExists:      http.StatusConflict,
		codes.FailedPrecondition: http.StatusPreconditionFailed,
		codes.OutOfRange:         http.StatusGone,
		codes.ResourceExhausted:  http.StatusInsufficientStorage,
		codes.Unavailable:        http.StatusServiceUnavailable,
		codes.DeadlineExceeded:   http.StatusGatewayTimeout,
		codes.Canceled:           http.StatusServiceUnavailable,
	}[st.Code()]
	if code == 0 {
		code = http.StatusInternalServerError
	}
	writeJSON(w, code, apiError{Error: st.Message(), Code: st.Code().String(), Login: st.Code() == codes.Unauthenticated})
}

// mergeCancel returns a context that ends with the request or with the
// console, whichever ends first.
func mergeCancel(r *http.Request, c *Console) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(r.Context())
	stop := context.AfterFunc(c.ctx, cancel)
	return ctx, func() { stop(); cancel() }
}
