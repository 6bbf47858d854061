package authz

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"
)

// The tenant file maps hosts to tenants. It is YAML:
//
//	defaults:                                 # optional: every tenant's unless it sets its own
//	  key_prefix: "sessions:{tenant}:{app}:"  # {tenant}: the tenant's name, {app}: its app
//	  app: web
//	tenants:
//	  - name: acme
//	    hosts: [acme.example.com, "*.acme.example.com"]
//	    secrets_file: /run/secrets/acme       # one secret per line, the first signs
//	  - name: globex
//	    hosts: [globex.example.net]
//	    app: portal
//	    cookie_name: globex.sid
//	    secrets: ["…"]
//	    user_paths: [passport.user]
//	    headers: {X-Auth-Email: passport.user.email}
//
// docs/tenants.md is the full reference.

// tenantFields are what defaults and each tenant may set.
type tenantFields struct {
	KeyPrefix   string   `yaml:"key_prefix"`
	App         string   `yaml:"app"`
	CookieName  string   `yaml:"cookie_name"`
	Secrets     []string `yaml:"secrets"`
	SecretsFile string   `yaml:"secrets_file"`
	UserPaths   []string `yaml:"user_paths"`
	RolesPaths  []string `yaml:"roles_paths"`
	// AccessTokenPaths: like --access-token-path.
	AccessTokenPaths []string          `yaml:"access_token_paths"`
	Headers          map[string]string `yaml:"headers"`
	LoginURL         string            `yaml:"login_url"`
	// Format and the fields after it: like --session-format and the
	// flags of docs/formats.md.
	Format              string `yaml:"format"`
	EncryptionKeyFile   string `yaml:"encryption_key_file"`
	SignatureKeyFile    string `yaml:"signature_key_file"`
	EncryptionAlgorithm string `yaml:"encryption_algorithm"`
	SignatureAlgorithm  string `yaml:"signature_algorithm"`
	RevisionPath        string `yaml:"revision_path"`
}

type tenantDoc struct {
	Name         string   `yaml:"name"`
	Hosts        []string `yaml:"hosts"`
	tenantFields `yaml:",inline"`
}

type tenantFileDoc struct {
	Defaults tenantFields `yaml:"defaults"`
	Tenants  []tenantDoc  `yaml:"tenants"`
}

// LoadTenants reads and checks a tenant file. Its errors name the file and
// the line at fault.
func LoadTenants(path string) ([]Tenant, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tenant file: %w", err)
	}
	ts, err := ParseTenants(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ts, nil
}

// ParseTenants parses a tenant file's contents. Everything that can be
// checked without the rest of the configuration is: unknown fields, types,
// names, hosts, prefixes, paths. Verifier.SetTenants checks the tenants
// against each other.
func ParseTenants(b []byte) ([]Tenant, error) {
	var doc tenantFileDoc
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, errors.New("the file is empty: it needs a tenants list")
		}
		return nil, yamlError(err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return nil, errors.New("more than one YAML document (---): a tenant file is one")
	}
	// Lines for the checks below: the typed decode keeps none.
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, yamlError(err)
	}
	lines := tenantLines(&root)
	if len(doc.Tenants) == 0 {
		return nil, errors.New("no tenants: the file needs a non-empty tenants list")
	}
	out := make([]Tenant, 0, len(doc.Tenants))
	for i, d := range doc.Tenants {
		t := Tenant{Name: d.Name, Hosts: d.Hosts}
		if i < len(lines) {
			t.Line = lines[i]
		}
		if err := d.fill(&t, &doc.Defaults); err != nil {
			return nil, fmt.Errorf("%s: %w", t.where(), err)
		}
		out = append(out, t)
	}
	return out, nil
}

// fill completes t from d, falling back to defaults field by field.
func (d *tenantDoc) fill(t *Tenant, def *tenantFields) error {
	pick := func(own, fallback string) string {
		if own != "" {
			return own
		}
		return fallback
	}
	if !validTenantName(d.Name) {
		return errors.New("name: want 1-64 characters of [A-Za-z0-9._-]")
	}
	if len(d.Hosts) == 0 {
		return errors.New("hosts: at least one host is needed")
	}
	app := pick(d.App, def.App)
	if tpl := pick(d.KeyPrefix, def.KeyPrefix); tpl != "" {
		p, err := expandPrefix(tpl, d.Name, app)
		if err != nil {
			return err
		}
		t.KeyPrefix = p
	}
	if f := pick(d.Format, def.Format); f != "" {
		format, err := ParseFormat(f)
		if err != nil {
			return fmt.Errorf("format: %w", err)
		}
		t.Format = format
	}
	var err error
	if t.EncryptionKey, err = ReadKey("", pick(d.EncryptionKeyFile, def.EncryptionKeyFile)); err != nil {
		return fmt.Errorf("encryption_key_file: %w", err)
	}
	if t.SignatureKey, err = ReadKey("", pick(d.SignatureKeyFile, def.SignatureKeyFile)); err != nil {
		return fmt.Errorf("signature_key_file: %w", err)
	}
	t.EncryptionAlgorithm = pick(d.EncryptionAlgorithm, def.EncryptionAlgorithm)
	t.SignatureAlgorithm = pick(d.SignatureAlgorithm, def.SignatureAlgorithm)
	if p := pick(d.RevisionPath, def.RevisionPath); p != "" {
		if t.RevisionPath, err = ParsePath(p); err != nil {
			return fmt.Errorf("revision_path: %w", err)
		}
	}
	t.CookieName = pick(d.CookieName, def.CookieName)
	t.LoginURL = pick(d.LoginURL, def.LoginURL)
	secrets, file := d.Secrets, d.SecretsFile
	if secrets == nil && file == "" {
		secrets, file = def.Secrets, def.SecretsFile
	}
	t.Secrets = append([]string(nil), secrets...)
	if file != "" {
		s, err := ReadSecretsFile(file)
		if err != nil {
			return fmt.Errorf("secrets_file: %w", err)
		}
		t.Secrets = append(t.Secrets, s...)
	}
	if len(t.Secrets) == 0 {
		t.Secrets = nil // the Config's
	}
	if t.UserPaths, err = paths("user_paths", d.UserPaths, def.UserPaths); err != nil {
		return err
	}
	if t.RolesPaths, err = paths("roles_paths", d.RolesPaths, def.RolesPaths); err != nil {
		return err
	}
	if t.AccessTokenPaths, err = paths("access_token_paths", d.AccessTokenPaths, def.AccessTokenPaths); err != nil {
		return err
	}
	headers := d.Headers
	if headers == nil {
		headers = def.Headers
	}
	names := make([]string, 0, len(headers))
	for h := range headers {
		names = append(names, h)
	}
	slices.Sort(names) // a map has no order; the answer's headers should
	for _, h := range names {
		m, err := ParseHeaderMapping(h + "=" + headers[h])
		if err != nil {
			return fmt.Errorf("headers: %w", err)
		}
		t.Headers = append(t.Headers, m)
	}
	return nil
}

