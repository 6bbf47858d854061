package e2e

import (
	"net/http"
	"testing"

	"github.com/authz/authz/internal/testenv"
)

// caddySite is a site whose front proxy is proxies/Caddyfile as shipped,
// so that the site's helpers (get, send, signIn) go through Caddy.
func caddySite(t *testing.T, authzArgs ...string) *site {
	t.Helper()
	r := testenv.StartRedis(t)
	a := testenv.StartAuthz(t, r.URL(), authzArgs...)
	app := testenv.StartEcho(t)
	c := testenv.StartCaddy(t, map[string]string{"AUTHZ_ADDR": a.Addr, "APP_ADDR": app.Addr, "LOGIN_ADDR": app.Addr})
	return &site{t: t, redis: r, rdb: r.Client(), authz: a, nginx: &testenv.Nginx{Addr: c.Addr}, client: newClient()}
}

// rawPathSpellings are paths Caddy matches on after decoding them and
// resolving "." and "..", while it passes the raw path on: a service
// routing the raw one ("/admin/..%2f..%2fx" starts with /admin/ to
// Express) would serve the admin area after a check for another path.
var rawPathSpellings = []string{
	"/admin/..%2f..%2fx", "/admin//../x", "/admin/../x", "/admin/./../x", "/admin/%2e%2e/x",
	"/admin/.%2e/x", "/admin/..%5cx", "/admin%2f..%2fx", "/ADMIN/..%2F..%2Fx",
}

// TestAdminRuleHoldsBehindCaddy: the Caddyfile enforces the admin rule
// nginx/ does, for every spelling TestAdminRuleHoldsForEverySpelling
// tries, and for the paths only Caddy would read differently from the
// service. Before, the Caddyfile had no admin rule at all: any signed-in
// user reached /admin/.
func TestAdminRuleHoldsBehindCaddy(t *testing.T) {
	t.Parallel()
	adminRuleHolds(t, caddySite(t), "Caddy", append(append([]string{}, adminSpellings...), rawPathSpellings...),
		"/administrator", "/admins/x", "/orders;jsessionid=1", "/a.b/c..d/e", "/static/x", "/x?next=../admin/%2f")
}

// pathOverrides are headers some frameworks (Symfony before 2.7.49 and
// 3.4.14, Zend, IIS URL Rewrite) route by instead of the request's path.
var pathOverrides = []string{"X-Original-URL", "/admin/", "X-Rewrite-URL", "/admin/", "X-Original-URI", "/admin/", "x-original-url", "/admin/"}

// TestPathOverrideHeadersStopAtTheProxy: a signed-in staff user asking
// for /orders with "X-Original-URL: /admin/" must not hand the service a
// path other than the one the proxy checked. Before, both proxies passed
// the client's X-Original-URL and X-Rewrite-URL on (nginx/ also
// X-Original-URI).
func TestPathOverrideHeadersStopAtTheProxy(t *testing.T) {
	t.Parallel()
	for name, s := range map[string]*site{"nginx": newSite(t), "caddy": caddySite(t)} {
		staff := s.signIn(bob)
		for _, uri := range []string{"/orders", "/static/x", "/login"} {
			got := s.get(uri, staff.cookie, pathOverrides...).echoed(t)
			for _, h := range []string{"X-Original-Url", "X-Rewrite-Url", "X-Original-Uri"} {
				if v := headerValues(got.Header, h); len(v) != 0 {
					t.Errorf("%s: %s reached the service with %s %q", name, uri, h, v)
				}
			}
		}
		// The login redirect still carries the URI the proxy saw.
		r := s.get("/orders?page=2", "", pathOverrides...)
		if loc := r.header.Get("Location"); r.status != http.StatusFound || loc != "/login?rd=%2Forders%3Fpage%3D2" {
			t.Errorf("%s: signed out: %d to %q, want 302 to /login?rd=%%2Forders%%3Fpage%%3D2", name, r.status, loc)
		}
	}
}

// bestFitSpellings are paths a Windows server converting to an ANSI code
// page (best fit: the fullwidth "／" and "＼" become "/" and "\") or a
// decoder taking overlong UTF-8 ("%c0%af" for "/", "%c0%ae" for ".")
// reads as /admin/x, some through the public /static/ prefix.
var bestFitSpellings = []string{
	"/static/..%EF%BC%8Fadmin/x", "/static/..%ef%bc%8fadmin/x", "/static/..%EF%BC%BCadmin/x",
	"/static%EF%BC%8F..%EF%BC%8Fadmin/x", "/x/..%EF%BC%8Fadmin/x",
	"/static/..%C0%AFadmin/x", "/static/%C0%AE%C0%AE/admin/x", "/%c0%ae%c0%ae/admin/x", "/static/..%C1%9Cadmin/x",
}

// TestBestFitSpellingsRefused: neither proxy lets a staff user, or anyone
// signed out, through to the service with a path a Windows server's
// best-fit conversion or an overlong-UTF-8 decoder would read as
// /admin/x. Before, both passed them on: "/static/..%EF%BC%8Fadmin/x"
// reached the service without any session.
func TestBestFitSpellingsRefused(t *testing.T) {
	t.Parallel()
	for name, s := range map[string]*site{"nginx": newSite(t), "caddy": caddySite(t)} {
		staff := s.signIn(bob)
		for _, uri := range bestFitSpellings {
			for who, cookie := range map[string]string{"bob (staff)": staff.cookie, "signed out": ""} {
				if r := s.get(uri, cookie); r.status == http.StatusOK {
					t.Errorf("%s: %s reached the service with %q (it got %s)", name, who, uri, r.body)
				}
			}
		}
		// Other non-ASCII paths still pass.
		for _, uri := range []string{"/caf%C3%A9", "/%E2%82%AC/x", "/%EF%BD%81"} {
			if r := s.get(uri, staff.cookie); r.status != http.StatusOK {
				t.Errorf("%s: bob on %q: %d, want 200", name, uri, r.status)
			}
		}
	}
}
