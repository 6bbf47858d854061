package e2e

import (
	"context"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
)

// TestUnixSocketBehindNginx is the deployment of nginx/upstream-unix.conf.example:
// authz on --listen unix:/path, Nginx's upstream "server unix:/path;". A
// socket file a killed authz left behind is replaced at start, the file is
// 0660, a second authz cannot take a socket in use, and SIGTERM removes it.
func TestUnixSocketBehindNginx(t *testing.T) {
	t.Parallel()
	eachServer(t, unixSocketBehindNginx)
}

func unixSocketBehindNginx(t *testing.T, front ...string) {
	// Short: a socket path has at most 107 bytes.
	dir, err := os.MkdirTemp("", "authz-sock-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "authz.sock")
	stale, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	stale.(*net.UnixListener).SetUnlinkOnClose(false)
	stale.Close() // the file stays, nobody listens: what SIGKILL leaves

	r := testenv.StartRedis(t)
	a := testenv.StartAuthzUnix(t, r.URL(), sock, front...)
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o660 {
		t.Errorf("socket file mode %v, want a socket with 0660", fi.Mode())
	}
	app := testenv.StartEcho(t)
	n := testenv.StartNginx(t, map[string]string{"AUTHZ_ADDR": a.Addr, "APP_ADDR": app.Addr, "LOGIN_ADDR": app.Addr})
	s := &site{t: t, redis: r, rdb: r.Client(), authz: a, nginx: n, client: newClient()}

	sess := s.signIn(alice)
	got := s.get("/orders", sess.cookie).echoed(t)
	if v := headerValues(got.Header, "X-Auth-User"); !slices.Equal(v, []string{"alice"}) {
		t.Errorf("upstream got X-Auth-User %q, want [alice]", v)
	}
	s.wantLoginRedirect(t, s.get("/orders", ""), "/login?rd=%2Forders")
	// /logout is served by the fallback handler, over the socket too.
	req, _ := http.NewRequest(http.MethodPost, n.URL("/logout"), nil)
	req.Header.Set("Cookie", sess.cookie)
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("sign-out over the socket: status %d, want 303", resp.StatusCode)
	}
	s.wantLoginRedirect(t, s.get("/orders", sess.cookie), "/login?rd=%2Forders")

	// A second authz on the same socket must not take it over.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, testenv.BuildAuthz(t), "serve", "--listen", a.Addr, "--metrics-listen", "",
		"--redis-url", r.URL(), "--session-secret", testenv.SessionSecret).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another process is listening") {
		t.Errorf("second authz on a socket in use: %v\n%s", err, out)
	}

	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "authz to exit", a.Exited)
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Errorf("socket file after SIGTERM: %v, want it removed", err)
	}
}
