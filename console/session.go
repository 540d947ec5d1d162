package console

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/kvd-io/kvd/client"
)

// cookieName holds the session id; the token itself never reaches the
// browser.
const cookieName = "kvd_console_session"

// session is one logged-in user: the token AuthService issued them and a
// client that sends it with every call.
type session struct {
	id      string
	user    string
	expires time.Time
	created time.Time
	cli     *client.Client
}

// sessions holds the logged-in sessions and the anonymous client, which
// serves pages while auth is disabled.
type sessions struct {
	cfg Config

	mu   sync.Mutex
	m    map[string]*session
	anon *client.Client
}

func newSessions(cfg Config) *sessions {
	return &sessions{cfg: cfg, m: map[string]*session{}}
}

// newClient returns a client of the member's own API that sends token (none
// when empty) with every call. Every call is unary and the client has no
// user of its own, so calls carry this token and no other.
func (s *sessions) newClient(token string) (*client.Client, error) {
	opts := append([]grpc.DialOption(nil), s.cfg.API.DialOptions...)
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(tokenCreds(token)))
	}
	return client.New(client.Config{
		Endpoints:   []string{s.cfg.API.Endpoint},
		DialTimeout: 2 * time.Second,
		UnaryCalls:  true,
		DialOptions: opts,
	})
}

// tokenCreds sends a user's token as the "token" metadata, as the SDK
// does for its own users.
type tokenCreds string

func (t tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"token": string(t)}, nil
}

func (tokenCreds) RequireTransportSecurity() bool { return false }

// anonymous returns the client without a user, made on first use.
func (s *sessions) anonymous() (*client.Client, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.anon == nil {
		cli, err := s.newClient("")
		if err != nil {
			return nil, fmt.Errorf("console: connect to the member's API: %w", err)
		}
		s.anon = cli
	}
	return s.anon, nil
}

// lookup returns the request's live session, nil without one.
func (s *sessions) lookup(r *http.Request) *session {
	ck, err := r.Cookie(cookieName)
	if err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	ss := s.m[ck.Value]
	if ss == nil {
		return nil
	}
	if time.Now().After(ss.expires) {
		s.dropLocked(ss)
		return nil
	}
	return ss
}

// caller returns who makes the request: its session's user, or the
// anonymous client.
func (s *sessions) caller(r *http.Request) (caller, error) {
	if ss := s.lookup(r); ss != nil {
		return caller{user: ss.user, cli: ss.cli}, nil
	}
	cli, err := s.anonymous()
	if err != nil {
		return caller{}, err
	}
	return caller{cli: cli}, nil
}

// login authenticates user and starts a session for them.
func (s *sessions) login(ctx context.Context, user, password string) (*session, error) {
	anon, err := s.anonymous()
	if err != nil {
		return nil, err
	}
	resp, err := anon.Authenticate(ctx, user, password)
	if err != nil {
		return nil, err
	}
	cli, err := s.newClient(resp.GetToken())
	if err != nil {
		return nil, err
	}
	id := make([]byte, 32)
	_, _ = rand.Read(id) // never fails (crypto/rand)
	now := time.Now()
	ss := &session{id: base64.RawURLEncoding.EncodeToString(id), user: user, created: now, expires: tokenExpiry(resp.GetToken(), now), cli: cli}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.m {
		if now.After(o.expires) {
			s.dropLocked(o)
		}
	}
	for len(s.m) >= s.cfg.MaxSessions {
		var oldest *session
		for _, o := range s.m {
			if oldest == nil || o.created.Before(oldest.created) {
				oldest = o
			}
		}
		s.dropLocked(oldest)
	}
	s.m[ss.id] = ss
	return ss, nil
}

// logout ends the request's session, if any.
func (s *sessions) logout(r *http.Request) string {
	ss := s.lookup(r)
	if ss == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dropLocked(ss)
	return ss.user
}

func (s *sessions) dropLocked(ss *session) {
	delete(s.m, ss.id)
	// Calls in flight on the session's client fail; the page asks to log
	// in again.
	go func() { _ = ss.cli.Close() }()
}

