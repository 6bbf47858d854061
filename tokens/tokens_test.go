package tokens

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/authztest"
	"github.com/authz/authz/internal/testenv"
	"github.com/authz/authz/logout"
	"github.com/redis/go-redis/v9"
)

const (
	testSecret = authztest.Secret
	aliceJSON  = authztest.AliceJSON
	svcJSON    = authztest.SvcJSON
	twoTenants = authztest.TwoTenants
)

// fixture is a Verifier with bearer tokens on and an hour of cache (so
// only an invalidation can explain a cached token turning into a deny),
// over a real redis-server, and the Issuer over it.
type fixture struct {
	t     testing.TB
	redis *testenv.Redis
	rdb   *redis.Client
	v     *authz.Verifier
	is    *Issuer
}

func newFixture(t testing.TB, mod func(*authz.Config)) *fixture {
	t.Helper()
	cfg := authz.Config{Secrets: []string{testSecret}, RedisTimeout: time.Second, BearerTokens: true, CacheTTL: time.Hour}
	if mod != nil {
		mod(&cfg)
	}
	base := authztest.Start(t, cfg, io.Discard)
	return &fixture{t: t, redis: base.Redis, rdb: base.RDB, v: base.V, is: New(base.V)}
}

// token creates a token for doc through Create and returns it.
func (f *fixture) token(doc string, ttl time.Duration) string {
	f.t.Helper()
	tok, _, err := f.is.Create(context.Background(), "", []byte(doc), ttl)
	if err != nil {
		f.t.Fatalf("Create(%s): %v", doc, err)
	}
	return tok
}

// decide runs one verify decision on q.
func (f *fixture) decide(q authz.Query) authz.Answer {
	f.t.Helper()
	return f.v.Decide(context.Background(), &q)
}

// TestTokenRevocation: a revoked token stays cached until its event
// arrives, then is refused at once; the revocation event names only the
// hash.
func TestTokenRevocation(t *testing.T) {
	f := newFixture(t, nil)
	tok := f.token(svcJSON, time.Hour)
	q := authz.Query{Authorization: "Bearer " + tok}
	if a := f.decide(q); a.Reason != authz.ReasonOK {
		t.Fatalf("before: %q", a.Reason)
	}
	hash, err := authz.ParseTokenRef(tok)
	if err != nil || hash != authz.TokenHash(tok) {
		t.Fatalf("authz.ParseTokenRef(token) = %q, %v", hash, err)
	}
	if h2, err := authz.ParseTokenRef(hash); err != nil || h2 != hash {
		t.Fatalf("authz.ParseTokenRef(hash) = %q, %v", h2, err)
	}
	found, err := f.is.Revoke(context.Background(), "", hash)
	if err != nil || !found {
		t.Fatalf("RevokeToken = %v, %v", found, err)
	}
	if a := f.decide(q); a.Reason != authz.ReasonOK {
		t.Fatalf("revoked but not yet told: %q; want the cached allow (this test's clock-free proof the cache is in play)", a.Reason)
	}
	f.v.Logout(logout.Event{V: logout.Version, Kind: logout.KindToken, Token: hash})
	if a := f.decide(q); a.Reason != authz.ReasonTokenNotFound {
		t.Fatalf("after the event: %q, want token_not_found", a.Reason)
	}
	if found, err := f.is.Revoke(context.Background(), "", hash); err != nil || found {
		t.Errorf("second RevokeToken = %v, %v; want false, nil", found, err)
	}
	if _, err := f.is.Revoke(context.Background(), "", tok); err == nil {
		t.Error("RevokeToken accepted a token where a hash belongs")
	}
}

func TestCreateTokenRefusesUselessDocuments(t *testing.T) {
	f := newFixture(t, nil)
	for _, doc := range []string{`{}`, `{"user":null}`, `{"user":{"name":"no id"}}`, `[1]`, `{"user":"a"} x`, `{"user":" padded "}`} {
		if _, _, err := f.is.Create(context.Background(), "", []byte(doc), time.Hour); err == nil {
			t.Errorf("CreateToken(%s) succeeded", doc)
		}
	}
	if n := f.rdb.DBSize(context.Background()).Val(); n != 0 {
		t.Errorf("%d keys stored for refused documents", n)
	}
	if _, _, err := f.is.Create(context.Background(), "", []byte(svcJSON), -time.Second); err == nil {
		t.Error("negative TTL accepted")
	}
}

