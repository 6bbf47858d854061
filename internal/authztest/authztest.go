// Package authztest is what the tests of the packages built on authz
// (frontdoor, signoff, tokens) share: an authz.Verifier over a real
// redis-server started for the test, sessions stored the way connect-redis
// stores them, and /verify asked the way Nginx asks it. authz's own tests
// keep their copy: a package's internal tests cannot import one that
// imports it.
package authztest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// Secret signs the fixtures' cookies.
const Secret = "keyboard cat"

// Sessions and a token document as the tests store them: alice signed in
// through passport (an admin, with an email; cookie.expires in 2020), bob
// with a browser-session cookie and roles as a string, a service's token.
const (
	AliceJSON = `{"cookie":{"originalMaxAge":3600000,"expires":"2020-01-01T00:00:00.000Z","httpOnly":true,"path":"/"},"passport":{"user":{"id":"alice","email":"alice@example.com","roles":["admin"]}}}`
	BobJSON   = `{"cookie":{"originalMaxAge":null,"expires":null,"httpOnly":true,"path":"/"},"passport":{"user":{"id":"bob","roles":"dev"}}}`
	SvcJSON   = `{"user":{"id":"svc-billing","roles":["admin"]},"token":{"name":"billing","created":"2026-01-02T03:04:05Z"}}`
)

// TwoTenants is a tenant file of two tenants on one Redis, as authz's
// tenant tests have them.
const TwoTenants = `
defaults:
  key_prefix: "sessions:{tenant}:{app}:"
  app: web
tenants:
  - name: acme
    hosts: [acme.test, "*.acme.test"]
    secrets: [acme-secret]
  - name: globex
    hosts: [globex.test]
    app: portal
    cookie_name: globex.sid
    secrets: [globex-secret, globex-old]
    user_paths: [user]
    headers: {X-Auth-Name: user.name}
    login_url: https://globex.test/signin
`

// Fixture is a Verifier over a real redis-server, its metrics in Reg.
type Fixture struct {
	T     testing.TB
	Redis *testenv.Redis
	RDB   *redis.Client
	Reg   *prometheus.Registry
	V     *authz.Verifier
	n     int
}

// Config is where the fixtures' configurations start: Secret, an
// X-Auth-Email header from passport.user.email, a second of Redis timeout.
func Config() authz.Config {
	email, _ := authz.ParseHeaderMapping("X-Auth-Email=passport.user.email")
	return authz.Config{Secrets: []string{Secret}, Headers: []authz.HeaderMapping{email}, RedisTimeout: time.Second}
}

// Start starts a redis-server for t and a Verifier with cfg over it,
// logging to log (io.Discard to keep quiet). Both stop when t ends.
func Start(t testing.TB, cfg authz.Config, log io.Writer) *Fixture {
	t.Helper()
	r := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: 1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	reg := prometheus.NewRegistry()
	v, err := authz.New(cfg, rdb, reg, slog.New(slog.NewTextHandler(log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return &Fixture{T: t, Redis: r, RDB: rdb, Reg: reg, V: v}
}

// Session stores a session the way connect-redis does and returns its id
// and cookie value (signed with Secret).
func (f *Fixture) Session(json string, ttl time.Duration) (sid, cookie string) {
	f.T.Helper()
	f.n++
	sid = fmt.Sprintf("test%028d", f.n)
	if err := f.RDB.Set(context.Background(), "sess:"+sid, json, ttl).Err(); err != nil {
		f.T.Fatal(err)
	}
	return sid, authz.Sign(sid, Secret)
}

// Verify asks the Verifier (net/http's front door, --stdlib-http) about a
// connect.sid cookie value, as Nginx would; hdr are extra header pairs.
func (f *Fixture) Verify(cookie, query string, hdr ...string) *httptest.ResponseRecorder {
	f.T.Helper()
	req := httptest.NewRequest(http.MethodGet, "/verify?"+query, nil)
	if query == "" {
		req.URL.RawQuery = ""
	}
	if cookie != "" {
		req.Header.Set("Cookie", "other=1; connect.sid="+cookie)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := httptest.NewRecorder()
	f.V.ServeHTTP(w, req)
	return w
}
