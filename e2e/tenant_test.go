package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/testenv"
)

// tenantFile is two customers on one deployment, as docs/tenants.md shows.
const tenantFile = `
defaults:
  key_prefix: "sessions:{tenant}:{app}:"
  app: web
tenants:
  - name: acme
    hosts: [acme.test, "*.acme.test"]
    secrets: [acme-secret]
  - name: globex
    hosts: [globex.test]
    cookie_name: globex.sid
    secrets: [globex-secret]
`

// toLogin is how a 401 from authz reaches the browser through nginx/: a
// redirect to the login page.
const toLogin = http.StatusFound

// tenants is a deployment with a tenant file.
type tenants struct {
	*site
	file string
}

func newTenants(t *testing.T) *tenants {
	t.Helper()
	file := filepath.Join(t.TempDir(), "tenants.yaml")
	if err := os.WriteFile(file, []byte(tenantFile), 0o600); err != nil {
		t.Fatal(err)
	}
	return &tenants{site: newSite(t, "--tenants", file, "--cache-ttl", "1h", "--tracking=false"), file: file}
}

// signIn stores a session for userID under tenant's prefix, the way the
// tenant's Express app would, and returns the Cookie header its browser sends.
func (ts *tenants) signIn(tenant, cookieName, secret, userID string) string {
	ts.t.Helper()
	sid := newSID()
	ts.storeAs(tenant, sid, userID)
	return cookieName + "=" + authz.Sign(sid, secret)
}

func (ts *tenants) storeAs(tenant, sid, userID string) {
	ts.t.Helper()
	b, _ := json.Marshal(map[string]any{
		"cookie":   map[string]any{"originalMaxAge": 3600000, "httpOnly": true, "path": "/"},
		"passport": map[string]any{"user": map[string]any{"id": userID}},
	})
	if err := ts.rdb.Set(context.Background(), "sessions:"+tenant+":web:"+sid, b, time.Hour).Err(); err != nil {
		ts.t.Fatal(err)
	}
}

// as is who the upstream saw on host with cookie: the user, or the status.
func (ts *tenants) as(host, cookie string) (int, string) {
	ts.t.Helper()
	r := ts.get("/app/", cookie, "Host", host)
	if r.status != http.StatusOK {
		return r.status, ""
	}
	return r.status, strings.Join(headerValues(r.echoed(ts.t).Header, "X-Auth-User"), ",")
}

func (ts *tenants) want(host, cookie string, status int, user, what string) {
	ts.t.Helper()
	if gotStatus, gotUser := ts.as(host, cookie); gotStatus != status || gotUser != user {
		ts.t.Errorf("%s: %d %q, want %d %q", what, gotStatus, gotUser, status, user)
	}
}

func TestTenantsEachUserReachesOnlyTheirTenant(t *testing.T) {
	t.Parallel()
	ts := newTenants(t)
	alice := ts.signIn("acme", "connect.sid", "acme-secret", "alice")
	bob := ts.signIn("globex", "globex.sid", "globex-secret", "bob")

	ts.want("acme.test", alice, 200, "alice", "alice on acme")
	ts.want("shop.acme.test", alice, 200, "alice", "alice on an acme subdomain")
	ts.want("globex.test", bob, 200, "bob", "bob on globex")
	ts.want("acme.test", bob, toLogin, "", "bob's cookie on acme")
	ts.want("globex.test", alice, toLogin, "", "alice's cookie on globex")

	// The sharpest replay: the same session id exists under both
	// prefixes, and alice's cookie is renamed to globex's cookie name.
	sid := newSID()
	ts.storeAs("acme", sid, "alice")
	ts.storeAs("globex", sid, "mallory")
	replay := "globex.sid=" + authz.Sign(sid, "acme-secret")
	ts.want("globex.test", replay, toLogin, "", "acme cookie replayed on globex")
	ts.want("acme.test", "connect.sid="+authz.Sign(sid, "acme-secret"), 200, "alice", "the same cookie on acme")

	// A host no tenant serves is refused outright, never a 500 and never
	// another tenant's answer.
	if r := ts.get("/app/", alice, "Host", "evil.test"); r.status != http.StatusForbidden {
		t.Errorf("unknown host: %d, want 403", r.status)
	}
	testenv.WaitFor(t, 5*time.Second, "authz to log the unknown host", func() bool {
		return strings.Contains(ts.authz.Output(), "no tenant serves") && strings.Contains(ts.authz.Output(), "evil.test")
	})
	// The forged header a client could send is overwritten by Nginx.
	ts.want("evil.test", alice, 403, "", "X-Forwarded-Host forged by the client")
	if r := ts.get("/app/", alice, "Host", "globex.test", "X-Forwarded-Host", "acme.test"); r.status != toLogin {
		t.Errorf("X-Forwarded-Host: acme.test sent to globex: %d, want %d to the login page", r.status, toLogin)
	}
}

