package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/testenv"
)

// tokenSite is newSite with --access-token-path and the README's relay
// locations (relayLocations) in authz/locations/.
func tokenSite(t *testing.T) *site {
	t.Helper()
	r := testenv.StartRedis(t)
	a := testenv.StartAuthz(t, r.URL(), "--access-token-path", "passport.user.accessToken")
	app := testenv.StartEcho(t)
	n := testenv.StartNginxLocations(t, map[string]string{
		"AUTHZ_ADDR": a.Addr, "APP_ADDR": app.Addr, "LOGIN_ADDR": app.Addr,
	}, map[string]string{"relay.conf": relayLocations})
	return &site{t: t, redis: r, rdb: r.Client(), authz: a, nginx: n, client: newClient()}
}

// clientTokenHeaders are the token headers a client may forge, in the
// spellings a framework may read as the same header.
var clientTokenHeaders = []string{
	"X-Forwarded-Access-Token", "client-1", "x-forwarded-access-token", "client-2",
	"X-Auth-Access-Token", "client-3", "x-auth-access-token", "client-4",
	"X_Forwarded_Access_Token", "client-5", "X_Auth_Access_Token", "client-6",
}

// TestClientTokenHeadersStopAtTheProxy: no access-token header a client
// sends reaches a service, in a relaying location or any other, through
// either proxy. Before, Nginx passed a client's X-Auth-Access-Token (the
// name authz answers the token under) to every location, and Caddy a
// client's X-Forwarded-Access-Token (the name token-header.conf relays the
// token under, which README promises a service never gets from a client).
func TestClientTokenHeadersStopAtTheProxy(t *testing.T) {
	t.Parallel()
	for name, s := range map[string]*site{"nginx": tokenSite(t), "caddy": caddySite(t)} {
		staff := s.signIn(bob) // a session without an access token
		uris := []string{"/orders", "/static/x", "/login", "/admin/x"}
		if name == "nginx" {
			uris = append(uris, "/api/x", "/api-header/x")
		}
		for _, uri := range uris {
			r := s.get(uri, staff.cookie, clientTokenHeaders...)
			if uri == "/admin/x" {
				if r.status == http.StatusOK {
					t.Errorf("%s: bob reached /admin/x", name)
				}
				continue
			}
			got := r.echoed(t)
			for _, h := range []string{"X-Forwarded-Access-Token", "X-Auth-Access-Token"} {
				if v := headerValues(got.Header, h); len(v) != 0 {
					t.Errorf("%s: %s reached the service with a client's %s %q", name, uri, h, v)
				}
			}
			for k, vs := range got.Header {
				if strings.Contains(strings.Join(vs, ","), "client-") {
					t.Errorf("%s: %s: the service got %s: %q", name, uri, k, vs)
				}
			}
		}
	}
}

// TestRelayedTokenStaysInItsLocation: a service behind a relaying location
// that answers with X-Accel-Redirect (the common way to hand a download to
// Nginx) sends the request on to another location, here the public
// /static/; that location's service must not get the session's access
// token. Before, Nginx kept the relay's variables (and the Authorization
// map's cached result) across the internal redirect, and /static/ got
// "Authorization: Bearer <token>" or X-Forwarded-Access-Token.
func TestRelayedTokenStaysInItsLocation(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	a := testenv.StartAuthz(t, r.URL(), "--access-token-path", "passport.user.accessToken")
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasSuffix(req.URL.Path, "/download") {
			w.Header().Set("X-Accel-Redirect", "/static/file")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(testenv.Echoed{Method: req.Method, URI: req.RequestURI, Host: req.Host, Header: req.Header})
	}))
	t.Cleanup(app.Close)
	appAddr := app.Listener.Addr().String()
	n := testenv.StartNginxLocations(t, map[string]string{
		"AUTHZ_ADDR": a.Addr, "APP_ADDR": appAddr, "LOGIN_ADDR": appAddr,
	}, map[string]string{"relay.conf": relayLocations})
	s := &site{t: t, redis: r, rdb: r.Client(), authz: a, nginx: n, client: newClient()}

	const token = "at.alice.relayed-only-here"
	sess := session{sid: newSID()}
	sess.cookie = "connect.sid=" + authz.Sign(sess.sid, testenv.SessionSecret)
	doc := `{"cookie":{"originalMaxAge":3600000,"path":"/","httpOnly":true},` +
		`"passport":{"user":{"id":"alice","roles":["admin"],"accessToken":"` + token + `"}}}`
	if err := s.rdb.Set(context.Background(), "sess:"+sess.sid, doc, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	// The relay works where it is asked for...
	if got := headerValues(s.get("/api/x", sess.cookie).echoed(t).Header, "Authorization"); len(got) != 1 || got[0] != "Bearer "+token {
		t.Fatalf("/api/x: Authorization %q, want the relayed token", got)
	}
	// ...and stops where the request is sent on to.
	for _, uri := range []string{"/api/download", "/api-header/download", "/api-strict/download"} {
		got := s.get(uri, sess.cookie, "Authorization", "Basic Y2xpZW50OnB3").echoed(t)
		if got.URI != "/static/file" {
			t.Fatalf("%s: the redirect landed on %q, want /static/file", uri, got.URI)
		}
		for k, vs := range got.Header {
			if strings.Contains(strings.Join(vs, ","), token) {
				t.Errorf("%s, redirected to /static/: the service got the access token in %s", uri, k)
			}
		}
		if v := headerValues(got.Header, "Authorization"); len(v) != 1 || v[0] != "Basic Y2xpZW50OnB3" {
			t.Errorf("%s, redirected to /static/: Authorization %q, want the client's own", uri, v)
		}
	}
}
