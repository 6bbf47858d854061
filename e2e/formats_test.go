package e2e

import (
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
)

// The stories in this file run examples/node-formats: real login apps of
// the session formats authz reads besides express-session (Express with
// client-sessions, Express with cookie-session, Fastify with
// @fastify/session and connect-redis), behind the shipped nginx/ config
// and two authz instances. The tests write no session: the apps do.

// formatSite is one format's deployment.
type formatSite struct {
	*site
	format    string
	app       *testenv.Node
	instances []*testenv.Authz
	args      []string // the format's flags, for serve and the CLI
}

// formatArgs are the flags that read each format's app as
// examples/node-formats configures it (docs/formats.md).
var formatArgs = map[string][]string{
	"client-sessions": {"--session-format", "client-sessions", "--cookie-name", "session", "--user-path", "username", "--revision-path", "rev"},
	"cookie-session":  {"--session-format", "cookie-session", "--cookie-name", "session", "--user-path", "username", "--revision-path", "rev"},
	"fastify-session": {"--session-format", "fastify-session", "--cookie-name", "sessionId", "--user-path", "username"},
}

func newFormatSite(t *testing.T, format string, appEnv ...string) *formatSite {
	t.Helper()
	r := testenv.StartRedis(t)
	app := testenv.StartNode(t, "examples/node-formats", append([]string{
		"FORMAT=" + format, "REDIS_URL=" + r.URL(), "SESSION_SECRET=" + testenv.SessionSecret,
	}, appEnv...)...)
	// An hour of cache: only logout events and tracking can deny.
	args := append(append([]string(nil), formatArgs[format]...), "--roles-path", "roles", "--cache-ttl", "1h")
	a1 := testenv.StartAuthz(t, r.URL(), args...)
	a2 := testenv.StartAuthz(t, r.URL(), args...)
	echo := testenv.StartEcho(t)
	n := testenv.StartNginxAuthz(t, map[string]string{
		"AUTHZ_ADDR": a1.Addr,
		"APP_ADDR":   echo.Addr,
		"LOGIN_ADDR": app.Addr,
	}, a2.Addr)
	f := &formatSite{
		site:      &site{t: t, redis: r, rdb: r.Client(), nginx: n, client: newClient()},
		format:    format,
		app:       app,
		instances: []*testenv.Authz{a1, a2},
		args:      formatArgs[format],
	}
	for _, a := range f.instances {
		testenv.WaitFor(t, 10*time.Second, "the logout subscription on "+a.Addr, func() bool {
			return metric(t, a, "authz_logout_subscribed") == 1
		})
	}
	return f
}

// cookies is what a response set, as a Cookie header value.
func cookies(r response) string {
	var out []string
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Value != "" && c.MaxAge >= 0 {
			out = append(out, c.Name+"="+c.Value)
		}
	}
	return strings.Join(out, "; ")
}

// signIn signs name in through nginx and returns the cookies the app set.
func (f *formatSite) signIn(name string) string {
	f.t.Helper()
	r := send(f.t, "POST", f.nginx.URL("/login"), "", url.Values{"username": {name}, "password": {"demo"}})
	c := cookies(r)
	if r.status != http.StatusSeeOther || c == "" {
		f.t.Fatalf("%s: sign in as %s: %d, cookies %q: %s", f.format, name, r.status, c, r.body)
	}
	return c
}

// touch has the app change the session of cookie, straight to the app, and
// returns the cookies it re-issued ("" if none).
func (f *formatSite) touch(cookie string) string {
	f.t.Helper()
	return cookies(send(f.t, "POST", f.app.URL("/login/touch"), cookie, url.Values{}))
}

// user is who the upstream saw through nginx, or "" with the status.
func (f *formatSite) user(cookie string) (int, string) {
	f.t.Helper()
	r := send(f.t, "GET", f.nginx.URL("/app/"), cookie, nil)
	if r.status != http.StatusOK {
		return r.status, ""
	}
	return r.status, strings.Join(headerValues(r.echoed(f.t).Header, "X-Auth-User"), ",")
}

func (f *formatSite) want(cookie string, status int, user, what string) {
	f.t.Helper()
	if s, u := f.user(cookie); s != status || u != user {
		f.t.Errorf("%s: %s: %d %q, want %d %q", f.format, what, s, u, status, user)
	}
}

