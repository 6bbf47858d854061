package e2e

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
)

// The stories of the session formats besides express-session
// (docs/formats.md), each told with a real Node app of examples/ as
// Nginx's login service, in front of two authz instances started with the
// same flags, as docs/scale.md runs them. The apps and their cookies are in
// nodeapps_test.go.

// appSite is one deployment of one format: Redis, the app, two authz
// instances behind the shipped nginx config, the echo upstream as the app
// Nginx protects.
type appSite struct {
	*site
	app       nodeApp
	login     *testenv.Node
	instances []*testenv.Authz
}

// newAppSite starts it. authz caches for an hour and does not track
// keys (--tracking=false): only a logout event, or the cookie's own
// expiry, can explain an instance refusing a session it has cached.
func newAppSite(t *testing.T, app nodeApp) *appSite {
	t.Helper()
	r := testenv.StartRedis(t)
	login := app.start(t, r.URL(), app.secret, 0)
	args := append(app.readArgs(), "--roles-path", "roles", "--header", "X-Auth-Roles=roles",
		"--cache-ttl", "1h", "--tracking=false")
	a1 := testenv.StartAuthz(t, r.URL(), args...)
	a2 := testenv.StartAuthz(t, r.URL(), args...)
	echo := testenv.StartEcho(t)
	n := testenv.StartNginxAuthz(t, map[string]string{
		"AUTHZ_ADDR": a1.Addr,
		"APP_ADDR":   echo.Addr,
		"LOGIN_ADDR": login.Addr,
	}, a2.Addr)
	for _, a := range []*testenv.Authz{a1, a2} {
		testenv.WaitFor(t, 10*time.Second, "the logout subscription on "+a.Addr, func() bool {
			return metric(t, a, "authz_logout_subscribed") == 1
		})
	}
	return &appSite{
		site:      &site{t: t, redis: r, rdb: r.Client(), nginx: n, client: newClient()},
		app:       app,
		login:     login,
		instances: []*testenv.Authz{a1, a2},
	}
}

// signIn signs name in through nginx, as a browser does, and returns the
// cookies the app set.
func (s *appSite) signIn(t *testing.T, name string) jar {
	t.Helper()
	return appSignIn(t, s.app, s.nginx.URL("/login"), name)
}

// who is the user the protected app got through nginx for the cookies, or
// the status nginx answered instead (302: to the login page).
func (s *appSite) who(t *testing.T, j jar) string {
	t.Helper()
	r := s.site.get("/", j.header())
	if r.status != http.StatusOK {
		return strconv.Itoa(r.status)
	}
	return strings.Join(headerValues(r.echoed(t).Header, "X-Auth-User"), ",")
}

