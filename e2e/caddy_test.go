package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/authz/authz/internal/testenv"
)

// TestBehindCaddy runs the shipped proxies/Caddyfile (forward_auth) in
// front of authz: the same contract as behind Nginx, with Caddy's
// X-Forwarded-Uri carrying the original URI.
func TestBehindCaddy(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	a := testenv.StartAuthz(t, r.URL(), "--header", "X-Auth-Email=passport.user.email", "--header", "X-Auth-Roles=passport.user.roles", "--header", "X-Auth-Name=passport.user.name")
	app := testenv.StartEcho(t)
	c := testenv.StartCaddy(t, map[string]string{"AUTHZ_ADDR": a.Addr, "APP_ADDR": app.Addr, "LOGIN_ADDR": app.Addr})
	s := &site{t: t, redis: r, rdb: r.Client(), client: newClient()}
	sess := s.signIn(alice)

	get := func(uri, cookie string, header ...string) (*http.Response, testenv.Echoed) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+c.Addr+uri, nil)
		if cookie != "" {
			req.Header.Set("Cookie", cookie)
		}
		for i := 0; i+1 < len(header); i += 2 {
			req.Header[header[i]] = append(req.Header[header[i]], header[i+1])
		}
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e testenv.Echoed
		if resp.StatusCode == 200 {
			b, _ := io.ReadAll(resp.Body)
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("upstream answer: %v: %s", err, b)
			}
		}
		return resp, e
	}

	resp, got := get("/orders?page=2", sess.cookie, "X-Auth-User", "mallory")
	if resp.StatusCode != 200 {
		t.Fatalf("signed in through Caddy: status %d, want 200", resp.StatusCode)
	}
	if v := headerValues(got.Header, "X-Auth-User"); !slices.Equal(v, []string{"alice"}) {
		t.Errorf("upstream got X-Auth-User %q, want [alice] (and never the forged one)", v)
	}
	if v := headerValues(got.Header, "X-Auth-Email"); !slices.Equal(v, []string{"alice@example.com"}) {
		t.Errorf("upstream got X-Auth-Email %q", v)
	}

	for name, cookie := range map[string]string{"no cookie": "", "tampered": sess.cookie + "x"} {
		// A client's X-Original-URI or -URL must not stand in for the URI
		// Caddy reports.
		resp, _ := get("/orders?page=2", cookie, "X-Original-URI", "/forged", "X-Original-URL", "http://x/forged")
		if loc := resp.Header.Get("Location"); resp.StatusCode != 302 || loc != "/login?rd=%2Forders%3Fpage%3D2" {
			t.Errorf("%s: %d to %q; want 302 to /login?rd=%%2Forders%%3Fpage%%3D2", name, resp.StatusCode, loc)
		}
	}

	// Every spelling of every identity header, forged: the upstream gets
	// authz's values only, and no header authz did not send (the session
	// has no name: Caddy 2.6's copy_headers sent a literal placeholder).
	forged := forgedHeaders()
	for _, tc := range []struct {
		uri, cookie string
		want        map[string]string
	}{
		{"/orders", sess.cookie, map[string]string{"X-Auth-User": "alice", "X-Auth-Email": "alice@example.com", "X-Auth-Roles": "admin"}},
		{"/login", "", nil},
	} {
		resp, got := get(tc.uri, tc.cookie, append(forged, "X-Forwarded-Host", "evil.example")...)
		if resp.StatusCode != 200 {
			t.Fatalf("%s with forged headers: status %d", tc.uri, resp.StatusCode)
		}
		wantOnlyIdentity(t, got.Header, tc.want)
		if v := got.Header.Values("X-Forwarded-Host"); len(v) != 1 || v[0] != c.Addr {
			t.Errorf("%s: upstream got X-Forwarded-Host %q, want [%s]", tc.uri, v, c.Addr)
		}
	}

	// authz's own API tokens stop at the proxy, as in nginx/: a service
	// must not be able to replay them. Other credentials pass.
	for _, uri := range []string{"/orders", "/login"} {
		for _, auth := range []string{"Bearer azt_0123456789abcdef0123", "bearer\tazt_0123456789abcdef0123", "Basic YWxpY2U6cHc="} {
			_, got := get(uri, sess.cookie, "Authorization", auth)
			v := got.Header.Values("Authorization")
			if strings.Contains(strings.ToLower(auth), "azt_") && len(v) != 0 {
				t.Errorf("%s: upstream got authz's API token: Authorization %q", uri, v)
			}
			if auth == "Basic YWxpY2U6cHc=" && (len(v) != 1 || v[0] != auth) {
				t.Errorf("%s: upstream got Authorization %q, want the client's Basic credentials", uri, v)
			}
		}
	}

	resp, got = get("/login", "", "X-Auth-User", "mallory")
	if resp.StatusCode != 200 || len(headerValues(got.Header, "X-Auth-User")) != 0 {
		t.Errorf("public location: %d, upstream got X-Auth-User %q; want none", resp.StatusCode, headerValues(got.Header, "X-Auth-User"))
	}
}

// TestBehindCaddyBearerTokens: API tokens through the shipped Caddyfile.
// A valid one reaches the service as the identity, the token itself
// stripped; a refused one is a 401 with authz's Bearer challenge, as behind
// Nginx, not a redirect to a login page (Caddy 2.6 sent one to the literal
// text "{rp.header.X-Auth-Redirect}", the header authz does not send then).
func TestBehindCaddyBearerTokens(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	a := testenv.StartAuthz(t, r.URL(), "--bearer-tokens")
	app := testenv.StartEcho(t)
	c := testenv.StartCaddy(t, map[string]string{"AUTHZ_ADDR": a.Addr, "APP_ADDR": app.Addr, "LOGIN_ADDR": app.Addr})
	out, err := exec.Command(testenv.BuildAuthz(t), "token", "create", "--user", "svc", "--redis-url", r.URL()).Output()
	if err != nil {
		t.Fatalf("authz token create: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	client := newClient()
	get := func(auth string) (*http.Response, testenv.Echoed) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+c.Addr+"/orders", nil)
		req.Header.Set("Authorization", auth)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e testenv.Echoed
		if resp.StatusCode == 200 {
			json.NewDecoder(resp.Body).Decode(&e)
		}
		return resp, e
	}
	resp, got := get("Bearer " + tok)
	if resp.StatusCode != 200 || !slices.Equal(headerValues(got.Header, "X-Auth-User"), []string{"svc"}) {
		t.Fatalf("valid token: %d, X-Auth-User %q; want 200, svc", resp.StatusCode, headerValues(got.Header, "X-Auth-User"))
	}
	if v := got.Header.Values("Authorization"); len(v) != 0 {
		t.Errorf("the service got authz's token: Authorization %q", v)
	}
	resp, _ = get("Bearer azt_notatokennotatokennotatoken")
	if resp.StatusCode != 401 || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
		t.Errorf("refused token: %d, Location %q, WWW-Authenticate %q; want 401 with the Bearer challenge",
			resp.StatusCode, resp.Header.Get("Location"), resp.Header.Get("WWW-Authenticate"))
	}
}
