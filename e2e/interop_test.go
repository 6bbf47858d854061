package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/testenv"
)

// The stories in this file run the real Node services of examples/: the
// Express login app (express-session, connect-redis, passport) as Nginx's
// login service, and node-reader, a service that reads the session itself
// and knows nothing of authz. No session is written by the test: Express
// writes them all.

// nodeSite is a site whose login service is examples/express-login, with
// examples/node-reader running next to it on the same Redis.
type nodeSite struct {
	*site
	login  *testenv.Node
	reader *testenv.Node
}

// newNodeSite starts Redis, the two Node services signing with
// expressSecrets (SESSION_SECRET, comma-separated), authz with authzArgs
// added to its flags (its first secret is testenv.SessionSecret), the echo
// upstream as the app, and nginx.
func newNodeSite(t *testing.T, expressSecrets string, authzArgs ...string) *nodeSite {
	t.Helper()
	r := testenv.StartRedis(t)
	env := []string{"REDIS_URL=" + r.URL(), "SESSION_SECRET=" + expressSecrets}
	login := testenv.StartNode(t, "examples/express-login", env...)
	reader := testenv.StartNode(t, "examples/node-reader", env...)
	a := testenv.StartAuthz(t, r.URL(), authzArgs...)
	app := testenv.StartEcho(t)
	n := testenv.StartNginx(t, map[string]string{
		"AUTHZ_ADDR": a.Addr,
		"APP_ADDR":   app.Addr,
		"LOGIN_ADDR": login.Addr,
	})
	// Logout events and tracking's invalidations arrive on the
	// subscription, which authz opens after it answers /healthz.
	testenv.WaitFor(t, 10*time.Second, "the logout subscription on "+a.Addr, func() bool {
		return metric(t, a, "authz_logout_subscribed") == 1
	})
	return &nodeSite{
		site:  &site{t: t, redis: r, rdb: r.Client(), authz: a, nginx: n, client: newClient()},
		login: login, reader: reader,
	}
}

