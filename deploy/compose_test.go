// Package deploy checks the container setup (docker-compose.yml, the
// Dockerfiles, deploy/) without a Docker engine: compose itself validates
// and normalizes the file (`docker compose config`, or Debian's
// docker-compose), and these tests check that what it would run stays in
// step with the rest of the repository: the nginx files the end-to-end tests
// run, authz's flags, docs/metrics.md and the Grafana dashboard.
package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// root is the repository root: go test runs in deploy/.
var root = func() string {
	d, err := filepath.Abs("..")
	if err != nil {
		panic(err)
	}
	if r, err := filepath.EvalSymlinks(d); err == nil {
		return r
	}
	return d
}()

func readFile(t *testing.T, rel string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// ---- running compose ----

// composeTool is how compose is run on this machine: the Docker CLI's
// compose plugin (v2, JSON output) or Debian's docker-compose (v1, YAML).
type composeTool struct {
	name string   // for messages
	argv []string // the command, before compose's own arguments
	json bool     // config can print JSON
}

var findTool = sync.OnceValues(func() (composeTool, error) {
	if exec.Command("docker", "compose", "version").Run() == nil {
		return composeTool{"docker compose", []string{"docker", "compose"}, true}, nil
	}
	if p, err := exec.LookPath("docker-compose"); err == nil {
		// Debian bookworm's is v1 (Python, YAML only); newer
		// distributions package v2 under this name too.
		if v, err := exec.Command(p, "version", "--short").Output(); err == nil {
			v1 := strings.HasPrefix(strings.TrimPrefix(strings.TrimSpace(string(v)), "v"), "1.")
			return composeTool{"docker-compose " + strings.TrimSpace(string(v)), []string{p}, !v1}, nil
		}
	}
	return composeTool{}, fmt.Errorf("neither `docker compose` nor `docker-compose` works here: " +
		"scripts/install-deps.sh installs Debian's docker-compose, which checks docker-compose.yml without a Docker engine")
})

// interpolated are the variables docker-compose.yml reads from .env.
var interpolated = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:?[-?+][^}]*)?\}`)

// runCompose runs `config` on docker-compose.yml with envFile as the .env,
// in an environment without any variable the file interpolates (so a
// developer's shell or real .env does not change the outcome).
func runCompose(t *testing.T, envFile string, args ...string) (stdout, stderr []byte, err error) {
	t.Helper()
	tool, terr := findTool()
	if terr != nil {
		t.Fatal(terr)
	}
	skip := map[string]bool{}
	for _, m := range interpolated.FindAllStringSubmatch(readFile(t, "docker-compose.yml"), -1) {
		skip[m[1]] = true
	}
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if skip[k] || strings.HasPrefix(k, "COMPOSE_") {
			continue
		}
		env = append(env, kv)
	}
	argv := append(slices.Clone(tool.argv), "--project-directory", root,
		"-f", filepath.Join(root, "docker-compose.yml"), "--env-file", envFile, "config")
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = root
	cmd.Env = env
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	return out.Bytes(), errb.Bytes(), err
}

// project is docker-compose.yml as compose resolves it with .env.example
// as the .env, decoded from JSON.
var (
	projectOnce sync.Once
	project     map[string]any
	projectErr  error
)

func composeProject(t *testing.T) *model {
	t.Helper()
	projectOnce.Do(func() {
		tool, err := findTool()
		if err != nil {
			projectErr = err
			return
		}
		var args []string
		if tool.json {
			args = []string{"--format", "json"}
		}
		out, stderr, err := runCompose(t, filepath.Join(root, ".env.example"), args...)
		if err != nil {
			projectErr = fmt.Errorf("%s config with .env.example: %v\n%s", tool.name, err, stderr)
			return
		}
		if !tool.json {
			// docker-compose (v1) prints YAML only; its own Python and
			// PyYAML (a dependency of the Debian package) turn it into JSON.
			cmd := exec.Command("python3", "-c", "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)")
			cmd.Stdin = bytes.NewReader(out)
			var errb bytes.Buffer
			cmd.Stderr = &errb
			if out, err = cmd.Output(); err != nil {
				projectErr = fmt.Errorf("convert %s's YAML to JSON with python3-yaml: %v\n%s", tool.name, err, errb.Bytes())
				return
			}
		}
		projectErr = json.Unmarshal(out, &project)
	})
	if projectErr != nil {
		t.Fatal(projectErr)
	}
	return newModel(t, project)
}

// ---- the resolved project, from either compose's output ----

type model struct {
	services map[string]*service
}

type service struct {
	name      string
	build     *build
	command   []string
	env       map[string]string
	mounts    []mount
	ports     []port
	replicas  int
	dependsOn map[string]string // service: condition
	raw       map[string]any
}

type build struct{ context, dockerfile, target string }

type mount struct {
	source, target string
	bind, readOnly bool
}

type port struct{ hostIP, published, target string }

func newModel(t *testing.T, p map[string]any) *model {
	t.Helper()
	m := &model{services: map[string]*service{}}
	svcs, _ := p["services"].(map[string]any)
	if len(svcs) == 0 {
		t.Fatal("compose config shows no services")
	}
	for name, v := range svcs {
		raw, _ := v.(map[string]any)
		s := &service{name: name, raw: raw, env: map[string]string{}, dependsOn: map[string]string{}, replicas: 1}
		switch b := raw["build"].(type) {
		case string:
			s.build = &build{context: b}
		case map[string]any:
			s.build = &build{context: str(b["context"]), dockerfile: str(b["dockerfile"]), target: str(b["target"])}
		}
		switch c := raw["command"].(type) {
		case string:
			s.command = strings.Fields(c)
		case []any:
			for _, a := range c {
				s.command = append(s.command, str(a))
			}
		}
		switch e := raw["environment"].(type) {
		case map[string]any:
			for k, v := range e {
				s.env[k] = str(v)
			}
		case []any:
			for _, kv := range e {
				k, v, _ := strings.Cut(str(kv), "=")
				s.env[k] = v
			}
		}
		for _, v := range list(raw["volumes"]) {
			s.mounts = append(s.mounts, parseMount(t, v))
		}
		for _, v := range list(raw["ports"]) {
			s.ports = append(s.ports, parsePort(t, v))
		}
		if d, ok := raw["deploy"].(map[string]any); ok {
			if r, ok := d["replicas"].(float64); ok {
				s.replicas = int(r)
			}
		}
		switch d := raw["depends_on"].(type) {
		case map[string]any:
			for k, v := range d {
				c, _ := v.(map[string]any)
				s.dependsOn[k] = str(c["condition"])
			}
		case []any:
			for _, k := range d {
				s.dependsOn[str(k)] = "service_started"
			}
		}
		m.services[name] = s
	}
	return m
}

func (m *model) service(t *testing.T, name string) *service {
	t.Helper()
	s := m.services[name]
	if s == nil {
		t.Fatalf("docker-compose.yml has no service %q", name)
	}
	return s
}

func str(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		return fmt.Sprint(v)
	}
}

func list(v any) []any { l, _ := v.([]any); return l }

// parseMount reads a volume: an object (compose v2) or "src:dst[:mode]"
// (docker-compose v1, which makes bind sources absolute).
func parseMount(t *testing.T, v any) mount {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		ro, _ := v["read_only"].(bool)
		return mount{source: str(v["source"]), target: str(v["target"]), bind: str(v["type"]) == "bind", readOnly: ro}
	case string:
		f := strings.Split(v, ":")
		if len(f) < 2 {
			t.Fatalf("volume %q: want source:target", v)
		}
		mt := mount{source: f[0], target: f[1], bind: filepath.IsAbs(f[0])}
		if len(f) > 2 {
			mt.readOnly = slices.Contains(strings.Split(f[2], ","), "ro")
		}
		return mt
	}
	t.Fatalf("volume %v: unknown form", v)
	return mount{}
}

// parsePort reads a port: an object (v2) or "[ip:]published:target[/proto]" (v1).
func parsePort(t *testing.T, v any) port {
	t.Helper()
	switch v := v.(type) {
	case map[string]any:
		return port{hostIP: str(v["host_ip"]), published: str(v["published"]), target: str(v["target"])}
	case string:
		spec, _, _ := strings.Cut(v, "/")
		f := strings.Split(spec, ":")
		switch len(f) {
		case 3:
			return port{hostIP: f[0], published: f[1], target: f[2]}
		case 2:
			return port{published: f[0], target: f[1]}
		case 1:
			return port{target: f[0]}
		}
	}
	t.Fatalf("port %v: unknown form", v)
	return port{}
}

// repoPath is a bind mount's source relative to the repository ("" when it
// is outside).
func repoPath(src string) string {
	if s, err := filepath.EvalSymlinks(src); err == nil {
		src = s
	}
	rel, err := filepath.Rel(root, src)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return ""
	}
	return filepath.ToSlash(rel)
}

// mountOf returns the bind mount of the repository's rel in s.
func (s *service) mountOf(t *testing.T, rel string) mount {
	t.Helper()
	for _, m := range s.mounts {
		if m.bind && repoPath(m.source) == rel {
			return m
		}
	}
	t.Fatalf("service %s does not mount ./%s", s.name, rel)
	return mount{}
}

// hostFile maps a path inside s's container to the repository file a bind
// mount puts there ("" when none does).
func (s *service) hostFile(p string) string {
	for _, m := range s.mounts {
		if !m.bind {
			continue
		}
		if p == m.target {
			return repoPath(m.source)
		}
		if rest, ok := strings.CutPrefix(p, m.target+"/"); ok {
			if r := repoPath(m.source); r != "" {
				return path.Join(r, rest)
			}
		}
	}
	return ""
}

// listenPort is the port s serves on, from how it is configured: a
// --listen flag, AUTHZ_LISTEN or PORT.
func (s *service) listenPort(t *testing.T) string {
	t.Helper()
	for i, a := range s.command {
		if v, ok := strings.CutPrefix(a, "--listen="); ok {
			return portOf(t, v)
		}
		if a == "--listen" && i+1 < len(s.command) {
			return portOf(t, s.command[i+1])
		}
	}
	if v := s.env["AUTHZ_LISTEN"]; v != "" {
		return portOf(t, v)
	}
	return s.env["PORT"]
}

func portOf(t *testing.T, hostport string) string {
	t.Helper()
	_, p, err := net.SplitHostPort(hostport)
	if err != nil {
		t.Fatalf("address %q: %v", hostport, err)
	}
	return p
}

// ---- the checks ----

func TestComposeConfigValid(t *testing.T) {
	m := composeProject(t)
	tool, _ := findTool()
	t.Logf("docker-compose.yml checked with %s", tool.name)
	for _, name := range []string{"redis", "authz", "whoami", "express-login", "node-reader", "nginx", "prometheus", "grafana"} {
		m.service(t, name)
	}
}

// Without a .env, compose must refuse to run rather than start the stack
// with an empty secret.
func TestComposeRequiresSecrets(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct{ env, missing string }{
		{"", "SESSION_SECRET"},
		{"SESSION_SECRET=s3cret\n", "GF_ADMIN_PASSWORD"},
	} {
		f := filepath.Join(dir, "env")
		if err := os.WriteFile(f, []byte(c.env), 0o600); err != nil {
			t.Fatal(err)
		}
		_, stderr, err := runCompose(t, f, "-q")
		if err == nil {
			t.Errorf("compose config with .env %q succeeded; want a refusal naming %s", c.env, c.missing)
			continue
		}
		if !bytes.Contains(stderr, []byte(c.missing)) {
			t.Errorf("compose config with .env %q failed without naming %s:\n%s", c.env, c.missing, stderr)
		}
	}
}

// Nginx in compose runs exactly what the e2e tests run (internal/testenv):
// nginx/authz.conf.template, rendered from the environment, and the
// nginx/authz/*.conf snippets it includes.
func TestComposeNginxRunsShippedConfig(t *testing.T) {
	m := composeProject(t)
	n := m.service(t, "nginx")

	tm := n.mountOf(t, "nginx/authz.conf.template")
	if dir, file := path.Split(tm.target); dir != "/etc/nginx/templates/" || !strings.HasSuffix(file, ".conf.template") {
		t.Errorf("nginx/authz.conf.template is mounted at %s; the image renders only /etc/nginx/templates/*.template (to conf.d/)", tm.target)
	}
	sm := n.mountOf(t, "nginx/authz")
	if sm.target != "/etc/nginx/authz" {
		t.Errorf("nginx/authz/ is mounted at %s, want /etc/nginx/authz (the template includes authz/*.conf relative to /etc/nginx)", sm.target)
	}
	for _, mt := range []mount{tm, sm} {
		if !mt.readOnly {
			t.Errorf("%s is mounted writable, want :ro", mt.target)
		}
	}

	tmpl := readFile(t, "nginx/authz.conf.template")
	// Every include resolves, through the mounts, to a file in nginx/.
	includes := regexp.MustCompile(`(?m)^\s*include\s+([^;\s]+)\s*;`).FindAllStringSubmatch(tmpl, -1)
	if len(includes) == 0 {
		t.Fatal("nginx/authz.conf.template includes nothing; expected authz/*.conf")
	}
	for _, inc := range includes {
		p := inc[1]
		if !path.IsAbs(p) {
			p = path.Join("/etc/nginx", p)
		}
		f := n.hostFile(p)
		if f == "" {
			t.Errorf("the template includes %s: no mount puts a repository file at %s", inc[1], p)
			continue
		}
		if strings.ContainsAny(f, "*?[") {
			// A pattern: Nginx includes what matches, nothing included
			// being fine (authz/upstream/*.conf, extra authz instances).
			if _, err := filepath.Glob(filepath.Join(root, f)); err != nil {
				t.Errorf("the template includes %s: %v", inc[1], err)
			}
			continue
		}
		if _, err := os.Stat(filepath.Join(root, f)); err != nil {
			t.Errorf("the template includes %s: %v", inc[1], err)
		}
	}

	// The image's envsubst replaces only variables set in the container's
	// environment: each placeholder needs a value, and nothing else in the
	// template may look like a variable envsubst knows (Nginx's own are
	// lower case; the image's environment is upper case).
	placeholders := regexp.MustCompile(`\$\{([A-Z][A-Z0-9_]*)\}`).FindAllStringSubmatch(tmpl, -1)
	if len(placeholders) == 0 {
		t.Fatal("no ${...} placeholders in nginx/authz.conf.template")
	}
	for _, p := range placeholders {
		if n.env[p[1]] == "" {
			t.Errorf("nginx/authz.conf.template uses ${%s}; the nginx service does not set it", p[1])
		}
	}
	if bad := regexp.MustCompile(`\$[A-Z][A-Z0-9_]*`).FindAllString(tmpl, -1); len(bad) > 0 {
		t.Errorf("nginx/authz.conf.template has %v: envsubst would replace it if the container's environment has it; write ${NAME}", bad)
	}

	// Upstreams (every ${..._ADDR}) point at compose services, on the port
	// each serves on.
	wantService := map[string]string{"AUTHZ_ADDR": "authz", "LOGIN_ADDR": "express-login"}
	seen := map[string]bool{}
	for _, ph := range placeholders {
		name := ph[1]
		if !strings.HasSuffix(name, "_ADDR") || seen[name] {
			continue
		}
		seen[name] = true
		want, v := wantService[name], n.env[name]
		host, upPort, err := net.SplitHostPort(v)
		if err != nil {
			t.Errorf("nginx %s=%q: %v", name, v, err)
			continue
		}
		up := m.services[host]
		if up == nil {
			t.Errorf("nginx %s=%q: no compose service %q", name, v, host)
			continue
		}
		if want != "" && host != want {
			t.Errorf("nginx %s=%q, want the %s service", name, v, want)
		}
		if lp := up.listenPort(t); lp != upPort {
			t.Errorf("nginx %s=%q, but %s listens on port %q", name, v, host, lp)
		}
		if _, ok := n.dependsOn[host]; !ok {
			t.Errorf("nginx does not depend on %s: it resolves %s at start and fails if the name does not exist yet", host, v)
		}
	}
	if !slices.ContainsFunc(n.ports, func(p port) bool { return p.target == n.env["LISTEN"] }) {
		t.Errorf("nginx listens on %q (LISTEN) but publishes %v", n.env["LISTEN"], n.ports)
	}
}

// authz runs replicated, reachable from the other containers, configured
// only with variables it knows.
func TestComposeAuthz(t *testing.T) {
	m := composeProject(t)
	a := m.service(t, "authz")
	if a.replicas < 2 {
		t.Errorf("authz has %d replica(s); the demo shows single sign-off across at least 2", a.replicas)
	}
	for _, k := range []string{"AUTHZ_LISTEN", "AUTHZ_METRICS_LISTEN"} {
		host, _, err := net.SplitHostPort(a.env[k])
		if err != nil {
			t.Errorf("authz %s=%q: %v", k, a.env[k], err)
			continue
		}
		if ip := net.ParseIP(host); host != "" && (ip == nil || !ip.IsUnspecified()) {
			t.Errorf("authz %s=%q: other containers cannot reach it; listen on 0.0.0.0", k, a.env[k])
		}
	}

	// Every variable is one authz reads (docs/configuration.md lists them,
	// and cmd/authz's tests keep that list true), every flag one it has.
	doc := readFile(t, "docs/configuration.md")
	start, end := strings.Index(doc, "<!-- flags:serve -->"), strings.Index(doc, "<!-- /flags:serve -->")
	if start < 0 || end < start {
		t.Fatal("docs/configuration.md has no flags:serve table")
	}
	table := doc[start:end]
	for k := range a.env {
		if !strings.Contains(table, "`"+k+"`") {
			t.Errorf("authz's environment sets %s, which authz serve does not read (docs/configuration.md)", k)
		}
	}
	if len(a.command) == 0 || a.command[0] != "serve" {
		t.Errorf("authz command %q, want serve first", a.command)
	}
	for _, arg := range a.command {
		if f, _, _ := strings.Cut(arg, "="); strings.HasPrefix(f, "--") && !strings.Contains(table, "`"+f+"`") {
			t.Errorf("authz command has %s, which authz serve does not know (docs/configuration.md)", f)
		}
	}
	secret := a.env["SESSION_SECRET"] + a.env["AUTHZ_SESSION_SECRET"]
	if secret == "" {
		t.Fatal("authz gets no session secret")
	}
	// Everyone signing or reading the session shares authz's secret.
	for _, name := range []string{"whoami", "express-login", "node-reader"} {
		if got := m.service(t, name).env["SESSION_SECRET"]; got != secret {
			t.Errorf("%s's SESSION_SECRET is %q, authz's %q: they must be one secret", name, got, secret)
		}
	}
	// And the Redis: authz's URL names the redis service.
	url := a.env["REDIS_SESSION_URL"] + a.env["AUTHZ_REDIS_URL"]
	if !strings.Contains(url, "@redis:6379/") && !strings.Contains(url, "//redis:6379/") {
		t.Errorf("authz's Redis URL %q does not name the redis service", url)
	}
}

// Prometheus finds every authz replica on its metrics port.
func TestComposePrometheusScrapesEveryReplica(t *testing.T) {
	m := composeProject(t)
	p := m.service(t, "prometheus")
	cm := p.mountOf(t, "deploy/prometheus.yml")
	if !slices.Contains(p.command, "--config.file="+cm.target) {
		t.Errorf("prometheus command %q does not read the mounted %s", p.command, cm.target)
	}
	conf := readFile(t, "deploy/prometheus.yml")
	_, mport, err := net.SplitHostPort(m.service(t, "authz").env["AUTHZ_METRICS_LISTEN"])
	if err != nil {
		t.Fatalf("authz AUTHZ_METRICS_LISTEN: %v", err)
	}
	// A DNS lookup of the service name gives one A record per replica; a
	// static target would scrape whichever replica answered.
	job := regexp.MustCompile(`(?s)- job_name: authz\n(.*?)(\n  - job_name:|\z)`).FindStringSubmatch(conf)
	if job == nil {
		t.Fatal("deploy/prometheus.yml has no authz job")
	}
	if !regexp.MustCompile(`dns_sd_configs:\s*\n\s*- names: \[authz\]\s*\n\s*type: A\s*\n\s*port: ` + mport + `\b`).MatchString(job[1]) {
		t.Errorf("deploy/prometheus.yml's authz job does not use dns_sd_configs with names [authz], type A, port %s (AUTHZ_METRICS_LISTEN):\n%s", mport, job[1])
	}
}

// Grafana gets the provisioned datasource and dashboard, and the dashboard
// uses that datasource.
func TestComposeGrafana(t *testing.T) {
	m := composeProject(t)
	g := m.service(t, "grafana")
	pm := g.mountOf(t, "deploy/grafana/provisioning")
	if pm.target != "/etc/grafana/provisioning" {
		t.Errorf("provisioning is mounted at %s, want /etc/grafana/provisioning", pm.target)
	}
	prov := readFile(t, "deploy/grafana/provisioning/dashboards/authz.yml")
	dpath := regexp.MustCompile(`(?m)^\s*path:\s*(\S+)`).FindStringSubmatch(prov)
	if dpath == nil {
		t.Fatal("deploy/grafana/provisioning/dashboards/authz.yml has no path")
	}
	if f := g.hostFile(dpath[1] + "/authz.json"); f != "deploy/grafana/dashboards/authz.json" {
		t.Errorf("the dashboard provider reads %s, where grafana's mounts put %q, not deploy/grafana/dashboards/", dpath[1], f)
	}
	if home := g.env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]; home != "" && g.hostFile(home) != "deploy/grafana/dashboards/authz.json" {
		t.Errorf("home dashboard %s is not the mounted deploy/grafana/dashboards/authz.json", home)
	}
	if g.env["GF_SECURITY_ADMIN_PASSWORD"] == "" {
		t.Error("grafana's admin password is not set from .env")
	}

	ds := readFile(t, "deploy/grafana/provisioning/datasources/prometheus.yml")
	uid := regexp.MustCompile(`(?m)^\s*uid:\s*(\S+)`).FindStringSubmatch(ds)
	url := regexp.MustCompile(`(?m)^\s*url:\s*http://([^/\s]+)`).FindStringSubmatch(ds)
	if uid == nil || url == nil {
		t.Fatal("the provisioned datasource has no uid or url")
	}
	// 9090 is Prometheus's default --web.listen-address.
	if host, p, err := net.SplitHostPort(url[1]); err != nil || host != "prometheus" || p != "9090" {
		t.Errorf("the datasource url %s is not the prometheus service on 9090", url[1])
	}
	for _, d := range dashboardDatasources(t) {
		if d != uid[1] {
			t.Errorf("the dashboard uses datasource uid %q; the provisioned one is %q", d, uid[1])
		}
	}
}

