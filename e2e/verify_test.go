package e2e

import (
	"context"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/testenv"
)

func TestSignedInUserReachesTheAppWithTheirIdentity(t *testing.T) {
	t.Parallel()
	eachServer(t, signedInUserReachesTheAppWithTheirIdentity)
}

func signedInUserReachesTheAppWithTheirIdentity(t *testing.T, front ...string) {
	s := newSite(t, append(front, "--header", "X-Auth-Email=passport.user.email")...)
	sess := s.signIn(alice)

	got := s.get("/orders?page=2", sess.cookie).echoed(t)

	if got.URI != "/orders?page=2" {
		t.Errorf("upstream got URI %q, want /orders?page=2", got.URI)
	}
	if v := headerValues(got.Header, "X-Auth-User"); !slices.Equal(v, []string{"alice"}) {
		t.Errorf("upstream got X-Auth-User %q, want [alice]", v)
	}
	if v := headerValues(got.Header, "X-Auth-Email"); !slices.Equal(v, []string{"alice@example.com"}) {
		t.Errorf("upstream got X-Auth-Email %q, want [alice@example.com]", v)
	}
}

func TestClientCannotForgeIdentityHeaders(t *testing.T) {
	t.Parallel()
	eachServer(t, clientCannotForgeIdentityHeaders)
}

func clientCannotForgeIdentityHeaders(t *testing.T, front ...string) {
	s := newSite(t, append(front, "--header", "X-Auth-Email=passport.user.email")...)
	sess := s.signIn(alice)

	// Each forged spelling, sent with a valid session to a protected
	// location and without one to a public location: the upstream must see
	// only what authz said, or nothing.
	for _, name := range []string{"X-Auth-User", "X_Auth_User", "x-auth-user"} {
		t.Run(name+" with a session", func(t *testing.T) {
			got := s.get("/", sess.cookie, name, "mallory").echoed(t)
			if v := headerValues(got.Header, "X-Auth-User"); !slices.Equal(v, []string{"alice"}) {
				t.Errorf("upstream got X-Auth-User %q, want [alice]", v)
			}
		})
		t.Run(name+" on /login", func(t *testing.T) {
			got := s.get("/login", "", name, "mallory").echoed(t)
			if v := headerValues(got.Header, "X-Auth-User"); len(v) != 0 {
				t.Errorf("upstream got X-Auth-User %q, want none", v)
			}
		})
	}
	t.Run("X-Auth-Email", func(t *testing.T) {
		got := s.get("/", sess.cookie, "X-Auth-Email", "mallory@evil.example").echoed(t)
		if v := headerValues(got.Header, "X-Auth-Email"); !slices.Equal(v, []string{"alice@example.com"}) {
			t.Errorf("upstream got X-Auth-Email %q, want [alice@example.com]", v)
		}
		got = s.get("/login", "", "X-Auth-Email", "mallory@evil.example").echoed(t)
		if v := headerValues(got.Header, "X-Auth-Email"); len(v) != 0 {
			t.Errorf("upstream got X-Auth-Email %q on /login, want none", v)
		}
	})
}

func TestSignedOutUserIsSentToLogin(t *testing.T) {
	t.Parallel()
	eachServer(t, signedOutUserIsSentToLogin)
}

