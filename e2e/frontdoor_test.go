package e2e

import (
	"bufio"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
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
	eachServer(t, noRequestLocksUsersOut)
}

func noRequestLocksUsersOut(t *testing.T, front ...string) {
	s, _, _ := newPairSite(t, append(front, "--header", "X-Auth-Email=passport.user.email", "--header", "X-Auth-Roles=passport.user.roles")...)
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

// TestShippedAuthzUpstreamsKeepEveryInstance: every "server" of an
// "upstream authz" block in nginx/ (the template and the examples to
// copy) has max_fails=0, so no answer takes an instance out; one left
// with Nginx's default max_fails=1 is what TestNoRequestLocksUsersOut
// once showed locking every user out.
func TestShippedAuthzUpstreamsKeepEveryInstance(t *testing.T) {
	servers := 0
	err := filepath.WalkDir("../nginx", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		in := false
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			line, _, _ := strings.Cut(sc.Text(), "#")
			fields := strings.Fields(line)
			switch {
			case len(fields) == 0:
			case fields[0] == "upstream":
				in = len(fields) > 1 && fields[1] == "authz"
			case fields[0] == "}":
				in = false
			case in && fields[0] == "server":
				servers++
				if !strings.Contains(line, "max_fails=0") {
					t.Errorf("%s:%d: %q has no max_fails=0", path, n, strings.TrimSpace(line))
				}
			}
		}
		return sc.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if servers < 2 {
		t.Fatalf("found %d servers in upstream authz blocks under nginx/, want the template's and the Unix socket example's", servers)
	}
}

// adminSpellings are paths some common framework serves as /admin/x (or
// /admin), though Nginx, matching byte for byte, would not: letter case
// (Express routes case-insensitively by default; IIS and Windows too),
// Java's path parameters (";"), IIS's trailing dots and spaces,
// backslashes for slashes (IIS), format suffixes (Spring's suffix match,
// Rails), Java's equalsIgnoreCase taking dotless and dotted i for i, and
// the spellings Nginx itself decodes (percent-encoding, "//", "/./", "..").
var adminSpellings = []string{
	"/admin/x", "/admin", "/admin/", "/ADMIN/x", "/Admin/x", "/aDmIn", "/ADMIN",
	"/admin;/x", "/admin;jsessionid=1/x", "/ADMIN;/x", "/admin;", "/admin;x",
	"/admin./x", "/admin../x", "/admin.", "/admin%2e/x", "/admin%20/x", "/admin%20", "/admin.%20./x", "/admin%09/x",
	"/admin.json", "/admin.do", "/admin:/x", "/admin::$DATA/x", "/admin~/x",
	`/admin\x`, "/admin%5cx", `/admin\`, "/admin%2fx", "/admin%2F", "/%61dmin/x", "/%41DMIN/x", "/adm%69n",
	"//admin/x", "///admin", "/./admin/x", "/x/../admin/x", "/static/../admin/x", "/static/..%2fadmin/x",
	"/adm%C4%B1n/x", "/adm%C4%B0n/x", "/ADM%C4%B1N",
	// Segments some server resolves as ".." or "." where Nginx sees a name:
	// Tomcat and Jetty drop the ";…" of "..;" (even on a public prefix),
	// IIS trims trailing dots and spaces, and takes "\" for "/".
	"/static/..;/admin/x", "/static/..%3b/admin/x", "/static/..;x=1/admin/x", "/;/admin/x", "/.;/admin/x", "/login/..;/admin/x",
	`/static/..\admin/x`, "/static/..%5cadmin/x", "/static/..%5c..%5cadmin/x",
	"/static/..%20/admin/x", "/static/.%20./admin/x", "/static/.../admin/x", "/static/..../admin/x", "/static/..%09/admin/x",
	"/admin%00/x", "/static/..%00/admin/x",
}

// TestAdminRuleHoldsForEverySpelling: with the shipped nginx/ config, a
// staff user who is not an admin, and nobody signed out, reaches the
// upstream on any spelling of /admin/ that a framework could route there.
// Each must be refused before the app: 403 for bob, the login page or 400
// for anyone. An admin still gets in on the plain spelling.
func TestAdminRuleHoldsForEverySpelling(t *testing.T) {
	t.Parallel()
	eachServer(t, func(t *testing.T, front ...string) {
		adminRuleHolds(t, newSite(t, front...), "nginx", adminSpellings, "/administrator", "/admins/x", "/orders;jsessionid=1", "/a.b/c..d/e", "/static/x")
	})
}

// adminRuleHolds is the admin rule's story through one proxy: no spelling
// of refused gets bob (staff) or a signed-out client to the upstream (403
// for bob, the login page for anyone, or 400 whoever asks), alice (admin)
// still gets in on the plain spellings, and bob reaches the other paths,
// their spellings included.
func adminRuleHolds(t *testing.T, s *site, proxy string, refused []string, others ...string) {
	t.Helper()
	staff := s.signIn(bob)
	for _, uri := range refused {
		for who, c := range map[string]struct {
			cookie string
			want   int // besides 400, a path refused whoever asks
		}{"bob (staff)": {staff.cookie, http.StatusForbidden}, "signed out": {"", http.StatusFound}} {
			r := s.get(uri, c.cookie)
			if r.status == http.StatusOK {
				t.Errorf("%s reached the upstream through %s with %q (it got %s)", who, proxy, uri, r.body)
			} else if r.status != c.want && r.status != http.StatusBadRequest {
				t.Errorf("%s on %q through %s: %d, want %d or 400", who, uri, proxy, r.status, c.want)
			}
		}
	}
	admin := s.signIn(alice)
	for _, uri := range []string{"/admin/x", "/admin", "/ADMIN/x", "/admin;/x"} {
		if r := s.get(uri, admin.cookie); r.status != http.StatusOK {
			t.Errorf("alice (admin) on %q through %s: %d, want 200", uri, proxy, r.status)
		}
	}
	for _, uri := range others {
		if r := s.get(uri, staff.cookie); r.status != http.StatusOK {
			t.Errorf("bob on %q through %s: %d, want 200", uri, proxy, r.status)
		}
	}
}

// identityHeaders are the identity headers the shipped proxies pass on.
var identityHeaders = []string{"X-Auth-User", "X-Auth-Email", "X-Auth-Roles", "X-Auth-Name"}

// spellings are the ways a client can write name so that some framework
// reads it as name: any case, and "_" for any "-" (WSGI and CGI turn both
// into HTTP_X_AUTH_USER, and join the values: "bob,admin").
func spellings(name string) []string {
	parts := strings.Split(name, "-")
	var out []string
	for mask := 0; mask < 1<<(len(parts)-1); mask++ {
		var b strings.Builder
		for i, p := range parts {
			if i > 0 {
				if mask&(1<<(i-1)) != 0 {
					b.WriteByte('_')
				} else {
					b.WriteByte('-')
				}
			}
			b.WriteString(p)
		}
		s := b.String()
		out = append(out, s, strings.ToLower(s), strings.ToUpper(s))
	}
	return out
}

// oddSeparators are the characters besides "-" and "_" that HTTP allows in
// a header name; CGI servers that map every one of them to "_" (Apache
// 2.2, lighttpd) read X.Auth.User as X-Auth-User.
const oddSeparators = "!#$%&'*+.^`|~"

// forgedHeaders is every spelling of every identity header, each with a
// forged value, as name, value pairs.
func forgedHeaders() []string {
	var h []string
	for _, name := range append(identityHeaders, "X-Auth-Redirect") {
		for _, s := range spellings(name) {
			h = append(h, s, "forged")
		}
		for _, c := range oddSeparators {
			h = append(h, strings.ReplaceAll(name, "-", string(c)), "forged")
		}
	}
	return h
}

// wantOnlyIdentity checks that the upstream got exactly want for each
// identity header, under any spelling (headerValues folds case and "_"),
// and nothing a client forged or a proxy failed to fill in.
func wantOnlyIdentity(t *testing.T, got http.Header, want map[string]string) {
	t.Helper()
	for _, name := range append(identityHeaders, "X-Auth-Redirect") {
		vs := headerValues(got, name)
		if w, ok := want[name]; ok {
			if len(vs) != 1 || vs[0] != w {
				t.Errorf("upstream got %s %q, want [%s]", name, vs, w)
			}
		} else if len(vs) != 0 {
			t.Errorf("upstream got %s %q, want none", name, vs)
		}
	}
	for k, vs := range got {
		for _, v := range vs {
			if strings.Contains(v, "forged") || strings.Contains(v, "{") {
				t.Errorf("upstream got %s: %q", k, v)
			}
		}
	}
}

// TestNoSpellingForgesIdentityBehindNginx sends every spelling of every
// identity header through the shipped nginx/ config, signed in and to a
// public location.
func TestNoSpellingForgesIdentityBehindNginx(t *testing.T) {
	t.Parallel()
	eachServer(t, noSpellingForgesIdentityBehindNginx)
}

func noSpellingForgesIdentityBehindNginx(t *testing.T, front ...string) {
	s := newSite(t, append(front, "--header", "X-Auth-Email=passport.user.email", "--header", "X-Auth-Roles=passport.user.roles", "--header", "X-Auth-Name=passport.user.name")...)
	sess := s.signIn(bob) // no name in the session: X-Auth-Name is absent
	forged := forgedHeaders()
	wantOnlyIdentity(t, s.get("/orders", sess.cookie, forged...).echoed(t).Header,
		map[string]string{"X-Auth-User": "bob", "X-Auth-Email": "bob@example.com", "X-Auth-Roles": "staff"})
	wantOnlyIdentity(t, s.get("/login", "", forged...).echoed(t).Header, nil)
	wantOnlyIdentity(t, s.get("/static/x", sess.cookie, forged...).echoed(t).Header, nil)
}