func (s *sessions) close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for id, ss := range s.m {
		delete(s.m, id)
		errs = append(errs, ss.cli.Close())
	}
	if s.anon != nil {
		errs = append(errs, s.anon.Close())
		s.anon = nil
	}
	return errors.Join(errs...)
}

// tokenExpiry reads when a token (a JWT) expires, without verifying it
// (the member does, on every call); a token it cannot read is taken to
// last an hour, until the member refuses it and the page asks again.
func tokenExpiry(tok string, now time.Time) time.Time {
	parts := strings.Split(tok, ".")
	if len(parts) == 3 {
		if payload, err := base64.RawURLEncoding.DecodeString(parts[1]); err == nil {
			var claims struct {
				Exp int64 `json:"exp"`
			}
			if json.Unmarshal(payload, &claims) == nil && claims.Exp > 0 {
				return time.Unix(claims.Exp, 0)
			}
		}
	}
	return now.Add(time.Hour)
}

// sessionInfo tells the page who it is and what it may do.
type sessionInfo struct {
	Member      string `json:"member"`
	User        string `json:"user,omitempty"`
	AuthEnabled bool   `json:"auth_enabled"`
	ReadOnly    bool   `json:"read_only"`
	// Expires is when the session's token runs out (RFC 3339).
	Expires string `json:"expires,omitempty"`
}

func (c *Console) handleSession(w http.ResponseWriter, r *http.Request) {
	info := sessionInfo{Member: c.cfg.MemberName, ReadOnly: c.cfg.ReadOnly}
	if ss := c.sessions.lookup(r); ss != nil {
		info.User, info.Expires = ss.user, ss.expires.UTC().Format(time.RFC3339)
	}
	anon, err := c.sessions.anonymous()
	if err != nil {
		writeAPIError(w, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	st, err := anon.AuthStatus(ctx)
	if err != nil {
		writeAPIError(w, err)
		return
	}
	info.AuthEnabled = st.GetEnabled()
	writeJSON(w, http.StatusOK, info)
}

// maxLoginBody bounds a login request's body.
const maxLoginBody = 64 << 10

func (c *Console) handleLogin(w http.ResponseWriter, r *http.Request) {
	var req struct {
		User     string `json:"user"`
		Password string `json:"password"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxLoginBody)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "login: want a JSON object with user and password: "+err.Error())
		return
	}
	if req.User == "" {
		writeError(w, http.StatusBadRequest, "login: the user name is empty")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 10*time.Second)
	defer cancel()
	ss, err := c.sessions.login(ctx, req.User, req.Password)
	if err != nil {
		c.log.Info("console login refused", "user", req.User, "remote", r.RemoteAddr, "error", err)
		if st, ok := status.FromError(err); ok && st.Code() == codes.Unauthenticated {
			// A wrong user or password: say so without the API's wording
			// about which of the two.
			writeJSON(w, http.StatusUnauthorized, apiError{Error: "login failed: " + st.Message(), Code: st.Code().String(), Login: true})
			return
		}
		writeAPIError(w, err)
		return
	}
	c.log.Info("console login", "user", ss.user, "remote", r.RemoteAddr, "expires", ss.expires)
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: ss.id, Path: "/ui/",
		Expires: ss.expires, HttpOnly: true, Secure: c.cfg.SecureCookies, SameSite: http.SameSiteStrictMode,
	})
	writeJSON(w, http.StatusOK, sessionInfo{Member: c.cfg.MemberName, User: ss.user, AuthEnabled: true, ReadOnly: c.cfg.ReadOnly, Expires: ss.expires.UTC().Format(time.RFC3339)})
}

func (c *Console) handleLogout(w http.ResponseWriter, r *http.Request) {
	if user := c.sessions.logout(r); user != "" {
		c.log.Info("console logout", "user", user, "remote", r.RemoteAddr)
	}
	http.SetCookie(w, &http.Cookie{Name: cookieName, Value: "", Path: "/ui/", MaxAge: -1, HttpOnly: true, Secure: c.cfg.SecureCookies, SameSite: http.SameSiteStrictMode})
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}
