package signoff

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/logout"

	"github.com/authz/authz/internal/fmtvectors"
)

// csFixture is a fixture for client-sessions (user at username, revision
// at rev) and a cookie the real npm package made of ann at revision 3
// (sessionfmt/testdata/vectors.json), with its cookie name; the fixture's
// clock is the one the cookie was made at.
func csFixture(t *testing.T) (f *fixture, cookieName, cookie string) {
	v := fmtvectors.Committed(t)
	c := v.ClientSessions[0]
	now := time.UnixMilli(v.NowMS)
	f = newFixture(t, func(cfg *authz.Config) {
		cfg.Format, cfg.CookieName, cfg.Secrets = authz.FormatClientSessions, c.Config.CookieName, []string{c.Config.Secret}
		cfg.UserPaths, cfg.RevisionPath = [][]string{{"username"}}, []string{"rev"}
		cfg.Now = func() time.Time { return now }
	})
	return f, c.Config.CookieName, c.Cookie
}

// A logout of a cookie that carries its session writes what /verify
// checks beside it: a deny entry for that cookie (never the cookie), kept
// as long as the cookie lives; for the user, the revision moved on.
func TestCookieLogout(t *testing.T) {
	f, name, cookie := csFixture(t)
	ctx := context.Background()
	f.rdb.Set(ctx, "authz:rev:ann", 3, 0)
	decide := func(c string) authz.Reason {
		return f.v.Decide(ctx, &authz.Query{Cookies: []string{name + "=" + c}, Host: "x"}).Reason
	}
	if r := decide(cookie); r != authz.ReasonOK {
		t.Fatalf("before: %s", r)
	}

	pub := &pubRecorder{}
	id, found, _, err := f.s.EndSession(ctx, pub, "", cookie)
	if err != nil || !found || id != authz.CookieID(cookie) {
		t.Fatalf("EndSession = %q, %v, %v", id, found, err)
	}
	if len(pub.events) != 1 || pub.events[0].Kind != logout.KindSession || pub.events[0].Session != id {
		t.Fatalf("events %+v", pub.events)
	}
	deny := "authz:revoked:sess:" + id
	// The vector's cookie lives a day from now: the entry at least that
	// (the store TTL, 24 h, is also the floor).
	if ttl := f.rdb.PTTL(ctx, deny).Val(); ttl < 23*time.Hour {
		t.Fatalf("deny entry TTL %v", ttl)
	}
	for _, k := range f.rdb.Keys(ctx, "*").Val() {
		if v := f.rdb.Get(ctx, k).Val(); k == cookie || v == cookie {
			t.Fatalf("Redis holds the cookie at %q", k)
		}
	}
	f.v.Invalidate(id)
	if r := decide(cookie); r != authz.ReasonRevoked {
		t.Fatalf("after the one-cookie logout: %s", r)
	}

	// A forged cookie denies nothing.
	forged := cookie[:len(cookie)-2] + "AA"
	if _, _, _, err := f.s.EndSession(ctx, pub, "", forged); err == nil {
		t.Fatal("EndSession took a forged cookie")
	}

	f.rdb.Del(ctx, deny)
	f.v.InvalidateAll()
	n, _, err := f.s.EndUser(ctx, pub, "", "ann")
	if err != nil || n != 1 || f.rdb.Get(ctx, "authz:rev:ann").Val() != "4" {
		t.Fatalf("EndUser = %d, %v; revision %q", n, err, f.rdb.Get(ctx, "authz:rev:ann").Val())
	}
	f.v.InvalidateUser("", "ann") // the event
	if r := decide(cookie); r != authz.ReasonStaleRevision {
		t.Fatalf("after the user-wide logout: %s", r)
	}
}

// POST /logout with such a cookie denies it, moves the user's revision on
// with everywhere=1, and clears the cookie.
func TestCookieLogoutEndpoint(t *testing.T) {
	f, name, cookie := csFixture(t)
	ctx := context.Background()
	f.rdb.Set(ctx, "authz:rev:ann", 3, 0) // the cookie's own: it is live
	pub := &pubRecorder{}
	h := f.s.Endpoint(pub, EndpointConfig{})
	req := httptest.NewRequest(http.MethodPost, "/logout?everywhere=1", nil)
	req.Header.Set("Cookie", name+"="+cookie)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("status %d", w.Code)
	}
	if got := w.Header().Get("Set-Cookie"); got == "" || got[:len(name)+1] != name+"=" {
		t.Fatalf("Set-Cookie %q", got)
	}
	if f.rdb.Get(ctx, "authz:rev:ann").Val() != "4" || f.rdb.Exists(ctx, "authz:revoked:sess:"+authz.CookieID(cookie)).Val() != 1 {
		t.Fatal("the endpoint left no revision or no deny entry")
	}
	if len(pub.events) != 1 || pub.events[0].Kind != logout.KindUser || pub.events[0].User != "ann" {
		t.Fatalf("events %+v", pub.events)
	}
}

// A cookie that is already over (its revision moved on, or denied) names
// nobody to log out: POST /logout?everywhere=1 with a copy of it must not
// move its user's revision on, or whoever kept an old cookie-session
// cookie (which never expires) could sign its user out everywhere, again
// and again, for as long as the keys last.
func TestCookieLogoutEverywhereNeedsALiveCookie(t *testing.T) {
	f, name, cookie := csFixture(t)
	ctx := context.Background()
	h := f.s.Endpoint(&pubRecorder{}, EndpointConfig{})
	post := func() {
		t.Helper()
		req := httptest.NewRequest(http.MethodPost, "/logout?everywhere=1", nil)
		req.Header.Set("Cookie", name+"="+cookie)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusSeeOther {
			t.Fatalf("status %d", w.Code)
		}
	}
	f.rdb.Set(ctx, "authz:rev:ann", 4, 0) // the cookie carries 3: already logged out
	post()
	if got := f.rdb.Get(ctx, "authz:rev:ann").Val(); got != "4" {
		t.Fatalf("a stale cookie moved ann's revision to %s", got)
	}
	f.rdb.Set(ctx, "authz:rev:ann", 3, 0)
	f.rdb.Set(ctx, "authz:revoked:sess:"+authz.CookieID(cookie), "1", time.Hour)
	post()
	if got := f.rdb.Get(ctx, "authz:rev:ann").Val(); got != "3" {
		t.Fatalf("a denied cookie moved ann's revision to %s", got)
	}
	f.rdb.Del(ctx, "authz:revoked:sess:"+authz.CookieID(cookie))
	post()
	if got := f.rdb.Get(ctx, "authz:rev:ann").Val(); got != "4" {
		t.Fatalf("a live cookie: revision %s, want 4", got)
	}
}
