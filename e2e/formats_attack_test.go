package e2e

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
)

// Attacks on the cookie formats of docs/formats.md, told through the real
// proxies (the shipped nginx config, and proxies/Caddyfile) in front of two
// authz instances and the real Node apps of examples/: duplicated session
// cookies, oversized ones, a flood of forged ones, cookie-session's
// signature cookie misspelled or swapped, and a logged-out cookie replayed
// under other host names. Whatever the attacker sends, the answer is the
// valid cookie's user or the login page (or the proxy's own 4xx), never
// another user, never a 5xx, and afterwards a valid user still passes on
// both instances.

// rawWho sends GET / through nginx with each of cookies as its own Cookie
// header and extra headers as name, value pairs, and returns the user the
// app got, or the status nginx answered instead.
func (s *appSite) rawWho(t *testing.T, cookies []string, header ...string) string {
	t.Helper()
	var hs []string
	for _, c := range cookies[1:] {
		hs = append(hs, "Cookie", c)
	}
	r := s.site.get("/", cookies[0], append(hs, header...)...)
	return whoOf(t, r)
}

// whoOf is the user the echo app got in r, or r's status when it is not
// 200.
func whoOf(t *testing.T, r response) string {
	t.Helper()
	if r.status != http.StatusOK {
		return strconv.Itoa(r.status)
	}
	return strings.Join(headerValues(r.echoed(t).Header, "X-Auth-User"), ",")
}

// caddyWho is rawWho through a Caddy at addr.
func caddyWho(t *testing.T, client *http.Client, addr string, cookies []string) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	for _, c := range cookies {
		req.Header["Cookie"] = append(req.Header["Cookie"], c)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET through Caddy: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return strconv.Itoa(resp.StatusCode)
	}
	var e testenv.Echoed
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("upstream answer through Caddy: %v: %s", err, b)
	}
	return strings.Join(headerValues(e.Header, "X-Auth-User"), ",")
}

// startCaddy puts proxies/Caddyfile in front of the site's first instance.
func (s *appSite) startCaddy(t *testing.T) *testenv.Caddy {
	t.Helper()
	echo := testenv.StartEcho(t)
	return testenv.StartCaddy(t, map[string]string{"AUTHZ_ADDR": s.instances[0].Addr, "APP_ADDR": echo.Addr, "LOGIN_ADDR": s.login.Addr})
}

// stillServes checks that valid still passes as user on both instances
// and, several times, through nginx (so both upstream servers answer).
func (s *appSite) stillServes(t *testing.T, valid jar, user, after string) {
	t.Helper()
	s.allowedEverywhere(t, valid, user, after)
	for range 4 {
		if got := s.who(t, valid); got != user {
			t.Errorf("%s: nginx gave the app %q, want %s", after, got, user)
		}
	}
}

// okOrLogin reports whether got is user or the way to the login page.
func okOrLogin(got, user string) bool {
	return got == user || got == strconv.Itoa(toLogin)
}

// forgedClientSession is a client-sessions cookie of the right shape (IV,
// ciphertext of n bytes, createdAt, duration, MAC, all canonical) signed
// by no one.
func forgedClientSession(n int) string {
	b := func(k int) string {
		p := make([]byte, k)
		rand.Read(p)
		return base64.RawURLEncoding.EncodeToString(p)
	}
	return b(16) + "." + b(n) + "." + strconv.FormatInt(time.Now().UnixMilli(), 10) + ".3600000." + b(32)
}

