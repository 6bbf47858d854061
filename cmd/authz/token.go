package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/logout"
	"github.com/authz/authz/tokens"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// tokenFlags are what every token command needs: where sessions and tokens
// live, and how identities are read.
type tokenFlags struct {
	sessionFlags
}

func (f *tokenFlags) register(fs *pflag.FlagSet) {
	fs.SortFlags = false
	f.sessionFlags.register(fs)
	fs.StringVar(&f.cfg.TokenPrefix, "token-prefix", authz.TokenPrefixDefault, "Redis key prefix of API tokens (each stored as the hex SHA-256 of the token)")
	fs.StringVar(&f.tenant, "tenant", "", "tenant whose hosts the token opens (with --tenants; its tokens live under <token-prefix><tenant>:)")
	f.log.register(fs)
}

// tools returns the token commands' tools. Bearer tokens are turned on so
// the prefixes are checked as serve checks them.
func (f *tokenFlags) tools(ctx context.Context) (*tools, error) {
	f.cfg.BearerTokens = true
	return f.sessionFlags.tools(ctx)
}

func newToken() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Create, revoke and list API bearer tokens",
		Long: "API clients send \"Authorization: Bearer <token>\"; authz serve --bearer-tokens maps the\n" +
			"token to an identity the way it maps a session. Redis holds only the SHA-256 of each\n" +
			"token. See docs/tokens.md.",
	}
	cmd.AddCommand(newTokenCreate(), newTokenRevoke(), newTokenList())
	return cmd
}

type tokenCreateFlags struct {
	tokenFlags
	user, name, data string
	roles            []string
	ttl              time.Duration
}

func newTokenCreate() *cobra.Command {
	var f tokenCreateFlags
	cmd := &cobra.Command{
		Use:   "create (--user <id> [--role <role>]… | --data <json>)",
		Short: "Create a token; it is printed once, on stdout",
		Long: "Create a token for an identity and print it, once, on stdout (details go to stderr).\n" +
			"The identity is --user with its --role list, stored where a session keeps it (at\n" +
			"\"user\", or the first --user-path when \"user\" is not one), or any JSON object given\n" +
			"with --data, read exactly like a session (--user-path, --roles-path and --header of\n" +
			"serve apply). Its \"token\" member is reserved for the name and creation time.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return createToken(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), &f)
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&f.user, "user", "", "identity the token stands for, as X-Auth-User will show it")
	fs.StringArrayVar(&f.roles, "role", nil, "a role of the identity, for allow_roles (repeatable)")
	fs.StringVar(&f.data, "data", "", "the whole identity document as a JSON object, instead of --user and --role")
	fs.StringVar(&f.name, "name", "", "what the token is for, shown by token list (e.g. billing-cron)")
	fs.DurationVar(&f.ttl, "ttl", 90*24*time.Hour, "lifetime of the token; 0: until revoked")
	f.tokenFlags.register(fs)
	return cmd
}

// identityDoc builds the document a token is stored with.
func (f *tokenCreateFlags) identityDoc(userPaths [][]string, now time.Time) ([]byte, error) {
	var doc map[string]any
	switch {
	case f.data != "" && (f.user != "" || len(f.roles) > 0):
		return nil, errors.New("give either --data or --user (with --role), not both")
	case f.data != "":
		dec := json.NewDecoder(strings.NewReader(f.data))
		dec.UseNumber() // keep numeric ids exactly as written
		if err := dec.Decode(&doc); err != nil || doc == nil || dec.More() {
			return nil, errors.New("--data: want one JSON object")
		}
		if _, ok := doc["token"]; ok {
			return nil, errors.New(`--data: the "token" member is reserved for the token's name and creation time`)
		}
	case f.user != "":
		id := map[string]any{"id": f.user}
		if len(f.roles) > 0 {
			id["roles"] = f.roles
		}
		path := []string{"user"}
		if !slices.ContainsFunc(userPaths, func(p []string) bool { return slices.Equal(p, path) }) {
			path = userPaths[0]
		}
		doc = map[string]any{}
		m := doc
		for _, seg := range path[:len(path)-1] {
			next := map[string]any{}
			m[seg] = next
			m = next
		}
		m[path[len(path)-1]] = id
	default:
		return nil, errors.New("give --user (with --role) or --data")
	}
	doc["token"] = map[string]any{"name": f.name, "created": now.UTC().Format(time.RFC3339)}
	return json.Marshal(doc)
}

