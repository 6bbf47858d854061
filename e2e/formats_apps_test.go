package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
	"github.com/authz/authz/sessionfmt"
)

// The harness of the session-format stories (nodeapps_stories_test.go), and the
// check that the Node apps of examples/ and package sessionfmt agree
// (TestNodeAppsCookiesReadBySessionfmt, below). The apps: Express with client-sessions, Express with cookie-session,
// Fastify with @fastify/session and connect-redis, each signing users in
// the way its README or docs/formats.md says. No test writes a session or
// makes a cookie: the apps make them all, and a test at most changes a
// byte of one.

// nodeApp is one of those apps and how authz is told to read it.
type nodeApp struct {
	format string // --session-format
	dir    string // the app, relative to the repository root
	cookie string // the cookie it sets; cookie-session adds cookie+".sig"
	// env is the app's environment when it signs with secret (and, for
	// client-sessions and @fastify/session, lets sessions live for
	// lifetime; zero: an hour).
	env func(secret string, lifetime time.Duration) []string
	// secret is what the apps of a story sign with. authz always has
	// testenv.SessionSecret; client-sessions takes one secret only, so
	// that app signs with it.
	secret string
	// reissue is the app's route Nginx does not protect that writes the
	// session it is sent back into its cookie (or store).
	reissue string
	// revision: the app copies the user's revision into the session.
	revision bool
}

// ref is what an operator pastes to name the session of cookies j:
// the session cookie's value, or for cookie-session both cookies as the
// Cookie header holds them.
func (app nodeApp) ref(j jar) string {
	if app.format == "cookie-session" {
		return app.cookie + "=" + j[app.cookie] + "; " + app.cookie + ".sig=" + j[app.cookie+".sig"]
	}
	return j[app.cookie]
}

// fastifySecret is the Fastify app's secret: @fastify/session wants 32
// characters or more, testenv.SessionSecret has fewer. (No comma: the
// app reads a comma-separated list.)
const fastifySecret = "the fastify app's secret of 32 characters or more"

var (
	clientSessionsApp = nodeApp{
		format: "client-sessions", dir: "examples/express-client-sessions", cookie: "session",
		secret: testenv.SessionSecret, reissue: "/login/me", revision: true,
		env: func(secret string, lifetime time.Duration) []string {
			if lifetime == 0 {
				lifetime = time.Hour
			}
			ms := strconv.FormatInt(lifetime.Milliseconds(), 10)
			// activeDuration = duration: every request after the cookie's
			// createdAt that reads the session slides it, so the app
			// re-issues the cookie with a later createdAt every time.
			return []string{"SESSION_SECRET=" + secret, "SESSION_DURATION=" + ms, "SESSION_ACTIVE_DURATION=" + ms}
		},
	}
	cookieSessionApp = nodeApp{
		format: "cookie-session", dir: "examples/express-cookie-session", cookie: "session",
		secret: testenv.SessionSecret, reissue: "/login/count", revision: true,
		env: func(secret string, _ time.Duration) []string {
			return []string{"SESSION_KEYS=" + secret}
		},
	}
	fastifySessionApp = nodeApp{
		format: "fastify-session", dir: "examples/fastify-session", cookie: "sessionId",
		secret: fastifySecret, reissue: "/login/me",
		env: func(secret string, lifetime time.Duration) []string {
			env := []string{"SESSION_SECRET=" + secret}
			if lifetime != 0 {
				env = append(env, "SESSION_MAX_AGE="+strconv.FormatInt(lifetime.Milliseconds(), 10))
			}
			return env
		},
	}
	nodeApps = []nodeApp{clientSessionsApp, cookieSessionApp, fastifySessionApp}
)

// readArgs are the flags that make authz read app's sessions, for serve
// and for the session commands alike (docs/formats.md).
func (app nodeApp) readArgs() []string {
	args := []string{"--session-format", app.format, "--cookie-name", app.cookie, "--user-path", "username"}
	if app.revision {
		args = append(args, "--revision-path", "rev")
	}
	if app.secret != testenv.SessionSecret {
		args = append(args, "--session-secret", app.secret)
	}
	return args
}

// start runs app on the Redis at redisURL signing with secret.
func (app nodeApp) start(t *testing.T, redisURL, secret string, lifetime time.Duration, env ...string) *testenv.Node {
	t.Helper()
	return testenv.StartNode(t, app.dir, append(append([]string{"REDIS_URL=" + redisURL}, app.env(secret, lifetime)...), env...)...)
}

