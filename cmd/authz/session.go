package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/authz/authz/authz"
	"github.com/spf13/cobra"
)

func newSession() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "session",
		Short: "Inspect sessions in Redis",
	}
	var f sessionFlags
	show := &cobra.Command{
		Use:   "show <session id or cookie value>",
		Short: "Show what authz sees in a session: identity, roles, TTL",
		Long: "Show what authz sees in a session: its identity, roles and remaining TTL, as\n" +
			"authz would decide it (a cookie value needs --session-secret). Exits 1 when the\n" +
			"session does not exist, was revoked, or cannot be read. An id that begins\n" +
			"with \"-\" goes after \"--\": authz session show -- -abc",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return showSession(cmd.Context(), cmd.OutOrStdout(), &f, args[0])
		},
	}
	show.Flags().SortFlags = false
	f.register(show.Flags())
	show.Flags().StringVar(&f.tenant, "tenant", "", "tenant the session belongs to (with --tenants)")
	f.log.register(show.Flags())
	cmd.AddCommand(show)
	return cmd
}

func showSession(ctx context.Context, out io.Writer, f *sessionFlags, ref string) error {
	tl, err := f.tools(ctx)
	if err != nil {
		return err
	}
	defer tl.close()
	ks, err := tl.v.Keyspace(f.tenant)
	if err != nil {
		return err
	}
	if !ks.Format().Stored() {
		return showCookie(ctx, out, ks, strings.TrimSpace(ref))
	}
	sid, err := tl.v.ParseSessionRef(f.tenant, strings.TrimSpace(ref))
	if err != nil {
		return err
	}
	s, ttl, err := tl.v.Session(ctx, f.tenant, sid)
	if err != nil {
		return err
	}
	user := s.User
	if user == "" {
		user = "(anonymous: not signed in)"
	}
	fmt.Fprintf(out, "session  %s\nuser     %s\nroles    %s\n", authz.SessionHash(sid), user, strings.Join(s.Roles, ","))
	switch {
	case ttl < 0:
		fmt.Fprintln(out, "ttl      none (the key never expires)")
	default:
		fmt.Fprintf(out, "ttl      %s\n", ttl.Round(1e9))
	}
	if s.OriginalMaxAge > 0 {
		fmt.Fprintf(out, "maxAge   %s\n", s.OriginalMaxAge)
	}
	return nil
}

// showCookie is session show for a cookie that carries its session: what it
// holds, and whether authz would refuse it, and why.
func showCookie(ctx context.Context, out io.Writer, ks authz.Keyspace, ref string) error {
	st, err := ks.CookieSession(ctx, ref)
	if err != nil {
		return err
	}
	s := st.Session
	if s == nil {
		return fmt.Errorf("cookie refused: %s", st.Reason)
	}
	user := s.User
	if user == "" {
		user = "(anonymous: not signed in)"
	}
	fmt.Fprintf(out, "cookie   %s\nuser     %s\nroles    %s\n", authz.SessionHash(st.ID), user, strings.Join(s.Roles, ","))
	if !s.Expires.IsZero() {
		fmt.Fprintf(out, "expires  %s\n", s.Expires.UTC().Format(time.RFC3339))
	} else {
		fmt.Fprintln(out, "expires  never (the format carries no expiry)")
	}
	fmt.Fprintf(out, "revision %d\n", s.Revision())
	if st.Reason != "" {
		if s.User != "" {
			if cur, err := ks.Revision(ctx, s.User); err == nil {
				fmt.Fprintf(out, "current  %d\n", cur)
			}
		}
		return fmt.Errorf("cookie refused: %s", st.Reason)
	}
	return nil
}
