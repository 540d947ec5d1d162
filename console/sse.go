package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"
)

// pingInterval is how often an idle event stream sends a comment, so that
// a page that went away is noticed (the write fails) and proxies keep the
// connection open.
const pingInterval = 15 * time.Second

// sseWriter writes server-sent events.
type sseWriter struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

// startSSE begins an event stream. The listener's write timeout (meant
// for ordinary requests) is lifted for this response, which lasts as long
// as the page stays.
func startSSE(w http.ResponseWriter) (*sseWriter, error) {
	rc := http.NewResponseController(w)
	if err := rc.SetWriteDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return nil, fmt.Errorf("console: event stream: %w", err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	s := &sseWriter{w: w, rc: rc}
	return s, s.ping()
}

func (s *sseWriter) send(event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(s.w, "event: %s\ndata: %s\n\n", event, b); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (s *sseWriter) ping() error {
	if _, err := fmt.Fprint(s.w, ": ping\n\n"); err != nil {
		return err
	}
	return s.rc.Flush()
}

// requireUser returns the request's caller, refusing (Unauthenticated, so
// the page asks for a login) a request without a session while auth is
// enabled: for the views that do not go through an API call that would
// refuse it by itself.
func (c *Console) requireUser(r *http.Request) (caller, error) {
	who, err := c.sessions.caller(r)
	if err != nil || who.user != "" {
		return who, err
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	st, err := who.cli.AuthStatus(ctx)
	if err != nil {
		return who, err
	}
	if st.GetEnabled() {
		return who, &httpError{http.StatusUnauthorized, "authentication is enabled: log in"}
	}
	return who, nil
}
