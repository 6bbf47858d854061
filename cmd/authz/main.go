// Command authz is the single sign-on verifier for Nginx auth_request.
// This package only wires flags, environment and config into the authz and
// logout packages.
package main

import (
	"fmt"
	"os"
	"runtime/debug"

	"github.com/spf13/cobra"
)

func main() {
	if os.Getenv("GOGC") == "" {
		// The live heap is small (a cache of small entries). frontdoor.Server
		// allocates once per cache hit, but each cache miss decodes a
		// session (~55 allocations), and --stdlib-http allocates in
		// net/http on every request: collecting at 5x the live heap
		// instead of 2x runs the GC less often for little memory. GOGC
		// and GOMEMLIMIT still override.
		debug.SetGCPercent(400)
	}
	if err := newRoot().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "authz:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "authz",
		Short:         "Single sign-on and single sign-off for services behind Nginx",
		SilenceUsage:  true,
		SilenceErrors: true,
		// Every command takes its flags from the environment here, in one
		// place, so that a new command cannot forget to: the flag tables
		// in docs/configuration.md promise AUTHZ_<FLAG> for every flag.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			return applyEnv(cmd.Flags())
		},
	}
	root.AddCommand(newServe(), newLogout(), newSession(), newToken())
	return root
}