// send sends method url with cookie (if any), form (if any) as the body and
// extra headers as name, value pairs, and does not follow redirects.
func send(t *testing.T, method, url, cookie string, form url.Values, header ...string) response {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := newClient().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, url, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// sessionCookie is the connect.sid the response set, as a Cookie header
// value, or "" if it set none.
func (r response) sessionCookie() string {
	for _, c := range (&http.Response{Header: r.header}).Cookies() {
		if c.Name == "connect.sid" && c.Value != "" {
			return "connect.sid=" + c.Value
		}
	}
	return ""
}

// signInAt posts the login form of the Express app at loginURL (through
// nginx or directly) and returns the session cookie it set.
func signInAt(t *testing.T, loginURL, name string) string {
	t.Helper()
	r := send(t, "POST", loginURL, "", url.Values{"username": {name}, "password": {"demo"}})
	cookie := r.sessionCookie()
	if r.status != http.StatusSeeOther || cookie == "" {
		t.Fatalf("sign in as %s: status %d, cookie %q, want 303 and a connect.sid; body: %s", name, r.status, cookie, r.body)
	}
	return cookie
}

// signIn signs name in through nginx, as a browser does.
func (s *nodeSite) signIn(name string) string {
	s.t.Helper()
	return signInAt(s.t, s.nginx.URL("/login"), name)
}

// sidOf is the session id in a connect.sid cookie: s:<sid>.<signature>,
// percent-encoded.
func sidOf(t *testing.T, cookie string) string {
	t.Helper()
	v, err := url.QueryUnescape(strings.TrimPrefix(cookie, "connect.sid="))
	if err != nil || !strings.HasPrefix(v, "s:") || !strings.Contains(v, ".") {
		t.Fatalf("cookie %q is not a signed express-session cookie", cookie)
	}
	return v[2:strings.LastIndexByte(v, '.')]
}

// readerUser asks node-reader for cookie's session and returns its status
// and passport.user's id.
func (s *nodeSite) readerUser(cookie string) (int, string) {
	s.t.Helper()
	r := send(s.t, "GET", s.reader.URL("/"), cookie, nil)
	var v struct {
		User *user `json:"user"`
	}
	if err := json.Unmarshal([]byte(r.body), &v); err != nil {
		s.t.Fatalf("node-reader answered %d, not JSON: %v: %s", r.status, err, r.body)
	}
	if v.User == nil {
		return r.status, ""
	}
	return r.status, v.User.ID
}

// identity is the X-Auth-User the app got for cookie through nginx.
func (s *nodeSite) identity(cookie string) string {
	s.t.Helper()
	return strings.Join(headerValues(s.get("/", cookie).echoed(s.t).Header, "X-Auth-User"), ",")
}

func TestInteropExpressLoginThroughNginx(t *testing.T) {
	t.Parallel()
	s := newNodeSite(t, testenv.SessionSecret,
		"--header", "X-Auth-Email=passport.user.email", "--header", "X-Auth-Roles=passport.user.roles")

	// A browser without a session is sent to the Express login page, which
	// carries the original URI along.
	r := s.get("/orders?page=2", "")
	loc := r.header.Get("Location")
	if r.status != http.StatusFound || loc != "/login?rd=%2Forders%3Fpage%3D2" {
		t.Fatalf("no session: %d to %q, want 302 to /login?rd=%%2Forders%%3Fpage%%3D2", r.status, loc)
	}
	r = s.get(loc, "")
	if r.status != http.StatusOK || !strings.Contains(r.body, `name="rd" value="/orders?page=2"`) {
		t.Fatalf("login page: %d, want 200 and a form carrying rd=/orders?page=2:\n%s", r.status, r.body)
	}

	r = send(t, "POST", s.nginx.URL("/login"), "", url.Values{"username": {"alice"}, "password": {"wrong"}, "rd": {"/orders?page=2"}})
	if r.status != http.StatusUnauthorized || r.sessionCookie() != "" {
		t.Errorf("wrong password: %d, cookie %q; want 401 and no cookie", r.status, r.sessionCookie())
	}

	r = send(t, "POST", s.nginx.URL("/login"), "", url.Values{"username": {"alice"}, "password": {"demo"}, "rd": {"/orders?page=2"}})
	alice := r.sessionCookie()
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/orders?page=2" || alice == "" {
		t.Fatalf("sign in: %d to %q, cookie %q; want 303 to /orders?page=2 with a connect.sid", r.status, r.header.Get("Location"), alice)
	}

	got := s.get("/orders?page=2", alice).echoed(t)
	for name, want := range map[string]string{"X-Auth-User": "alice", "X-Auth-Email": "alice@example.com", "X-Auth-Roles": "admin"} {
		if v := headerValues(got.Header, name); !slices.Equal(v, []string{want}) {
			t.Errorf("app got %s %q, want [%s]", name, v, want)
		}
	}
	if st := s.get("/admin/", alice).status; st != http.StatusOK {
		t.Errorf("alice (admin) on /admin/: %d, want 200", st)
	}
	bob := s.signIn("bob")
	if id := s.identity(bob); id != "bob" {
		t.Errorf("bob's X-Auth-User %q", id)
	}
	if st := s.get("/admin/", bob).status; st != http.StatusForbidden {
		t.Errorf("bob (staff) on /admin/: %d, want 403", st)
	}
	// The service that reads the session itself sees the same user.
	if st, id := s.readerUser(alice); st != http.StatusOK || id != "alice" {
		t.Errorf("node-reader with alice's cookie: %d, user %q; want 200, alice", st, id)
	}

	// The login app sends the browser back only to a path on this site.
	for _, rd := range []string{"//evil.example/", `/\evil.example/`, "https://evil.example/", "/\t/evil.example/", "evil"} {
		r := send(t, "POST", s.nginx.URL("/login"), "", url.Values{"username": {"bob"}, "password": {"demo"}, "rd": {rd}})
		if loc := r.header.Get("Location"); r.status != http.StatusSeeOther || loc != "/" {
			t.Errorf("rd=%q: %d to %q, want 303 to /", rd, r.status, loc)
		}
	}
}

func TestInteropSessionChangeVisibleThroughAuthz(t *testing.T) {
	t.Parallel()
	// A cache TTL of an hour: only Redis's invalidation (tracking, on by
	// default) can explain authz seeing the change at all.
	s := newNodeSite(t, testenv.SessionSecret, "--cache-ttl", "1h", "--header", "X-Auth-Name=count")
	alice := s.signIn("alice")
	if v := headerValues(s.get("/", alice).echoed(t).Header, "X-Auth-Name"); len(v) != 0 {
		t.Fatalf("X-Auth-Name %q before counting, want none", v)
	}
	for _, want := range []string{"1", "2"} {
		r := send(t, "GET", s.nginx.URL("/login/count"), alice, nil)
		if r.status != http.StatusOK || !strings.Contains(r.body, `"count":`+want) {
			t.Fatalf("GET /login/count: %d %s, want count %s", r.status, r.body, want)
		}
		testenv.WaitFor(t, 2*time.Second, "X-Auth-Name: "+want+" through nginx", func() bool {
			return slices.Equal(headerValues(s.get("/", alice).echoed(t).Header, "X-Auth-Name"), []string{want})
		})
	}
}