func TestCreateTokenStoresOnlyTheHash(t *testing.T) {
	f := newFixture(t, nil)
	tok, ti, err := f.is.Create(context.Background(), "", []byte(svcJSON), 0)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, authz.TokenMark) || len(tok) != 47 {
		t.Errorf("token %q: want %s and 43 base64url characters", tok, authz.TokenMark)
	}
	keys := f.rdb.Keys(context.Background(), "*").Val()
	if len(keys) != 1 || keys[0] != "authz:token:"+authz.TokenHash(tok) || ti.Hash != authz.TokenHash(tok) {
		t.Fatalf("keys %v, info hash %s; want only authz:token:<sha256>", keys, ti.Hash)
	}
	if ttl := f.rdb.PTTL(context.Background(), keys[0]).Val(); ttl != -1 || ti.TTL >= 0 {
		t.Errorf("TTL %v (info %v); want none for ttl 0", ttl, ti.TTL)
	}
	if v := f.rdb.Get(context.Background(), keys[0]).Val(); strings.Contains(v, tok) {
		t.Error("the stored document holds the token")
	}
}

func TestTokensList(t *testing.T) {
	f := newFixture(t, func(c *authz.Config) { c.TokenPrefix = "api:" })
	want := map[string]string{}
	for _, name := range []string{"a", "b", "c"} {
		tok := f.token(`{"user":{"id":"svc-`+name+`"},"token":{"name":"`+name+`","created":"2026-01-02T03:04:05Z"}}`, time.Hour)
		want[authz.TokenHash(tok)] = name
	}
	f.rdb.Set(context.Background(), "api:not-a-hash", "{}", 0)
	f.rdb.Set(context.Background(), "sess:x", aliceJSON, 0)
	got := map[string]string{}
	err := f.is.List(context.Background(), "", func(ti Info) error {
		if ti.Err != nil || ti.Session.User != "svc-"+ti.Name || ti.Created.IsZero() || ti.TTL <= 0 {
			t.Errorf("token %s: %+v", ti.Hash[:8], ti)
		}
		got[ti.Hash] = ti.Name
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("listed %v, want %v", got, want)
	}
	for h, n := range want {
		if got[h] != n {
			t.Errorf("token %s: name %q, want %q", h[:8], got[h], n)
		}
	}
}

// A token is created under its tenant's token prefix, so that it opens that
// tenant's hosts only (authz's TestTenantTokensStayInTheirTenant), and a
// token for no tenant is refused while several are configured.
func TestTokensCreatedInTheirTenant(t *testing.T) {
	f := newFixture(t, nil)
	ts, err := authz.ParseTenants([]byte(twoTenants))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.v.SetTenants(ts); err != nil {
		t.Fatal(err)
	}
	tok, _, err := f.is.Create(context.Background(), "acme", []byte(`{"user":{"id":"svc"}}`), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := f.rdb.Exists(context.Background(), "authz:token:acme:"+authz.TokenHash(tok)).Result(); n != 1 {
		t.Fatal("the token is not under acme's token prefix")
	}
	for _, tc := range []struct {
		host   string
		status int
	}{{"acme.test", 200}, {"globex.test", 401}} {
		req := httptest.NewRequest(http.MethodGet, "/verify", nil)
		req.Header.Set("X-Forwarded-Host", tc.host)
		req.Header.Set("Authorization", "Bearer "+tok)
		w := httptest.NewRecorder()
		f.v.ServeHTTP(w, req)
		if w.Code != tc.status {
			t.Errorf("acme's token on %s: %d, want %d", tc.host, w.Code, tc.status)
		}
	}
	if _, _, err := f.is.Create(context.Background(), "", []byte(`{"user":{"id":"svc"}}`), time.Hour); err == nil {
		t.Error("a token without a tenant was created while several are configured")
	}
}
