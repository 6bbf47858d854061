package e2e

import (
	"bytes"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/testenv"
)

// TestBearerTokenStory is the API client's story through real Nginx: a
// token made with the CLI is allowed with the identity headers, a wrong one
// is 401 (not a login redirect), the token never reaches the service, and
// `authz token revoke` ends it at once on two instances whose cache would
// otherwise keep it for an hour.
func TestBearerTokenStory(t *testing.T) {
	t.Parallel()
	eachServer(t, bearerTokenStory)
}

func bearerTokenStory(t *testing.T, front ...string) {
	args := append(front, "--bearer-tokens", "--cache-ttl", "1h", "--tracking=false", "--header", "X-Auth-Name=token.name")
	r := testenv.StartRedis(t)
	instances := []*testenv.Authz{testenv.StartAuthz(t, r.URL(), args...), testenv.StartAuthz(t, r.URL(), args...)}
	app := testenv.StartEcho(t)
	n := testenv.StartNginx(t, map[string]string{"AUTHZ_ADDR": instances[0].Addr, "APP_ADDR": app.Addr, "LOGIN_ADDR": app.Addr})
	s := &site{t: t, redis: r, rdb: r.Client(), authz: instances[0], nginx: n, client: newClient()}
	for _, a := range instances {
		testenv.WaitFor(t, 10*time.Second, "the logout subscription on "+a.Addr, func() bool {
			return metric(t, a, "authz_logout_subscribed") == 1
		})
	}
	cli := func(stdin string, args ...string) (stdout, stderr string, err error) {
		t.Helper()
		cmd := exec.Command(testenv.BuildAuthz(t), append(args, "--redis-url", r.URL())...)
		var o, e bytes.Buffer
		cmd.Stdin, cmd.Stdout, cmd.Stderr = strings.NewReader(stdin), &o, &e
		err = cmd.Run()
		return o.String(), e.String(), err
	}
	create := func(args ...string) string {
		t.Helper()
		out, info, err := cli("", append([]string{"token", "create"}, args...)...)
		if err != nil {
			t.Fatalf("authz token create %v: %v\n%s", args, err, info)
		}
		tok := strings.TrimSpace(out)
		if strings.Count(out, "\n") != 1 || !strings.HasPrefix(tok, authz.TokenMark) {
			t.Fatalf("stdout %q: want the token alone on one line", out)
		}
		if strings.Contains(info, tok) || !strings.Contains(info, authz.TokenHash(tok)) {
			t.Fatalf("stderr %q: want the hash, never the token", info)
		}
		return tok
	}
	billing := create("--user", "svc-billing", "--role", "admin", "--name", "billing-cron")
	reports := create("--user", "svc-reports", "--ttl", "0")
	bearer := func(tok string) []string { return []string{"Authorization", "Bearer " + tok} }

	// Allowed, with the identity headers a session would give, and the
	// token stripped before the service.
	e := s.get("/invoices?page=2", "", bearer(billing)...).echoed(t)
	if got := headerValues(e.Header, "X-Auth-User"); len(got) != 1 || got[0] != "svc-billing" {
		t.Errorf("X-Auth-User %q, want svc-billing", got)
	}
	if got := headerValues(e.Header, "X-Auth-Name"); len(got) != 1 || got[0] != "billing-cron" {
		t.Errorf("X-Auth-Name %q, want the token's name from --header X-Auth-Name=token.name", got)
	}
	if got := headerValues(e.Header, "Authorization"); len(got) != 0 {
		t.Errorf("the service got Authorization %q: authz tokens must stop at Nginx", got)
	}
	// The rules of a location apply to tokens as to sessions.
	if resp := s.get("/admin/", "", bearer(billing)...); resp.status != 200 {
		t.Errorf("admin token on /admin/: %d, want 200", resp.status)
	}
	if resp := s.get("/admin/", "", bearer(reports)...); resp.status != 403 {
		t.Errorf("token without the admin role on /admin/: %d, want 403", resp.status)
	}
	// The token wins over a cookie; another scheme leaves it to the cookie
	// and reaches the service unchanged (it is the service's own).
	signedIn := s.signIn(alice)
	e = s.get("/", signedIn.cookie, bearer(reports)...).echoed(t)
	if got := headerValues(e.Header, "X-Auth-User"); len(got) != 1 || got[0] != "svc-reports" {
		t.Errorf("token and cookie: X-Auth-User %q, want the token's svc-reports", got)
	}
	e = s.get("/", signedIn.cookie, "Authorization", "Basic c3ZjOnB3").echoed(t)
	if got := headerValues(e.Header, "X-Auth-User"); len(got) != 1 || got[0] != "alice" {
		t.Errorf("Basic and cookie: X-Auth-User %q, want the cookie's alice", got)
	}
	if got := headerValues(e.Header, "Authorization"); len(got) != 1 || got[0] != "Basic c3ZjOnB3" {
		t.Errorf("the service got Authorization %q, want its own Basic credentials unchanged", got)
	}
	// A service's own bearer token (a JWT) is not authz's: the cookie
	// decides and the token reaches the service.
	const jwt = "Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln"
	e = s.get("/", signedIn.cookie, "Authorization", jwt).echoed(t)
	if got := headerValues(e.Header, "X-Auth-User"); len(got) != 1 || got[0] != "alice" {
		t.Errorf("JWT and cookie: X-Auth-User %q, want the cookie's alice", got)
	}
	if got := headerValues(e.Header, "Authorization"); len(got) != 1 || got[0] != jwt {
		t.Errorf("the service got Authorization %q, want its own JWT unchanged", got)
	}

	// Wrong, malformed or absurd tokens: 401 with a Bearer challenge, no
	// login redirect, whatever cookie comes along.
	for _, auth := range []string{"Bearer " + authz.NewToken(), "Bearer " + billing + "x", "Bearer azt_short", "bearer azt_" + strings.Repeat("a", 300), "Bearer\tazt_short"} {
		resp := s.get("/invoices", signedIn.cookie, "Authorization", auth)
		if resp.status != 401 || resp.header.Get("Location") != "" || !strings.HasPrefix(resp.header.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("Authorization %.20q…: %d, Location %q, WWW-Authenticate %q; want 401 with a Bearer challenge",
				auth, resp.status, resp.header.Get("Location"), resp.header.Get("WWW-Authenticate"))
		}
	}

	// Both instances allow it, and cache it for an hour.
	ask := func(a *testenv.Authz, tok string) int {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+a.Addr+"/verify", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := s.client.Do(req)
		if err != nil {
			t.Fatalf("verify on %s: %v", a.Addr, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for i, a := range instances {
		if got := ask(a, billing); got != 200 {
			t.Fatalf("instance %d before revoke: %d", i, got)
		}
	}

	// list names tokens by hash, never shows one.
	list, info, err := cli("", "token", "list")
	if err != nil {
		t.Fatalf("authz token list: %v\n%s", err, info)
	}
	if !strings.Contains(list, authz.TokenHash(billing)) || !strings.Contains(list, "billing-cron") ||
		strings.Contains(list, billing) || strings.Contains(list, reports) {
		t.Errorf("token list:\n%s\nwant hashes and names, never a token", list)
	}

	// Revoke, the token read from stdin: denied at once everywhere.
	out, info, err := cli(billing+"\n", "token", "revoke", "-")
	if err != nil || !strings.Contains(out, "revoked token "+authz.TokenHash(billing)) || strings.Contains(out+info, billing) {
		t.Fatalf("authz token revoke: %v\nstdout %q\nstderr %q", err, out, info)
	}
	for i, a := range instances {
		testenv.WaitFor(t, 2*time.Second, "instance "+strconv.Itoa(i)+" to deny the revoked token", func() bool {
			return ask(a, billing) == 401
		})
	}
	if resp := s.get("/invoices", "", bearer(billing)...); resp.status != 401 {
		t.Errorf("revoked token through Nginx: %d, want 401", resp.status)
	}
	if resp := s.get("/invoices", "", bearer(reports)...); resp.status != 200 {
		t.Errorf("the other token after the revoke: %d, want 200", resp.status)
	}
	if got := metric(t, instances[1], "authz_logout_events_received_total"); got != 1 {
		t.Errorf("instance 1 received %v logout events, want the one token event", got)
	}

	// A second revoke finds nothing and says so (exit 1).
	if _, info, err := cli("", "token", "revoke", authz.TokenHash(billing)); err == nil || !strings.Contains(info, "no token") {
		t.Errorf("second revoke: %v, %q; want exit 1 and \"no token\"", err, info)
	}
	// Nothing any process logged holds a token.
	for _, p := range []*testenv.Authz{instances[0], instances[1]} {
		if o := p.Output(); strings.Contains(o, billing) || strings.Contains(o, reports) {
			t.Errorf("authz %s logged a token", p.Addr)
		}
	}
}
