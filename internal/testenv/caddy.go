package testenv

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Caddy is a caddy process running proxies/Caddyfile.
type Caddy struct {
	*Process
	Addr string
}

// StartCaddy runs proxies/Caddyfile as it is shipped; vars fill its {$NAME}
// placeholders (AUTHZ_ADDR, APP_ADDR, LOGIN_ADDR) through the environment,
// and LISTEN is a free port.
func StartCaddy(t testing.TB, vars map[string]string) *Caddy {
	t.Helper()
	dir := t.TempDir()
	c := &Caddy{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))}
	cmd := exec.Command("caddy", "run", "--adapter", "caddyfile",
		"--config", filepath.Join(RepoRoot(t), "proxies", "Caddyfile"))
	// Caddy keeps state under HOME and XDG dirs: keep them in the test's.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir,
		"XDG_DATA_HOME=" + dir, "XDG_CONFIG_HOME=" + dir, "LISTEN=" + c.Addr}
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	c.Process = StartCmd(t, "caddy", cmd)
	c.waitHTTP(t, "caddy", "http://"+c.Addr+"/login", 15*time.Second, 0)
	return c
}