func TestInteropLogoutEndsSessionEverywhere(t *testing.T) {
	t.Parallel()
	// Tracking off and an hour of cache TTL: only the logout event can
	// make authz deny a session it has cached.
	s := newNodeSite(t, testenv.SessionSecret, "--cache-ttl", "1h", "--tracking=false")

	// alive reports how each party answers for cookie: nginx (the app or
	// a redirect to the login page), node-reader, and the Express app.
	alive := func(cookie string) (nginx, reader, express int) {
		nginx = s.get("/", cookie).status
		reader, _ = s.readerUser(cookie)
		express = send(t, "GET", s.nginx.URL("/login/count"), cookie, nil).status
		return
	}
	ways := []struct {
		name   string
		logout func(cookie string)
	}{
		{"the Express app's own logout", func(cookie string) {
			// Another site cannot make the browser log out.
			r := send(t, "POST", s.nginx.URL("/login/logout"), cookie, nil, "Origin", "https://evil.example")
			if r.status != http.StatusForbidden {
				t.Errorf("cross-site POST /login/logout: %d, want 403", r.status)
			}
			if n, rd, e := alive(cookie); n != 200 || rd != 200 || e != 200 {
				t.Fatalf("after a refused cross-site logout: nginx %d, node-reader %d, express %d; want 200s", n, rd, e)
			}
			r = send(t, "POST", s.nginx.URL("/login/logout"), cookie, nil)
			if r.status != http.StatusSeeOther || r.header.Get("Location") != "/login" {
				t.Errorf("POST /login/logout: %d to %q, want 303 to /login", r.status, r.header.Get("Location"))
			}
			if !strings.Contains(r.header.Get("Set-Cookie"), "connect.sid=;") {
				t.Errorf("POST /login/logout did not clear the cookie: %q", r.header.Get("Set-Cookie"))
			}
		}},
		{"authz's POST /logout", func(cookie string) {
			r := send(t, "POST", s.nginx.URL("/logout"), cookie, nil)
			if r.status != http.StatusSeeOther {
				t.Errorf("POST /logout: %d, want 303", r.status)
			}
		}},
		{"authz logout --session", func(cookie string) {
			out, err := exec.Command(testenv.BuildAuthz(t), "logout", "--session", strings.TrimPrefix(cookie, "connect.sid="),
				"--redis-url", s.redis.URL(), "--session-secret", testenv.SessionSecret).CombinedOutput()
			if err != nil {
				t.Fatalf("authz logout --session: %v\n%s", err, out)
			}
		}},
	}
	for _, w := range ways {
		t.Run(w.name, func(t *testing.T) {
			mine, other := s.signIn("alice"), s.signIn("alice")
			for _, c := range []string{mine, other} {
				if n, rd, e := alive(c); n != 200 || rd != 200 || e != 200 {
					t.Fatalf("before logout: nginx %d, node-reader %d, express %d; want 200s", n, rd, e)
				}
			}
			w.logout(mine)
			testenv.WaitFor(t, 2*time.Second, "authz to deny the logged-out session", func() bool {
				return s.get("/", mine).status == http.StatusFound
			})
			if loc := s.get("/", mine).header.Get("Location"); loc != "/login?rd=%2F" {
				t.Errorf("after logout: redirect to %q, want /login?rd=%%2F", loc)
			}
			if n, rd, e := alive(mine); n != 302 || rd != 401 || e != 401 {
				t.Errorf("after logout: nginx %d, node-reader %d, express %d; want 302, 401, 401", n, rd, e)
			}
			// The Express request above loaded nothing and wrote nothing:
			// the session is not back for anyone.
			if n := s.get("/", mine).status; n != 302 {
				t.Errorf("after the Express app saw the dead cookie: nginx %d, want 302", n)
			}
			if n, rd, e := alive(other); n != 200 || rd != 200 || e != 200 {
				t.Errorf("the user's other session: nginx %d, node-reader %d, express %d; want 200s", n, rd, e)
			}
		})
	}
}

