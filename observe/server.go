package observe

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Server serves a member's /metrics, /healthz, /readyz, /debug/pprof/ and,
// when Config.UI is set, the web console under /ui/ over HTTP. NewServer starts it; Shutdown stops it.
type Server struct {
	log  *slog.Logger
	ln   net.Listener
	http *http.Server
	done chan struct{} // closed when the serving goroutine returns
	err  error         // why serving stopped, if not Shutdown; read after done
}

// NewServer listens on cfg.Addr and serves on a goroutine of its own until
// Shutdown. src is required; m may be nil, in which case /metrics is not
// served.
func NewServer(cfg Config, src Source, m *Metrics) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if src == nil {
		return nil, errors.New("observe: a Source is required")
	}
	cfg = cfg.withDefaults()
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("observe: listen on %q: %w", cfg.Addr, err)
	}
	if cfg.TLS != nil {
		ln = tls.NewListener(ln, cfg.TLS)
	}
	log := cfg.Logger.With("component", "observe")
	errLog := slog.NewLogLogger(log.Handler(), slog.LevelWarn)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := Ready(r.Context(), src, cfg.ReadyWait); err != nil {
			writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
		writeText(w, http.StatusOK, "ready")
	})
	if m != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
			ErrorLog: errLog,
			Registry: m.reg, // exports promhttp_metric_handler_errors_total
		}))
	}
	if cfg.UI != nil {
		mux.Handle("/ui/", cfg.UI)
		mux.Handle("GET /{$}", http.RedirectHandler("/ui/", http.StatusFound))
	}
	mux.HandleFunc("/debug/pprof/", pprof.Index) // also serves the named profiles
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)

	s := &Server{
		log: log,
		ln:  ln,
		http: &http.Server{
			Handler:           mux,
			ReadHeaderTimeout: readHeaderTimeout,
			ReadTimeout:       readTimeout,
			WriteTimeout:      writeTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          errLog,
		},
		done: make(chan struct{}),
	}
	go s.serve()
	log.Info("observability server started", "addr", s.Addr())
	return s, nil
}

func (s *Server) serve() {
	defer close(s.done)
	if err := s.http.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
		s.err = fmt.Errorf("observe: serve: %w", err)
		s.log.Error("observability server stopped", "error", err)
	}
}

// Addr returns the address the server listens on, with the port it bound
// when Config.Addr asked for port 0.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Shutdown stops the server: it closes the listener, lets in-flight requests
// finish until ctx ends, then closes the connections that remain, and waits
// for the serving goroutine to return. It returns ctx's error if it had to
// cut requests short, and the serving error if serving had stopped on its
// own. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	if err != nil {
		err = errors.Join(err, s.http.Close())
	}
	<-s.done
	return errors.Join(err, s.err)
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = io.WriteString(w, body+"\n")
}
