package authz

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/authz/authz/logout"

	"github.com/prometheus/client_golang/prometheus"
)

// Publisher sends logout events; *logout.Publisher is one.
type Publisher interface {
	Publish(ctx context.Context, e logout.Event) (int64, error)
}

// LogoutConfig configures the logout endpoint.
type LogoutConfig struct {
	// Redirect is where a browser goes after logging out (default "/login").
	Redirect string
	// CookieDomain and CookiePath must match the session cookie's, or the
	// browser keeps it (defaults: none, "/").
	CookieDomain string
	CookiePath   string
	// Secure marks the expiring cookie Secure.
	Secure bool
}

// LogoutHandler ends the caller's own session: POST /logout revokes the
// session in its cookie (POST /logout?everywhere=1 every session of its
// user), publishes the event, expires the cookie, and answers 303 to
// cfg.Redirect, or 204 to a client that asked for JSON. Only POST is
// accepted, and a cross-site POST is refused (Origin or Sec-Fetch-Site),
// so another site cannot log users out. Logging out without a valid
// session still clears the cookie: logout is idempotent.
func (v *Verifier) LogoutHandler(pub Publisher, cfg LogoutConfig) http.Handler {
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
		host := v.requestHost(r.Header.Get("X-Forwarded-Host"), r.Header.Get("X-Original-URL"), r.Host)
		t := v.tenants.Load().lookup(host)
		if t == nil {
			v.unknownHost(host)
			http.Error(w, "unknown host", http.StatusForbidden)
			return
		}
		everywhere := r.URL.Query().Get("everywhere")
		ctx := r.Context()
		if id, raw, reason := v.requestSession(t, r.Header["Cookie"]); reason == "" {
			all := everywhere == "1" || everywhere == "true"
			var err error
			if raw != "" {
				err = v.logoutCookie(ctx, pub, t, id, raw, all)
			} else {
				err = v.logout(ctx, pub, t, id, all)
			}
			if err != nil {
				v.log.Warn("logout failed", "session", shortHash(id), "err", err)
				w.Header().Set("Retry-After", "1")
				http.Error(w, "logout failed: session store unavailable, please retry", http.StatusServiceUnavailable)
				return
			}
		}
		for _, name := range t.clearCookies() {
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

func (v *Verifier) logout(ctx context.Context, pub Publisher, t *tenant, sid string, everywhere bool) error {
	if everywhere {
		s, _, err := v.Session(ctx, t.name, sid)
		if err == nil && s.User != "" {
			n, err := v.userWalks.revoke(ctx, v, t, s.User)
			if err != nil {
				return err
			}
			// A walk this request joined may have passed the caller's
			// own session before it was created.
			if _, err := v.RevokeSession(ctx, t.name, sid); err != nil {
				return err
			}
			v.InvalidateUser(t.name, s.User)
			_, err = pub.Publish(ctx, logout.Event{Kind: logout.KindUser, User: s.User, Tenant: t.name, Origin: "authz-endpoint"})
			v.log.Info("user logged out everywhere", "tenant", t.name, "sessions", n)
			return err
		}
		if err != nil && !IsNotFound(err) {
			return err
		}
	}
	if _, err := v.RevokeSession(ctx, t.name, sid); err != nil {
		return err
	}
	v.Invalidate(sid)
	_, err := pub.Publish(ctx, logout.Event{Kind: logout.KindSession, Session: sid, Tenant: t.name, Origin: "authz-endpoint"})
	v.log.LogAttrs(ctx, slog.LevelDebug, "session logged out", slog.String("session", shortHash(sid)))
	return err
}

// logoutCookie is logout for a cookie that carries its session: a deny
// entry for it and, with everywhere, the user's revision moved on.
func (v *Verifier) logoutCookie(ctx context.Context, pub Publisher, t *tenant, id, raw string, everywhere bool) error {
	cf, s, err := v.openCookie(t, raw)
	if err != nil {
		return nil // expired, tampered or anonymous: nothing to end
	}
	if err := v.deny(ctx, t, id, s); err != nil {
		return err
	}
	v.Invalidate(id)
	if everywhere && s.User != "" && cf.revisionPath != nil {
		if _, err := v.BumpRevision(ctx, t.name, s.User); err != nil {
			return err
		}
		v.InvalidateUser(t.name, s.User)
		_, err := pub.Publish(ctx, logout.Event{Kind: logout.KindUser, User: s.User, Tenant: t.name, Origin: "authz-endpoint"})
		v.log.Info("user logged out everywhere", "tenant", t.name, "revision", true)
		return err
	}
	_, err = pub.Publish(ctx, logout.Event{Kind: logout.KindSession, Session: id, Tenant: t.name, Origin: "authz-endpoint"})
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

// maxUserWalks bounds the user-wide logout walks one process runs at once:
// each is a pass over every session key, and several at once slow every
// other Redis call (six at once raised verify p99 from 4 to 15 ms over
// 200 k sessions). More wait for a slot, cancelled with their requests.
const maxUserWalks = 2

// userWalks runs the walks of POST /logout?everywhere=1: one per user and
// tenant at a time, which every request for that user arriving before it
// starts scanning waits for and shares (the same sessions would be found
// twice otherwise), at most maxUserWalks at once. A request arriving once
// the walk is scanning cannot share it: the walk's SCAN cursor may be past
// sessions created since, which the request's own walk would have found. It
// waits for one more walk instead, started when the scanning one ends and
// shared by every request arriving until it scans. A walk runs off its
// requests' goroutines and is cancelled when the last request waiting for
// it is gone (its client left): nobody is left to tell the result, and the
// user can ask again.
type userWalks struct {
	mu    sync.Mutex
	calls map[string]*userWalk // by tenant and user: the walk running or waiting for a slot
	slots chan struct{}
	// running is the number of walks started and not yet ended; done
	// counts them by result, joined the requests that shared one.
	running prometheus.Gauge
	done    *prometheus.CounterVec
	// scanned, when set (tests only), runs when a walk has scanned,
	// before it ends.
	scanned func()
}

type userWalk struct {
	done chan struct{} // closed when n and err are set
	refs int           // requests waiting
	// ctx is the walk's own, cancelled when no request waits: the walk
	// outlives the request that started it.
	ctx     context.Context
	cancel  context.CancelFunc
	started bool      // scanning: a request arriving now waits for next
	next    *userWalk // the walk to start when this one ends
	n       int
	err     error
}

func newUserWalk(ctx context.Context) *userWalk {
	wctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	return &userWalk{done: make(chan struct{}), ctx: wctx, cancel: cancel}
}

func newUserWalks(reg prometheus.Registerer) (*userWalks, error) {
	w := &userWalks{
		calls: make(map[string]*userWalk),
		slots: make(chan struct{}, maxUserWalks),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "authz_logout_user_walks_running", Help: "User-wide logout walks (a pass over every session key) running or waiting for one of the slots now.",
		}),
		done: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "authz_logout_user_walks_total", Help: "User-wide logout walks by result (ok, error, cancelled: every request waiting for it left), and requests that shared one not yet scanning (joined).",
		}, []string{"result"}),
	}
	for _, r := range []string{"ok", "error", "cancelled", "joined"} {
		w.done.WithLabelValues(r)
	}
	for _, c := range []prometheus.Collector{w.running, w.done} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// revoke revokes every session of user in t (Verifier.RevokeUser), sharing
