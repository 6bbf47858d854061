package authz

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"
)

// tokenJSON is a passport session of a user signed in through OAuth, the
// access token kept beside the identity as passport strategies' verify
// callbacks are commonly written.
const tokenJSON = `{"cookie":{"originalMaxAge":3600000},"passport":{"user":{"id":"alice","roles":["admin"],"accessToken":"ya29.a0-access_token~x/y+z="}}}`

func relayFixture(t *testing.T, mod func(*Config)) (*fixture, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	f := newFixture(t, func(c *Config) {
		c.AccessTokenPaths = [][]string{{"passport", "user", "accessToken"}, {"oauth", "access_token"}}
		if mod != nil {
			mod(c)
		}
	})
	f.v.log = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return f, &logs
}

func TestAccessTokenRelay(t *testing.T) {
	f, logs := relayFixture(t, nil)
	_, withToken := f.session(tokenJSON, time.Hour)
	_, second := f.session(`{"cookie":{},"oauth":{"access_token":"second-path"},"passport":{"user":"bob"}}`, time.Hour)
	_, without := f.session(aliceJSON, time.Hour)
	_, control := f.session(`{"cookie":{},"passport":{"user":{"id":"carol","accessToken":"a\r\nSet-Cookie: x=1"}}}`, time.Hour)
	_, object := f.session(`{"cookie":{},"passport":{"user":{"id":"dave","accessToken":{"t":"x"}}}}`, time.Hour)
	_, huge := f.session(`{"cookie":{},"passport":{"user":{"id":"erin","accessToken":"`+strings.Repeat("t", 2049)+`"}}}`, time.Hour)
	for _, tc := range []struct {
		name, cookie, query string
		status              int
		token               string
	}{
		{"relayed where asked", withToken, "access_token=pass", 200, "ya29.a0-access_token~x/y+z="},
		{"required and present", withToken, "access_token=require", 200, "ya29.a0-access_token~x/y+z="},
		{"with other rules", withToken, "allow_roles=admin&access_token=pass", 200, "ya29.a0-access_token~x/y+z="},
		{"never where not asked", withToken, "", 200, ""},
		{"never where not asked, other rules", withToken, "allow_roles=admin", 200, ""},
		{"never on a refusal", withToken, "allow_roles=ops&access_token=pass", 403, ""},
		{"the second path", second, "access_token=pass", 200, "second-path"},
		{"no token: no header", without, "access_token=pass", 200, ""},
		{"no token, required: refused", without, "access_token=require", 403, ""},
		{"control characters: left out", control, "access_token=pass", 200, ""},
		{"control characters, required", control, "access_token=require", 403, ""},
		{"not a string: left out", object, "access_token=require", 403, ""},
		{"over the identity header cap: left out", huge, "access_token=pass", 200, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := f.verify(tc.cookie, tc.query)
			got, sent := w.Header()[AccessTokenHeader]
			if w.Code != tc.status || (tc.token == "") == sent || w.Header().Get(AccessTokenHeader) != tc.token {
				t.Fatalf("%d %q (sent %v), want %d %q", w.Code, got, sent, tc.status, tc.token)
			}
		})
	}
	if strings.Contains(logs.String(), "ya29") || strings.Contains(logs.String(), "second-path") {
		t.Errorf("a token is in the log:\n%s", logs)
	}
	if !strings.Contains(logs.String(), "no_access_token") {
		t.Errorf("the debug log has no verify lines to check:\n%s", logs)
	}
}

// A location relaying a token on a deployment that reads none is a
// configuration error, loud, never a silent "no token".
func TestAccessTokenRelayWithoutPath(t *testing.T) {
	f := newFixture(t, nil)
	_, withToken := f.session(tokenJSON, time.Hour)
	if w := f.verify(withToken, "access_token=pass"); w.Code != http.StatusInternalServerError {
		t.Fatalf("access_token=pass without --access-token-path: %d, want 500", w.Code)
	}
	if w := f.verify(withToken, ""); w.Code != 200 || w.Header().Get(AccessTokenHeader) != "" {
		t.Fatalf("without the rule: %d %v", w.Code, w.Header())
	}
}

// authz's own API tokens keep working where the access token is relayed:
// their identity holds no access token, so none is handed on.
func TestAccessTokenRelayWithAPIToken(t *testing.T) {
	f, _ := relayFixture(t, func(c *Config) { c.BearerTokens = true })
	svc := f.token(svcJSON, time.Hour)
	_, alice := f.session(tokenJSON, time.Hour)
	for _, tc := range []struct {
		query  string
		status int
	}{
		{"access_token=pass", 200},
		{"access_token=require", 403},
	} {
		w := f.verify(alice, tc.query, "Authorization", "Bearer "+svc)
		if w.Code != tc.status || w.Header().Get(AccessTokenHeader) != "" {
			t.Errorf("%s with an API token (and a session cookie with a token): %d %v, want %d and no token", tc.query, w.Code, w.Header(), tc.status)
		}
		if tc.status == 200 && w.Header().Get("X-Auth-User") != "svc-billing" {
			t.Errorf("%s: the API token's identity is not the answer: %v", tc.query, w.Header())
		}
	}
}
