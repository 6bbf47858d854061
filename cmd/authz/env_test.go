package main

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestEnvAndFlags(t *testing.T) {
	t.Setenv("AUTHZ_CACHE_TTL", "7s")
	t.Setenv("SESSION_SECRET", "from-seed-name")
	t.Setenv("REDIS_SESSION_URL", "redis://seed:6379/2")
	t.Setenv("AUTHZ_REDIS_URL", "redis://authz:6379/1")
	t.Setenv("AUTHZ_COOKIE_NAME", "env.sid")
	cmd := newServe()
	if err := cmd.ParseFlags([]string{"--cookie-name", "flag.sid"}); err != nil {
		t.Fatal(err)
	}
	if err := applyEnv(cmd.Flags()); err != nil {
		t.Fatal(err)
	}
	get := func(name string) string { return cmd.Flags().Lookup(name).Value.String() }
	if got := get("cache-ttl"); got != (7 * time.Second).String() {
		t.Errorf("cache-ttl = %s", got)
	}
	if got := get("cookie-name"); got != "flag.sid" {
		t.Errorf("flag must win over env: cookie-name = %s", got)
	}
	if got := get("redis-url"); got != "redis://authz:6379/1" {
		t.Errorf("AUTHZ_ name must win over the seed name: redis-url = %s", got)
	}
	if got := get("session-secret"); got != "[from-seed-name]" {
		t.Errorf("session-secret = %s", got)
	}
}

func TestEnvMalformed(t *testing.T) {
	t.Setenv("AUTHZ_CACHE_TTL", "soon")
	cmd := newServe()
	if err := applyEnv(cmd.Flags()); err == nil {
		t.Fatal("malformed AUTHZ_CACHE_TTL accepted")
	}
}

func TestSecretsFile(t *testing.T) {
	path := t.TempDir() + "/secrets"
	if err := writeFile(path, "current\r\n\nold\n"); err != nil {
		t.Fatal(err)
	}
	f := secretFlags{secrets: []string{"flag"}, file: path}
	got, err := f.load()
	if err != nil || !slices.Equal(got, []string{"flag", "current", "old"}) {
		t.Fatalf("load = %q, %v", got, err)
	}
	if got, err := (&secretFlags{}).load(); err != nil || len(got) != 0 {
		t.Fatalf("no secrets: load = %q, %v; want none and no error (serve refuses it without --tenants)", got, err)
	}
	if _, err := (&secretFlags{file: path + ".missing"}).load(); err == nil {
		t.Fatal("missing secrets file accepted")
	}
}

func writeFile(path, s string) error { return os.WriteFile(path, []byte(s), 0o600) }

func TestServeRefusesToStart(t *testing.T) {
	for _, args := range [][]string{
		{"serve"},
		{"serve", "--session-secret", "s", "--cache-ttl", "soon"},
		{"serve", "--session-secret", "s", "--log-format", "xml"},
		{"serve", "--session-secret", "s", "--log-level", "loud"},
		{"serve", "--session-secret", "s", "--redis-url", "http://nope"},
		{"serve", "--session-secret", "s", "--header", "X-Auth-Email"},
		{"serve", "--session-secret", "s", "--user-path", "passport..user"},
		{"serve", "--session-secret", "s", "--cache-ttl", "0s"},
		{"serve", "--session-secret", "s", "--cache-size", "0"},
		{"serve", "--session-secret", "s", "--store-ttl", "0s"},
		{"serve", "--session-secret", "s", "--listen", "256.0.0.1:99999"},
	} {
		cmd := newRoot()
		cmd.SetArgs(args)
		err := cmd.Execute()
		if err == nil {
			t.Errorf("authz %q started", args)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("authz %q: reason is not one line: %q", args, err)
		}
	}
}
