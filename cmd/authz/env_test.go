package main

import (
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
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

// Every flag of every command is read from its AUTHZ_<FLAG> variable, as
// the flag tables in docs/configuration.md say: the test sets a variable
// for each flag, runs the command through the root (its work replaced by
// a no-op) and reads the flag back.
func TestEveryFlagReadsItsEnvironment(t *testing.T) {
	var paths [][]string
	var walk func(c *cobra.Command, path []string)
	walk = func(c *cobra.Command, path []string) {
		if c.Runnable() && len(path) > 0 {
			paths = append(paths, path)
		}
		for _, sub := range c.Commands() {
			walk(sub, append(slices.Clone(path), sub.Name()))
		}
	}
	walk(newRoot(), nil)
	if len(paths) < 5 {
		t.Fatalf("found only the commands %v", paths)
	}
	for _, path := range paths {
		t.Run(strings.Join(path, "_"), func(t *testing.T) {
			root := newRoot()
			cmd, _, err := root.Find(path)
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{}
			cmd.Flags().VisitAll(func(f *pflag.Flag) {
				v, shown := envValue(f)
				t.Setenv(envName(f.Name), v)
				want[f.Name] = shown
			})
			ran := false
			cmd.RunE = func(*cobra.Command, []string) error { ran = true; return nil }
			args := slices.Clone(path)
			if cmd.ValidateArgs(nil) != nil {
				args = append(args, "x")
			}
			root.SetArgs(args)
			if err := root.Execute(); err != nil || !ran {
				t.Fatalf("authz %s: ran %v, %v", strings.Join(args, " "), ran, err)
			}
			for name, shown := range want {
				if got := cmd.Flags().Lookup(name).Value.String(); got != shown {
					t.Errorf("--%s = %s; %s=%q should have made it %s", name, got, envName(name), shown, shown)
				}
			}
		})
	}
}

// envValue is a value for f's variable unlike its default, and how the
// flag shows it once set.
func envValue(f *pflag.Flag) (value, shown string) {
	switch f.Value.Type() {
	case "bool":
		if f.DefValue == "true" {
			return "false", "false"
		}
		return "true", "true"
	case "duration":
		if f.DefValue == "7s" {
			return "8s", "8s"
		}
		return "7s", "7s"
	case "int":
		if f.DefValue == "7" {
			return "8", "8"
		}
		return "7", "7"
	case "stringSlice", "stringArray":
		return "env-" + f.Name, "[env-" + f.Name + "]"
	}
	return "env-" + f.Name, "env-" + f.Name
}