// Every service built from the repository has a Dockerfile with the stage
// compose asks for, running as a user other than root.
func TestComposeBuilds(t *testing.T) {
	m := composeProject(t)
	built := 0
	for _, s := range m.services {
		if s.build == nil {
			continue
		}
		built++
		ctx := repoPath(s.build.context)
		if ctx == "" {
			t.Errorf("%s builds from %s, outside the repository", s.name, s.build.context)
			continue
		}
		df := s.build.dockerfile
		if df == "" {
			df = "Dockerfile"
		}
		if !filepath.IsAbs(df) {
			df = filepath.Join(root, ctx, df)
		}
		b, err := os.ReadFile(df)
		if err != nil {
			t.Errorf("%s: %v", s.name, err)
			continue
		}
		stage := finalStage(string(b), s.build.target)
		if stage == "" {
			t.Errorf("%s: %s has no stage %q", s.name, df, s.build.target)
			continue
		}
		users := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllStringSubmatch(stage, -1)
		if len(users) == 0 {
			t.Errorf("%s: its stage in %s sets no USER: it would run as root", s.name, df)
		} else if u := users[len(users)-1][1]; u == "root" || u == "0" || strings.HasPrefix(u, "0:") || strings.HasPrefix(u, "root:") {
			t.Errorf("%s: its stage in %s runs as %s", s.name, df, u)
		}
		if _, err := os.Stat(filepath.Join(root, ctx, ".dockerignore")); err != nil {
			t.Errorf("%s: no .dockerignore in its build context %s: .env and node_modules would be sent to the builder", s.name, ctx)
		}
	}
	if built == 0 {
		t.Error("no service is built from the repository")
	}

	// The golang image builds with GOTOOLCHAIN=local: GO_VERSION must be at
	// least go.mod's go line.
	want := regexp.MustCompile(`(?m)^go (\S+)`).FindStringSubmatch(readFile(t, "go.mod"))
	have := regexp.MustCompile(`(?m)^ARG GO_VERSION=(\S+)`).FindStringSubmatch(readFile(t, "Dockerfile"))
	if want == nil || have == nil {
		t.Fatal("no go line in go.mod or no ARG GO_VERSION=... in Dockerfile")
	}
	if versionLess(have[1], want[1]) {
		t.Errorf("Dockerfile's GO_VERSION %s is older than go.mod's go %s", have[1], want[1])
	}
	ignore := readFile(t, ".dockerignore")
	for _, p := range []string{".env", ".git"} {
		if !regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(p) + `$`).MatchString(ignore) {
			t.Errorf(".dockerignore does not exclude %s", p)
		}
	}
}