func TestFormatsAttackDuplicateSessionCookies(t *testing.T) {
	t.Parallel()
	for _, app := range nodeApps {
		t.Run(app.format, func(t *testing.T) {
			t.Parallel()
			s := newAppSite(t, app)
			c := s.startCaddy(t)
			alice, bob := s.signIn(t, "alice"), s.signIn(t, "bob")
			forged := app.tamper(alice)
			// For cookie-session, bob's value under alice's signature
			// cookie: the forgery that names another user. (For the
			// other formats bob's value is bob's valid cookie.)
			swapped := jar{app.cookie: bob[app.cookie]}
			valid := app.cookie + "=" + alice[app.cookie]
			sig := ""
			if app.format == "cookie-session" {
				sig = app.cookie + ".sig=" + alice[app.cookie+".sig"]
			}
			bads := []string{app.cookie + "=" + forged[app.cookie]}
			if app.format == "cookie-session" {
				bads = append(bads, app.cookie+"="+swapped[app.cookie])
			}
			for _, bad := range bads {
				for _, tc := range []struct {
					what    string
					cookies []string
				}{
					{"valid then forged, one header", []string{join(valid, bad, sig)}},
					{"forged then valid, one header", []string{join(bad, valid, sig)}},
					{"valid then forged, two headers", []string{join(valid, sig), bad}},
					{"forged then valid, two headers", []string{bad, join(valid, sig)}},
					{"signature first, forged in its own header", []string{join(sig, valid), join(bad, sig)}},
					{"forged, then the signature and valid in another header", []string{bad, join(sig, valid)}},
				} {
					got := s.rawWho(t, tc.cookies)
					if !okOrLogin(got, "alice") {
						t.Errorf("nginx, %s (%q): %s, want alice or the login page", tc.what, tc.cookies, got)
					}
					if got := caddyWho(t, s.client, c.Addr, tc.cookies); !okOrLogin(got, "alice") {
						t.Errorf("Caddy, %s (%q): %s, want alice or the login page", tc.what, tc.cookies, got)
					}
				}
			}
			s.stillServes(t, alice, "alice", "after the duplicated cookies")
			s.stillServes(t, bob, "bob", "after the duplicated cookies")
		})
	}
}

// join is the non-empty cookies as one Cookie header.
func join(cookies ...string) string {
	return strings.Join(slices.DeleteFunc(cookies, func(c string) bool { return c == "" }), "; ")
}

func TestFormatsAttackOversizedCookies(t *testing.T) {
	t.Parallel()
	t.Run("client-sessions", func(t *testing.T) {
		t.Parallel()
		s := newAppSite(t, clientSessionsApp)
		c := s.startCaddy(t)
		alice := s.signIn(t, "alice")
		// Just over --max-cookie-bytes (4096), about 7 KB (under Nginx's
		// 8k header buffer), and a 16 KB header (over it).
		over := forgedClientSession(3000)
		for len(over) <= 4096 {
			over = forgedClientSession(3000 + (4097-len(over))*3/4 + 2)
		}
		for _, tc := range []struct {
			what   string
			cookie string
		}{
			{fmt.Sprintf("%d bytes", len(over)), over},
			{"~7 KB", forgedClientSession(5200)},
			{"16 KB", forgedClientSession(12000)},
			{"alice's valid cookie padded to 16 KB by another", alice.header() + "; pad=" + strings.Repeat("a", 16<<10)},
		} {
			cookie := tc.cookie
			if !strings.Contains(cookie, "=") {
				cookie = "session=" + cookie
			}
			for _, front := range []string{"nginx", "Caddy"} {
				var got string
				if front == "nginx" {
					got = s.rawWho(t, []string{cookie})
				} else {
					got = caddyWho(t, s.client, c.Addr, []string{cookie})
				}
				if got != strconv.Itoa(toLogin) && got != "400" && got != "431" {
					t.Errorf("%s, %s client-sessions cookie: %s, want the login page or 400/431", front, tc.what, got)
				} else {
					t.Logf("%s, %s client-sessions cookie: %s", front, tc.what, got)
				}
			}
		}
		s.stillServes(t, alice, "alice", "after oversized client-sessions cookies")
		if n := reason(t, s.instances[0], "cookie_too_large") + reason(t, s.instances[1], "cookie_too_large"); n == 0 {
			t.Errorf("no refusal counted as cookie_too_large")
		}
	})
	t.Run("cookie-session", func(t *testing.T) {
		t.Parallel()
		s := newAppSite(t, cookieSessionApp)
		alice := s.signIn(t, "alice")
		content, _ := json.Marshal(map[string]any{"username": "alice", "roles": []string{"admin"}, "rev": 0, "pad": strings.Repeat("x", 5000)})
		for _, v := range []string{base64.StdEncoding.EncodeToString(content), strings.Repeat("A", 4100)} {
			got := s.rawWho(t, []string{"session=" + v + "; session.sig=" + alice["session.sig"]})
			if got != strconv.Itoa(toLogin) && got != "400" && got != "431" {
				t.Errorf("an oversized cookie-session value (%d bytes): %s, want the login page or 400/431", len(v), got)
			}
		}
		s.stillServes(t, alice, "alice", "after oversized cookie-session values")
		if n := reason(t, s.instances[0], "cookie_too_large") + reason(t, s.instances[1], "cookie_too_large"); n == 0 {
			t.Errorf("no refusal counted as cookie_too_large")
		}
	})
}

