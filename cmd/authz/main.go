// Command authz is the single sign-on verifier for Nginx auth_request.
// This package only wires flags, environment and config into the authz and
// logout packages.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
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
	}
	root.AddCommand(newServe(), newLogout(), newSession())
	return root
}