// finalStage returns the Dockerfile text of stage target (the last stage
// when target is ""), or "".
func finalStage(dockerfile, target string) string {
	from := regexp.MustCompile(`(?mi)^FROM\s+.*?(?:\s+AS\s+(\S+))?\s*$`)
	locs := from.FindAllStringSubmatchIndex(dockerfile, -1)
	for i, l := range locs {
		end := len(dockerfile)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		name := ""
		if l[2] >= 0 {
			name = dockerfile[l[2]:l[3]]
		}
		if (target == "" && i == len(locs)-1) || (target != "" && strings.EqualFold(name, target)) {
			return dockerfile[l[0]:end]
		}
	}
	return ""
}

// versionLess compares dotted Go versions ("1.26", "1.26.8").
func versionLess(a, b string) bool {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < max(len(pa), len(pb)); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			return x < y
		}
	}
	return false
}

// .env.example names every variable docker-compose.yml reads, and .env
// itself is never committed.
func TestEnvExample(t *testing.T) {
	example := readFile(t, ".env.example")
	set := map[string]bool{}
	for _, m := range regexp.MustCompile(`(?m)^([A-Za-z_][A-Za-z0-9_]*)=`).FindAllStringSubmatch(example, -1) {
		set[m[1]] = true
	}
	for _, m := range interpolated.FindAllStringSubmatch(readFile(t, "docker-compose.yml"), -1) {
		if !set[m[1]] {
			t.Errorf("docker-compose.yml reads ${%s}; .env.example does not show it", m[1])
		}
	}
	if !regexp.MustCompile(`(?m)^/?\.env$`).MatchString(readFile(t, ".gitignore")) {
		t.Error(".gitignore does not ignore .env")
	}
}

