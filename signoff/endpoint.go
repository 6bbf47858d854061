package signoff

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/logout"
)

// Publisher sends logout events; *logout.Publisher is one.
type Publisher interface {
	Publish(ctx context.Context, e logout.Event) (int64, error)
}

// EndpointConfig configures the logout endpoint.
type EndpointConfig struct {
	// Redirect is where a browser goes after logging out (default "/login").
	Redirect string
	// CookieDomain and CookiePath must match the session cookie's, or the
	// browser keeps it (defaults: none, "/").
	CookieDomain string
	CookiePath   string
	// Secure marks the expiring cookie Secure.
	Secure bool
}

// Endpoint ends the caller's own session: POST /logout revokes the
// session in its cookie (POST /logout?everywhere=1 every session of its
// user), publishes the event, expires the cookie, and answers 303 to
// cfg.Redirect, or 204 to a client that asked for JSON. Only POST is
// accepted, and a cross-site POST is refused (Origin or Sec-Fetch-Site),
// so another site cannot log users out. Logging out without a valid
// session still clears the cookie: logout is idempotent.
func (s *Signoff) Endpoint(pub Publisher, cfg EndpointConfig) http.Handler {
	if cfg.Redirect == "" {
		cfg.Redirect = "/login"
	}
	if cfg.CookiePath == "" {
		cfg.CookiePath = "/"
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "logout takes POST", http.StatusMethodNotAllowed)
			return
		}
		if crossSite(r) {
			http.Error(w, "cross-site logout refused", http.StatusForbidden)
			return
		}
		// The tenant table the read path routes with: a tenant reload is
		// seen by verify and logout alike.
		ks, ok := s.v.KeyspaceOf(r)
		if !ok {
			http.Error(w, "unknown host", http.StatusForbidden)
			return
		}
		everywhere := r.URL.Query().Get("everywhere")
		ctx := r.Context()
		f := formatOf(ks)
		if id, raw, reason := ks.RequestSession(r.Header["Cookie"]); reason == "" {
			if err := s.logout(ctx, pub, ks, f, session{id, raw}, everywhere == "1" || everywhere == "true"); err != nil {
				s.log.Warn("logout failed", "session", authz.SessionHash(id), "err", err)
				w.Header().Set("Retry-After", "1")
				http.Error(w, "logout failed: session store unavailable, please retry", http.StatusServiceUnavailable)
				return
			}
		}
		for _, name := range ks.CookieNames() {
			http.SetCookie(w, &http.Cookie{
				Name: name, Value: "", Path: cfg.CookiePath, Domain: cfg.CookieDomain,
				Expires: time.Unix(0, 0), MaxAge: -1, HttpOnly: true, Secure: cfg.Secure,
				SameSite: http.SameSiteLaxMode,
			})
		}
		if wantsJSON(r) {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		http.Redirect(w, r, cfg.Redirect, http.StatusSeeOther)
	})
}

// logout ends the session id (every session of its user when everywhere),
// drops it from this instance's cache and publishes the event for the
// others.
func (s *Signoff) logout(ctx context.Context, pub Publisher, ks authz.Keyspace, f *format, x session, everywhere bool) error {
	if everywhere {
		user, err := f.owner(s, ctx, ks, x)
		if err != nil {
			return err
		}
		if user != "" {
			n, err := s.walks.revoke(ctx, s, ks, user)
			if err != nil {
				return err
			}
			// A walk this request joined may have passed the caller's
			// own session before it was created.
			if _, err := f.endSession(s, ctx, ks, x); err != nil {
				return err
			}
			s.v.InvalidateUser(ks.Name(), user)
			_, err = pub.Publish(ctx, logout.Event{Kind: logout.KindUser, User: user, Tenant: ks.Name(), Origin: "authz-endpoint"})
			s.log.Info("user logged out everywhere", "tenant", ks.Name(), "sessions", n)
			return err
		}
	}
	if _, err := f.endSession(s, ctx, ks, x); err != nil {
		return err
	}
	s.v.Invalidate(x.id)
	_, err := pub.Publish(ctx, logout.Event{Kind: logout.KindSession, Session: x.id, Tenant: ks.Name(), Origin: "authz-endpoint"})
	s.log.LogAttrs(ctx, slog.LevelDebug, "session logged out", slog.String("session", authz.SessionHash(x.id)))
	return err
}

// crossSite reports a request another site made the browser send.
func crossSite(r *http.Request) bool {
	if s := r.Header.Get("Sec-Fetch-Site"); s == "cross-site" {
		return true
	}
	origin := r.Header.Get("Origin")
	if origin == "" || origin == "null" {
		return origin == "null"
	}
	u, err := url.Parse(origin)
	if err != nil {
		return true
	}
	// Nginx passes $host, which has no port; the Origin has one whenever
	// the site is not on 80/443. Compare host names only.
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	return !strings.EqualFold(u.Hostname(), strings.Trim(host, "[]"))
}

func wantsJSON(r *http.Request) bool {
	for _, a := range r.Header.Values("Accept") {
		if a == "application/json" {
			return true
		}
	}
	return false
}