func paths(field string, own, fallback []string) ([][]string, error) {
	if own == nil {
		own = fallback
	}
	if own == nil {
		return nil, nil
	}
	if len(own) == 0 {
		return nil, fmt.Errorf("%s: empty list", field)
	}
	out := make([][]string, 0, len(own))
	for _, s := range own {
		p, err := ParsePath(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", field, err)
		}
		out = append(out, p)
	}
	return out, nil
}

// expandPrefix fills a key prefix template's {tenant} and {app}.
func expandPrefix(tpl, tenant, app string) (string, error) {
	var b strings.Builder
	rest := tpl
	for {
		i := strings.IndexByte(rest, '{')
		if i < 0 {
			b.WriteString(rest)
			break
		}
		b.WriteString(rest[:i])
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return "", fmt.Errorf("key_prefix %q: unclosed {", tpl)
		}
		switch name := rest[i+1 : i+j]; name {
		case "tenant":
			b.WriteString(tenant)
		case "app":
			if app == "" {
				return "", fmt.Errorf("key_prefix %q uses {app} but no app is set", tpl)
			}
			b.WriteString(app)
		default:
			return "", fmt.Errorf("key_prefix %q: unknown placeholder {%s} (known: {tenant}, {app})", tpl, name)
		}
		rest = rest[i+j+1:]
	}
	p := b.String()
	if p == "" || strings.ContainsAny(p, " \t\r\n") {
		return "", fmt.Errorf("key_prefix %q: want a non-empty prefix without spaces", p)
	}
	return p, nil
}

// tenantLines returns the line of each item of the top-level tenants list.
func tenantLines(root *yaml.Node) []int {
	if root.Kind != yaml.DocumentNode || len(root.Content) == 0 {
		return nil
	}
	m := root.Content[0]
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == "tenants" {
			var lines []int
			for _, n := range m.Content[i+1].Content {
				lines = append(lines, n.Line)
			}
			return lines
		}
	}
	return nil
}

// yamlError drops the "yaml: " prefix and the multi-line layout of the YAML
// library's errors: one line, starting with the line number. The library
// quotes the offending value (`…`); it may be a secret, and the line says
// where it is, so the value is left out.
func yamlError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		msgs := make([]string, len(te.Errors))
		for i, m := range te.Errors {
			msgs[i] = quotedValue.ReplaceAllString(m, "a value")
		}
		return errors.New(strings.Join(msgs, "; "))
	}
	return errors.New(quotedValue.ReplaceAllString(strings.TrimPrefix(err.Error(), "yaml: "), "a value"))
}

var quotedValue = regexp.MustCompile("`[^`]*`")

// ReadSecretsFile reads one secret per line (the first signs), as Docker
// and Kubernetes secrets mount them; blank lines are skipped.
func ReadSecretsFile(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if line = strings.TrimRight(line, "\r"); line != "" {
			out = append(out, line)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no secret", path)
	}
	return out, nil
}

// ReadKey decodes a key given in base64 (standard or URL alphabet,
// padded or not), from value or else from the file at path, as
// client-sessions' encryptionKey and signatureKey are usually kept. Both
// empty is no key.
func ReadKey(value, path string) ([]byte, error) {
	if value == "" && path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		if value = strings.TrimSpace(string(b)); value == "" {
			return nil, fmt.Errorf("%s holds no key", path)
		}
	}
	if value == "" {
		return nil, nil
	}
	s := strings.TrimRight(value, "=")
	for _, enc := range []*base64.Encoding{base64.RawStdEncoding, base64.RawURLEncoding} {
		if k, err := enc.DecodeString(s); err == nil {
			return k, nil
		}
	}
	return nil, errors.New("not base64")
}

// ReloadTenants loads the tenant file at path and swaps it in. On any error
// the tenants in use stay, and the error says why; either way the result is
// counted in authz_tenant_reloads_total.
func (v *Verifier) ReloadTenants(path string) (int, error) {
	ts, err := LoadTenants(path)
	if err == nil {
		if err = v.SetTenants(ts); err != nil {
			err = fmt.Errorf("%s: %w", path, err)
		}
	}
	if err != nil {
		v.metrics.reloads.WithLabelValues("error").Inc()
		return 0, err
	}
	v.metrics.reloads.WithLabelValues("ok").Inc()
	return len(ts), nil
}