// a walk for them that has not started scanning, and returns how many it
// revoked. It returns when the walk ends or ctx does, whichever is first.
func (w *userWalks) revoke(ctx context.Context, v *Verifier, t *tenant, user string) (int, error) {
	key := t.id + "\x00" + user
	w.mu.Lock()
	c := w.calls[key]
	switch {
	case c == nil:
		c = newUserWalk(ctx)
		w.calls[key] = c
		w.running.Inc()
		go w.run(c, key, v, t, user)
	case !c.started:
		w.done.WithLabelValues("joined").Inc()
	case c.next == nil:
		// Started by run when c ends: still one walk per user at a time.
		c.next = newUserWalk(ctx)
		c = c.next
	default:
		w.done.WithLabelValues("joined").Inc()
		c = c.next
	}
	c.refs++
	w.mu.Unlock()
	select {
	case <-c.done:
		return c.n, c.err
	case <-ctx.Done():
		w.mu.Lock()
		if c.refs--; c.refs == 0 {
			// A request arriving now starts a walk of its own rather
			// than join one being cancelled.
			c.cancel()
			switch p := w.calls[key]; {
			case p == c && c.next == nil:
				delete(w.calls, key)
			case p == c:
				// Requests wait for the walk after c: c stays, so that
				// none starts before c ends (run starts c.next then).
			case p != nil && p.next == c:
				// c has not started: drop it, and p with it if nobody
				// waits for p either.
				p.next = nil
				if p.refs == 0 {
					delete(w.calls, key)
				}
			}
		}
		w.mu.Unlock()
		return 0, fmt.Errorf("revoke user: %w", ctx.Err())
	}
}

func (w *userWalks) run(c *userWalk, key string, v *Verifier, t *tenant, user string) {
	ctx := c.ctx
	defer c.cancel()
	select {
	case w.slots <- struct{}{}:
		w.mu.Lock()
		c.started = true
		w.mu.Unlock()
		c.n, c.err = v.RevokeUser(ctx, t.name, user)
		if w.scanned != nil {
			w.scanned()
		}
		<-w.slots
	case <-ctx.Done():
		c.err = fmt.Errorf("revoke user: waiting for a walk slot: %w", ctx.Err())
	}
	result := "ok"
	switch {
	case ctx.Err() != nil:
		result = "cancelled"
	case c.err != nil:
		result = "error"
	}
	w.done.WithLabelValues(result).Inc()
	w.mu.Lock()
	if w.calls[key] == c {
		if next := c.next; next != nil {
			// Requests arrived while c scanned: their walk starts now.
			w.calls[key] = next
			w.running.Inc()
			go w.run(next, key, v, t, user)
		} else {
			delete(w.calls, key)
		}
	}
	w.mu.Unlock()
	w.running.Dec()
	close(c.done)
}
