package authz

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

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

func TestParseTenants(t *testing.T) {
	ts, err := ParseTenants([]byte(twoTenants))
	if err != nil {
		t.Fatal(err)
	}
	if len(ts) != 2 {
		t.Fatalf("%d tenants, want 2", len(ts))
	}
	a, g := ts[0], ts[1]
	if a.Name != "acme" || a.KeyPrefix != "sessions:acme:web:" || a.CookieName != "" || a.Line != 6 {
		t.Errorf("acme = %+v", a)
	}
	if g.KeyPrefix != "sessions:globex:portal:" || g.CookieName != "globex.sid" || len(g.Secrets) != 2 ||
		g.LoginURL != "https://globex.test/signin" || len(g.UserPaths) != 1 || g.Headers[0].Header != "X-Auth-Name" {
		t.Errorf("globex = %+v", g)
	}
}

func TestParseTenantsErrorsNameTheLine(t *testing.T) {
	for _, tc := range []struct{ name, file, want string }{
		{"unknown field", "tenants:\n  - name: a\n    hosts: [a.test]\n    secret: x\n", "line 4: field secret not found"},
		{"wrong type", "tenants:\n  - name: a\n    hosts: a.test\n", "line 3: cannot unmarshal"},
		{"syntax", "tenants:\n  - name: a\n   hosts: [\n", "line"},
		{"no tenants", "defaults: {app: x}\n", "no tenants"},
		{"bad name", "tenants:\n  - name: 'a b'\n    hosts: [a.test]\n", `line 2: tenant "a b": name`},
		{"no hosts", "tenants:\n  - name: a\n", `line 2: tenant "a": hosts`},
		{"unknown placeholder", "tenants:\n  - name: a\n    hosts: [a.test]\n    key_prefix: 's:{team}:'\n", "unknown placeholder {team}"},
		{"app missing", "tenants:\n  - name: a\n    hosts: [a.test]\n    key_prefix: 's:{app}:'\n", "no app is set"},
		{"bad header", "tenants:\n  - name: a\n    hosts: [a.test]\n    headers: {'X Bad': user.x}\n", "line 2: tenant \"a\": headers"},
		{"a secret never in the error", "tenants:\n  - name: a\n    hosts: [a.test]\n    secrets: s3cr3t-pw\n", "line 4: cannot unmarshal !!str a value into []string"},
		{"empty file", "# nothing\n", "empty"},
		{"two documents", "tenants:\n  - {name: a, hosts: [a.test]}\n---\ntenants: []\n", "more than one YAML document"},
		{"missing secrets file", "tenants:\n  - name: a\n    hosts: [a.test]\n    secrets_file: /nonexistent/s\n", "secrets_file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseTenants([]byte(tc.file))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
				t.Errorf("the error shows a secret: %v", err)
			}
		})
	}
}