// A flood of forged client-sessions cookies, every one distinct and of the
// right shape, does not make a signed-in user's requests fail.
func TestFormatsAttackFloodOfForgedClientSessions(t *testing.T) {
	t.Parallel()
	s := newAppSite(t, clientSessionsApp)
	alice := s.signIn(t, "alice")
	const forged, workers = 2000, 8
	jobs := make(chan string)
	var mu sync.Mutex
	bad := map[string]int{}
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for cookie := range jobs {
				got := statusOf(s, "session="+cookie)
				if got != toLogin {
					mu.Lock()
					bad[strconv.Itoa(got)]++
					mu.Unlock()
				}
			}
		}()
	}
	done := make(chan struct{})
	var lat []time.Duration
	fails := map[string]int{}
	go func() {
		defer close(done)
		for {
			start := time.Now()
			got := statusOf(s, alice.header())
			lat = append(lat, time.Since(start))
			if got != http.StatusOK {
				fails[strconv.Itoa(got)]++
			}
			mu.Lock()
			stop := bad["stop"] > 0
			mu.Unlock()
			if stop {
				return
			}
		}
	}()
	start := time.Now()
	for range forged {
		jobs <- forgedClientSession(120)
	}
	close(jobs)
	wg.Wait()
	took := time.Since(start)
	mu.Lock()
	bad["stop"] = 1
	mu.Unlock()
	<-done
	delete(bad, "stop")
	if len(bad) != 0 {
		t.Errorf("forged cookies answered other than 302: %v", bad)
	}
	if len(fails) != 0 {
		t.Errorf("alice's requests during the flood failed: %v of %d", fails, len(lat))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	if len(lat) > 0 {
		t.Logf("%d forged cookies in %v (%.0f/s, %d workers); alice: %d requests, p50 %v, p99 %v, max %v",
			forged, took.Round(time.Millisecond), forged/took.Seconds(), workers, len(lat),
			lat[len(lat)/2], lat[len(lat)*99/100], lat[len(lat)-1])
	}
	s.stillServes(t, alice, "alice", "after the flood")
}