// jar is what a browser keeps of an app's cookies: name to value.
type jar map[string]string

// header is the jar as a Cookie header, in a stable order.
func (j jar) header() string {
	names := make([]string, 0, len(j))
	for n := range j {
		names = append(names, n)
	}
	slices.Sort(names)
	var parts []string
	for _, n := range names {
		parts = append(parts, n+"="+j[n])
	}
	return strings.Join(parts, "; ")
}

// update is j with what resp set: a new value replaces the old one, an
// emptied cookie leaves.
func (j jar) update(resp response) jar {
	out := jar{}
	for n, v := range j {
		out[n] = v
	}
	for _, c := range (&http.Response{Header: resp.header}).Cookies() {
		if c.Value == "" || c.MaxAge < 0 {
			delete(out, c.Name)
			continue
		}
		out[c.Name] = c.Value
	}
	return out
}

// set reports whether resp set a cookie called name.
func set(resp response, name string) bool {
	for _, c := range (&http.Response{Header: resp.header}).Cookies() {
		if c.Name == name {
			return true
		}
	}
	return false
}

// appSignIn posts the login form at loginURL (through nginx or to the app
// itself) as name and returns the cookies the app set.
func appSignIn(t *testing.T, app nodeApp, loginURL, name string) jar {
	t.Helper()
	r := send(t, "POST", loginURL, "", url.Values{"username": {name}, "password": {"demo"}})
	j := jar{}.update(r)
	if r.status != http.StatusSeeOther || j[app.cookie] == "" {
		t.Fatalf("sign in as %s at %s: status %d, cookies %v; want 303 and a %s cookie; body: %s", name, loginURL, r.status, j, app.cookie, r.body)
	}
	if app.format == "cookie-session" && j[app.cookie+".sig"] == "" {
		t.Fatalf("sign in as %s: no %s.sig cookie (%v)", name, app.cookie, j)
	}
	return j
}

// tamper is j with one character in the middle of the session cookie's
// value changed to another of the same alphabet: a changed byte the
// signature covers.
func (app nodeApp) tamper(j jar) jar {
	out := jar{}
	for n, v := range j {
		out[n] = v
	}
	v := []byte(out[app.cookie])
	i := len(v) / 2
	for v[i] == '.' || v[i] == '=' {
		i++
	}
	if v[i] == 'A' {
		v[i] = 'B'
	} else {
		v[i] = 'A'
	}
	out[app.cookie] = string(v)
	return out
}

// decoded is a session cookie of one of the apps read with package
// sessionfmt, as authz reads it.
type decoded struct {
	content   string    // the session as JSON (cookie formats)
	createdAt time.Time // client-sessions
	sid       string    // @fastify/session: the session id in the store
}

// decode reads j's session with sessionfmt, configured as the app is
// (secret, cookie name), failing the test if the codec refuses it.
func (app nodeApp) decode(t *testing.T, secret string, j jar) decoded {
	t.Helper()
	value := j[app.cookie]
	switch app.format {
	case "client-sessions":
		cs, err := sessionfmt.NewClientSessions(sessionfmt.ClientSessionsOptions{CookieName: app.cookie, Secret: secret})
		if err != nil {
			t.Fatal(err)
		}
		s, err := cs.Parse(nil, value, time.Now())
		if err != nil {
			t.Fatalf("sessionfmt refuses the client-sessions cookie %q: %v", value, err)
		}
		return decoded{content: string(s.Content), createdAt: s.CreatedAt}
	case "cookie-session":
		ck, err := sessionfmt.NewCookieSession(sessionfmt.CookieSessionOptions{Name: app.cookie, Keys: []string{secret}})
		if err != nil {
			t.Fatal(err)
		}
		// As a browser sends them, through the codec's own Lookup.
		v, sig, ok := ck.Lookup([]string{j.header()})
		if !ok || v != value {
			t.Fatalf("sessionfmt finds %q in the Cookie header %q, want %q", v, j.header(), value)
		}
		content, err := ck.Parse(nil, v, sig)
		if err != nil {
			t.Fatalf("sessionfmt refuses the cookie-session pair %v: %v", j, err)
		}
		return decoded{content: string(content)}
	case "fastify-session":
		fs, err := sessionfmt.NewFastifySession(sessionfmt.FastifySessionOptions{CookieName: app.cookie, Secrets: []string{secret}})
		if err != nil {
			t.Fatal(err)
		}
		v, ok := fs.Lookup([]string{j.header()})
		if !ok {
			t.Fatalf("sessionfmt finds no %s in %q", app.cookie, j.header())
		}
		sid, err := fs.Parse(v)
		if err != nil {
			t.Fatalf("sessionfmt refuses the @fastify/session cookie %q: %v", v, err)
		}
		return decoded{sid: sid}
	}
	t.Fatalf("no decoder for %s", app.format)
	return decoded{}
}