// verify is what instance a answers for the cookies, asked directly.
func (s *appSite) verify(t *testing.T, a *testenv.Authz, j jar) int {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+a.Addr+"/verify", nil)
	req.Header.Set("Cookie", j.header())
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("verify on %s: %v", a.Addr, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// allowedEverywhere checks that both instances allow the cookies and that
// the app behind nginx sees user.
func (s *appSite) allowedEverywhere(t *testing.T, j jar, user, what string) {
	t.Helper()
	for i, a := range s.instances {
		if got := s.verify(t, a, j); got != http.StatusOK {
			t.Errorf("%s: instance %d answered %d, want 200", what, i+1, got)
		}
	}
	if got := s.who(t, j); got != user {
		t.Errorf("%s: the app behind nginx got %q, want %s", what, got, user)
	}
}

// deniedEverywhere waits until both instances refuse the cookies, then
// checks that nginx sends the browser to the login page.
func (s *appSite) deniedEverywhere(t *testing.T, j jar, what string) {
	t.Helper()
	for i, a := range s.instances {
		testenv.WaitFor(t, 2*time.Second, what+": instance "+strconv.Itoa(i+1)+" to refuse", func() bool {
			return s.verify(t, a, j) == http.StatusUnauthorized
		})
	}
	r := s.site.get("/orders", j.header())
	if loc := r.header.Get("Location"); r.status != toLogin || loc != "/login?rd=%2Forders" {
		t.Errorf("%s: nginx answered %d to %q, want 302 to /login?rd=%%2Forders", what, r.status, loc)
	}
}

// reissue sends the cookies to the app's route that writes the session
// again (Nginx does not protect it) and returns the status and the cookies
// the browser holds afterwards.
func (s *appSite) reissue(t *testing.T, j jar) (int, jar) {
	t.Helper()
	r := send(t, "GET", s.nginx.URL(s.app.reissue), j.header(), nil)
	return r.status, j.update(r)
}

// cli runs an authz command with the site's format flags on its Redis.
func (s *appSite) cli(t *testing.T, args ...string) string {
	t.Helper()
	out, err := s.app.cli(t, s.redis.URL(), args...)
	if err != nil {
		t.Fatalf("authz %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// reason is how many refusals instance a counted with reason.
func reason(t *testing.T, a *testenv.Authz, reason string) float64 {
	t.Helper()
	return metric(t, a, `authz_verify_requests_total{outcome="unauthenticated",reason="`+reason+`"}`)
}

func TestNodeAppsSignInThroughNginx(t *testing.T) {
	t.Parallel()
	for _, app := range nodeApps {
		t.Run(app.format, func(t *testing.T) {
			t.Parallel()
			s := newAppSite(t, app)

			// A browser without a session goes to the Node app's login page.
			r := s.site.get("/orders?page=2", "")
			if loc := r.header.Get("Location"); r.status != toLogin || loc != "/login?rd=%2Forders%3Fpage%3D2" {
				t.Fatalf("no session: %d to %q, want 302 to the login page", r.status, loc)
			}
			r = send(t, "POST", s.nginx.URL("/login"), "", url.Values{"username": {"alice"}, "password": {"demo"}, "rd": {"/orders?page=2"}})
			alice := jar{}.update(r)
			if r.status != http.StatusSeeOther || r.header.Get("Location") != "/orders?page=2" || alice[app.cookie] == "" {
				t.Fatalf("sign in: %d to %q, cookies %v; want 303 back to /orders?page=2 with a %s cookie", r.status, r.header.Get("Location"), alice, app.cookie)
			}

			// The app behind nginx gets exactly the user and roles the
			// Node app put in the session, whichever instance answers.
			for range 4 {
				got := s.site.get("/orders?page=2", alice.header()).echoed(t)
				for name, want := range map[string]string{"X-Auth-User": "alice", "X-Auth-Roles": "admin"} {
					if v := headerValues(got.Header, name); !slices.Equal(v, []string{want}) {
						t.Errorf("app got %s %q, want [%s]", name, v, want)
					}
				}
			}
			s.allowedEverywhere(t, alice, "alice", "alice")
			bob := s.signIn(t, "bob")
			s.allowedEverywhere(t, bob, "bob", "bob")
			if st := s.site.get("/admin/", alice.header()).status; st != http.StatusOK {
				t.Errorf("alice (admin) on /admin/: %d, want 200", st)
			}
			if st := s.site.get("/admin/", bob.header()).status; st != http.StatusForbidden {
				t.Errorf("bob (staff) on /admin/: %d, want 403", st)
			}

			// One changed character of the cookie: to the login page.
			before := reason(t, s.instances[0], "bad_signature") + reason(t, s.instances[1], "bad_signature")
			s.deniedEverywhere(t, app.tamper(alice), "a tampered cookie")
			if after := reason(t, s.instances[0], "bad_signature") + reason(t, s.instances[1], "bad_signature"); after < before+2 {
				t.Errorf("a tampered cookie was not refused as bad_signature (%v -> %v)", before, after)
			}
			if app.format == "cookie-session" {
				// The value without its signature cookie, or with bob's.
				s.deniedEverywhere(t, jar{app.cookie: alice[app.cookie]}, "a cookie-session value without its .sig")
				s.deniedEverywhere(t, jar{app.cookie: alice[app.cookie], app.cookie + ".sig": bob[app.cookie+".sig"]}, "alice's value with bob's signature")
			}

			// The same app signing with a secret authz does not know, on
			// the same Redis (for @fastify/session: its session is even
			// stored where authz looks).
			foreign := app.start(t, s.redis.URL(), "a secret authz was never given: 32 chars or more", 0)
			stranger := appSignIn(t, app, foreign.URL("/login"), "alice")
			s.deniedEverywhere(t, stranger, "a cookie made with another secret")
			if app.format == "fastify-session" {
				if storedSession(t, s.site, "sess:"+strings.SplitN(stranger[app.cookie], ".", 2)[0]) == "" {
					t.Errorf("the foreign app's session is not in Redis: the story proves less than it says")
				}
			}
		})
	}
}

func TestNodeAppsExpiredCookie(t *testing.T) {
	t.Parallel()
	for _, app := range nodeApps {
		t.Run(app.format, func(t *testing.T) {
			if app.format == "cookie-session" {
				t.Skip("cookie-session carries no expiry (docs/formats.md): its cookies end by revision or deny entry only")
			}
			t.Parallel()
			s := newAppSite(t, app)
			// The same app, its sessions living 3 seconds: client-sessions'
			// duration, @fastify/session's cookie maxAge.
			short := app.start(t, s.redis.URL(), app.secret, 3*time.Second)
			j := appSignIn(t, app, short.URL("/login"), "alice")
			start := time.Now()
			s.allowedEverywhere(t, j, "alice", "a fresh short-lived session")
			// Both instances have it cached for an hour; it must end with
			// its own expiry all the same.
			testenv.WaitFor(t, 10*time.Second, "the expired session to be refused", func() bool {
				return s.verify(t, s.instances[0], j) == http.StatusUnauthorized
			})
			if took := time.Since(start); took < 2*time.Second {
				t.Errorf("refused %v after sign-in, before its 3 s were up", took)
			}
			s.deniedEverywhere(t, j, "an expired session")
		})
	}
}

func TestNodeAppsLogoutUser(t *testing.T) {
	t.Parallel()
	for _, app := range nodeApps {
		t.Run(app.format, func(t *testing.T) {
			t.Parallel()
			s := newAppSite(t, app)
			phone, laptop := s.signIn(t, "alice"), s.signIn(t, "alice")
			bob := s.signIn(t, "bob")
			s.allowedEverywhere(t, phone, "alice", "alice's phone before the logout")
			s.allowedEverywhere(t, laptop, "alice", "alice's laptop before the logout")
			s.allowedEverywhere(t, bob, "bob", "bob before the logout")
			// The app writes the session again on activity, and authz
			// takes the re-issued cookie: nothing below is a re-issue
			// being refused as such.
			st, phone := s.reissue(t, phone)
			if st != http.StatusOK {
				t.Fatalf("GET %s with alice's cookie: %d", app.reissue, st)
			}
			s.allowedEverywhere(t, phone, "alice", "a cookie the app re-issued before the logout")

			// For @fastify/session: the session as the app stored it, to
			// save it again later as a request that loaded it before the
			// logout would when it ends after it.
			var stored, sid string
			if app.format == "fastify-session" {
				sid = app.decode(t, app.secret, phone).sid
				stored = storedSession(t, s.site, "sess:"+sid)
			}

			out := s.cli(t, "logout", "--user", "alice")
			// What it did: a revision moved on, or the stored sessions
			// walked (phone and laptop).
			if want := map[bool]string{true: "new revision", false: "revoked 2 sessions"}[app.revision]; !strings.Contains(out, want) {
				t.Errorf("authz logout --user alice: %q, want it to say %q", out, want)
			}
			for _, v := range []string{phone[app.cookie], laptop[app.cookie]} {
				if strings.Contains(out, v) {
					t.Errorf("authz logout printed a cookie: %q", out)
				}
			}
			s.deniedEverywhere(t, phone, "alice's phone after logout --user")
			s.deniedEverywhere(t, laptop, "alice's laptop after logout --user")
			s.allowedEverywhere(t, bob, "bob", "bob after alice's logout")
			if app.revision {
				if n := reason(t, s.instances[0], "stale_revision") + reason(t, s.instances[1], "stale_revision"); n == 0 {
					t.Errorf("no refusal counted as stale_revision")
				}
				if got := s.rdb.Get(context.Background(), "authz:rev:alice").Val(); got != "1" {
					t.Errorf("authz:rev:alice = %q after one logout, want 1", got)
				}
			}

			// The app re-issues the old session after the logout: still
			// refused.
			switch app.format {
			case "client-sessions":
				// Sliding moves createdAt past the logout; the app itself
				// still takes the cookie as alice's.
				st, again := s.reissue(t, laptop)
				if st != http.StatusOK || again[app.cookie] == laptop[app.cookie] {
					t.Fatalf("the app did not re-issue alice's old cookie: %d", st)
				}
				if c := app.decode(t, app.secret, again).createdAt; !c.After(time.Now()) {
					t.Errorf("re-issued createdAt %v: want it after the logout", c)
				}
				s.deniedEverywhere(t, again, "an old session the app re-issued after the logout")
			case "cookie-session":
				st, again := s.reissue(t, laptop)
				if st != http.StatusOK || again[app.cookie] == laptop[app.cookie] {
					t.Fatalf("the app did not re-issue alice's old cookie: %d", st)
				}
				s.deniedEverywhere(t, again, "an old session the app re-issued after the logout")
			case "fastify-session":
				if storedSession(t, s.site, "sess:"+sid) != "" {
					t.Errorf("logout --user left alice's session in Redis")
				}
				if err := s.rdb.Set(context.Background(), "sess:"+sid, stored, time.Hour).Err(); err != nil {
					t.Fatal(err)
				}
				// The Fastify app is fooled (it reads the session again);
				// authz is not.
				if st, _ := s.reissue(t, phone); st != http.StatusOK {
					t.Errorf("the app did not take the session saved again: %d", st)
				}
				s.deniedEverywhere(t, phone, "an old session saved again after the logout")
			}

			// Signing in again works at once, on every instance.
			fresh := s.signIn(t, "alice")
			s.allowedEverywhere(t, fresh, "alice", "a sign-in after the logout")
			s.deniedEverywhere(t, laptop, "the old cookie next to the new one")

			// A fresh instance (nothing cached, no events heard) refuses
			// the old cookies too: the logout is in Redis.
			s.instances[0].Stop()
			s.instances[0].Restart()
			s.deniedEverywhere(t, laptop, "after a restart, the old cookie")
			s.allowedEverywhere(t, fresh, "alice", "after a restart, the new cookie")
		})
	}
}

func TestNodeAppsLogoutOneCookie(t *testing.T) {
	t.Parallel()
	for _, app := range nodeApps {
		t.Run(app.format, func(t *testing.T) {
			t.Parallel()
			s := newAppSite(t, app)
			mine, other := s.signIn(t, "alice"), s.signIn(t, "alice")
			s.allowedEverywhere(t, mine, "alice", "mine before the logout")
			s.allowedEverywhere(t, other, "alice", "the other before the logout")

			// For cookie-session both cookies, as the Cookie header has
			// them: the value alone is signed by nothing (docs/formats.md).
			out := s.cli(t, "logout", "--session", app.ref(mine))
			if strings.Contains(out, mine[app.cookie]) {
				t.Errorf("authz logout printed the cookie: %q", out)
			}
			s.deniedEverywhere(t, mine, "the logged-out cookie")
			s.allowedEverywhere(t, other, "alice", "the user's other cookie")
			if app.revision {
				if n := reason(t, s.instances[0], "revoked") + reason(t, s.instances[1], "revoked"); n == 0 {
					t.Errorf("no refusal counted as revoked")
				}
			}

			// authz session show says so, and still reads the other one.
			if out, err := app.cli(t, s.redis.URL(), "session", "show", "--", app.ref(mine)); err == nil || strings.Contains(out, "accepts") {
				t.Errorf("session show of the logged-out cookie: %v, want exit 1 saying why:\n%s", err, out)
			} else {
				t.Logf("session show of the logged-out cookie: %s", out)
			}
			if out, err := app.cli(t, s.redis.URL(), "session", "show", "--", app.ref(other)); err != nil || !strings.Contains(out, "alice") {
				t.Errorf("session show of the other cookie: %v\n%s", err, out)
			}
		})
	}
}

// Two tenants of two formats behind one authz: acme's Express app keeps
// its sessions in client-sessions cookies, globex's Fastify app in Redis.
// The tenant file gives each its format.
func TestNodeAppsTwoTenantsTwoFormats(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	acme := clientSessionsApp.start(t, r.URL(), "acme's client-sessions secret", 0, "TENANT=acme")
	globex := fastifySessionApp.start(t, r.URL(), "globex's fastify secret of 32 chars or more", 0, "SESSION_PREFIX=sessions:globex:web:")
	file := filepath.Join(t.TempDir(), "tenants.yaml")
	if err := os.WriteFile(file, []byte(`
defaults:
  key_prefix: "sessions:{tenant}:{app}:"
  app: web
  user_paths: [username]
  roles_paths: [roles]
tenants:
  - name: acme
    hosts: [acme.test]
    format: client-sessions
    cookie_name: session
    secrets: ["acme's client-sessions secret"]
    revision_path: rev
  - name: globex
    hosts: [globex.test]
    format: fastify-session
    cookie_name: sessionId
    secrets: ["globex's fastify secret of 32 chars or more"]
`), 0o600); err != nil {
		t.Fatal(err)
	}
	a := testenv.StartAuthz(t, r.URL(), "--tenants", file, "--cache-ttl", "1h", "--tracking=false")
	echo := testenv.StartEcho(t)
	n := testenv.StartNginx(t, map[string]string{"AUTHZ_ADDR": a.Addr, "APP_ADDR": echo.Addr, "LOGIN_ADDR": acme.Addr})
	testenv.WaitFor(t, 10*time.Second, "the logout subscription", func() bool {
		return metric(t, a, "authz_logout_subscribed") == 1
	})
	s := &site{t: t, redis: r, rdb: r.Client(), authz: a, nginx: n, client: newClient()}
	who := func(host string, j jar) string {
		t.Helper()
		resp := s.get("/app/", j.header(), "Host", host)
		if resp.status != http.StatusOK {
			return strconv.Itoa(resp.status)
		}
		return strings.Join(headerValues(resp.echoed(t).Header, "X-Auth-User"), ",")
	}

	aliceAcme := appSignIn(t, clientSessionsApp, acme.URL("/login"), "alice")
	aliceGlobex := appSignIn(t, fastifySessionApp, globex.URL("/login"), "alice")
	bobGlobex := appSignIn(t, fastifySessionApp, globex.URL("/login"), "bob")
	both := jar{"session": aliceAcme["session"], "sessionId": bobGlobex["sessionId"]}
	for _, tc := range []struct {
		host string
		j    jar
		want string
		what string
	}{
		{"acme.test", aliceAcme, "alice", "acme's alice on acme"},
		{"globex.test", aliceGlobex, "alice", "globex's alice on globex"},
		{"globex.test", bobGlobex, "bob", "globex's bob on globex"},
		{"globex.test", aliceAcme, "302", "acme's cookie on globex"},
		{"acme.test", bobGlobex, "302", "globex's cookie on acme"},
		// A browser holding both: each host reads its own format's cookie.
		{"acme.test", both, "alice", "both cookies on acme"},
		{"globex.test", both, "bob", "both cookies on globex"},
	} {
		if got := who(tc.host, tc.j); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.what, got, tc.want)
		}
	}

	// A user-wide logout in acme moves acme's revision only.
	out, err := tenantCLI(t, r.URL(), file, "logout", "--user", "alice", "--tenant", "acme")
	if err != nil {
		t.Fatalf("authz logout --user alice --tenant acme: %v\n%s", err, out)
	}
	if got := s.rdb.Get(context.Background(), "authz:rev:acme:alice").Val(); got != "1" {
		t.Errorf("authz:rev:acme:alice = %q, want 1", got)
	}
	testenv.WaitFor(t, 2*time.Second, "acme's alice to be refused", func() bool {
		return who("acme.test", aliceAcme) == "302"
	})
	if got := who("globex.test", aliceGlobex); got != "alice" {
		t.Errorf("globex's alice after acme's logout: %s, want alice", got)
	}
	if got := who("acme.test", appSignIn(t, clientSessionsApp, acme.URL("/login"), "alice")); got != "alice" {
		t.Errorf("acme's alice signed in again: %s, want alice", got)
	}

	// And one in globex walks globex's stored sessions only.
	out, err = tenantCLI(t, r.URL(), file, "logout", "--user", "alice", "--tenant", "globex")
	if err != nil {
		t.Fatalf("authz logout --user alice --tenant globex: %v\n%s", err, out)
	}
	testenv.WaitFor(t, 2*time.Second, "globex's alice to be refused", func() bool {
		return who("globex.test", aliceGlobex) == "302"
	})
	if got := who("globex.test", bobGlobex); got != "bob" {
		t.Errorf("globex's bob after globex's logout of alice: %s, want bob", got)
	}
}

// tenantCLI runs an authz command with the tenant file and nothing else
// about formats: each tenant's comes from the file.
func tenantCLI(t *testing.T, redisURL, file string, args ...string) (string, error) {
	t.Helper()
	args = append(args, "--redis-url", redisURL, "--tenants", file)
	out, err := exec.Command(testenv.BuildAuthz(t), args...).CombinedOutput()
	return string(out), err
}

// The sign-out each app offers: the client-sessions and cookie-session
// apps' buttons post to authz's own POST /logout (Nginx sends /logout
// there), "everywhere" or not; the Fastify app destroys the session itself
// and publishes the logout event (docs/logout.md). With an hour of cache
// and no tracking, only the logout can explain a refusal.
func TestNodeAppsSignOutButtons(t *testing.T) {
	t.Parallel()
	for _, app := range nodeApps {
		t.Run(app.format, func(t *testing.T) {
			t.Parallel()
			s := newAppSite(t, app)
			mine, other := s.signIn(t, "alice"), s.signIn(t, "alice")
			bob := s.signIn(t, "bob")
			s.allowedEverywhere(t, mine, "alice", "mine before signing out")
			s.allowedEverywhere(t, other, "alice", "the other before signing out")

			if app.format == "fastify-session" {
				r := send(t, "POST", s.nginx.URL("/login/logout"), mine.header(), nil)
				if r.status != http.StatusSeeOther || r.header.Get("Location") != "/login" {
					t.Fatalf("POST /login/logout: %d to %q, want 303 to /login", r.status, r.header.Get("Location"))
				}
				if left := mine.update(r); left[app.cookie] != "" {
					t.Errorf("the Fastify app's sign-out left the cookie in the browser: %v", left)
				}
				s.deniedEverywhere(t, mine, "a session the Fastify app destroyed")
				s.allowedEverywhere(t, other, "alice", "the user's other session")
				return
			}

			r := send(t, "POST", s.nginx.URL("/logout"), mine.header(), nil)
			if r.status != http.StatusSeeOther {
				t.Fatalf("POST /logout: %d, want 303", r.status)
			}
			if left := mine.update(r); len(left) != 0 {
				t.Errorf("POST /logout left cookies in the browser: %v (Set-Cookie %q)", left, r.header.Values("Set-Cookie"))
			}
			s.deniedEverywhere(t, mine, "the signed-out cookie")
			s.allowedEverywhere(t, other, "alice", "the user's other cookie")

			r = send(t, "POST", s.nginx.URL("/logout?everywhere=1"), other.header(), nil)
			if r.status != http.StatusSeeOther {
				t.Fatalf("POST /logout?everywhere=1: %d, want 303", r.status)
			}
			s.deniedEverywhere(t, other, "alice's other cookie after signing out everywhere")
			s.allowedEverywhere(t, bob, "bob", "bob after alice signed out everywhere")
			s.allowedEverywhere(t, s.signIn(t, "alice"), "alice", "alice signing in again")
		})
	}
}
