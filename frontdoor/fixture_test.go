package frontdoor

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
	"github.com/authz/authz/tokens"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
)

// The front door is tested against the real decider: an authz.Verifier
// over a real redis-server, configured as authz's own tests configure it.

const testSecret = "keyboard cat"

const aliceJSON = `{"cookie":{"originalMaxAge":3600000,"expires":"2020-01-01T00:00:00.000Z","httpOnly":true,"path":"/"},"passport":{"user":{"id":"alice","email":"alice@example.com","roles":["admin"]}}}`

const svcJSON = `{"user":{"id":"svc-billing","roles":["admin"]},"token":{"name":"billing","created":"2026-01-02T03:04:05Z"}}`

// tokenJSON is a passport session of a user signed in through OAuth, the
// access token kept beside the identity.
const tokenJSON = `{"cookie":{"originalMaxAge":3600000},"passport":{"user":{"id":"alice","roles":["admin"],"accessToken":"ya29.a0-access_token~x/y+z="}}}`

// fixture is a Verifier over a real redis-server started for the test,
// and the front door's metrics on the same registry.
type fixture struct {
	t   testing.TB
	rdb *redis.Client
	v   *authz.Verifier
	reg *prometheus.Registry
	m   *Metrics
	n   int
}

func newFixture(t testing.TB, mod func(*authz.Config)) *fixture {
	t.Helper()
	r := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: 1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	email, _ := authz.ParseHeaderMapping("X-Auth-Email=passport.user.email")
	cfg := authz.Config{Secrets: []string{testSecret}, Headers: []authz.HeaderMapping{email}, RedisTimeout: time.Second}
	if mod != nil {
		mod(&cfg)
	}
	reg := prometheus.NewRegistry()
	v, err := authz.New(cfg, rdb, reg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	m, err := NewMetrics(reg, v.BoundCounter)
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, rdb: rdb, v: v, reg: reg, m: m}
}

// session stores a session the way connect-redis does and returns its cookie.
func (f *fixture) session(json string, ttl time.Duration) (sid, cookie string) {
	f.t.Helper()
	f.n++
	sid = fmt.Sprintf("test%028d", f.n)
	if err := f.rdb.Set(context.Background(), "sess:"+sid, json, ttl).Err(); err != nil {
		f.t.Fatal(err)
	}
	return sid, authz.Sign(sid, testSecret)
}

// token creates an API token for doc and returns it.
func (f *fixture) token(doc string, ttl time.Duration) string {
	f.t.Helper()
	tok, _, err := tokens.New(f.v).Create(context.Background(), "", []byte(doc), ttl)
	if err != nil {
		f.t.Fatalf("CreateToken(%s): %v", doc, err)
	}
	return tok
}

// verify asks net/http's front door (Verifier.ServeHTTP, --stdlib-http)
// what the narrow server is compared with.
func (f *fixture) verify(cookie, query string, hdr ...string) *httptest.ResponseRecorder {
	f.t.Helper()
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
	f.v.ServeHTTP(w, req)
	return w
}

// bound is authz_bounds_hit_total{bound=name}.
func (f *fixture) bound(name string) float64 {
	return testutil.ToFloat64(f.v.BoundCounter(name))
}
