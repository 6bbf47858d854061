package e2e

import (
	"net/http"
	"strings"
	"testing"
)

// TestNoRequestLocksUsersOut sends, through the shipped nginx/ config with
// two authz instances, what once made authz's answer larger than Nginx
// accepts from an upstream ("upstream sent too big header"): an anonymous
// request whose URI escapes to more than 4 KiB in X-Auth-Redirect, and a
// signed-in user whose mapped identity headers add up to more than 4 KiB.
// Nginx counted each as a failure of that instance and, with max_fails=1,
// left it out for 10 s: two requests locked every user out. Now each gets
// an answer and every other user still gets in.
func TestNoRequestLocksUsersOut(t *testing.T) {
	t.Parallel()
	s, _, _ := newPairSite(t, "--header", "X-Auth-Email=passport.user.email", "--header", "X-Auth-Roles=passport.user.roles")
	everyone := s.signIn(bob)

	// Each "/" escapes to "%2F": 1,350 of them are over 4 KiB.
	long := "/a" + strings.Repeat("/", 1350)
	big := user{ID: "mallory", Email: strings.Repeat("m", 2000) + "@example.com"}
	for i := 0; i < 140; i++ {
		big.Roles = append(big.Roles, "role-number-x") // 14 bytes with its comma
	}
	bigSess := s.signIn(big)

	// Four of each: every instance gets at least one of each kind.
	for i := 0; i < 4; i++ {
		r := s.get(long, "")
		if r.status != http.StatusFound || !strings.HasPrefix(r.header.Get("Location"), "/login") {
			t.Errorf("anonymous request with a %d-byte URI: %d to %q, want 302 to the login page", len(long), r.status, r.header.Get("Location"))
		}
		got := s.get("/", bigSess.cookie).echoed(t)
		if v := headerValues(got.Header, "X-Auth-User"); len(v) != 1 || v[0] != "mallory" {
			t.Errorf("user with large identity headers: upstream got X-Auth-User %q, want [mallory]", v)
		}
	}

	for i := 0; i < 4; i++ {
		r := s.get("/orders", everyone.cookie)
		if r.status != http.StatusOK {
			t.Fatalf("another user, after those requests: status %d, want 200 (locked out); body: %s", r.status, r.body)
		}
	}
}