// tenantsOf builds a Verifier over tenants, so SetTenants' cross-checks run.
func TestSetTenantsRefusesWhatWouldMixTenants(t *testing.T) {
	f := newFixture(t, nil)
	base := func() []Tenant {
		return []Tenant{
			{Name: "a", Hosts: []string{"a.test"}, KeyPrefix: "s:a:", Secrets: []string{"sa"}, Line: 3},
			{Name: "b", Hosts: []string{"b.test"}, KeyPrefix: "s:b:", Secrets: []string{"sb"}, Line: 7},
		}
	}
	if err := f.v.SetTenants(base()); err != nil {
		t.Fatalf("valid tenants refused: %v", err)
	}
	// Sessions in Redis may share a secret; cookie formats of their own
	// secrets, or of two formats, are fine too.
	for _, mod := range []func([]Tenant){
		func(ts []Tenant) { ts[1].Secrets = ts[0].Secrets },
		func(ts []Tenant) { ts[1].Secrets, ts[1].Format = ts[0].Secrets, FormatFastifySession },
		func(ts []Tenant) { ts[0].Format, ts[1].Format = FormatClientSessions, FormatClientSessions },
		func(ts []Tenant) {
			ts[0].Format, ts[1].Format = FormatCookieSession, FormatClientSessions
			ts[1].Secrets = ts[0].Secrets
		},
	} {
		ts := base()
		mod(ts)
		if err := f.v.SetTenants(ts); err != nil {
			t.Errorf("valid tenants refused: %v", err)
		}
	}
	if err := f.v.SetTenants(base()); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mod  func([]Tenant)
		want string
	}{
		{"overlapping prefix", func(ts []Tenant) { ts[1].KeyPrefix = "s:a:b:" }, "overlaps"},
		{"same prefix", func(ts []Tenant) { ts[1].KeyPrefix = ""; ts[0].KeyPrefix = "" }, "overlaps"},
		{"same host", func(ts []Tenant) { ts[1].Hosts = []string{"A.test"} }, `host "A.test" is also line 3: tenant "a"'s`},
		{"same wildcard", func(ts []Tenant) { ts[0].Hosts = []string{"*.x.test"}; ts[1].Hosts = []string{"*.X.test"} }, "is also"},
		{"same name", func(ts []Tenant) { ts[1].Name = "a" }, "defined twice"},
		{"host with port", func(ts []Tenant) { ts[1].Hosts = []string{"b.test:8080"} }, "no port"},
		{"bad wildcard", func(ts []Tenant) { ts[1].Hosts = []string{"b.*.test"} }, "want a host name"},
		{"no hosts", func(ts []Tenant) { ts[1].Hosts = nil }, "no hosts"},
		{"bad cookie name", func(ts []Tenant) { ts[1].CookieName = "a;b" }, "cookie name"},
		// A cookie carrying its session is tied to its tenant by its
		// signature alone.
		{"client-sessions sharing a secret", func(ts []Tenant) {
			ts[0].Format, ts[1].Format = FormatClientSessions, FormatClientSessions
			ts[1].Secrets = ts[0].Secrets
		}, "shares a client-sessions secret"},
		{"cookie-session sharing one key of two", func(ts []Tenant) {
			ts[0].Format, ts[1].Format = FormatCookieSession, FormatCookieSession
			ts[1].Secrets = []string{"new", "sa"}
		}, "shares a cookie-session secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := base()
			tc.mod(ts)
			err := f.v.SetTenants(ts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			// The tenants in use are untouched.
			if got := f.v.tenants.Load().lookup("a.test"); got == nil || got.name != "a" {
				t.Fatalf("after a refused SetTenants, a.test is served by %v", got)
			}
		})
	}
}

