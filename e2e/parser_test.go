package e2e

import (
	"net/http"
	"testing"
)

// TestDuplicateHeadersDenyOnlyTheirRequest: a header authz reads and Nginx
// passes on from the client (Authorization) sent twice makes authz, with
// either server, refuse that auth subrequest (400, which Nginx turns into its
// "unavailable" page), and nothing more: the next request over the same
// upstream is answered, as a 400 is no upstream failure to Nginx. The
// other proxies' original-URI headers (X-Forwarded-Uri, X-Original-URL)
// never reach authz from Nginx (verify.conf empties them), so sent twice
// they change nothing.
func TestDuplicateHeadersDenyOnlyTheirRequest(t *testing.T) {
	t.Parallel()
	eachServer(t, duplicateHeadersDenyOnlyTheirRequest)
}

func duplicateHeadersDenyOnlyTheirRequest(t *testing.T, front ...string) {
	s := newSite(t, front...)
	sess := s.signIn(alice)
	r := s.get("/orders", sess.cookie, "Authorization", "Basic YTpi", "Authorization", "Basic Yzpk")
	if r.status == http.StatusOK {
		t.Errorf("two Authorization headers: status 200, want the request refused")
	}
	if r := s.get("/orders", sess.cookie); r.status != http.StatusOK {
		t.Fatalf("after two Authorization headers: status %d, want 200", r.status)
	}
	for _, name := range []string{"X-Forwarded-Uri", "X-Original-URL", "x-forwarded-uri"} {
		if r := s.get("/orders", sess.cookie, name, "/a", name, "/b"); r.status != http.StatusOK {
			t.Errorf("two %s headers: status %d, want 200 (Nginx drops them)", name, r.status)
		}
		if r := s.get("/orders?x=1", "", name, "/a", name, "/b"); r.header.Get("Location") != "/login?rd=%2Forders%3Fx%3D1" {
			t.Errorf("two %s headers, signed out: %d to %q, want the login page with the URI Nginx saw", name, r.status, r.header.Get("Location"))
		}
	}
}
