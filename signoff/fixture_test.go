package signoff

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

const testSecret = "keyboard cat"

const (
	aliceJSON = `{"cookie":{"originalMaxAge":3600000,"expires":"2020-01-01T00:00:00.000Z","httpOnly":true,"path":"/"},"passport":{"user":{"id":"alice","email":"alice@example.com","roles":["admin"]}}}`
	bobJSON   = `{"cookie":{"originalMaxAge":null,"expires":null,"httpOnly":true,"path":"/"},"passport":{"user":{"id":"bob","roles":"dev"}}}`
)

// twoTenants is two tenants on one Redis, as authz's tenant tests have
// them.
const twoTenants = `
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

// fixture is a Verifier over a real redis-server started for the test, and
// the Signoff over it, both with their metrics in reg.
type fixture struct {
	t     testing.TB
	redis *testenv.Redis
	rdb   *redis.Client
	reg   *prometheus.Registry
	v     *authz.Verifier
	s     *Signoff
	n     int
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
	f := &fixture{t: t, redis: r, rdb: rdb}
	f.v, f.s, f.reg = build(t, cfg, rdb, io.Discard)
	return f
}

// build makes a Verifier and its Signoff on one registry, logging to log.
func build(t testing.TB, cfg authz.Config, rdb redis.UniversalClient, log io.Writer) (*authz.Verifier, *Signoff, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	l := slog.New(slog.NewTextHandler(log, nil))
	v, err := authz.New(cfg, rdb, reg, l)
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(v, reg, l)
	if err != nil {
		t.Fatal(err)
	}
	return v, s, reg
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

// tenantSession stores a session under a tenant's prefix.
func (f *fixture) tenantSession(prefix, sid, json string) {
	f.t.Helper()
	if err := f.rdb.Set(context.Background(), prefix+sid, json, time.Hour).Err(); err != nil {
		f.t.Fatal(err)
	}
}

// verify asks the Verifier about a cookie, as Nginx would.
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

// calls is how many times Redis ran cmd, from INFO commandstats.
func (f *fixture) calls(cmd string) int {
	f.t.Helper()
	info, err := f.rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if rest, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			var n int
			fmt.Sscanf(rest, "%d", &n)
			return n
		}
	}
	return 0
}

// netOutput is how many bytes Redis has sent its clients, from INFO stats.
func (f *fixture) netOutput() int64 {
	f.t.Helper()
	info, err := f.rdb.Info(context.Background(), "stats").Result()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if rest, ok := strings.CutPrefix(line, "total_net_output_bytes:"); ok {
			var n int64
			fmt.Sscanf(rest, "%d", &n)
			return n
		}
	}
	f.t.Fatal("no total_net_output_bytes in INFO stats")
	return 0
}

// counter is the value of the counter name{result=result} in reg, as
// /metrics would show it.
func counter(t testing.TB, reg *prometheus.Registry, name, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{result=%q} in the registry", name, result)
	return 0
}