func TestTenantLookup(t *testing.T) {
	f := newFixture(t, nil)
	err := f.v.SetTenants([]Tenant{
		{Name: "apex", Hosts: []string{"example.com"}, KeyPrefix: "1:", Secrets: []string{"1"}},
		{Name: "wild", Hosts: []string{"*.example.com"}, KeyPrefix: "2:", Secrets: []string{"2"}},
		{Name: "deep", Hosts: []string{"*.eu.example.com", "exact.eu.example.com."}, KeyPrefix: "3:", Secrets: []string{"3"}},
		{Name: "v6", Hosts: []string{"localhost"}, KeyPrefix: "4:", Secrets: []string{"4"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	ts := f.v.tenants.Load()
	for host, want := range map[string]string{
		"example.com":            "apex",
		"EXAMPLE.com:8443":       "apex",
		"example.com.":           "apex",
		"shop.example.com":       "wild",
		"a.b.example.com":        "wild", // any depth, as Nginx's server_name
		"x.eu.example.com":       "deep", // the longest wildcard wins
		"exact.eu.example.com":   "deep",
		"eu.example.com":         "wild",
		"localhost:80":           "v6",
		"example.org":            "",
		"notexample.com":         "",
		".example.com":           "",
		"":                       "",
		"example.com:80x":        "",
		"exa mple.com":           "",
		"[::1]:80":               "",
		strings.Repeat("a", 300): "",
	} {
		got := ""
		if tn := ts.lookup(host); tn != nil {
			got = tn.name
		}
		if got != want {
			t.Errorf("lookup(%q) = %q, want %q", host, got, want)
		}
	}
	if n := testing.AllocsPerRun(100, func() { ts.lookup("Shop.Example.com:443") }); n != 0 {
		t.Errorf("lookup allocates %v times", n)
	}
}

// tenantFixture is two tenants on one Redis, as twoTenants describes them.
func tenantFixture(t *testing.T) *fixture {
	t.Helper()
	f := newFixture(t, func(c *Config) { c.CacheTTL = time.Hour })
	ts, err := ParseTenants([]byte(twoTenants))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.v.SetTenants(ts); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) tenantSession(prefix, sid, json string) {
	f.t.Helper()
	if err := f.rdb.Set(context.Background(), prefix+sid, json, time.Hour).Err(); err != nil {
		f.t.Fatal(err)
	}
}

func TestTenantsAreSeparate(t *testing.T) {
	f := tenantFixture(t)
	// The same session id exists under both tenants, for different users.
	sid := "samesamesamesamesamesamesamesame"
	f.tenantSession("sessions:acme:web:", sid, aliceJSON)
	f.tenantSession("sessions:globex:portal:", sid, `{"cookie":{},"user":{"id":"bob","name":"Bob"}}`)
	acmeCookie := "connect.sid=" + Sign(sid, "acme-secret")
	globexCookie := "globex.sid=" + Sign(sid, "globex-secret")
	globexOld := "globex.sid=" + Sign(sid, "globex-old")

	for _, tc := range []struct {
		name, host, cookie string
		status             int
		user, reason       string
	}{
		{"acme's cookie on acme", "acme.test", acmeCookie, 200, "alice", ""},
		{"on an acme subdomain", "shop.acme.test", acmeCookie, 200, "alice", ""},
		{"globex's cookie on globex", "globex.test", globexCookie, 200, "bob", ""},
		{"globex's rotated secret", "globex.test", globexOld, 200, "bob", ""},
		{"acme's cookie replayed on globex, renamed", "globex.test", "globex.sid=" + Sign(sid, "acme-secret"), 401, "", "bad_signature"},
		{"acme's cookie replayed on globex", "globex.test", acmeCookie, 401, "", "no_cookie"},
		{"globex's cookie replayed on acme, renamed", "acme.test", "connect.sid=" + Sign(sid, "globex-secret"), 401, "", "bad_signature"},
		{"unknown host", "evil.test", acmeCookie, 403, "", "unknown_host"},
		{"no host", "", acmeCookie, 403, "", "unknown_host"},
		// Again, now that both sessions are cached under the same id.
		{"acme again, cached", "acme.test", acmeCookie, 200, "alice", ""},
		{"globex again, cached", "globex.test", globexCookie, 200, "bob", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reason := Reason(tc.reason)
			if reason == "" {
				reason = ReasonOK
			}
			before := testutil.ToFloat64(f.v.metrics.requests[reason])
			req, _ := http.NewRequest(http.MethodGet, "/verify", nil)
			req.Host = "authz.internal"
			req.Header.Set("X-Forwarded-Host", tc.host)
			req.Header.Set("Cookie", tc.cookie)
			w := &discardWriter{h: make(http.Header)}
			f.v.ServeHTTP(w, req)
			if w.code != tc.status || w.h.Get("X-Auth-User") != tc.user {
				t.Fatalf("%d %q, want %d %q", w.code, w.h.Get("X-Auth-User"), tc.status, tc.user)
			}
			if testutil.ToFloat64(f.v.metrics.requests[reason]) != before+1 {
				t.Errorf("reason is not %s", reason)
			}
		})
	}
	// Each tenant's login page.
	req, _ := http.NewRequest(http.MethodGet, "/verify", nil)
	req.Header.Set("X-Forwarded-Host", "globex.test")
	req.Header.Set("X-Original-URI", "/x")
	w := &discardWriter{h: make(http.Header)}
	f.v.ServeHTTP(w, req)
	if got := w.h.Get("X-Auth-Redirect"); got != "https://globex.test/signin?rd=%2Fx" {
		t.Errorf("globex's redirect = %q", got)
	}
}

func TestKeysChangedFindsTheTenant(t *testing.T) {
	f := tenantFixture(t)
	ts := f.v.tenants.Load()
	for key, want := range map[string]string{
		"sessions:acme:web:abcdefghijklmnopqrstuvwxyz012345":      "acme/abcdefghijklmnopqrstuvwxyz012345",
		"sessions:globex:portal:abcdefghijklmnop":                 "globex/abcdefghijklmnop",
		"sessions:acme:web:short":                                 "",
		"sessions:initech:web:abcdefghijklmnopqrstuvwxyz012345":   "",
		"authz:revoked:sessions:acme:web:abcdefghijklmnopqrstuvw": "",
	} {
		got := ""
		if tn, sid, ok := ts.tenantOfKey(key); ok {
			got = tn.name + "/" + sid
		}
		if got != want {
			t.Errorf("tenantOfKey(%q) = %q, want %q", key, got, want)
		}
	}
}

func TestReloadTenants(t *testing.T) {
	f := tenantFixture(t)
	path := filepath.Join(t.TempDir(), "tenants.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(twoTenants + "  - name: initech\n    hosts: [initech.test]\n    secrets: [initech-secret]\n")
	if n, err := f.v.ReloadTenants(path); err != nil || n != 3 {
		t.Fatalf("ReloadTenants = %d, %v", n, err)
	}
	if f.v.tenants.Load().lookup("initech.test") == nil {
		t.Fatal("the new tenant is not served")
	}
	write(twoTenants + "  - name: broken\n    hosts: [globex.test]\n    secrets: [acme-secret]\n")
	_, err := f.v.ReloadTenants(path)
	if err == nil || !strings.Contains(err.Error(), path+`: line 17: tenant "broken": host "globex.test" is also`) {
		t.Fatalf("broken file: %v", err)
	}
	if f.v.tenants.Load().lookup("initech.test") == nil {
		t.Fatal("a broken file replaced the tenants in use")
	}
	ok := testutil.ToFloat64(f.v.metrics.reloads.WithLabelValues("ok"))
	bad := testutil.ToFloat64(f.v.metrics.reloads.WithLabelValues("error"))
	if ok != 1 || bad != 1 {
		t.Errorf("reloads ok=%v error=%v, want 1 and 1", ok, bad)
	}
	if got := testutil.ToFloat64(f.v.metrics.tenants); got != 3 {
		t.Errorf("authz_tenants = %v, want 3", got)
	}
}

// BenchmarkVerifyTenants compares the cache-hit path with one tenant and
// with many: the host lookup is a map lookup, so the cost should not grow.
func BenchmarkVerifyTenants(b *testing.B) {
	for _, n := range []int{0, 1, 1000} {
		b.Run(fmt.Sprintf("tenants=%d", n), func(b *testing.B) {
			f := newFixture(b, func(c *Config) { c.CacheTTL = time.Hour })
			var ts []Tenant
			for i := range n {
				ts = append(ts, Tenant{
					Name:      fmt.Sprintf("t%d", i),
					Hosts:     []string{fmt.Sprintf("t%d.example.com", i), fmt.Sprintf("*.t%d.example.com", i)},
					KeyPrefix: fmt.Sprintf("sessions:t%d:web:", i),
					Secrets:   []string{fmt.Sprintf("secret-%d", i)},
				})
			}
			// n=0: no tenant file, every host served alike.
			prefix, secret := "sess:", testSecret
			i := n / 2 // a tenant in the middle, reached through a wildcard
			if n > 0 {
				if err := f.v.SetTenants(ts); err != nil {
					b.Fatal(err)
				}
				prefix, secret = fmt.Sprintf("sessions:t%d:web:", i), fmt.Sprintf("secret-%d", i)
			}
			sid := "benchbenchbenchbenchbenchbench00"
			f.tenantSession(prefix, sid, aliceJSON)
			req := benchRequest(Sign(sid, secret))
			req.Header.Set("X-Forwarded-Host", fmt.Sprintf("shop.t%d.example.com", i))
			w := &discardWriter{h: make(http.Header)}
			f.v.ServeHTTP(w, req)
			if w.code != 200 {
				b.Fatalf("status %d", w.code)
			}
			runtime.GC() // not the setup's garbage in the timed loop
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				clear(w.h)
				f.v.ServeHTTP(w, req)
			}
		})
	}
}

func TestTenantTokensStayInTheirTenant(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.CacheTTL = time.Hour; c.BearerTokens = true })
	ts, err := ParseTenants([]byte(twoTenants))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.v.SetTenants(ts); err != nil {
		t.Fatal(err)
	}
	// Stored under acme's token prefix, as `authz token create --tenant
	// acme` stores it (package tokens checks that it does).
	tok := NewToken()
	if err := f.rdb.Set(context.Background(), "authz:token:acme:"+TokenHash(tok), `{"user":{"id":"svc"}}`, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		host   string
		status int
	}{{"acme.test", 200}, {"globex.test", 401}, {"acme.test", 200}, {"globex.test", 401}} {
		req, _ := http.NewRequest(http.MethodGet, "/verify", nil)
		req.Header.Set("X-Forwarded-Host", tc.host)
		req.Header.Set("Authorization", "Bearer "+tok)
		w := &discardWriter{h: make(http.Header)}
		f.v.ServeHTTP(w, req)
		if w.code != tc.status {
			t.Errorf("acme's token on %s: %d, want %d", tc.host, w.code, tc.status)
		}
	}
	// Tracking reports a token key deleted by hand: the cached answer goes.
	cached := func() bool { return f.v.cache.get([]byte("~"+TokenHash(tok)), time.Now().UnixNano()) != nil }
	if !cached() {
		t.Fatal("the token's answer is not cached")
	}
	f.v.KeysChanged([]string{"authz:token:acme:" + TokenHash(tok)})
	if cached() {
		t.Error("KeysChanged for the token's key left its answer cached")
	}
}

func TestShippedTenantFileLoads(t *testing.T) {
	ts, err := LoadTenants("../examples/tenants.yaml")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, nil)
	if err := f.v.SetTenants(ts); err != nil {
		t.Fatalf("examples/tenants.yaml does not pass the checks: %v", err)
	}
}