func createToken(ctx context.Context, out, info io.Writer, f *tokenCreateFlags) error {
	if f.ttl < 0 {
		return errors.New("--ttl must not be negative (0: until revoked)")
	}
	paths, err := parsePaths("--user-path", f.userPaths)
	if err != nil {
		return err
	}
	doc, err := f.identityDoc(paths, time.Now())
	if err != nil {
		return err
	}
	tl, err := f.tools(ctx)
	if err != nil {
		return err
	}
	defer tl.close()
	tok, ti, err := tl.tokens.Create(ctx, f.tenant, doc, f.ttl)
	if err != nil {
		return err
	}
	expires := "never (revoke it with authz token revoke)"
	if f.ttl > 0 {
		expires = time.Now().Add(f.ttl).UTC().Format(time.RFC3339)
	}
	fmt.Fprintf(info, "created token %s for %s (roles: %s), expires %s; the token is printed once, on stdout\n",
		ti.Hash, ti.Session.User, orNone(ti.Session.Roles), expires)
	fmt.Fprintln(out, tok)
	return nil
}

func newTokenRevoke() *cobra.Command {
	var f tokenFlags
	cmd := &cobra.Command{
		Use:   "revoke <token | hash | ->",
		Short: "Revoke a token on every instance at once",
		Long: "Delete a token, named by the token itself, its hash (as token list shows it), or - to\n" +
			"read the token from stdin (keeping it out of the shell history), and publish the\n" +
			"revocation so every authz instance drops its cached copy at once. Exits 1 when no\n" +
			"such token exists (the event is published anyway) or Redis is unreachable.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref := args[0]
			if ref == "-" {
				line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
				if err != nil && !errors.Is(err, io.EOF) {
					return fmt.Errorf("read the token from stdin: %w", err)
				}
				ref = line
			}
			return revokeToken(cmd.Context(), cmd.OutOrStdout(), &f, strings.TrimSpace(ref))
		},
	}
	f.register(cmd.Flags())
	return cmd
}

func revokeToken(ctx context.Context, out io.Writer, f *tokenFlags, ref string) error {
	hash, err := authz.ParseTokenRef(ref)
	if err != nil {
		return err // names the expected forms, never echoes ref: it may be a token
	}
	tl, err := f.tools(ctx)
	if err != nil {
		return err
	}
	defer tl.close()
	found, err := tl.tokens.Revoke(ctx, f.tenant, hash)
	if err != nil {
		return err
	}
	// Publish even when the key is gone: instances may still cache it.
	n, err := tl.pub.Publish(ctx, logout.Event{Kind: logout.KindToken, Token: hash, Tenant: f.tenant})
	if err != nil {
		return err
	}
	if !found {
		return fmt.Errorf("no token %s in Redis (event published to %d subscribers anyway)", hash, n)
	}
	fmt.Fprintf(out, "revoked token %s; event published to %d subscribers\n", hash, n)
	return nil
}

func newTokenList() *cobra.Command {
	var f tokenFlags
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List tokens: hash, name, identity, roles, creation and expiry; never the tokens",
		Long: "List every token under --token-prefix (SCAN, never KEYS): its hash, name, the\n" +
			"identity and roles a verify would see, when it was created and when it expires.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return listTokens(cmd.Context(), cmd.OutOrStdout(), &f)
		},
	}
	f.register(cmd.Flags())
	return cmd
}

func listTokens(ctx context.Context, out io.Writer, f *tokenFlags) error {
	tl, err := f.tools(ctx)
	if err != nil {
		return err
	}
	defer tl.close()
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HASH\tNAME\tUSER\tROLES\tCREATED\tEXPIRES")
	now := time.Now()
	err = tl.tokens.List(ctx, f.tenant, func(ti tokens.Info) error {
		user, roles := "", ""
		if ti.Err != nil {
			user = "(unreadable: every request with it gets 401)"
		} else {
			user, roles = ti.Session.User, orNone(ti.Session.Roles)
		}
		created, expires := "-", "never"
		if !ti.Created.IsZero() {
			created = ti.Created.UTC().Format(time.RFC3339)
		}
		if ti.TTL >= 0 {
			expires = now.Add(ti.TTL).UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", ti.Hash, orDash(ti.Name), user, roles, created, expires)
		return nil
	})
	if ferr := tw.Flush(); err == nil {
		err = ferr
	}
	return err
}

func orNone(ss []string) string {
	if len(ss) == 0 {
		return "none"
	}
	return strings.Join(ss, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
