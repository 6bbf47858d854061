// Package e2e tests authz the way it is deployed: a real redis-server, the
// authz binary, and nginx running the shipped nginx/authz.conf.template in
// front of an upstream that echoes what it received.
package e2e

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/testenv"
	"github.com/redis/go-redis/v9"
)

func TestMain(m *testing.M) { testenv.Main(m) }

// site is one deployment as the docs describe it. The echo upstream is both
// the app and the login service, so a test sees what either would get.
type site struct {
	t      *testing.T
	redis  *testenv.Redis
	rdb    redis.UniversalClient
	authz  *testenv.Authz
	nginx  *testenv.Nginx
	client *http.Client
}

// newSite starts Redis, authz (with authzArgs added to its flags), the echo
// upstream and nginx. Everything stops when the test ends.
func newSite(t *testing.T, authzArgs ...string) *site {
	t.Helper()
	r := testenv.StartRedis(t)
	a := testenv.StartAuthz(t, r.URL(), authzArgs...)
	app := testenv.StartEcho(t)
	n := testenv.StartNginx(t, map[string]string{
		"AUTHZ_ADDR": a.Addr,
		"APP_ADDR":   app.Addr,
		"LOGIN_ADDR": app.Addr,
	})
	return &site{t: t, redis: r, rdb: r.Client(), authz: a, nginx: n, client: newClient()}
}

// newPairSite is newSite with two authz instances (authzArgs added to
// both) behind nginx, the second in authz/upstream/, as docs/scale.md
// runs them.
func newPairSite(t *testing.T, authzArgs ...string) (*site, *testenv.Authz, *testenv.Authz) {
	t.Helper()
	r := testenv.StartRedis(t)
	a1 := testenv.StartAuthz(t, r.URL(), authzArgs...)
	a2 := testenv.StartAuthz(t, r.URL(), authzArgs...)
	app := testenv.StartEcho(t)
	n := testenv.StartNginxAuthz(t, map[string]string{
		"AUTHZ_ADDR": a1.Addr,
		"APP_ADDR":   app.Addr,
		"LOGIN_ADDR": app.Addr,
	}, a2.Addr)
	return &site{t: t, redis: r, rdb: r.Client(), nginx: n, client: newClient()}, a1, a2
}