func signedOutUserIsSentToLogin(t *testing.T, front ...string) {
	s := newSite(t, front...)
	sess := s.signIn(alice)
	other := s.signIn(bob)
	sig := sess.cookie[strings.LastIndexByte(sess.cookie, '.'):]
	unknown := newSID()

	cookies := []struct{ name, cookie string }{
		{"no cookie", ""},
		{"tampered signature", flipLast(sess.cookie)},
		{"signature of another session", other.cookie[:strings.LastIndexByte(other.cookie, '.')] + sig},
		{"signed with another secret", "connect.sid=" + authz.Sign(sess.sid, "not the secret")},
		{"unsigned", "connect.sid=" + sess.sid},
		{"unknown session", "connect.sid=" + authz.Sign(unknown, testenv.SessionSecret)},
	}
	for _, c := range cookies {
		t.Run(c.name, func(t *testing.T) {
			r := s.get("/reports/q3?format=pdf&x=a%20b", c.cookie)
			s.wantLoginRedirect(t, r, "/login?rd="+url.QueryEscape("/reports/q3?format=pdf&x=a%20b"))
		})
	}

	// The original URI goes to the login page only when it stays on this
	// site; anything a browser would read as another host becomes "/".
	for _, uri := range []string{"//evil.com", "//evil.com/path?x=1"} {
		t.Run("open redirect "+uri, func(t *testing.T) {
			r := s.get(uri, "")
			s.wantLoginRedirect(t, r, "/login?rd=%2F")
		})
	}
	// Nginx refuses a backslash in a path before asking authz (a Windows
	// server reads it as "/"; see TestAdminRuleHoldsForEverySpelling);
	// authz's own answer to one is in authz's TestVerifyLoginRedirect.
	for _, uri := range []string{`/\evil.com`, `/\/evil.com`} {
		t.Run("open redirect "+uri, func(t *testing.T) {
			if r := s.get(uri, ""); r.status != http.StatusBadRequest {
				t.Errorf("status %d, want 400", r.status)
			}
		})
	}
}

// wantLoginRedirect checks that r sends the browser to the login page at
// want (path and query), on this site.
func (s *site) wantLoginRedirect(t *testing.T, r response, want string) {
	t.Helper()
	if r.status != http.StatusFound {
		t.Fatalf("status %d, want 302 to the login page; body: %s", r.status, r.body)
	}
	loc, err := url.Parse(r.header.Get("Location"))
	if err != nil {
		t.Fatalf("Location %q: %v", r.header.Get("Location"), err)
	}
	// Nginx makes a relative Location absolute with the request's own Host
	// (absolute_redirect), so the host may be there but must be this site.
	if loc.Host != "" && loc.Host != s.nginx.Addr {
		t.Errorf("Location %q leaves the site", loc)
	}
	if got := loc.RequestURI(); got != want {
		t.Errorf("Location %q, want %s", loc, want)
	}
}

// flipLast changes the last character of a signed cookie, breaking its
// signature but not its form.
func flipLast(cookie string) string {
	last := cookie[len(cookie)-1]
	repl := "A"
	if last == 'A' {
		repl = "B"
	}
	return cookie[:len(cookie)-1] + repl
}

func TestAdminAreaNeedsTheAdminRole(t *testing.T) {
	t.Parallel()
	eachServer(t, adminAreaNeedsTheAdminRole)
}

func adminAreaNeedsTheAdminRole(t *testing.T, front ...string) {
	s := newSite(t, front...)

	r := s.get("/admin/users", s.signIn(bob).cookie)
	if r.status != http.StatusForbidden {
		t.Errorf("bob (staff) on /admin/: status %d, want 403; body: %s", r.status, r.body)
	}

	got := s.get("/admin/users", s.signIn(alice).cookie).echoed(t)
	if v := headerValues(got.Header, "X-Auth-User"); !slices.Equal(v, []string{"alice"}) {
		t.Errorf("upstream got X-Auth-User %q, want [alice]", v)
	}

	s.wantLoginRedirect(t, s.get("/admin/users", ""), "/login?rd=%2Fadmin%2Fusers")
}

func TestRedisOutageFailsClosedAndRecovers(t *testing.T) {
	t.Parallel()
	eachServer(t, redisOutageFailsClosedAndRecovers)
}

