package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
)

// envAliases are the names older deployments already use.
var envAliases = map[string][]string{
	"redis-url":      {"REDIS_SESSION_URL"},
	"session-secret": {"SESSION_SECRET"},
}

// envName is the AUTHZ_* variable for a flag: --cache-ttl is AUTHZ_CACHE_TTL.
func envName(flag string) string {
	return "AUTHZ_" + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// applyEnv sets every flag not given on the command line from its
// environment variable, if set. Flags win over the environment.
func applyEnv(fs *pflag.FlagSet) error {
	var err error
	fs.VisitAll(func(f *pflag.Flag) {
		if err != nil || f.Changed {
			return
		}
		for _, name := range append([]string{envName(f.Name)}, envAliases[f.Name]...) {
			v, ok := os.LookupEnv(name)
			if !ok || v == "" {
				continue
			}
			if e := fs.Set(f.Name, v); e != nil {
				err = fmt.Errorf("%s=%q: %w", name, redactIfSecret(f.Name, v), e)
			}
			return
		}
	})
	return err
}

func redactIfSecret(flag, v string) string {
	if strings.Contains(flag, "secret") || strings.Contains(flag, "url") || strings.Contains(flag, "password") {
		return "(redacted)"
	}
	return v
}
