package testenv

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// RepoRoot returns the directory holding go.mod, found by walking up from
// the working directory (go test runs each package in its own directory).
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// placeholder matches the ${NAME} placeholders of nginx/authz.conf.template.
// Nginx's own variables are lower case, so they never match.
var placeholder = regexp.MustCompile(`\$\{[A-Z][A-Z0-9_]*\}`)

// Render replaces ${NAME} in tmpl for each NAME in vars, as envsubst with a
// list of variables does, and fails if a placeholder is left: Nginx would
// start with a literal "${APP_ADDR}" as an upstream address.
func Render(tmpl string, vars map[string]string) (string, error) {
	for name, v := range vars {
		tmpl = strings.ReplaceAll(tmpl, "${"+name+"}", v)
	}
	if left := placeholder.FindAllString(tmpl, -1); len(left) > 0 {
		return "", fmt.Errorf("no value for %s", strings.Join(left, ", "))
	}
	return tmpl, nil
}

// mainConf is the smallest main nginx.conf that runs the shipped config as
// any user: by default no master process (so no switch to the "nobody" user
// when run as root), and every file Nginx writes under dir instead of the
// packaged /var paths. The shipped config goes in http {} as in a packaged nginx.
const mainConf = `# Written by testenv: runs nginx/authz.conf.template as shipped.
daemon off;
{{master}}
worker_processes 1;
pid "{{dir}}/nginx.pid";
error_log "{{dir}}/error.log" notice;

events {
    worker_connections 1024;
}

http {
    access_log "{{dir}}/access.log";
    client_body_temp_path "{{dir}}/tmp/client_body";
    proxy_temp_path "{{dir}}/tmp/proxy";
    fastcgi_temp_path "{{dir}}/tmp/fastcgi";
    uwsgi_temp_path "{{dir}}/tmp/uwsgi";
    scgi_temp_path "{{dir}}/tmp/scgi";

    include "{{dir}}/authz.conf";
}
`

// Nginx is an nginx started for one test with the shipped config.
type Nginx struct {
	*Process
	// Addr is where it listens (the LISTEN placeholder).
	Addr string
	// Dir holds nginx.conf, authz.conf, authz/*.conf and the logs.
	Dir string
}

// StartNginx renders nginx/authz.conf.template with vars (LISTEN,
// AUTHZ_ADDR, APP_ADDR, LOGIN_ADDR), next to the shipped nginx/authz/*.conf
// snippets, starts nginx on it and waits until it accepts connections.
// Without LISTEN it listens on a free loopback port.
func StartNginx(t testing.TB, vars map[string]string) *Nginx {
	t.Helper()
	return StartNginxAuthz(t, vars)
}

// StartNginxAuthz is StartNginx with more authz instances than the one at
// AUTHZ_ADDR: each of moreAuthz gets a "server" line in
// authz/upstream/more.conf, where the template tells users to put theirs.
func StartNginxAuthz(t testing.TB, vars map[string]string, moreAuthz ...string) *Nginx {
	t.Helper()
	return startNginx(t, vars, false, moreAuthz, nil)
}

// StartNginxLocations is StartNginx with the operator's own locations:
// each of locations (file name -> contents) goes in authz/locations/, where
// the template includes them in its server block.
func StartNginxLocations(t testing.TB, vars map[string]string, locations map[string]string) *Nginx {
	t.Helper()
	return startNginx(t, vars, false, nil, locations)
}

// StartNginxReloadable is StartNginx with a master process, as Nginx runs
// in production: SIGHUP then reloads it (new workers, old ones finish
// their requests), which a single process cannot do.
func StartNginxReloadable(t testing.TB, vars map[string]string) *Nginx {
	t.Helper()
	return startNginx(t, vars, true, nil, nil)
}

func startNginx(t testing.TB, vars map[string]string, master bool, moreAuthz []string, locations map[string]string) *Nginx {
	t.Helper()
	root := RepoRoot(t)
	dir := t.TempDir()

	vs := make(map[string]string, len(vars)+1)
	for k, v := range vars {
		vs[k] = v
	}
	if vs["LISTEN"] == "" {
		vs["LISTEN"] = net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
	}
	tmpl, err := os.ReadFile(filepath.Join(root, "nginx", "authz.conf.template"))
	if err != nil {
		t.Fatal(err)
	}
	conf, err := Render(string(tmpl), vs)
	if err != nil {
		t.Fatalf("render nginx/authz.conf.template: %v", err)
	}
	writeFile(t, filepath.Join(dir, "authz.conf"), conf)
	processes := "master_process off;"
	if master {
		processes = "master_process on;"
		if os.Geteuid() == 0 {
			// Workers would switch to "nobody", who cannot use dir.
			processes += "\nuser root;"
		}
	}
	main := strings.NewReplacer("{{dir}}", dir, "{{master}}", processes).Replace(mainConf)
	writeFile(t, filepath.Join(dir, "nginx.conf"), main)
	snippets, err := filepath.Glob(filepath.Join(root, "nginx", "authz", "*.conf"))
	if err != nil || len(snippets) == 0 {
		t.Fatalf("no nginx/authz/*.conf snippets (err %v)", err)
	}
	for _, src := range snippets {
		b, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(dir, "authz", filepath.Base(src)), string(b))
	}
	if len(moreAuthz) > 0 {
		var servers strings.Builder
		for _, addr := range moreAuthz {
			fmt.Fprintf(&servers, "server %s max_fails=0;\n", addr)
		}
		writeFile(t, filepath.Join(dir, "authz", "upstream", "more.conf"), servers.String())
	}
	for name, conf := range locations {
		writeFile(t, filepath.Join(dir, "authz", "locations", name), conf)
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}

	n := &Nginx{Addr: vs["LISTEN"], Dir: dir}
	// -e: without it nginx opens its compiled-in error log
	// (/var/log/nginx/error.log) before reading the config, and fails as
	// non-root.
	n.Process = Start(t, "nginx", "-p", dir+"/", "-c", filepath.Join(dir, "nginx.conf"), "-e", filepath.Join(dir, "error.log"))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("nginx error.log:\n%s", n.ErrorLog())
		}
	})
	WaitFor(t, 10*time.Second, "nginx to accept connections on "+n.Addr, func() bool {
		if n.Exited() {
			t.Fatalf("nginx exited before it was ready: %v\n%s\nerror.log:\n%s", n.Wait(), n.Output(), n.ErrorLog())
		}
		c, err := net.DialTimeout("tcp", n.Addr, time.Second)
		if err != nil {
			return false
		}
		c.Close()
		return true
	})
	return n
}

// URL is the address of uri (a path with an optional query) through nginx.
func (n *Nginx) URL(uri string) string { return "http://" + n.Addr + uri }

// ErrorLog is what nginx wrote to its error log so far.
func (n *Nginx) ErrorLog() string {
	b, err := os.ReadFile(filepath.Join(n.Dir, "error.log"))
	if err != nil {
		return err.Error()
	}
	return string(b)
}

func writeFile(t testing.TB, name, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