func redisOutageFailsClosedAndRecovers(t *testing.T, front ...string) {
	const cacheTTL = 200 * time.Millisecond
	s := newSite(t, append(front, "--cache-ttl", cacheTTL.String())...)
	seen := s.signIn(alice)
	unseen := s.signIn(alice) // never checked before the outage: nothing cached
	if r := s.get("/", seen.cookie); r.status != http.StatusOK {
		t.Fatalf("before the outage: status %d, want 200", r.status)
	}
	for _, addr := range []string{s.authz.Addr, s.authz.MetricsAddr} {
		if st := status(t, "http://"+addr+"/readyz"); st != http.StatusOK {
			t.Errorf("before the outage: %s/readyz answered %d, want 200", addr, st)
		}
	}

	s.redis.Stop()

	r := s.get("/", unseen.cookie)
	if r.status != http.StatusServiceUnavailable {
		t.Fatalf("Redis down: status %d, want 503; body: %s", r.status, r.body)
	}
	if r.header.Get("Retry-After") == "" || !strings.Contains(r.body, "temporarily unavailable") {
		t.Errorf("Redis down: want nginx's unavailable page with Retry-After, got %v %q", r.header, r.body)
	}
	// The session checked before the outage may pass from authz's cache,
	// but only until the cache TTL runs out.
	testenv.WaitFor(t, 5*cacheTTL, "the cached session to fail closed", func() bool {
		return s.get("/", seen.cookie).status == http.StatusServiceUnavailable
	})
	if r := s.get("/", seen.cookie); r.status != http.StatusServiceUnavailable {
		t.Fatalf("Redis still down: status %d, want 503", r.status)
	}
	for _, addr := range []string{s.authz.Addr, s.authz.MetricsAddr} {
		if st := status(t, "http://"+addr+"/readyz"); st != http.StatusServiceUnavailable {
			t.Errorf("Redis down: %s/readyz answered %d, want 503", addr, st)
		}
	}

	// Redis comes back empty (no persistence); the app's users sign in
	// again. authz must reconnect by itself.
	s.redis.Start()
	s.store(seen, alice)
	testenv.WaitFor(t, 5*time.Second, "authz to use Redis again", func() bool {
		return s.get("/", seen.cookie).status == http.StatusOK
	})
	for _, addr := range []string{s.authz.Addr, s.authz.MetricsAddr} {
		if st := status(t, "http://"+addr+"/readyz"); st != http.StatusOK {
			t.Errorf("after the outage: %s/readyz answered %d, want 200", addr, st)
		}
	}
}

func TestAuthzDownFailsClosed(t *testing.T) {
	t.Parallel()
	eachServer(t, authzDownFailsClosed)
}

func authzDownFailsClosed(t *testing.T, front ...string) {
	s := newSite(t, front...)
	sess := s.signIn(alice)
	if r := s.get("/", sess.cookie); r.status != http.StatusOK {
		t.Fatalf("status %d, want 200", r.status)
	}

	s.authz.Kill()

	r := s.get("/", sess.cookie)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
		t.Errorf("authz down: status %d (Retry-After %q), want 503 with Retry-After; body: %s",
			r.status, r.header.Get("Retry-After"), r.body)
	}
}

func TestDeletedSessionStopsPassingWithinCacheTTL(t *testing.T) {
	t.Parallel()
	eachServer(t, deletedSessionStopsPassingWithinCacheTTL)
}

func deletedSessionStopsPassingWithinCacheTTL(t *testing.T, front ...string) {
	const cacheTTL = 200 * time.Millisecond
	// Without tracking only the cache TTL bounds how long a deleted
	// session still passes: the worst case.
	s := newSite(t, append(front, "--cache-ttl", cacheTTL.String(), "--tracking=false")...)
	sess := s.signIn(alice)
	if r := s.get("/", sess.cookie); r.status != http.StatusOK {
		t.Fatalf("status %d, want 200", r.status)
	}

	s.destroy(sess)

	// The deadline leaves room for polling and a slow machine; a session
	// that still passed after it would be served from a stale cache.
	testenv.WaitFor(t, 5*cacheTTL, "the deleted session to be refused", func() bool {
		return s.get("/", sess.cookie).status == http.StatusFound
	})
}

func TestDeletedSessionStopsPassingAtOnceWithTracking(t *testing.T) {
	t.Parallel()
	eachServer(t, deletedSessionStopsPassingAtOnceWithTracking)
}

func deletedSessionStopsPassingAtOnceWithTracking(t *testing.T, front ...string) {
	s := newSite(t, front...) // tracking on, cache TTL 5s
	sess := s.signIn(alice)
	if r := s.get("/", sess.cookie); r.status != http.StatusOK {
		t.Fatalf("status %d, want 200", r.status)
	}

	s.destroy(sess)

	// Redis tells authz the key changed; far sooner than the cache TTL.
	testenv.WaitFor(t, time.Second, "the deleted session to be refused", func() bool {
		return s.get("/", sess.cookie).status == http.StatusFound
	})
}

