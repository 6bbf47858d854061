package e2e

import (
	"context"
	"encoding/json"
	"io"
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

// The stories in this file run examples/express-tenants: one Express app
// serving two customers, an express-session + connect-redis middleware
// each, picked by host name, with ONE secret and ONE cookie name for both
// (resave and saveUninitialized on), as multi-tenant Express apps run. The
// test writes no session: Express writes them all.

// sharedSecretTenants is the tenant file for that app: no secret or cookie
// name per tenant, only a key prefix each.
const sharedSecretTenants = `
defaults:
  key_prefix: "sessions:{tenant}:{app}:"
  app: web
  secrets: [one-secret-for-all]
  access_token_paths: [passport.user.accessToken]
tenants:
  - name: acme
    hosts: [acme.test]
  - name: globex
    hosts: [globex.test]
`

// relayLocations are the operator's locations relaying the session's access
// token, as README's "Relaying the access token" writes them.
const relayLocations = `
# The service gets the session's token as Authorization: Bearer.
location /api/ {
    auth_request /_authz_token;
    include authz/protect.conf;
    include authz/token-bearer.conf;
    proxy_pass http://app/api/;
    include authz/proxy.conf;
}

# As X-Forwarded-Access-Token; the client's Authorization passes unchanged.
location /api-header/ {
    auth_request /_authz_token;
    include authz/protect.conf;
    include authz/token-header.conf;
    proxy_pass http://app/api-header/;
    include authz/proxy.conf;
}

# A session without a token is refused (403).
location = /_authz_token_required {
    internal;
    proxy_pass http://authz/verify?access_token=require;
    include authz/verify.conf;
}
location /api-strict/ {
    auth_request /_authz_token_required;
    include authz/protect.conf;
    include authz/token-bearer.conf;
    proxy_pass http://app/api-strict/;
    include authz/proxy.conf;
}
`

type expressTenants struct {
	*site
	express *testenv.Node
	file    string // the tenant file authz serves
}

// newExpressTenants starts Redis, the Express tenants app, authz over the
// shared-secret tenant file (with more serve flags, if any) and the
// shipped nginx/ with the relaying locations.
func newExpressTenants(t *testing.T, serveFlags ...string) *expressTenants {
	t.Helper()
	file := filepath.Join(t.TempDir(), "tenants.yaml")
	if err := os.WriteFile(file, []byte(sharedSecretTenants), 0o600); err != nil {
		t.Fatal(err)
	}
	r := testenv.StartRedis(t)
	express := testenv.StartNode(t, "examples/express-tenants",
		"REDIS_URL="+r.URL(), "SESSION_SECRET=one-secret-for-all",
		"TENANTS=acme.test=sessions:acme:web:,globex.test=sessions:globex:web:")
	// An hour of cache: only tracking can explain a session leaving it.
	a := testenv.StartAuthz(t, r.URL(), append([]string{"--tenants", file, "--cache-ttl", "1h", "--log-level", "debug"}, serveFlags...)...)
	app := testenv.StartEcho(t)
	n := testenv.StartNginxLocations(t, map[string]string{
		"AUTHZ_ADDR": a.Addr,
		"APP_ADDR":   app.Addr,
		"LOGIN_ADDR": express.Addr,
	}, map[string]string{"relay.conf": relayLocations})
	testenv.WaitFor(t, 10*time.Second, "the logout subscription on "+a.Addr, func() bool {
		return metric(t, a, "authz_logout_subscribed") == 1
	})
	return &expressTenants{
		site:    &site{t: t, redis: r, rdb: r.Client(), authz: a, nginx: n, client: newClient()},
		express: express,
		file:    file,
	}
}

// do sends method uri to host through nginx with cookie and form (both
// optional) and extra header pairs.
func (e *expressTenants) do(method, host, uri, cookie string, form url.Values, header ...string) response {
	e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, e.nginx.URL(uri), body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Host = host
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s%s: %v", method, host, uri, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// signIn signs name in on host's tenant through nginx, and returns the
// session cookie Express set.
func (e *expressTenants) signIn(host, name string) string {
	e.t.Helper()
	r := e.do("POST", host, "/login", "", url.Values{"username": {name}, "password": {"demo"}})
	cookie := r.sessionCookie()
	if r.status != http.StatusSeeOther || cookie == "" {
		e.t.Fatalf("sign in as %s on %s: %d, cookie %q: %s", name, host, r.status, cookie, r.body)
	}
	return cookie
}

// user is who the upstream saw at uri on host, or "" with the status.
func (e *expressTenants) user(host, uri, cookie string) (int, string) {
	e.t.Helper()
	r := e.do("GET", host, uri, cookie, nil)
	if r.status != http.StatusOK {
		return r.status, ""
	}
	return r.status, strings.Join(headerValues(r.echoed(e.t).Header, "X-Auth-User"), ",")
}

func (e *expressTenants) want(host, cookie string, status int, user, what string) {
	e.t.Helper()
	if s, u := e.user(host, "/app/", cookie); s != status || u != user {
		e.t.Errorf("%s: %d %q, want %d %q", what, s, u, status, user)
	}
}

// storedToken is the access token Express keeps in the session of cookie
// under prefix: what the relay must hand on.
func (e *expressTenants) storedToken(prefix, cookie string) string {
	e.t.Helper()
	b, err := e.rdb.Get(context.Background(), prefix+sidOf(e.t, cookie)).Bytes()
	if err != nil {
		e.t.Fatalf("the session of %s under %s: %v", cookie, prefix, err)
	}
	var s struct {
		Passport struct {
			User struct {
				AccessToken string `json:"accessToken"`
			} `json:"user"`
		} `json:"passport"`
	}
	if err := json.Unmarshal(b, &s); err != nil {
		e.t.Fatal(err)
	}
	return s.Passport.User.AccessToken
}

func TestExpressTenantsSharingOneSecretAndCookieName(t *testing.T) {
	t.Parallel()
	e := newExpressTenants(t)
	aliceAcme := e.signIn("acme.test", "alice")
	bobGlobex := e.signIn("globex.test", "bob")

	e.want("acme.test", aliceAcme, 200, "alice", "alice on acme")
	e.want("globex.test", bobGlobex, 200, "bob", "bob on globex")
	e.want("globex.test", aliceAcme, toLogin, "", "acme's cookie on globex")
	e.want("acme.test", bobGlobex, toLogin, "", "globex's cookie on acme")

	// The same user id signed in on globex too: acme's cookie still opens
	// nothing there, and each cookie its own tenant's session.
	aliceGlobex := e.signIn("globex.test", "alice")
	e.want("globex.test", aliceAcme, toLogin, "", "acme's alice on globex, where alice is signed in")
	e.want("globex.test", aliceGlobex, 200, "alice", "globex's alice on globex")

	// Express never adopts another tenant's session id: acme's cookie sent
	// to globex's app gets a new session with an id of its own, so no id
	// ends up under both prefixes (docs/tenants.md, what each choice
	// guarantees).
	r := e.do("GET", "globex.test", "/login", aliceAcme, nil)
	fresh := r.sessionCookie()
	if r.status != http.StatusOK || fresh == "" || sidOf(t, fresh) == sidOf(t, aliceAcme) {
		t.Errorf("globex's app given acme's cookie: %d, cookie %q (acme's %q)", r.status, fresh, aliceAcme)
	}
	if n := e.rdb.Exists(context.Background(), "sessions:globex:web:"+sidOf(t, aliceAcme)).Val(); n != 0 {
		t.Errorf("acme's session id is stored under globex's prefix")
	}
	// That new session is anonymous (saveUninitialized stored it): not
	// signed in anywhere.
	if n := e.rdb.Exists(context.Background(), "sessions:globex:web:"+sidOf(t, fresh)).Val(); n != 1 {
		t.Errorf("saveUninitialized did not store the anonymous session")
	}
	e.want("globex.test", fresh, toLogin, "", "an anonymous session on its own tenant")
	e.want("acme.test", fresh, toLogin, "", "an anonymous session on the other tenant")
	if got := metric(t, e.authz, `authz_verify_requests_total{outcome="unauthenticated",reason="anonymous"}`); got < 1 {
		t.Errorf("the anonymous session was not refused as anonymous (%v)", got)
	}

	// An id held under both prefixes (Express never makes one, see above:
	// planted here) is two sessions. With one secret acme's cookie is
	// byte for byte what a globex user holding that id would send, so it
	// cannot be refused on globex's host (docs/tenants.md says so; with a
	// secret per tenant it is, e2e/tenant_test.go): what holds is that
	// each host reads the id under its own tenant's prefix only, so it
	// opens globex's session there, never acme's alice.
	ctx := context.Background()
	globexBob, err := e.rdb.Get(ctx, "sessions:globex:web:"+sidOf(t, bobGlobex)).Result()
	if err != nil {
		t.Fatal(err)
	}
	planted := "sessions:globex:web:" + sidOf(t, aliceAcme)
	if err := e.rdb.Set(ctx, planted, globexBob, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	// globex refused that id a moment ago: the refusal stays cached until
	// the planting write's invalidation arrives.
	testenv.WaitFor(t, 3*time.Second, "globex to open the session planted under acme's id", func() bool {
		s, u := e.user("globex.test", "/app/", aliceAcme)
		if s == 200 && u != "bob" {
			t.Fatalf("acme's cookie on globex, its id planted there with bob's session: %q, want bob", u)
		}
		return s == 200
	})
	e.want("acme.test", aliceAcme, 200, "alice", "the same cookie on acme")
	if err := e.rdb.Del(ctx, planted).Err(); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "the planted session's removal to be seen on globex", func() bool {
		s, _ := e.user("globex.test", "/app/", aliceAcme)
		return s == toLogin
	})

	// A user-wide logout in acme leaves globex's alice signed in.
	if r := e.do("POST", "acme.test", "/logout?everywhere=1", aliceAcme, nil); r.status != http.StatusSeeOther {
		t.Fatalf("POST /logout?everywhere=1 on acme: %d %s", r.status, r.body)
	}
	e.want("acme.test", aliceAcme, toLogin, "", "acme's alice after her logout everywhere in acme")
	e.want("globex.test", aliceGlobex, 200, "alice", "globex's alice after acme's logout everywhere")
	e.want("globex.test", bobGlobex, 200, "bob", "globex's bob after acme's logout everywhere")

	// Express's own destroy (no event sent): authz sees the key go, through
	// tracking, well within the hour its cache would keep the session.
	e.want("globex.test", bobGlobex, 200, "bob", "bob, cached")
	if r := e.do("POST", "globex.test", "/login/logout", bobGlobex, nil); r.status != http.StatusSeeOther {
		t.Fatalf("Express logout: %d %s", r.status, r.body)
	}
	testenv.WaitFor(t, 5*time.Second, "bob's destroyed session to be refused", func() bool {
		s, _ := e.user("globex.test", "/app/", bobGlobex)
		return s == toLogin
	})
	e.want("globex.test", aliceGlobex, 200, "alice", "globex's alice after bob's logout")
}

func TestExpressAccessTokenRelay(t *testing.T) {
	t.Parallel()
	e := newExpressTenants(t)
	alice := e.signIn("acme.test", "alice")
	carol := e.signIn("acme.test", "carol") // signed in without OAuth: no token
	token := e.storedToken("sessions:acme:web:", alice)
	if !strings.HasPrefix(token, "at.alice.") {
		t.Fatalf("Express stored no access token for alice: %q", token)
	}
	seen := func(uri, cookie string, header ...string) (authorization, forwarded []string) {
		t.Helper()
		r := e.do("GET", "acme.test", uri, cookie, nil, header...)
		if v := r.header.Get("X-Auth-Access-Token"); v != "" || strings.Contains(strings.Join(flatten(r.header), "\n"), token) {
			t.Errorf("%s: the token is in a response header to the browser", uri)
		}
		h := r.echoed(t).Header
		return headerValues(h, "Authorization"), headerValues(h, "X-Forwarded-Access-Token")
	}
	one := func(what string, got []string, want string) {
		t.Helper()
		if want == "" && len(got) != 0 || want != "" && (len(got) != 1 || got[0] != want) {
			t.Errorf("%s: %q, want %q", what, got, want)
		}
	}

	auth, fwd := seen("/api/x", alice)
	one("relay on: Authorization", auth, "Bearer "+token)
	one("relay on, bearer only: X-Forwarded-Access-Token", fwd, "")
	auth, _ = seen("/api/x", alice, "Authorization", "Bearer client-made-this")
	one("relay on: a client's Authorization is replaced", auth, "Bearer "+token)
	auth, fwd = seen("/api/x", alice, "X-Forwarded-Access-Token", "client-made-this")
	one("relay on: Authorization, client sent the named header", auth, "Bearer "+token)
	one("a client's X-Forwarded-Access-Token never passes", fwd, "")

	auth, fwd = seen("/api-header/x", alice, "Authorization", "Basic Y2xpZW50OnB3")
	one("named header: X-Forwarded-Access-Token", fwd, token)
	one("named header only: the client's Authorization untouched", auth, "Basic Y2xpZW50OnB3")

	auth, fwd = seen("/app/x", alice, "Authorization", "Bearer client-made-this")
	one("relay off: the client's Authorization untouched", auth, "Bearer client-made-this")
	one("relay off: no token", fwd, "")

	auth, _ = seen("/api/x", carol, "Authorization", "Bearer client-made-this")
	one("a session without a token: no Authorization at all", auth, "")
	if s, u := e.user("acme.test", "/api/x", carol); s != 200 || u != "carol" {
		t.Errorf("carol on a relaying location: %d %q, want 200", s, u)
	}
	if r := e.do("GET", "acme.test", "/api-strict/x", carol, nil); r.status != http.StatusForbidden {
		t.Errorf("carol where a token is required: %d, want 403", r.status)
	}
	auth, _ = seen("/api-strict/x", alice)
	one("a token where one is required", auth, "Bearer "+token)

	// Refused requests carry no token either, and authz logged every
	// decision (debug) without it.
	if r := e.do("GET", "globex.test", "/api/x", alice, nil); r.status != toLogin || strings.Contains(strings.Join(flatten(r.header), "\n")+r.body, token) {
		t.Errorf("alice's cookie on globex's relay: %d, or the token in the answer", r.status)
	}
	out := e.authz.Output()
	if !strings.Contains(out, "no_access_token") {
		t.Errorf("authz's debug log has no verify lines to check")
	}
	if strings.Contains(out, token) || strings.Contains(out, "at.alice.") {
		t.Errorf("the access token is in authz's log")
	}
}

// An API client's azt_ token works in the relaying locations too: the
// service sees the token's identity, and neither a session's access token
// (it has none) nor the API token itself is handed on.
func TestAPITokenThroughRelayingLocations(t *testing.T) {
	t.Parallel()
	e := newExpressTenants(t, "--bearer-tokens")
	out, err := exec.Command(testenv.BuildAuthz(t), "token", "create", "--tenants", e.file, "--tenant", "acme",
		"--user", "svc", "--redis-url", e.redis.URL()).Output()
	if err != nil {
		t.Fatalf("authz token create: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	if !strings.HasPrefix(tok, "azt_") {
		t.Fatalf("authz token create printed %q", tok)
	}
	for _, uri := range []string{"/api/x", "/api-header/x"} {
		r := e.do("GET", "acme.test", uri, "", nil, "Authorization", "Bearer "+tok)
		if r.status != http.StatusOK {
			t.Errorf("%s with the API token: %d, want 200", uri, r.status)
			continue
		}
		h := r.echoed(t).Header
		if u := headerValues(h, "X-Auth-User"); len(u) != 1 || u[0] != "svc" {
			t.Errorf("%s: the service saw X-Auth-User %q, want svc", uri, u)
		}
		if a, f := headerValues(h, "Authorization"), headerValues(h, "X-Forwarded-Access-Token"); len(a)+len(f) != 0 {
			t.Errorf("%s: the service was handed Authorization %q, X-Forwarded-Access-Token %q; want neither", uri, a, f)
		}
	}
	if r := e.do("GET", "acme.test", "/api-strict/x", "", nil, "Authorization", "Bearer "+tok); r.status != http.StatusForbidden {
		t.Errorf("the API token where a session's access token is required: %d, want 403", r.status)
	}
	if r := e.do("GET", "globex.test", "/api/x", "", nil, "Authorization", "Bearer "+tok); r.status == http.StatusOK {
		t.Errorf("acme's API token on globex's host: 200")
	}
}

func flatten(h http.Header) []string {
	var out []string
	for k, vs := range h {
		for _, v := range vs {
			out = append(out, k+": "+v)
		}
	}
	return out
}
