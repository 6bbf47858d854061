package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/logout"
	"github.com/authz/authz/signoff"
	"github.com/authz/authz/tokens"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
)

type logoutFlags struct {
	sessionFlags
	session, user string
}

func newLogout() *cobra.Command {
	var f logoutFlags
	cmd := &cobra.Command{
		Use:   "logout (--session <id or cookie value> | --user <id>)",
		Short: "End a session, or every session of a user, on every instance",
		Long: "End a session (--session: its id or the cookie value) or every session of a user\n" +
			"(--user: the id authz shows in X-Auth-User). The sessions are revoked in Redis (a\n" +
			"marker, then DEL, so an app that saves them again cannot revive them) and a logout\n" +
			"event is published so every authz instance and service cache drops them at once.\n" +
			"Exits 1 when nothing matched or Redis is unreachable.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runLogout(cmd.Context(), cmd.OutOrStdout(), &f)
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	fs.StringVar(&f.session, "session", "", "session id, or the session cookie's value (needs --session-secret)")
	fs.StringVar(&f.user, "user", "", "user id: ends every session of this user")
	fs.StringVar(&f.tenant, "tenant", "", "tenant whose session or user this is (with --tenants; named in the event)")
	f.sessionFlags.register(fs)
	f.log.register(fs)
	return cmd
}

func runLogout(ctx context.Context, out io.Writer, f *logoutFlags) error {
	if (f.session == "") == (f.user == "") {
		return errors.New("give exactly one of --session or --user")
	}
	tl, err := f.tools(ctx)
	if err != nil {
		return err
	}
	defer tl.close()
	if f.session != "" {
		sid, found, n, err := tl.signoff.EndSession(ctx, tl.pub, f.tenant, strings.TrimSpace(f.session))
		if err != nil {
			return err
		}
		if ks, err := tl.v.Keyspace(f.tenant); err == nil && !ks.Format().Stored() {
			fmt.Fprintf(out, "denied cookie %s; event published to %d subscribers\n", authz.SessionHash(sid), n)
			return nil
		}
		if !found {
			return fmt.Errorf("no session %s in Redis (event published to %d subscribers anyway)", authz.SessionHash(sid), n)
		}
		fmt.Fprintf(out, "revoked session %s; event published to %d subscribers\n", authz.SessionHash(sid), n)
		return nil
	}
	count, n, err := tl.signoff.EndUser(ctx, tl.pub, f.tenant, f.user)
	if err != nil {
		return err
	}
	if ks, err := tl.v.Keyspace(f.tenant); err == nil && !ks.Format().Stored() {
		fmt.Fprintf(out, "moved user %q to a new revision: every cookie signed in before is refused; event published to %d subscribers\n", f.user, n)
		return nil
	}
	if count == 0 {
		return fmt.Errorf("user %q has no sessions in Redis (event published to %d subscribers anyway)", f.user, n)
	}
	fmt.Fprintf(out, "revoked %d sessions of user %q; event published to %d subscribers\n", count, f.user, n)
	return nil
}

// tools are what the session and token commands work with: a Verifier
// reading sessions as serve does, the write side over it, and a Publisher.
type tools struct {
	v       *authz.Verifier
	signoff *signoff.Signoff
	tokens  *tokens.Issuer
	pub     *logout.Publisher
	close   func()
}

// tools builds the session commands' tools. A secret is only needed to
// read a cookie value, so without one a random placeholder stands in and
// cookie values are refused.
func (f *sessionFlags) tools(ctx context.Context) (*tools, error) {
	log, err := f.log.logger()
	if err != nil {
		return nil, err
	}
	if len(f.secrets.secrets) == 0 && f.secrets.file == "" {
		f.secrets.secrets = []string{"unset-" + rand.Text()}
	}
	cfg, err := f.config()
	if err != nil {
		return nil, err
	}
	rdb, _, err := f.redis.connect(&cfg)
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	log = log.With("cmd", "logout")
	tl := &tools{close: func() { rdb.Close() }}
	tl.v, err = authz.New(cfg, rdb, reg, log)
	if err == nil {
		if err = tl.v.Ready(ctx); err != nil {
			err = fmt.Errorf("redis at %s unreachable: %w", f.redis.describe(), err)
		}
	}
	if err == nil {
		tl.signoff, err = signoff.New(tl.v, reg, log)
	}
	if err == nil {
		tl.tokens = tokens.New(tl.v)
		tl.pub, err = logout.NewPublisher(rdb, logout.PublisherConfig{Channel: f.channel, Origin: "authz-cli"}, reg)
	}
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return tl, nil
}