// destroy deletes sess from Redis, as express-session's destroy does when
// an app logs the user out itself.
func (s *site) destroy(sess session) {
	s.t.Helper()
	if err := s.rdb.Del(context.Background(), "sess:"+sess.sid).Err(); err != nil {
		s.t.Fatal(err)
	}
}

func TestSIGTERMStopsAuthzGracefully(t *testing.T) {
	t.Parallel()
	eachServer(t, sIGTERMStopsAuthzGracefully)
}

func sIGTERMStopsAuthzGracefully(t *testing.T, front ...string) {
	r := testenv.StartRedis(t)
	a := testenv.StartAuthz(t, r.URL(), front...)

	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "authz to exit", a.Exited)
	if err := a.Wait(); err != nil {
		t.Fatalf("authz exited with %v after SIGTERM, want status 0\n%s", err, a.Output())
	}
}

func TestPublicLocationsPassOnlyPublicPaths(t *testing.T) {
	t.Parallel()
	eachServer(t, publicLocationsPassOnlyPublicPaths)
}

func publicLocationsPassOnlyPublicPaths(t *testing.T, front ...string) {
	s := newSite(t, front...)

	// Nginx decodes %2F and resolves ".." before choosing a location, so
	// these are public (/static/, /login) to Nginx. The app must then get
	// the path Nginx chose, not one its own router reads as /admin/...
	for _, uri := range []string{"/admin/..%2Fstatic/", "/admin/users/..%2F..%2Fstatic/x", "/admin/..%2Flogin"} {
		t.Run(uri, func(t *testing.T) {
			got := s.get(uri, "").echoed(t)
			if !strings.HasPrefix(got.URI, "/static/") && !strings.HasPrefix(got.URI, "/login") {
				t.Errorf("unauthenticated request reached the upstream as %q", got.URI)
			}
		})
	}
}

func TestSignOutEndsTheSessionAtOnce(t *testing.T) {
	t.Parallel()
	eachServer(t, signOutEndsTheSessionAtOnce)
}

func signOutEndsTheSessionAtOnce(t *testing.T, front ...string) {
	s := newSite(t, front...) // default cache TTL: the sign-out must not wait for it
	post := func(cookie, origin string) response {
		t.Helper()
		req, err := http.NewRequest("POST", s.nginx.URL("/logout"), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Cookie", cookie)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return response{status: resp.StatusCode, header: resp.Header}
	}

	t.Run("another site's form is refused", func(t *testing.T) {
		sess := s.signIn(alice)
		if r := post(sess.cookie, "https://evil.example"); r.status != http.StatusForbidden {
			t.Errorf("cross-site sign-out: status %d, want 403", r.status)
		}
		if r := s.get("/", sess.cookie); r.status != http.StatusOK {
			t.Errorf("after a refused sign-out: status %d, want 200", r.status)
		}
	})
	t.Run("without Origin", func(t *testing.T) {
		s.wantSignOut(t, post, "")
	})
	t.Run("from a page of this site", func(t *testing.T) {
		s.wantSignOut(t, post, "http://"+s.nginx.Addr)
	})
}

// wantSignOut signs in, signs out through post with origin, and checks
// that the cookie is expired and the session refused right away.
func (s *site) wantSignOut(t *testing.T, post func(cookie, origin string) response, origin string) {
	t.Helper()
	sess := s.signIn(alice)
	if r := s.get("/", sess.cookie); r.status != http.StatusOK {
		t.Fatalf("before sign-out: status %d, want 200", r.status)
	}
	r := post(sess.cookie, origin)
	if r.status != http.StatusSeeOther {
		t.Fatalf("sign-out: status %d, want 303", r.status)
	}
	var expired bool
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		expired = expired || c.Name == "connect.sid" && c.MaxAge < 0
	}
	if !expired {
		t.Errorf("sign-out did not expire connect.sid: Set-Cookie %q", r.header.Values("Set-Cookie"))
	}
	// The old cookie, replayed, is refused at once: no cache TTL to wait.
	s.wantLoginRedirect(t, s.get("/", sess.cookie), "/login?rd=%2F")
}
