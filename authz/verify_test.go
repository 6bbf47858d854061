package authz

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
)

const testSecret = "keyboard cat"

// fixture is a Verifier over a real redis-server started for the test.
type fixture struct {
	t     testing.TB
	redis *testenv.Redis
	rdb   *redis.Client
	v     *Verifier
	n     int
}

func newFixture(t testing.TB, mod func(*Config)) *fixture {
	t.Helper()
	r := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: 1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	email, _ := ParseHeaderMapping("X-Auth-Email=passport.user.email")
	cfg := Config{Secrets: []string{testSecret}, Headers: []HeaderMapping{email}, RedisTimeout: time.Second}
	if mod != nil {
		mod(&cfg)
	}
	v, err := New(cfg, rdb, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return &fixture{t: t, redis: r, rdb: rdb, v: v}
}

// session stores a session the way connect-redis does and returns its cookie.
func (f *fixture) session(json string, ttl time.Duration) (sid, cookie string) {
	f.t.Helper()
	f.n++
	sid = fmt.Sprintf("test%028d", f.n)
	if err := f.rdb.Set(context.Background(), "sess:"+sid, json, ttl).Err(); err != nil {
		f.t.Fatal(err)
	}
	return sid, Sign(sid, testSecret)
}

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
	if w.Body.Len() != 0 {
		f.t.Errorf("verify answered %d with a body %q: Nginx would drop the keep-alive connection", w.Code, w.Body)
	}
	return w
}

const (
	aliceJSON = `{"cookie":{"originalMaxAge":3600000,"expires":"2020-01-01T00:00:00.000Z","httpOnly":true,"path":"/"},"passport":{"user":{"id":"alice","email":"alice@example.com","roles":["admin"]}}}`
	bobJSON   = `{"cookie":{"originalMaxAge":null,"expires":null,"httpOnly":true,"path":"/"},"passport":{"user":{"id":"bob","roles":"dev"}}}`
)

func TestVerifyAnswers(t *testing.T) {
	f := newFixture(t, nil)
	_, alice := f.session(aliceJSON, time.Hour)
	_, bob := f.session(bobJSON, time.Hour)
	_, anon := f.session(`{"cookie":{"originalMaxAge":null},"passport":{}}`, time.Hour)
	_, notJSON := f.session(`<html>`, time.Hour)
	_, wrongType := f.session(`{"cookie":{},"passport":{"user":[1,2]}}`, time.Hour)
	_, crlf := f.session(`{"cookie":{},"passport":{"user":"x\r\nX-Auth-User: admin"}}`, time.Hour)
	_, huge := f.session(`{"cookie":{},"passport":{"user":"h"},"pad":"`+strings.Repeat("x", 2<<20)+`"}`, time.Hour)
	_, big := f.session(`{"cookie":{},"passport":{"user":"b"},"pad":"`+strings.Repeat("x", 900<<10)+`"}`, time.Hour)
	_, number := f.session(`{"cookie":{},"user":{"id":0.36535326065695717}}`, time.Hour)
	missing := Sign("neverstoredneverstoredneverstore", testSecret)

	tests := []struct {
		name, cookie, query string
		status              int
		user                string
	}{
		{"passport user", alice, "", 200, "alice"},
		{"expires in JSON lags behind TTL: still valid", alice, "", 200, "alice"},
		{"numeric id verbatim", number, "", 200, "0.36535326065695717"},
		{"session under the size cap", big, "", 200, "b"},
		{"no cookie", "", "", 401, ""},
		{"tampered", strings.Replace(alice, "test", "tesT", 1), "", 401, ""},
		{"unknown session", missing, "", 401, ""},
		{"anonymous session", anon, "", 401, ""},
		{"not JSON", notJSON, "", 401, ""},
		{"wrong type", wrongType, "", 401, ""},
		{"CR/LF in identity", crlf, "", 401, ""},
		{"session over the size cap", huge, "", 401, ""},
		{"role allowed", alice, "allow_roles=admin", 200, "alice"},
		{"role missing", bob, "allow_roles=admin", 403, ""},
		{"user allowed", bob, "allow_users=alice,bob", 200, "bob"},
		{"user not listed", bob, "allow_users=alice", 403, ""},
		{"unknown rule", alice, "allow_group=admin", 500, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := f.verify(tt.cookie, tt.query)
			if w.Code != tt.status {
				t.Fatalf("status %d; want %d", w.Code, tt.status)
			}
			if got := w.Header().Get("X-Auth-User"); got != tt.user {
				t.Errorf("X-Auth-User = %q; want %q", got, tt.user)
			}
			if tt.status == 401 && !strings.HasPrefix(w.Header().Get("X-Auth-Redirect"), "/login?rd=") {
				t.Errorf("401 without login redirect: %q", w.Header().Get("X-Auth-Redirect"))
			}
		})
	}
	if got := f.verify(alice, "").Header().Get("X-Auth-Email"); got != "alice@example.com" {
		t.Errorf("X-Auth-Email = %q", got)
	}
	if got := f.verify(bob, "").Header().Values("X-Auth-Email"); len(got) != 0 {
		t.Errorf("X-Auth-Email for a session without email = %q", got)
	}
}