// cli runs `authz <args>` with the flags that read app's sessions against
// the Redis at redisURL, and returns its output.
func (app nodeApp) cli(t *testing.T, redisURL string, args ...string) (string, error) {
	t.Helper()
	flags := append([]string{"--redis-url", redisURL, "--session-secret", testenv.SessionSecret}, app.readArgs()...)
	// Before a "--" (after which a cookie value starting with "-" is an
	// argument), or at the end.
	at := slices.Index(args, "--")
	if at < 0 {
		at = len(args)
	}
	args = slices.Concat(args[:at], flags, args[at:])
	out, err := exec.Command(testenv.BuildAuthz(t), args...).CombinedOutput()
	return string(out), err
}

// storedSession is what Redis holds under key, "" if nothing.
func storedSession(t *testing.T, s *site, key string) string {
	t.Helper()
	v, err := s.rdb.Get(context.Background(), key).Result()
	if err != nil {
		return ""
	}
	return v
}

// appSession is what the apps keep in a session for authz: --user-path
// username, --roles-path roles, --revision-path rev.
type appSession struct {
	Username string   `json:"username"`
	Roles    []string `json:"roles"`
	Rev      *int64   `json:"rev"`
	Count    int      `json:"count"`
	Nonce    string   `json:"nonce"`
}

func parseAppSession(t *testing.T, what, content string) appSession {
	t.Helper()
	var s appSession
	if err := json.Unmarshal([]byte(content), &s); err != nil {
		t.Fatalf("%s: the session is not the JSON object the app writes: %v: %s", what, err, content)
	}
	return s
}