func TestRequestHostReadsOneHeaderOnly(t *testing.T) {
	for _, tc := range []struct {
		mode, xfh, xou, host, want string
	}{
		{HostFromForwardedHost, "a.test", "https://b.test/x", "c.test", "a.test"},
		{HostFromForwardedHost, "a.test, proxy.test", "", "c.test", "a.test, proxy.test"}, // a list is no host
		{HostFromOriginalURL, "", "https://a.test:1@b.test/", "c.test", ""},               // userinfo: refused
		{HostFromForwardedHost, "", "https://b.test/x", "c.test", "c.test"},               // never X-Original-URL: a client could send it
		{HostFromOriginalURL, "a.test", "https://b.test:8443/x?y", "c.test", "b.test:8443"},
		{HostFromOriginalURL, "a.test", "", "c.test", "c.test"}, // never X-Forwarded-Host: ingress-nginx passes a client's on
		{HostFromOriginalURL, "", "%zz", "c.test", ""},
		{HostFromHost, "a.test", "https://b.test/", "c.test", "c.test"},
	} {
		f := &Verifier{cfg: Config{HostHeader: tc.mode}}
		if got := f.requestHost(tc.xfh, tc.xou, tc.host); got != tc.want {
			t.Errorf("%s: requestHost(%q, %q, %q) = %q, want %q", tc.mode, tc.xfh, tc.xou, tc.host, got, tc.want)
		}
	}
}