func TestVerifyLoginRedirect(t *testing.T) {
	f := newFixture(t, nil)
	for uri, want := range map[string]string{
		"/app/page?x=1&y=2": "/login?rd=%2Fapp%2Fpage%3Fx%3D1%26y%3D2",
		"//evil.example/":   "/login?rd=%2F",
		"/\\evil.example/":  "/login?rd=%2F",
		"https://evil/":     "/login?rd=%2F",
		"":                  "/login?rd=%2F",
	} {
		w := f.verify("", "", "X-Original-URI", uri)
		if got := w.Header().Get("X-Auth-Redirect"); got != want {
			t.Errorf("X-Original-URI %q: X-Auth-Redirect = %q; want %q", uri, got, want)
		}
	}
}

func TestVerifyExpiry(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.CacheTTL = time.Hour; c.TouchInterval = -1 })
	sid, c := f.session(bobJSON, 300*time.Millisecond)
	if w := f.verify(c, ""); w.Code != 200 {
		t.Fatalf("fresh session: %d", w.Code)
	}
	// The cache entry must not outlive the key, even with a long cache TTL.
	testenv.WaitFor(t, 5*time.Second, "the session key to expire", func() bool {
		return f.rdb.Exists(context.Background(), "sess:"+sid).Val() == 0
	})
	if w := f.verify(c, ""); w.Code != 401 {
		t.Fatalf("session whose key expired: %d; want 401", w.Code)
	}

	g := newFixture(t, func(c *Config) { c.EnforceExpires = true })
	_, c = g.session(aliceJSON, time.Hour) // expires 2020 in the JSON
	if w := g.verify(c, ""); w.Code != 401 {
		t.Fatalf("enforced past expires: %d; want 401", w.Code)
	}
	_, c = g.session(bobJSON, time.Hour) // expires null
	if w := g.verify(c, ""); w.Code != 200 {
		t.Fatalf("enforced null expires: %d; want 200", w.Code)
	}
}

func TestVerifyCache(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.CacheTTL = time.Hour; c.NegativeCacheTTL = time.Hour })
	sid, c := f.session(bobJSON, time.Hour)
	gets := f.redis.Calls("getrange")
	for range 5 {
		if w := f.verify(c, ""); w.Code != 200 {
			t.Fatalf("status %d", w.Code)
		}
	}
	if n := f.redis.Calls("getrange") - gets; n != 1 {
		t.Fatalf("5 requests made %d GETs; want 1", n)
	}

	// Invalidation makes the next request read Redis again.
	f.rdb.Del(context.Background(), "sess:"+sid)
	if w := f.verify(c, ""); w.Code != 200 {
		t.Fatalf("cached session: %d", w.Code)
	}
	if !f.v.Invalidate(sid) {
		t.Fatal("Invalidate found nothing")
	}
	if w := f.verify(c, ""); w.Code != 401 {
		t.Fatalf("after Invalidate: %d; want 401", w.Code)
	}

	// Negative cache: the same dead cookie reaches Redis once.
	gets = f.redis.Calls("getrange")
	for range 5 {
		f.verify(c, "")
	}
	if n := f.redis.Calls("getrange") - gets; n != 0 {
		t.Fatalf("dead cookie made %d GETs; want 0 (negatively cached)", n)
	}

	_, c1 := f.session(`{"cookie":{},"passport":{"user":"carol"}}`, time.Hour)
	_, c2 := f.session(`{"cookie":{},"passport":{"user":"carol"}}`, time.Hour)
	f.verify(c1, "")
	f.verify(c2, "")
	if n := f.v.InvalidateUser("", "carol"); n != 2 {
		t.Fatalf("InvalidateUser dropped %d; want 2", n)
	}
}