// TestNodeAppsCookiesReadBySessionfmt: the cookies each app of examples/
// sets are read by package sessionfmt, configured as the app is, to exactly
// what the app put in the session; the revision the app copied from Redis
// (with and without a tenant) is the one sessionfmt.Revision reads; and the
// cookie the app re-issues reads as the same session. Needs no authz.
func TestNodeAppsCookiesReadBySessionfmt(t *testing.T) {
	t.Parallel()
	for _, app := range nodeApps {
		t.Run(app.format, func(t *testing.T) {
			t.Parallel()
			r := testenv.StartRedis(t)
			rdb := r.Client()
			ctx := context.Background()
			// Revisions a user-wide logout left: alice's, and bob's in
			// tenant acme.
			rdb.Set(ctx, "authz:rev:alice", 3, 0)
			rdb.Set(ctx, "authz:rev:acme:bob", 7, 0)
			plain := app.start(t, r.URL(), app.secret, 0)

			alice := appSignIn(t, app, plain.URL("/login"), "alice")
			d := app.decode(t, app.secret, alice)
			if app.format == "fastify-session" {
				// The session is in Redis, under connect-redis's prefix
				// and the id the codec read from the signed cookie.
				stored := storedSession(t, &site{rdb: rdb}, "sess:"+d.sid)
				if stored == "" {
					t.Fatalf("no session in Redis under sess:%s, the id sessionfmt read from %q", d.sid, alice[app.cookie])
				}
				s := parseAppSession(t, "stored session", stored)
				if s.Username != "alice" || !slices.Equal(s.Roles, []string{"admin"}) {
					t.Errorf("stored session %s: want username alice, roles [admin]", stored)
				}
				if expired, err := sessionfmt.FastifyExpired([]byte(stored), time.Now()); err != nil || expired {
					t.Errorf("FastifyExpired(a fresh session) = %v, %v; want false, nil: %s", expired, err, stored)
				}
				if expired, err := sessionfmt.FastifyExpired([]byte(stored), time.Now().Add(25*time.Hour)); err != nil || !expired {
					t.Errorf("FastifyExpired(a day later) = %v, %v; want true (maxAge is a day)", expired, err)
				}
				// The sid in the cookie is the unsigned id, as authz
				// logout --session and session show take it too.
				if got := strings.SplitN(alice[app.cookie], ".", 2)[0]; got != d.sid {
					t.Errorf("sid %q, want the cookie's %q", d.sid, got)
				}
				return
			}

			s := parseAppSession(t, "alice's session", d.content)
			if s.Username != "alice" || !slices.Equal(s.Roles, []string{"admin"}) || s.Rev == nil || *s.Rev != 3 {
				t.Errorf("alice's session %s: want username alice, roles [admin], rev 3", d.content)
			}
			if rev, err := sessionfmt.Revision([]byte(d.content), []string{"rev"}); err != nil || rev != 3 {
				t.Errorf("sessionfmt.Revision = %d, %v; want 3", rev, err)
			}
			// Never signed out everywhere: no key, revision 0.
			bob := appSignIn(t, app, plain.URL("/login"), "bob")
			if rev, err := sessionfmt.Revision([]byte(app.decode(t, app.secret, bob).content), []string{"rev"}); err != nil || rev != 0 {
				t.Errorf("bob's revision = %d, %v; want 0", rev, err)
			}
			// With a tenant, the app reads authz:rev:<tenant>:<user>.
			acme := app.start(t, r.URL(), app.secret, 0, "TENANT=acme")
			bobAcme := appSignIn(t, app, acme.URL("/login"), "bob")
			if rev, err := sessionfmt.Revision([]byte(app.decode(t, app.secret, bobAcme).content), []string{"rev"}); err != nil || rev != 7 {
				t.Errorf("acme's bob: revision %d, %v; want 7 (authz:rev:acme:bob)", rev, err)
			}

			// Another secret does not read it.
			other := "another app's secret"
			switch app.format {
			case "client-sessions":
				cs, _ := sessionfmt.NewClientSessions(sessionfmt.ClientSessionsOptions{CookieName: app.cookie, Secret: other})
				if _, err := cs.Parse(nil, alice[app.cookie], time.Now()); !errors.Is(err, sessionfmt.ErrBadSignature) {
					t.Errorf("client-sessions cookie under another secret: %v, want ErrBadSignature", err)
				}
			case "cookie-session":
				ck, _ := sessionfmt.NewCookieSession(sessionfmt.CookieSessionOptions{Name: app.cookie, Keys: []string{other}})
				if _, err := ck.Parse(nil, alice[app.cookie], alice[app.cookie+".sig"]); !errors.Is(err, sessionfmt.ErrBadSignature) {
					t.Errorf("cookie-session pair under another key: %v, want ErrBadSignature", err)
				}
				// Two sign-ins of one user are two cookies, so one can be
				// denied alone.
				again := appSignIn(t, app, plain.URL("/login"), "alice")
				if again[app.cookie] == alice[app.cookie] || s.Nonce == "" {
					t.Errorf("two sign-ins of alice made the same cookie-session cookie %q", alice[app.cookie])
				}
			}

			// The cookie the app re-issues is the same session, revision
			// kept; client-sessions moves createdAt on.
			resp := send(t, "GET", plain.URL(app.reissue), alice.header(), nil)
			if resp.status != http.StatusOK || !set(resp, app.cookie) {
				t.Fatalf("GET %s with alice's cookie: %d, Set-Cookie %q; want 200 and a re-issued %s", app.reissue, resp.status, resp.header.Values("Set-Cookie"), app.cookie)
			}
			re := alice.update(resp)
			if re[app.cookie] == alice[app.cookie] {
				t.Fatalf("GET %s re-issued the very same cookie", app.reissue)
			}
			rd := app.decode(t, app.secret, re)
			rs := parseAppSession(t, "re-issued session", rd.content)
			if rs.Username != "alice" || rs.Rev == nil || *rs.Rev != 3 {
				t.Errorf("re-issued session %s: want alice's, rev 3", rd.content)
			}
			if app.format == "client-sessions" && !rd.createdAt.After(d.createdAt) {
				t.Errorf("re-issued client-sessions cookie: createdAt %v, want after the first cookie's %v", rd.createdAt, d.createdAt)
			}
			if app.format == "cookie-session" && rs.Count != 1 {
				t.Errorf("re-issued cookie-session: count %d, want 1", rs.Count)
			}
		})
	}
}
