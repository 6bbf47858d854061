package frontdoor

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
)

// The narrow Server writes the same answer as ServeHTTP.
func TestAccessTokenRelayServer(t *testing.T) {
	f := newFixture(t, func(c *authz.Config) {
		c.AccessTokenPaths = [][]string{{"passport", "user", "accessToken"}, {"oauth", "access_token"}}
	})
	addr := startServer(t, f)
	_, withToken := f.session(tokenJSON, time.Hour)
	_, without := f.session(aliceJSON, time.Hour)
	for _, tc := range []struct {
		cookie, query string
		status        int
		token         string
	}{
		{withToken, "access_token=pass", 200, "ya29.a0-access_token~x/y+z="},
		{withToken, "", 200, ""},
		{without, "access_token=pass", 200, ""},
		{without, "access_token=require", 403, ""},
	} {
		r, _ := exchange(t, addr, "GET /verify?"+tc.query+" HTTP/1.1\r\nHost: authz\r\nCookie: connect.sid="+tc.cookie+"\r\n\r\n", 1)
		if len(r) != 1 || r[0].StatusCode != tc.status || r[0].Header.Get(authz.AccessTokenHeader) != tc.token {
			t.Errorf("%q: %v, want %d with token %q", tc.query, r, tc.status, tc.token)
		}
	}
}

// TestBearerAnswerHeaders checks the narrow server's answers to bearer
// tokens, as authz's test of the same name checks net/http's: an allowed
// token carries the same identity headers as a session; a refused one a
// Bearer challenge, not a login redirect.
func TestBearerAnswerHeaders(t *testing.T) {
	f := newFixture(t, func(c *authz.Config) {
		c.BearerTokens = true
		c.CacheTTL = time.Hour
	})
	tok := f.token(`{"passport":{"user":{"id":"carol","email":"carol@example.com"}}}`, time.Hour)
	check := func(t *testing.T, h http.Header, status int, auth string) {
		t.Helper()
		switch auth {
		case "Bearer " + tok:
			if status != 200 || h.Get("X-Auth-User") != "carol" || h.Get("X-Auth-Email") != "carol@example.com" {
				t.Errorf("valid token: %d %v", status, h)
			}
		default:
			if status != 401 || h.Get("WWW-Authenticate") != authz.BearerChallenge || h.Get("X-Auth-Redirect") != "" {
				t.Errorf("%q: %d %v; want 401 with a Bearer challenge and no redirect", auth, status, h)
			}
		}
	}
	auths := []string{"Bearer " + tok, "Bearer " + authz.NewToken(), "Bearer azt_x"}
	t.Run("Server", func(t *testing.T) {
		addr := startServer(t, f)
		var raw strings.Builder
		for _, auth := range auths {
			raw.WriteString("GET /verify HTTP/1.1\r\nHost: authz\r\nX-Original-URI: /api\r\nauthorization: " + auth + "\r\n\r\n")
		}
		resps, _ := exchange(t, addr, raw.String(), len(auths))
		if len(resps) != len(auths) {
			t.Fatalf("%d answers, want %d", len(resps), len(auths))
		}
		for i, r := range resps {
			check(t, r.Header, r.StatusCode, auths[i])
		}
	})
	t.Run("Server, a second Authorization is refused", func(t *testing.T) {
		// Which of two a reader would take is a guess (net/http's Get
		// takes the first): refused whichever holds the valid token.
		addr := startServer(t, f)
		for _, pair := range [][2]string{{authz.NewToken(), tok}, {tok, authz.NewToken()}} {
			resps, _ := exchange(t, addr, "GET /verify HTTP/1.1\r\nHost: authz\r\nAuthorization: Bearer "+pair[0]+
				"\r\nAuthorization: Bearer "+pair[1]+"\r\n\r\n", 1)
			if len(resps) != 1 || resps[0].StatusCode != 400 || resps[0].Header.Get("X-Auth-User") != "" {
				t.Fatalf("answers %v, want one 400", resps)
			}
		}
	})
}