func TestVerifySingleflight(t *testing.T) {
	f := newFixture(t, nil)
	_, c := f.session(bobJSON, time.Hour)
	// Make the load slow enough that the misses overlap: CLIENT PAUSE holds
	// every client's commands in Redis until it ends.
	gets := f.redis.Calls("getrange")
	admin := f.redis.Client()
	if err := admin.Do(context.Background(), "CLIENT", "PAUSE", "300", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Do(context.Background(), "CLIENT", "PAUSE", "300", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	codes := make([]int, 50)
	for i := range codes {
		wg.Go(func() { codes[i] = f.verify(c, "").Code })
	}
	wg.Wait()
	for i, code := range codes {
		if code != 200 {
			t.Fatalf("request %d: %d", i, code)
		}
	}
	if n := f.redis.Calls("getrange") - gets; n != 1 {
		t.Fatalf("50 concurrent misses made %d GETs; want 1", n)
	}
}

func TestVerifyRedisDown(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.CacheTTL = time.Hour; c.RedisTimeout = 200 * time.Millisecond })
	_, cached := f.session(bobJSON, time.Hour)
	_, uncached := f.session(aliceJSON, time.Hour)
	if w := f.verify(cached, ""); w.Code != 200 {
		t.Fatalf("warm: %d", w.Code)
	}
	f.redis.Stop()
	w := f.verify(uncached, "")
	if w.Code != 503 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("Redis down, nothing cached: %d Retry-After=%q; want 503 with Retry-After", w.Code, w.Header().Get("Retry-After"))
	}
	if w := f.verify(cached, ""); w.Code != 200 {
		t.Fatalf("Redis down, session cached: %d; want 200", w.Code)
	}
	if err := f.v.Ready(context.Background()); err == nil {
		t.Fatal("Ready with Redis down")
	}
	f.redis.Start()
	if err := f.v.Ready(context.Background()); err != nil {
		t.Fatalf("Ready after restart: %v", err)
	}
	// The restarted Redis is empty: authz must say so, not serve an error.
	if w := f.verify(uncached, ""); w.Code != 401 {
		t.Fatalf("after restart: %d; want 401", w.Code)
	}
}

func TestVerifyTouch(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.TouchInterval = time.Minute })
	// originalMaxAge is an hour and 100s are left: the session was last
	// touched long ago, so an allowed request slides it back to an hour.
	sid, c := f.session(aliceJSON, 100*time.Second)
	if w := f.verify(c, ""); w.Code != 200 {
		t.Fatalf("status %d", w.Code)
	}
	testenv.WaitFor(t, 5*time.Second, "the TTL to slide to an hour", func() bool {
		return f.rdb.TTL(context.Background(), "sess:"+sid).Val() > 59*time.Minute
	})
	before := f.redis.Calls("expire")
	f.verify(c, "")
	if n := f.redis.Calls("expire") - before; n != 0 {
		t.Fatalf("touched again within the interval: %d EXPIREs", n)
	}
	// A fresh session is not touched; a key without TTL is never touched.
	_, c = f.session(aliceJSON, time.Hour)
	sid2, c2 := f.session(bobJSON, 0)
	f.verify(c, "")
	f.verify(c2, "")
	if n := f.redis.Calls("expire") - before; n != 0 {
		t.Fatalf("%d unexpected EXPIREs", n)
	}
	if ttl := f.rdb.TTL(context.Background(), "sess:"+sid2).Val(); ttl != -1 {
		t.Fatalf("key without TTL got TTL %v", ttl)
	}

	g := newFixture(t, func(c *Config) { c.TouchInterval = -1 })
	sid, c = g.session(aliceJSON, 100*time.Second)
	g.verify(c, "")
	if n := g.redis.Calls("expire"); n != 0 {
		t.Fatalf("touch disabled but %d EXPIREs", n)
	}
	_ = sid
}

