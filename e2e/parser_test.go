package e2e

import (
	"net/http"
	"testing"
)

// TestDuplicateHeadersDenyOnlyTheirRequest: headers Nginx passes on from the
// client (X-Forwarded-Uri, X-Original-URL) sent twice make authz's own
// server refuse that auth subrequest (400, which Nginx turns into its
// "unavailable" page), and nothing more: the next request over the same
// upstream is answered, as a 400 is no upstream failure to Nginx.
func TestDuplicateHeadersDenyOnlyTheirRequest(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	sess := s.signIn(alice)
	for _, name := range []string{"X-Forwarded-Uri", "X-Original-URL"} {
		r := s.get("/orders", sess.cookie, name, "/a", name, "/b")
		if r.status == http.StatusOK {
			t.Errorf("two %s headers: status 200, want the request refused", name)
		}
		if r := s.get("/orders", sess.cookie); r.status != http.StatusOK {
			t.Fatalf("after two %s headers: status %d, want 200", name, r.status)
		}
	}
}
