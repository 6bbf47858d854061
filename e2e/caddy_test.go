package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"testing"

	"github.com/authz/authz/internal/testenv"
)

// TestBehindCaddy runs the shipped proxies/Caddyfile (forward_auth) in
// front of authz: the same contract as behind Nginx, with Caddy's
// X-Forwarded-Uri carrying the original URI.
func TestBehindCaddy(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	a := testenv.StartAuthz(t, r.URL(), "--header", "X-Auth-Email=passport.user.email")
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
		resp, _ := get("/orders?page=2", cookie)
		if loc := resp.Header.Get("Location"); resp.StatusCode != 302 || loc != "/login?rd=%2Forders%3Fpage%3D2" {
			t.Errorf("%s: %d to %q; want 302 to /login?rd=%%2Forders%%3Fpage%%3D2", name, resp.StatusCode, loc)
		}
	}

	resp, got = get("/login", "", "X-Auth-User", "mallory")
	if resp.StatusCode != 200 || len(headerValues(got.Header, "X-Auth-User")) != 0 {
		t.Errorf("public location: %d, upstream got X-Auth-User %q; want none", resp.StatusCode, headerValues(got.Header, "X-Auth-User"))
	}
}
