package authz

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// tokenFixture is a fixture with bearer tokens on and an hour of cache, so
// only an invalidation can explain a cached token turning into a deny.
func tokenFixture(t testing.TB, mod func(*Config)) *fixture {
	t.Helper()
	return newFixture(t, func(c *Config) {
		c.BearerTokens = true
		c.CacheTTL = time.Hour
		if mod != nil {
			mod(c)
		}
	})
}

// token stores doc under a new token, as `authz token create` does
// (package tokens, whose tests check it does), and returns the token.
func (f *fixture) token(doc string, ttl time.Duration) string {
	f.t.Helper()
	tok := NewToken()
	if err := f.rdb.SetNX(context.Background(), f.v.cfg.TokenPrefix+TokenHash(tok), doc, ttl).Err(); err != nil {
		f.t.Fatalf("store token %s: %v", doc, err)
	}
	return tok
}

// decide runs one verify decision on q.
func (f *fixture) decide(q Query) Answer {
	f.t.Helper()
	return f.v.Decide(context.Background(), &q)
}

const svcJSON = `{"user":{"id":"svc-billing","roles":["admin"]},"token":{"name":"billing","created":"2026-01-02T03:04:05Z"}}`

func TestBearerAnswers(t *testing.T) {
	f := tokenFixture(t, nil)
	svc := f.token(svcJSON, time.Hour)
	// The same identity document shape as a passport session: the
	// --header mappings apply to tokens too.
	mail := f.token(`{"passport":{"user":{"id":"carol","email":"carol@example.com","roles":["staff"]}}}`, 0)
	_, alice := f.session(aliceJSON, time.Hour)
	// Documents authz did not write: stored by hand under the token prefix.
	store := func(doc string) string {
		tok := NewToken()
		if err := f.rdb.Set(context.Background(), "authz:token:"+TokenHash(tok), doc, time.Hour).Err(); err != nil {
			t.Fatal(err)
		}
		return tok
	}
	anon := store(`{"user":null}`)
	notJSON := store(`<html>`)
	crlf := store(`{"user":"x\r\nX-Auth-User: admin"}`)

	tests := []struct {
		name   string
		auth   string
		cookie string
		query  string
		want   Reason
		user   string
	}{
		{"valid token", "Bearer " + svc, "", "", ReasonOK, "svc-billing"},
		{"scheme in any case", "bEaReR " + svc, "", "", ReasonOK, "svc-billing"},
		{"several spaces", "Bearer   " + svc, "", "", ReasonOK, "svc-billing"},
		{"passport-shaped document", "Bearer " + mail, "", "", ReasonOK, "carol"},
		{"token wins over a cookie", "Bearer " + svc, "connect.sid=" + alice, "", ReasonOK, "svc-billing"},
		{"unknown token", "Bearer " + NewToken(), "", "", ReasonTokenNotFound, ""},
		{"unknown token never falls back to the cookie", "Bearer " + NewToken(), "connect.sid=" + alice, "", ReasonTokenNotFound, ""},
		{"other scheme: the cookie decides", "Basic YWxpY2U6c2VjcmV0", "connect.sid=" + alice, "", ReasonOK, "alice"},
		{"other scheme, no cookie", "Basic YWxpY2U6c2VjcmV0", "", "", ReasonNoCookie, ""},
		{"scheme only: the cookie decides", "Bearer", "connect.sid=" + alice, "", ReasonOK, "alice"},
		{"scheme and spaces", "Bearer   ", "", "", ReasonNoCookie, ""},
		{"a service's own bearer token: the cookie decides", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x", "connect.sid=" + alice, "", ReasonOK, "alice"},
		{"a service's own bearer token, no cookie", "Bearer eyJhbGciOiJIUzI1NiJ9.e30.x", "", "", ReasonNoCookie, ""},
		{"too short", "Bearer azt_short", "", "", ReasonBadToken, ""},
		{"too long", "Bearer azt_" + strings.Repeat("a", maxTokenLen), "", "", ReasonBadToken, ""},
		{"longest accepted, unknown", "Bearer azt_" + strings.Repeat("a", maxTokenLen-4), "", "", ReasonTokenNotFound, ""},
		{"padding", "Bearer azt_" + strings.Repeat("a", 20) + "==", "", "", ReasonTokenNotFound, ""},
		{"padding inside", "Bearer azt_aaaaaaaaaa==aaaaaaaaaa", "", "", ReasonBadToken, ""},
		{"only padding after the mark", "Bearer azt_" + strings.Repeat("=", 20), "", "", ReasonTokenNotFound, ""},
		{"comma", "Bearer " + svc + ",x", "", "", ReasonBadToken, ""},
		{"second parameter", "Bearer " + svc + " realm=x", "", "", ReasonBadToken, ""},
		{"CRLF", "Bearer " + svc + "\r\nX-Auth-User: admin", "", "", ReasonBadToken, ""},
		{"NUL", "Bearer " + svc[:20] + "\x00" + svc[21:], "", "", ReasonBadToken, ""},
		{"non-ASCII", "Bearer " + svc[:20] + "é" + svc[22:], "", "", ReasonBadToken, ""},
		{"tab after the scheme", "Bearer\t" + svc, "", "", ReasonOK, "svc-billing"},
		{"anonymous document", "Bearer " + anon, "", "", ReasonInvalidToken, ""},
		{"not JSON", "Bearer " + notJSON, "", "", ReasonInvalidToken, ""},
		{"identity with CRLF", "Bearer " + crlf, "", "", ReasonInvalidToken, ""},
		{"role rule passes", "Bearer " + svc, "", "allow_roles=admin", ReasonOK, "svc-billing"},
		{"role rule fails", "Bearer " + mail, "", "allow_roles=admin", ReasonRoleNotAllowed, ""},
		{"user rule fails", "Bearer " + svc, "", "allow_users=alice", ReasonUserNotAllowed, ""},
		{"user rule passes", "Bearer " + svc, "", "allow_users=alice,svc-billing", ReasonOK, "svc-billing"},
		{"bad rule first", "Bearer " + svc, "", "allow_role=admin", ReasonBadRule, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := Query{Authorization: tt.auth, RawQuery: tt.query, OriginalURI: "/api/x"}
			if tt.cookie != "" {
				q.Cookies = []string{tt.cookie}
			}
			for _, round := range []string{"first", "cached"} {
				a := f.decide(q)
				if a.Reason != tt.want {
					t.Fatalf("%s: reason %q, want %q", round, a.Reason, tt.want)
				}
				if tt.user != "" && a.Session.User != tt.user {
					t.Errorf("%s: user %q, want %q", round, a.Session.User, tt.user)
				}
			}
		})
	}
}

