package e2e

import (
	"net/http"
	"testing"
)

// TestDuplicateHeadersDenyOnlyTheirRequest: a client's X-Forwarded-Uri or
// X-Original-URL, even sent twice (which authz's own server refuses with a
// 400), never reach authz through the shipped config: the session decides,
// and the instance goes on answering everyone.
func TestDuplicateHeadersDenyOnlyTheirRequest(t *testing.T) {
	t.Parallel()
	s := newSite(t)
	sess := s.signIn(alice)
	for _, name := range []string{"X-Forwarded-Uri", "X-Original-URL"} {
		// The shipped verify.conf clears the client's copies: authz reads
		// only the URI Nginx sets, so the session decides and the login
		// redirect carries the real URI.
		if r := s.get("/orders", sess.cookie, name, "/a", name, "/b"); r.status != http.StatusOK {
			t.Errorf("two %s headers: status %d, want 200 (the client's copies never reach authz)", name, r.status)
		}
		r := s.get("/orders", "", name, "/admin/", name, "/b")
		if loc := r.header.Get("Location"); r.status != http.StatusFound || loc != "/login?rd=%2Forders" {
			t.Errorf("two %s headers, signed out: %d to %q, want 302 to /login?rd=%%2Forders", name, r.status, loc)
		}
		if r := s.get("/orders", sess.cookie); r.status != http.StatusOK {
			t.Fatalf("after two %s headers: status %d, want 200", name, r.status)
		}
	}
}