// verify asks instance a about cookie directly.
func (f *formatSite) verify(a *testenv.Authz, cookie string) int {
	f.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+a.Addr+"/verify", nil)
	req.Header.Set("Cookie", cookie)
	resp, err := f.client.Do(req)
	if err != nil {
		f.t.Fatalf("verify on %s: %v", a.Addr, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// everywhere waits until every instance answers status for cookie.
func (f *formatSite) everywhere(cookie string, status int, what string) {
	f.t.Helper()
	for _, a := range f.instances {
		testenv.WaitFor(f.t, 2*time.Second, f.format+": "+what+" on "+a.Addr, func() bool {
			return f.verify(a, cookie) == status
		})
	}
}

// cli runs authz with the format's flags; positional arguments go last,
// after "--" (a cookie value may begin with "-").
func (f *formatSite) cli(cmd []string, positional ...string) string {
	f.t.Helper()
	args := append(append(cmd, f.args...), "--redis-url", f.redis.URL(), "--session-secret", testenv.SessionSecret)
	if len(positional) > 0 {
		args = append(append(args, "--"), positional...)
	}
	out, err := exec.Command(testenv.BuildAuthz(f.t), args...).CombinedOutput()
	if err != nil {
		f.t.Fatalf("%s: authz %s: %v\n%s", f.format, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// value is the session cookie's value in a Cookie header value.
func value(cookie, name string) string {
	for _, part := range strings.Split(cookie, "; ") {
		if v, ok := strings.CutPrefix(part, name+"="); ok {
			return v
		}
	}
	return ""
}

// tamper changes one character in the middle of the session cookie's value.
func tamper(cookie, name string) string {
	v := value(cookie, name)
	i := len(v) / 2
	c := byte('A')
	if v[i] == 'A' {
		c = 'B'
	}
	return strings.Replace(cookie, name+"="+v, name+"="+v[:i]+string(c)+v[i+1:], 1)
}

// TestFormatsSignInAndOut is each format's whole story: sign in, tampered
// and foreign cookies, a user-wide logout on both instances, the app
// re-issuing the old session afterwards, a new sign-in, and a one-cookie
// logout that leaves the user's other cookie working.
func TestFormatsSignInAndOut(t *testing.T) {
	for _, format := range []string{"client-sessions", "cookie-session", "fastify-session"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			f := newFormatSite(t, format)
			name := formatArgs[format][3] // --cookie-name's value

			alice := f.signIn("alice")
			f.want(alice, 200, "alice", "alice signed in")
			f.everywhere(alice, 200, "alice's cookie allowed")
			f.want(tamper(alice, name), toLogin, "", "a tampered cookie")

			// A cookie of the same app under another secret.
			foreign := testenv.StartNode(t, "examples/node-formats", "FORMAT="+format, "REDIS_URL="+f.redis.URL(),
				"SESSION_SECRET=another secret, of at least thirty-two characters")
			r := send(t, "POST", foreign.URL("/login"), "", url.Values{"username": {"alice"}, "password": {"demo"}})
			if c := cookies(r); c == "" {
				t.Fatalf("the foreign app set no cookie: %d %s", r.status, r.body)
			} else {
				f.want(c, toLogin, "", "a cookie signed with another secret")
			}

			second := f.signIn("alice")
			f.want(second, 200, "alice", "alice's second sign-in")

			// One cookie ended: the other of the same user still works.
			out := f.cli([]string{"logout", "--session", value(second, name)})
			if !strings.Contains(out, "event published") {
				t.Fatalf("logout --session: %s", out)
			}
			f.everywhere(second, 401, "the cookie logged out alone")
			f.want(alice, 200, "alice", "alice's other cookie, after a one-cookie logout")

			// Every cookie of the user.
			f.cli([]string{"logout", "--user", "alice"})
			f.everywhere(alice, 401, "alice after a user-wide logout")
			f.want(alice, toLogin, "", "alice after a user-wide logout, through nginx")

			// The app re-issues the old session: still refused.
			if again := f.touch(alice); again != "" {
				f.everywhere(again, 401, "a cookie the app re-issued after the logout")
			} else if format != "fastify-session" {
				t.Fatalf("the app re-issued no cookie for the old session")
			}

			// A new sign-in is allowed, and bob was never touched.
			f.want(f.signIn("alice"), 200, "alice", "alice signed in again")
			f.want(f.signIn("bob"), 200, "bob", "bob")

			// session show decodes the format.
			show := f.signIn("bob")
			out = f.cli([]string{"session", "show"}, value(show, name))
			if !strings.Contains(out, "bob") {
				t.Fatalf("session show: %s", out)
			}
		})
	}
}

// TestFormatsExpire: a session past its own end is refused (cookie-session
// carries no expiry, docs/formats.md).
func TestFormatsExpire(t *testing.T) {
	for _, format := range []string{"client-sessions", "fastify-session"} {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			f := newFormatSite(t, format, "DURATION_MS=2000")
			alice := f.signIn("alice")
			f.want(alice, 200, "alice", "alice, before her session ends")
			testenv.WaitFor(t, 10*time.Second, format+": alice's session to end", func() bool {
				s, _ := f.user(alice)
				return s == toLogin
			})
			f.everywhere(alice, 401, "an expired session")
		})
	}
}

// TestTenantsOfTwoFormats: one authz serves a Fastify shop and a
// client-sessions portal, each tenant's cookies read by its own format.
func TestTenantsOfTwoFormats(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	shop := testenv.StartNode(t, "examples/node-formats", "FORMAT=fastify-session", "REDIS_URL="+r.URL(), "SESSION_SECRET="+testenv.SessionSecret)
	portal := testenv.StartNode(t, "examples/node-formats", "FORMAT=client-sessions", "REDIS_URL="+r.URL(),
		"SESSION_SECRET=portal secret", "TENANT=portal")
	file := filepath.Join(t.TempDir(), "tenants.yaml")
	if err := os.WriteFile(file, []byte(`
defaults:
  user_paths: [username]
tenants:
  - name: shop
    hosts: [shop.test]
    format: fastify-session
  - name: portal
    hosts: [portal.test]
    key_prefix: "portal:"
    format: client-sessions
    cookie_name: session
    secrets: [portal secret]
    revision_path: rev
`), 0o600); err != nil {
		t.Fatal(err)
	}
	a := testenv.StartAuthz(t, r.URL(), "--tenants", file)
	echo := testenv.StartEcho(t)
	n := testenv.StartNginx(t, map[string]string{"AUTHZ_ADDR": a.Addr, "APP_ADDR": echo.Addr, "LOGIN_ADDR": echo.Addr})

	signIn := func(app *testenv.Node) string {
		r := send(t, "POST", app.URL("/login"), "", url.Values{"username": {"alice"}, "password": {"demo"}})
		if c := cookies(r); c != "" {
			return c
		}
		t.Fatalf("sign in: %d %s", r.status, r.body)
		return ""
	}
	client := newClient()
	at := func(host, cookie string) int {
		req, _ := http.NewRequest("GET", n.URL("/app/"), nil)
		req.Host = host
		req.Header.Set("Cookie", cookie)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET %s/app/: %v", host, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	shopCookie, portalCookie := signIn(shop), signIn(portal)
	for _, c := range []struct {
		host, cookie string
		want         int
		what         string
	}{
		{"shop.test", shopCookie, 200, "the shop's Fastify session on the shop"},
		{"portal.test", portalCookie, 200, "the portal's client-sessions cookie on the portal"},
		{"portal.test", shopCookie, toLogin, "the shop's cookie on the portal"},
		{"shop.test", portalCookie, toLogin, "the portal's cookie on the shop"},
	} {
		if got := at(c.host, c.cookie); got != c.want {
			t.Errorf("%s: %d, want %d", c.what, got, c.want)
		}
	}
	// A user-wide logout in the portal moves the portal's revision only.
	out, err := exec.Command(testenv.BuildAuthz(t), "logout", "--user", "alice", "--tenant", "portal",
		"--tenants", file, "--redis-url", r.URL(), "--session-secret", testenv.SessionSecret).CombinedOutput()
	if err != nil {
		t.Fatalf("logout --user alice --tenant portal: %v\n%s", err, out)
	}
	testenv.WaitFor(t, 2*time.Second, "the portal to refuse alice's cookie", func() bool {
		return at("portal.test", portalCookie) == toLogin
	})
	if got := at("shop.test", shopCookie); got != 200 {
		t.Errorf("the shop after a portal logout: %d", got)
	}
}