// newClient returns a client that, like a test wants and unlike a browser,
// shows each redirect instead of following it.
func newClient() *http.Client {
	return &http.Client{
		Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// user is what passport keeps in the session.
type user struct {
	ID    string   `json:"id"`
	Email string   `json:"email"`
	Roles []string `json:"roles"`
}

var (
	alice = user{ID: "alice", Email: "alice@example.com", Roles: []string{"admin"}}
	bob   = user{ID: "bob", Email: "bob@example.com", Roles: []string{"staff"}}
)

// session is a stored session and the cookie a browser sends for it.
type session struct {
	sid    string
	cookie string // the Cookie header value
}

// signIn stores a new session for u the way express-session and
// connect-redis do after a passport login, and returns it.
func (s *site) signIn(u user) session {
	s.t.Helper()
	sess := session{sid: newSID()}
	sess.cookie = "connect.sid=" + authz.Sign(sess.sid, testenv.SessionSecret)
	s.store(sess, u)
	return sess
}

// store writes sess for u to Redis, as connect-redis does: the session as
// JSON under sess:<sid>, with the cookie's maxAge as the key's TTL.
func (s *site) store(sess session, u user) {
	s.t.Helper()
	const maxAge = time.Hour
	var v struct {
		Cookie struct {
			OriginalMaxAge int64  `json:"originalMaxAge"`
			Expires        string `json:"expires"`
			HTTPOnly       bool   `json:"httpOnly"`
			Path           string `json:"path"`
		} `json:"cookie"`
		Passport struct {
			User user `json:"user"`
		} `json:"passport"`
	}
	v.Cookie.OriginalMaxAge = maxAge.Milliseconds()
	v.Cookie.Expires = time.Now().Add(maxAge).UTC().Format("2006-01-02T15:04:05.000Z")
	v.Cookie.HTTPOnly = true
	v.Cookie.Path = "/"
	v.Passport.User = u
	b, err := json.Marshal(v)
	if err != nil {
		s.t.Fatal(err)
	}
	if err := s.rdb.Set(context.Background(), "sess:"+sess.sid, b, maxAge).Err(); err != nil {
		s.t.Fatalf("store session: %v", err)
	}
}

// newSID makes a session id like uid-safe, express-session's generator:
// 24 random bytes, base64url, 32 characters.
func newSID() string {
	b := make([]byte, 24)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// response is what came back through nginx.
type response struct {
	status int
	header http.Header
	body   string
}

// get sends GET uri through nginx with cookie (if any) and extra headers
// given as name, value pairs. uri and the header names are sent exactly as
// written, so a test can send "//evil.com" or "x-auth-user".
func (s *site) get(uri, cookie string, header ...string) response {
	s.t.Helper()
	return s.send(http.MethodGet, uri, cookie, header...)
}

// send is get with any method; a "Host" header sets the request's host.
func (s *site) send(method, uri, cookie string, header ...string) response {
	s.t.Helper()
	req, err := http.NewRequest(method, s.nginx.URL("/"), nil)
	if err != nil {
		s.t.Fatal(err)
	}
	if strings.HasPrefix(uri, "//") {
		// An Opaque starting with "//" would go out in absolute form
		// ("GET http://evil.com/"); a Path goes out as it is when it
		// needs no escaping.
		req.URL.Path, req.URL.RawQuery, _ = strings.Cut(uri, "?")
	} else {
		// Opaque goes to the request line as it is, even a backslash.
		req.URL.Opaque = uri
	}
	if cookie != "" {
		req.Header.Set("Cookie", cookie)
	}
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.Host = header[i+1] // the site the browser asked for
			continue
		}
		// A map assignment keeps the name's case and underscores.
		req.Header[header[i]] = append(req.Header[header[i]], header[i+1])
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, uri, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("%s %s: read body: %v", method, uri, err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// echoed is the request the upstream got, failing the test unless the
// response came from the upstream.
func (r response) echoed(t *testing.T) testenv.Echoed {
	t.Helper()
	var e testenv.Echoed
	if r.status != http.StatusOK {
		t.Fatalf("status %d, want 200 from the upstream; body: %s", r.status, r.body)
	}
	if err := json.Unmarshal([]byte(r.body), &e); err != nil {
		t.Fatalf("upstream answer is not JSON: %v: %s", err, r.body)
	}
	return e
}

// headerValues returns every value the upstream got under name, whatever
// the case and whether written with '-' or '_': the spellings some
// frameworks treat as the same header.
func headerValues(h http.Header, name string) []string {
	norm := func(s string) string { return strings.ReplaceAll(strings.ToLower(s), "_", "-") }
	var out []string
	for k, vs := range h {
		if norm(k) == norm(name) {
			out = append(out, vs...)
		}
	}
	return out
}

// status answers GET url directly (not through nginx), for authz's probes.
func status(t *testing.T, url string) int {
	t.Helper()
	resp, err := newClient().Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// eachServer runs story twice in parallel subtests: with authz's own HTTP
// server ("narrow", the default) and with net/http (--stdlib-http),
// passing the flags that choose it as front. Both must give Nginx the same
// answers, so the narrow parser is never the only one a story checks.
func eachServer(t *testing.T, story func(t *testing.T, front ...string)) {
	t.Helper()
	for _, srv := range []struct {
		name  string
		front []string
	}{{"narrow", nil}, {"stdlib", []string{"--stdlib-http"}}} {
		t.Run(srv.name, func(t *testing.T) {
			t.Parallel()
			story(t, srv.front...)
		})
	}
}