func TestInteropSecretRotation(t *testing.T) {
	t.Parallel()
	const oldSecret = "the old secret"
	newSecret := testenv.SessionSecret
	// After the rotation: the Express app signs with the new secret and
	// still accepts the old; so does authz (its first secret is
	// testenv.SessionSecret, the extra one is the old).
	s := newNodeSite(t, newSecret+","+oldSecret, "--session-secret", oldSecret)
	// Before it, or an instance not yet rolled over: the old secret only.
	before := testenv.StartNode(t, "examples/express-login",
		"REDIS_URL="+s.redis.URL(), "SESSION_SECRET="+oldSecret)

	oldCookie := signInAt(t, before.URL("/login"), "bob")
	if want := "connect.sid=" + authz.Sign(sidOf(t, oldCookie), oldSecret); oldCookie != want {
		t.Fatalf("cookie from before the rotation %q, want it signed with the old secret", oldCookie)
	}
	newCookie := s.signIn("alice")
	if want := "connect.sid=" + authz.Sign(sidOf(t, newCookie), newSecret); newCookie != want {
		t.Fatalf("cookie from after the rotation %q, want it signed with the new secret", newCookie)
	}

	for _, c := range []struct{ name, cookie, user string }{
		{"old cookie", oldCookie, "bob"},
		{"new cookie", newCookie, "alice"},
	} {
		if id := s.identity(c.cookie); id != c.user {
			t.Errorf("%s through authz: X-Auth-User %q, want %s", c.name, id, c.user)
		}
		if st, id := s.readerUser(c.cookie); st != http.StatusOK || id != c.user {
			t.Errorf("%s on node-reader: %d, user %q; want 200, %s", c.name, st, id, c.user)
		}
	}

	// A session the rotated Express app changes gets a cookie signed with
	// the new secret: old cookies move over as they are used.
	r := send(t, "GET", s.nginx.URL("/login/count"), oldCookie, nil)
	resigned := r.sessionCookie()
	if r.status != http.StatusOK || resigned != "connect.sid="+authz.Sign(sidOf(t, oldCookie), newSecret) {
		t.Fatalf("old cookie on the rotated app: %d, cookie %q; want 200 and the session re-signed with the new secret", r.status, resigned)
	}
	if id := s.identity(resigned); id != "bob" {
		t.Errorf("re-signed cookie through authz: X-Auth-User %q, want bob", id)
	}

	// A secret nobody lists any more is refused everywhere.
	retired := "connect.sid=" + authz.Sign(sidOf(t, newCookie), "a retired secret")
	if st := s.get("/", retired).status; st != http.StatusFound {
		t.Errorf("cookie signed with an unknown secret through nginx: %d, want 302", st)
	}
	if st, _ := s.readerUser(retired); st != http.StatusUnauthorized {
		t.Errorf("cookie signed with an unknown secret on node-reader: %d, want 401", st)
	}
}

// Two Express apps of two tenants on one Redis, each storing its sessions
// under its own connect-redis prefix and signing with its own secret, as
// teams already run them; one authz tells them apart by host.
func TestInteropTenantsWithExpress(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	app := func(tenant string) *testenv.Node {
		return testenv.StartNode(t, "examples/express-login", "REDIS_URL="+r.URL(),
			"SESSION_SECRET="+tenant+"-secret", "SESSION_PREFIX=sessions:"+tenant+":web:")
	}
	acme, globex := app("acme"), app("globex")
	file := t.TempDir() + "/tenants.yaml"
	writeTestFile(t, file, `
defaults: {key_prefix: "sessions:{tenant}:{app}:", app: web}
tenants:
  - {name: acme, hosts: [acme.test], secrets: [acme-secret]}
  - {name: globex, hosts: [globex.test], secrets: [globex-secret]}
`)
	a := testenv.StartAuthz(t, r.URL(), "--tenants", file)
	echo := testenv.StartEcho(t)
	n := testenv.StartNginx(t, map[string]string{"AUTHZ_ADDR": a.Addr, "APP_ADDR": echo.Addr, "LOGIN_ADDR": acme.Addr})
	s := &site{t: t, redis: r, rdb: r.Client(), authz: a, nginx: n, client: newClient()}

	alice := signInAt(t, acme.URL("/login"), "alice")
	bob := signInAt(t, globex.URL("/login"), "bob")
	who := func(host, cookie string) string {
		resp := s.get("/app/", cookie, "Host", host)
		if resp.status != http.StatusOK {
			return strconv.Itoa(resp.status)
		}
		return strings.Join(headerValues(resp.echoed(t).Header, "X-Auth-User"), ",")
	}
	for _, tc := range []struct{ host, cookie, want string }{
		{"acme.test", alice, "alice"},
		{"globex.test", bob, "bob"},
		{"globex.test", alice, "302"}, // acme's cookie fails globex's secret
		{"acme.test", bob, "302"},
	} {
		if got := who(tc.host, tc.cookie); got != tc.want {
			t.Errorf("%s with %s's cookie: %s, want %s", tc.host, map[string]string{alice: "alice", bob: "bob"}[tc.cookie], got, tc.want)
		}
	}
}

func writeTestFile(t *testing.T, name, data string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}