func TestBearerOffIgnoresTheHeader(t *testing.T) {
	f := newFixture(t, nil)
	_, alice := f.session(aliceJSON, time.Hour)
	tok := NewToken()
	if err := f.rdb.Set(context.Background(), "authz:token:"+TokenHash(tok), svcJSON, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if a := f.decide(Query{Authorization: "Bearer " + tok}); a.Reason != ReasonNoCookie {
		t.Errorf("token without --bearer-tokens: %q, want no_cookie", a.Reason)
	}
	if a := f.decide(Query{Authorization: "Bearer " + tok, Cookies: []string{"connect.sid=" + alice}}); a.Reason != ReasonOK || a.Session.User != "alice" {
		t.Errorf("token and cookie without --bearer-tokens: %q, want the cookie's user", a.Reason)
	}
}

// TestBearerAnswerHeaders checks net/http's front end (the narrow server's
// is checked in package frontdoor): an allowed token carries the same
// identity headers as a session; a refused one a Bearer challenge, not a
// login redirect.
func TestBearerAnswerHeaders(t *testing.T) {
	f := tokenFixture(t, nil)
	tok := f.token(`{"passport":{"user":{"id":"carol","email":"carol@example.com"}}}`, time.Hour)
	check := func(t *testing.T, h http.Header, status int, auth string) {
		t.Helper()
		switch auth {
		case "Bearer " + tok:
			if status != 200 || h.Get("X-Auth-User") != "carol" || h.Get("X-Auth-Email") != "carol@example.com" {
				t.Errorf("valid token: %d %v", status, h)
			}
		default:
			if status != 401 || h.Get("WWW-Authenticate") != bearerChallenge || h.Get("X-Auth-Redirect") != "" {
				t.Errorf("%q: %d %v; want 401 with a Bearer challenge and no redirect", auth, status, h)
			}
		}
	}
	auths := []string{"Bearer " + tok, "Bearer " + NewToken(), "Bearer azt_x"}
	t.Run("net/http", func(t *testing.T) {
		for _, auth := range auths {
			w := f.verify("", "", "Authorization", auth, "X-Original-URI", "/api")
			check(t, w.Header(), w.Code, auth)
		}
	})
}

func TestTokenCacheEntryEndsWithTheKey(t *testing.T) {
	f := tokenFixture(t, nil)
	tok := f.token(svcJSON, 2*time.Second)
	var key [tokenKeyLen]byte
	tokenKey(&key, tok)
	if a := f.decide(Query{Authorization: "Bearer " + tok}); a.Reason != ReasonOK {
		t.Fatalf("%q", a.Reason)
	}
	e := f.v.cache.get(key[:], time.Now().UnixNano())
	if e == nil {
		t.Fatal("not cached")
	}
	if left := time.Until(time.Unix(0, e.until)); left > 2*time.Second || left <= 0 {
		t.Errorf("cached for %v more with an hour of cache TTL; want at most the key's 2s", left)
	}
}

func TestTokenKeyNeverASessionID(t *testing.T) {
	var key [tokenKeyLen]byte
	tokenKey(&key, NewToken())
	if key[0] != '~' || validSID(key[:]) || !IsTokenHash(tokenHashOf(key[:])) {
		t.Errorf("cache key %q: want '~' and a hex hash, never a valid session id", key)
	}
	tok := strings.Repeat("x", maxTokenLen)
	tokenKey(&key, tok)
	if tokenHashOf(key[:]) != TokenHash(tok) {
		t.Error("tokenKey and TokenHash disagree")
	}
}

func TestTokenPrefixMustNotOverlapSessions(t *testing.T) {
	for _, c := range []Config{
		{Secrets: []string{"s"}, BearerTokens: true, TokenPrefix: "sess:tok:"},
		{Secrets: []string{"s"}, BearerTokens: true, KeyPrefix: "a", TokenPrefix: "authz:token:"},
	} {
		c.setDefaults()
		if err := c.validate(); err == nil {
			t.Errorf("key prefix %q, token prefix %q accepted", c.KeyPrefix, c.TokenPrefix)
		}
	}
}

func TestTokenStoreDown(t *testing.T) {
	f := tokenFixture(t, func(c *Config) { c.RedisTimeout = 100 * time.Millisecond })
	tok := f.token(svcJSON, time.Hour)
	f.redis.Stop()
	if a := f.decide(Query{Authorization: "Bearer " + tok}); a.Reason != ReasonStoreUnavailable {
		t.Errorf("Redis down: %q, want store_unavailable", a.Reason)
	}
	if n := testutil.ToFloat64(f.v.metrics.redisErrors.WithLabelValues("load")); n != 1 {
		t.Errorf("redis load errors %v, want 1", n)
	}
}

// TestBearerCacheHitAllocs: a cached token costs no allocation in the
// decision (hashing, cache key, lookup).
func TestBearerCacheHitAllocs(t *testing.T) {
	f := tokenFixture(t, nil)
	q := Query{Authorization: "Bearer " + f.token(svcJSON, time.Hour), OriginalURI: "/api"}
	if a := f.decide(q); a.Reason != ReasonOK {
		t.Fatal(a.Reason)
	}
	ctx := context.Background()
	if n := testing.AllocsPerRun(100, func() { f.v.Decide(ctx, &q) }); n != 0 {
		t.Errorf("%v allocations per cached token decision, want 0", n)
	}
}
