package e2e

import (
	"net/http"
	"strings"
	"testing"

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
