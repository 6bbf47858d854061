package e2e

import (
	"context"
	"image/png"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
)

// chromiumPath is the browser e2e/browser/login.mjs drives: Debian's
// chromium package. playwright-core downloads none, so it must be there.
const chromiumPath = "/usr/bin/chromium"

// TestBrowserLoginLogout is the whole story in a real browser: headless
// Chromium opens a page of examples/whoami through nginx, is sent to the
// Express login, signs in, sees its identity on the page, signs out with the
// page's button (authz's POST /logout), and is sent to the login again. The
// steps and their checks are in e2e/browser/login.mjs.
//
// The signed-in page is saved as whoami.png: into docs/img/ (the README's
// screenshot) when UPDATE_SCREENSHOT=1, else into a temporary directory, so
// an ordinary test run leaves the tree as it was.
func TestBrowserLoginLogout(t *testing.T) {
	t.Parallel()
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = chromiumPath
	}
	// A failure, not a skip: a skipped browser test looks green in CI while
	// testing nothing. scripts/install-deps.sh installs it.
	if _, err := os.Stat(chromium); err != nil {
		t.Fatalf("the browser test needs Chromium at %s (%v): apt-get install chromium, or scripts/install-deps.sh; CHROMIUM=/path names another", chromium, err)
	}
	root := testenv.RepoRoot(t)
	shotDir := t.TempDir()
	if os.Getenv("UPDATE_SCREENSHOT") == "1" {
		shotDir = filepath.Join(root, "docs", "img")
	}

	r := testenv.StartRedis(t)
	login := testenv.StartNode(t, "examples/express-login",
		"REDIS_URL="+r.URL(), "SESSION_SECRET="+testenv.SessionSecret)
	// Email and roles too, so the page (and the screenshot) shows every
	// identity header the shipped Nginx config passes on.
	a := testenv.StartAuthz(t, r.URL(),
		"--header", "X-Auth-Email=passport.user.email", "--header", "X-Auth-Roles=passport.user.roles")
	app := startWhoami(t, r.URL())
	n := testenv.StartNginx(t, map[string]string{
		"AUTHZ_ADDR": a.Addr,
		"APP_ADDR":   app,
		"LOGIN_ADDR": login.Addr,
	})

	dir := filepath.Join(root, "e2e", "browser")
	testenv.NpmCI(t, dir)
	// The script's own waits end each step within seconds; this deadline
	// only guards against a browser that hangs as a whole.
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "node", "login.mjs", n.URL(""), shotDir)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CHROMIUM="+chromium)
	// SIGTERM lets Playwright close Chromium on its way out; a SIGKILLed
	// node would leave the browser running.
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("node login.mjs did not finish within 90s:\n%s", out)
	}
	if err != nil {
		t.Fatalf("node login.mjs: %v\n%s", err, out)
	}
	t.Logf("%s", out)

	// The screenshot is a PNG of the viewport, as the README shows it.
	f, err := os.Open(filepath.Join(shotDir, "whoami.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cfg, err := png.DecodeConfig(f)
	if err != nil {
		t.Fatalf("whoami.png: %v", err)
	}
	if cfg.Width != 1000 || cfg.Height != 700 {
		t.Errorf("whoami.png is %dx%d, want 1000x700", cfg.Width, cfg.Height)
	}
}

// startWhoami builds examples/whoami and runs it as the app behind nginx on
// redisURL, and returns its address once it answers HTTP. Its stand-in
// login page is never reached: nginx sends /login to the Express app.
func startWhoami(t *testing.T, redisURL string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "whoami")
	build := exec.Command("go", "build", "-o", bin, "./examples/whoami")
	build.Dir = testenv.RepoRoot(t)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build ./examples/whoami: %v\n%s", err, out)
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(testenv.FreePort(t)))
	p := testenv.Start(t, bin, "--listen", addr, "--redis-url", redisURL, "--session-secret", testenv.SessionSecret)
	c := &http.Client{Timeout: time.Second}
	testenv.WaitFor(t, 10*time.Second, "whoami to answer on "+addr, func() bool {
		if p.Exited() {
			t.Fatalf("whoami exited before it was ready: %v\n%s", p.Wait(), p.Output())
		}
		resp, err := c.Get("http://" + addr + "/")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return true
	})
	return addr
}