// ---- the dashboard ----

type dashboard struct {
	UID    string  `json:"uid"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	Targets    []struct {
		Datasource json.RawMessage `json:"datasource"`
		Expr       string          `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

func loadDashboard(t *testing.T) dashboard {
	t.Helper()
	var d dashboard
	if err := json.Unmarshal([]byte(readFile(t, "deploy/grafana/dashboards/authz.json")), &d); err != nil {
		t.Fatalf("deploy/grafana/dashboards/authz.json: %v", err)
	}
	return d
}

func allPanels(ps []panel) []panel {
	var out []panel
	for _, p := range ps {
		out = append(out, p)
		out = append(out, allPanels(p.Panels)...)
	}
	return out
}

func dashboardDatasources(t *testing.T) []string {
	t.Helper()
	var uids []string
	add := func(raw json.RawMessage) {
		if len(raw) == 0 {
			return
		}
		var ds struct{ UID string }
		if json.Unmarshal(raw, &ds) != nil || ds.UID == "" {
			uids = append(uids, "(unnamed: "+string(raw)+")")
			return
		}
		uids = append(uids, ds.UID)
	}
	for _, p := range allPanels(loadDashboard(t).Panels) {
		if p.Type == "row" {
			continue
		}
		add(p.Datasource)
		for _, tg := range p.Targets {
			add(tg.Datasource)
		}
	}
	return uids
}

// documentedMetrics reads docs/metrics.md's table: name -> type.
func documentedMetrics(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, m := range regexp.MustCompile("(?m)^\\| `(authz_[a-z0-9_]+)` \\| (\\w+) \\|").FindAllStringSubmatch(readFile(t, "docs/metrics.md"), -1) {
		out[m[1]] = m[2]
	}
	if len(out) == 0 {
		t.Fatal("no metrics found in docs/metrics.md")
	}
	return out
}

// Every metric the dashboard queries is one authz exports (docs/metrics.md
// is kept true by cmd/authz's tests), and the panels the deployment is
// judged by are there.
func TestDashboardMetricsDocumented(t *testing.T) {
	docs := documentedMetrics(t)
	d := loadDashboard(t)
	if d.UID == "" {
		t.Error("the dashboard has no uid")
	}
	ids := map[int]string{}
	queried, reported := map[string]bool{}, map[string]bool{}
	name := regexp.MustCompile(`\bauthz_[a-z0-9_]+`)
	for _, p := range allPanels(d.Panels) {
		if prev, dup := ids[p.ID]; dup {
			t.Errorf("panels %q and %q share id %d", prev, p.Title, p.ID)
		}
		ids[p.ID] = p.Title
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, n := range name.FindAllString(tg.Expr, -1) {
				queried[n] = true
				if _, ok := docs[n]; ok {
					continue
				}
				base := n
				for _, suf := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(n, suf); ok {
						base = b
					}
				}
				if (docs[base] != "histogram" || base == n) && !reported[n] {
					reported[n] = true
					t.Errorf("panel %q queries %s, which docs/metrics.md does not list", p.Title, n)
				}
			}
		}
	}
	for _, n := range []string{
		"authz_verify_requests_total",
		"authz_verify_duration_seconds_bucket",
		"authz_cache_hits_total",
		"authz_cache_misses_total",
		"authz_logout_events_received_total",
		"authz_logout_events_published_total",
		"authz_logout_propagation_seconds_bucket",
		"authz_redis_errors_total",
		"authz_logout_subscribed",
	} {
		if !queried[n] {
			t.Errorf("the dashboard does not show %s", n)
		}
	}
}