func TestTenantsUserLogoutStaysInItsTenant(t *testing.T) {
	t.Parallel()
	ts := newTenants(t)
	acme42 := ts.signIn("acme", "connect.sid", "acme-secret", "42")
	globex42 := ts.signIn("globex", "globex.sid", "globex-secret", "42")
	ts.want("acme.test", acme42, 200, "42", "acme's 42")
	ts.want("globex.test", globex42, 200, "42", "globex's 42")

	out, err := exec.Command(testenv.BuildAuthz(t), "logout", "--user", "42", "--tenant", "acme",
		"--tenants", ts.file, "--redis-url", ts.redis.URL()).CombinedOutput()
	if err != nil {
		t.Fatalf("authz logout: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "revoked 1 sessions") {
		t.Errorf("authz logout said %q", out)
	}
	// The cache TTL is an hour: only the event can explain the 401.
	testenv.WaitFor(t, 5*time.Second, "acme's 42 to be signed out", func() bool {
		status, _ := ts.as("acme.test", acme42)
		return status == toLogin
	})
	ts.want("globex.test", globex42, 200, "42", "globex's 42 after acme's logout")

	// The logout endpoint, on globex's host, ends globex's session.
	r := ts.post("/logout", globex42, "Host", "globex.test")
	if r.status != http.StatusSeeOther {
		t.Fatalf("POST /logout on globex: %d", r.status)
	}
	ts.want("globex.test", globex42, toLogin, "", "globex's 42 after its own logout")
}

func TestTenantsReloadOnSIGHUP(t *testing.T) {
	t.Parallel()
	ts := newTenants(t)
	alice := ts.signIn("acme", "connect.sid", "acme-secret", "alice")
	carol := ts.signIn("initech", "initech.sid", "initech-secret", "carol")
	ts.want("initech.test", carol, 403, "", "initech before it is configured")

	write := func(s string) {
		if err := os.WriteFile(ts.file, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// A new tenant: served once authz has the signal, without a restart.
	write(tenantFile + "  - name: initech\n    hosts: [initech.test]\n    cookie_name: initech.sid\n    secrets: [initech-secret]\n")
	if err := ts.authz.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "initech to be served after SIGHUP", func() bool {
		status, _ := ts.as("initech.test", carol)
		return status == http.StatusOK
	})
	ts.want("acme.test", alice, 200, "alice", "acme after the reload")

	// A broken file: authz says why, with the line, and keeps serving the
	// tenants it has.
	write(tenantFile + "  - name: initech\n    hosts: [initech.test]\n    secret: [initech-secret]\n")
	if err := ts.authz.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "the reload error in the log", func() bool {
		return metric(t, ts.authz, `authz_tenant_reloads_total{result="error"}`) == 1
	})
	if out := ts.authz.Output(); !strings.Contains(out, "tenant file not reloaded") || !strings.Contains(out, "line 15: field secret not found") {
		t.Errorf("the log does not say why the reload failed:\n%s", out)
	}
	ts.want("initech.test", carol, 200, "carol", "initech after a broken reload")
	ts.want("acme.test", alice, 200, "alice", "acme after a broken reload")
}

// post sends POST uri through nginx, as a same-origin form would.
func (s *site) post(uri, cookie string, header ...string) response {
	s.t.Helper()
	return s.send(http.MethodPost, uri, cookie, header...)
}