// statusOf is the status nginx answers GET / with cookie.
func statusOf(s *appSite, cookie string) int {
	req, _ := http.NewRequest("GET", s.nginx.URL("/"), nil)
	req.Header.Set("Cookie", cookie)
	resp, err := s.client.Do(req)
	if err != nil {
		return -1
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

func TestFormatsAttackCookieSessionSignature(t *testing.T) {
	t.Parallel()
	s := newAppSite(t, cookieSessionApp)
	alice, bob := s.signIn(t, "alice"), s.signIn(t, "bob")
	v, sig, bsig := alice["session"], alice["session.sig"], bob["session.sig"]
	for _, tc := range []struct {
		what, cookie string
		want         []string // acceptable answers
	}{
		{"alice's value with bob's .sig", "session=" + v + "; session.sig=" + bsig, []string{"302"}},
		{"bob's value with alice's .sig", "session=" + bob["session"] + "; session.sig=" + sig, []string{"302"}},
		{"Session.sig", "session=" + v + "; Session.sig=" + sig, []string{"302"}},
		{"SESSION.SIG", "session=" + v + "; SESSION.SIG=" + sig, []string{"302"}},
		{"Session=", "Session=" + v + "; session.sig=" + sig, []string{"302"}},
		{"Session.sig first, then bob's real one", "Session.sig=" + sig + "; session=" + v + "; session.sig=" + bsig, []string{"302"}},
		// cookies 0.9 strips the quotes before checking: alice's own.
		{"value quoted", `session="` + v + `"; session.sig=` + sig, []string{"alice", "302"}},
		{"sig quoted", `session=` + v + `; session.sig="` + sig + `"`, []string{"alice", "302"}},
		{"value half-quoted", `session="` + v + `; session.sig=` + sig, []string{"302"}},
		{"value with a space", `session= ` + v + `; session.sig=` + sig, []string{"302"}},
		{"empty value, bob's after", `session=; session=` + bob["session"] + `; session.sig=` + bsig, []string{"302", "bob"}},
	} {
		if got := s.rawWho(t, []string{tc.cookie}); !slices.Contains(tc.want, got) {
			t.Errorf("%s: %s, want one of %v", tc.what, got, tc.want)
		} else {
			t.Logf("%s: %s", tc.what, got)
		}
	}
	s.stillServes(t, alice, "alice", "after the forged signatures")
	s.stillServes(t, bob, "bob", "after the forged signatures")
}

// After authz logout --user alice, alice's old cookie does not come back
// under another host name, whatever the client says the host is.
func TestFormatsAttackLogoutReplayOtherHost(t *testing.T) {
	t.Parallel()
	for _, app := range nodeApps {
		t.Run(app.format, func(t *testing.T) {
			t.Parallel()
			s := newAppSite(t, app)
			old, bob := s.signIn(t, "alice"), s.signIn(t, "bob")
			s.allowedEverywhere(t, old, "alice", "before the logout")
			s.cli(t, "logout", "--user", "alice")
			s.deniedEverywhere(t, old, "after logout --user")
			hosts := [][]string{
				{"X-Forwarded-Host", "globex.test"},
				{"X-Forwarded-Host", "acme.test, globex.test"},
				{"Host", "LOCALHOST"},
				{"Host", "Acme.Test"},
				{"Host", "acme.test."},
				{"Host", "globex.test", "X-Forwarded-Host", "ACME.TEST"},
				{"X-Original-Host", "globex.test", "Forwarded", "host=globex.test"},
			}
			for _, h := range hosts {
				if got := s.rawWho(t, []string{old.header()}, h...); got == "alice" || got[0] == '5' {
					t.Errorf("the logged-out cookie with %q through nginx: %s", h, got)
				}
				// And straight at each instance, as a client that can reach
				// authz could send them.
				for i, a := range s.instances {
					req, _ := http.NewRequest("GET", "http://"+a.Addr+"/verify", nil)
					req.Header.Set("Cookie", old.header())
					for k := 0; k+1 < len(h); k += 2 {
						if h[k] == "Host" {
							req.Host = h[k+1]
						} else {
							req.Header.Set(h[k], h[k+1])
						}
					}
					resp, err := s.client.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					resp.Body.Close()
					if resp.StatusCode == http.StatusOK || resp.StatusCode >= 500 {
						t.Errorf("the logged-out cookie with %q at instance %d: %d", h, i+1, resp.StatusCode)
					}
				}
			}
			s.stillServes(t, bob, "bob", "after the replays")
		})
	}
}

// Two tenants whose apps keep client-sessions cookies. Under one secret
// (docs/tenants.md allowed it) acme's alice, logged out everywhere in acme,
// replayed her old cookie with globex's host name and was globex's alice:
// the cookie carries its session, so nothing but the signature ties it to
// a tenant. authz now refuses such a tenant file; with a secret per tenant
// the replay is refused under every spelling of the host.
func TestFormatsAttackLogoutReplayOtherTenant(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	tenants := func(acmeSecret, globexSecret string) string {
		file := filepath.Join(t.TempDir(), "tenants.yaml")
		if err := os.WriteFile(file, []byte(`
defaults:
  key_prefix: "sessions:{tenant}:{app}:"
  app: web
  user_paths: [username]
  format: client-sessions
  cookie_name: session
  revision_path: rev
tenants:
  - name: acme
    hosts: [acme.test]
    secrets: ["`+acmeSecret+`"]
  - name: globex
    hosts: [globex.test]
    secrets: ["`+globexSecret+`"]
`), 0o600); err != nil {
			t.Fatal(err)
		}
		return file
	}
	const shared = "one client-sessions secret for every tenant"
	if out, err := tenantCLI(t, r.URL(), tenants(shared, shared), "logout", "--user", "alice", "--tenant", "acme"); err == nil || !strings.Contains(out, "shares a client-sessions secret") {
		t.Errorf("a tenant file where two client-sessions tenants share a secret: %v, want it refused:\n%s", err, out)
	}

	const acmeSecret, globexSecret = "acme's client-sessions secret", "globex's client-sessions secret"
	file := tenants(acmeSecret, globexSecret)
	acme := clientSessionsApp.start(t, r.URL(), acmeSecret, 0, "TENANT=acme")
	globex := clientSessionsApp.start(t, r.URL(), globexSecret, 0, "TENANT=globex")
	a := testenv.StartAuthz(t, r.URL(), "--tenants", file, "--cache-ttl", "1h", "--tracking=false")
	echo := testenv.StartEcho(t)
	n := testenv.StartNginx(t, map[string]string{"AUTHZ_ADDR": a.Addr, "APP_ADDR": echo.Addr, "LOGIN_ADDR": acme.Addr})
	testenv.WaitFor(t, 10*time.Second, "the logout subscription", func() bool {
		return metric(t, a, "authz_logout_subscribed") == 1
	})
	s := &site{t: t, redis: r, rdb: r.Client(), authz: a, nginx: n, client: newClient()}
	who := func(j jar, header ...string) string {
		t.Helper()
		return whoOf(t, s.get("/app/", j.header(), header...))
	}
	aliceAcme := appSignIn(t, clientSessionsApp, acme.URL("/login"), "alice")
	aliceGlobex := appSignIn(t, clientSessionsApp, globex.URL("/login"), "alice")
	if got := who(aliceAcme, "Host", "acme.test"); got != "alice" {
		t.Fatalf("acme's alice on acme: %s", got)
	}
	if got := who(aliceGlobex, "Host", "globex.test"); got != "alice" {
		t.Fatalf("globex's alice on globex: %s", got)
	}
	if out, err := tenantCLI(t, r.URL(), file, "logout", "--user", "alice", "--tenant", "acme"); err != nil {
		t.Fatalf("authz logout --user alice --tenant acme: %v\n%s", err, out)
	}
	testenv.WaitFor(t, 2*time.Second, "acme's alice to be refused on acme", func() bool {
		return who(aliceAcme, "Host", "acme.test") == "302"
	})
	for _, h := range [][]string{
		{"Host", "globex.test"},
		{"Host", "GLOBEX.TEST"},
		{"Host", "ACME.TEST"},
		{"Host", "acme.test", "X-Forwarded-Host", "globex.test"},
	} {
		if got := who(aliceAcme, h...); got == "alice" || got[0] == '5' {
			t.Errorf("acme's logged-out cookie with %q: %s, want it refused", h, got)
		}
	}
	if got := who(aliceGlobex, "Host", "globex.test"); got != "alice" {
		t.Errorf("globex's alice after acme's logout: %s, want alice", got)
	}
}