func TestTenantPinnedByTheVerifyURL(t *testing.T) {
	f := tenantFixture(t)
	sid := "pinnedpinnedpinnedpinnedpinned00"
	f.tenantSession("sessions:acme:web:", sid, aliceJSON)
	f.tenantSession("sessions:globex:portal:", sid, `{"cookie":{},"user":{"id":"bob"}}`)
	acme := "connect.sid=" + Sign(sid, "acme-secret")
	globex := "globex.sid=" + Sign(sid, "globex-secret")
	for _, tc := range []struct {
		name, query, host, cookie string
		want                      Reason
	}{
		{"tenant= wins over the host", "tenant=globex", "acme.test", globex, ReasonOK},
		{"checked as the named tenant", "tenant=globex", "acme.test", acme, ReasonNoCookie},
		{"with rules", "tenant=acme&allow_users=alice", "anything.test", acme, ReasonOK},
		{"an unknown tenant is a bad rule", "tenant=initech", "acme.test", acme, ReasonBadRule},
		{"two tenants is a bad rule", "tenant=acme&tenant=globex", "acme.test", acme, ReasonBadRule},
		{"a host list picks no tenant", "", "globex.test,x.acme.test", globex, ReasonUnknownHost},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := f.decide(Query{RawQuery: tc.query, Host: tc.host, Cookies: []string{tc.cookie}})
			if a.Reason != tc.want {
				t.Fatalf("reason %q, want %q", a.Reason, tc.want)
			}
		})
	}
}