func TestVerifyAnyMethod(t *testing.T) {
	f := newFixture(t, nil)
	_, c := f.session(bobJSON, time.Hour)
	for _, m := range []string{"HEAD", "POST", "DELETE", "OPTIONS"} {
		req := httptest.NewRequest(m, "/verify", nil)
		req.Header.Set("Cookie", "connect.sid="+c)
		w := httptest.NewRecorder()
		f.v.ServeHTTP(w, req)
		if w.Code != 200 {
			t.Errorf("%s: %d", m, w.Code)
		}
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []Config{
		{},
		{Secrets: []string{""}},
		{Secrets: []string{"s"}, UserHeader: "X User"},
		{Secrets: []string{"s"}, CookieName: "a=b"},
		{Secrets: []string{"s"}, LoginURL: "javascript:alert(1)"},
	} {
		if _, err := New(c, redis.NewClient(&redis.Options{}), prometheus.NewRegistry(), log); err == nil {
			t.Errorf("New(%+v): no error", c)
		}
	}
}

func TestOriginalURIConventions(t *testing.T) {
	tests := []struct{ uri, url, fwd, want string }{
		{"/a?b=1", "https://x/other", "/third", "/a?b=1"},
		{"", "https://app.example/a/b?c=1", "/third", "/a/b?c=1"},
		{"", "::not a url", "/third", ""},
		{"", "", "/from/traefik?x", "/from/traefik?x"},
		{"", "", "", ""},
	}
	for _, tt := range tests {
		if got := OriginalURI(tt.uri, tt.url, tt.fwd); got != tt.want {
			t.Errorf("OriginalURI(%q, %q, %q) = %q; want %q", tt.uri, tt.url, tt.fwd, got, tt.want)
		}
	}
	f := newFixture(t, nil)
	w := f.verify("", "", "X-Forwarded-Uri", "/caddy/path?q=1")
	if got := w.Header().Get("X-Auth-Redirect"); got != "/login?rd=%2Fcaddy%2Fpath%3Fq%3D1" {
		t.Errorf("X-Forwarded-Uri: X-Auth-Redirect = %q", got)
	}
}

func TestBreakerFailsFastWhileRedisIsDown(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.RedisTimeout = 100 * time.Millisecond
		c.BreakerFailures = 3
		c.BreakerCooldown = 200 * time.Millisecond
	})
	var cookies []string
	for range 10 {
		_, c := f.session(bobJSON, time.Hour)
		cookies = append(cookies, c)
	}
	f.redis.Stop()
	loadErrors := func() float64 { return testutil.ToFloat64(f.v.metrics.redisErrors.WithLabelValues("load")) }
	for i, c := range cookies {
		if w := f.verify(c, ""); w.Code != 503 {
			t.Fatalf("request %d with Redis down: %d; want 503", i, w.Code)
		}
	}
	// Three failures opened the circuit; the other seven never waited for
	// Redis at all.
	if n := loadErrors(); n != 3 {
		t.Fatalf("%v Redis load attempts failed; want 3, then the circuit open", n)
	}
	if f.v.breakers.opens() != 1 {
		t.Fatalf("circuit opened %d times; want 1", f.v.breakers.opens())
	}
	f.redis.Start()
	_, c := f.session(bobJSON, time.Hour)
	testenv.WaitFor(t, 5*time.Second, "the circuit to close once Redis is back", func() bool {
		return f.verify(c, "").Code == 200
	})
}

// TestVerifyRefusesASecondCopy: a header ServeHTTP (--stdlib-http) reads as
// one value, sent twice, is refused with 400 and the connection closed, as
// authz's own server refuses it, whatever the copies hold: no reader can
// pick a copy another reader did not. Cookie may come more than once.
func TestVerifyRefusesASecondCopy(t *testing.T) {
	f := newFixture(t, nil)
	_, c := f.session(aliceJSON, time.Hour)
	tests := []struct {
		name   string
		values []string
		want   int
	}{
		{"Authorization", []string{"", "Bearer azt_x"}, 400},
		{"Authorization", []string{"Basic YTpi", "Basic YTpi"}, 400},
		{"X-Original-URI", []string{"", "/x"}, 400},
		{"x-original-uri", []string{"/a", "/b"}, 400},
		{"X-Original-URL", []string{"https://a.example/x", "https://b.example/y"}, 400},
		{"X-Forwarded-Uri", []string{"/a", "/a"}, 400},
		{"X-Forwarded-Host", []string{"a.example", "b.example"}, 400},
		{"X-Forwarded-Host", []string{"a.example"}, 200},
		{"X-Original-URI", []string{"/x"}, 200},
		{"Cookie", []string{"a=1", "connect.sid=" + c}, 200},
		{"X-Other", []string{"1", "2"}, 200},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s×%d", tt.name, len(tt.values)), func(t *testing.T) {
			req := httptest.NewRequest(http.MethodGet, "/verify", nil)
			req.Header.Set("Cookie", "connect.sid="+c)
			if tt.name == "Cookie" {
				req.Header.Del("Cookie")
			}
			for _, v := range tt.values {
				req.Header.Add(tt.name, v)
			}
			w := httptest.NewRecorder()
			f.v.ServeHTTP(w, req)
			if w.Code != tt.want {
				t.Fatalf("status %d, want %d", w.Code, tt.want)
			}
			if tt.want == 400 {
				if w.Header().Get("Connection") != "close" || w.Header().Get("X-Auth-User") != "" || w.Body.Len() != 0 {
					t.Errorf("refusal: %v, body %q; want Connection: close, no identity, no body", w.Header(), w.Body)
				}
			} else if w.Header().Get("X-Auth-User") != "alice" {
				t.Errorf("X-Auth-User %q, want alice", w.Header().Get("X-Auth-User"))
			}
		})
	}
}