// sharedTenants is the multi-tenant Express shape: one secret and one cookie
// name for every customer, a key prefix each.
const sharedTenants = `
defaults:
  key_prefix: "sessions:{tenant}:{app}:"
  app: web
  secrets: [shared-secret]
tenants:
  - name: acme
    hosts: [acme.test]
  - name: globex
    hosts: [globex.test]
`

func TestTenantsSharingASecretAndCookieName(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.CacheTTL = time.Hour })
	ts, err := ParseTenants([]byte(sharedTenants))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.v.SetTenants(ts); err != nil {
		t.Fatalf("tenants sharing a secret and cookie name refused: %v", err)
	}
	// Without a tenant file-level secret, both fall back to the global one:
	// served too.
	if err := f.v.SetTenants([]Tenant{
		{Name: "a", Hosts: []string{"a.test"}, KeyPrefix: "s:a:"},
		{Name: "b", Hosts: []string{"b.test"}, KeyPrefix: "s:b:"},
	}); err != nil {
		t.Fatalf("tenants both on the global secret refused: %v", err)
	}
	if err := f.v.SetTenants(ts); err != nil {
		t.Fatal(err)
	}

	alice := "aliceAliceAliceAliceAliceAlice00"
	bob42 := "globex42globex42globex42globex42"
	acme42 := "acme42acme42acme42acme42acme42ac"
	f.tenantSession("sessions:acme:web:", alice, aliceJSON)
	f.tenantSession("sessions:acme:web:", acme42, `{"cookie":{},"passport":{"user":{"id":"42"}}}`)
	f.tenantSession("sessions:globex:web:", bob42, `{"cookie":{},"passport":{"user":{"id":"42"}}}`)
	anon := "anonAnonAnonAnonAnonAnonAnonAnon"
	f.tenantSession("sessions:globex:web:", anon, `{"cookie":{"originalMaxAge":3600000}}`)
	cookie := func(sid string) string { return "connect.sid=" + Sign(sid, "shared-secret") }
	for _, tc := range []struct {
		name, host, sid string
		want            Reason
		user            string
	}{
		{"acme's cookie on acme", "acme.test", alice, ReasonOK, "alice"},
		{"acme's cookie on globex", "globex.test", alice, ReasonNotFound, ""},
		{"acme's 42 on globex, where 42 is signed in too", "globex.test", acme42, ReasonNotFound, ""},
		{"globex's 42 on globex", "globex.test", bob42, ReasonOK, "42"},
		{"globex's 42 on acme", "acme.test", bob42, ReasonNotFound, ""},
		{"an anonymous session", "globex.test", anon, ReasonAnonymous, ""},
		// Cached now under their own tenants: the cache does not cross either.
		{"acme's cookie on globex, cached on acme", "globex.test", alice, ReasonNotFound, ""},
		{"globex's 42 on acme, cached on globex", "acme.test", bob42, ReasonNotFound, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := f.decide(Query{Host: tc.host, Cookies: []string{cookie(tc.sid)}})
			if a.Reason != tc.want || (tc.want == ReasonOK && userOf(a.Session) != tc.user) {
				t.Fatalf("reason %q user %q, want %q %q", a.Reason, userOf(a.Session), tc.want, tc.user)
			}
		})
	}
}
