package authz

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// Every /verify answer fits --max-answer-header-bytes, whatever the client
// sends and whatever the session holds, from either server: Nginx counts
// an answer larger than its proxy_buffer_size as a failure of the instance.
// (The narrow server's half of this test is in package frontdoor.)
func TestEveryAnswerFitsTheCap(t *testing.T) {
	name, _ := ParseHeaderMapping("X-Auth-Name=passport.user.name")
	roles, _ := ParseHeaderMapping("X-Auth-Roles=passport.user.roles")
	f := newFixture(t, func(c *Config) {
		c.Headers = append(c.Headers, name, roles)
		c.AccessTokenPaths = [][]string{{"passport", "user", "accessToken"}}
	})
	std := httptest.NewServer(f.v)
	t.Cleanup(std.Close)
	stdAddr := strings.TrimPrefix(std.URL, "http://")
	const limit = 4096

	kb := strings.Repeat("x", 2000)
	_, big := f.session(`{"cookie":{},"passport":{"user":{"id":"`+strings.Repeat("u", 2048)+`","email":"`+kb+`@example.com","name":"`+kb+`","roles":"`+kb+`"}}}`, time.Hour)
	_, three := f.session(`{"cookie":{},"passport":{"user":{"id":"mallory","email":"`+kb+`","name":"`+kb+`","roles":"`+kb+`"}}}`, time.Hour)
	// A relayed access token counts too, before the extra headers.
	_, relayed := f.session(`{"cookie":{},"passport":{"user":{"id":"`+strings.Repeat("r", 2048)+`","accessToken":"`+strings.Repeat("t", 2048)+`","email":"`+kb+`"}}}`, time.Hour)
	_, token := f.session(`{"cookie":{},"passport":{"user":{"id":"trent","accessToken":"`+strings.Repeat("t", 2048)+`","email":"`+kb+`","name":"`+kb+`"}}}`, time.Hour)

	uris := map[string]string{
		"slashes (each escapes to 3 bytes)": "/a" + strings.Repeat("/", 1350),
		"escapes to just over the cap":      "/" + strings.Repeat("%", 1320),
		"long, nothing to escape":           "/" + strings.Repeat("a", 6000),
		"non-ASCII":                         "/" + strings.Repeat("é", 700),
	}
	for name, uri := range uris {
		for server, addr := range map[string]string{"net/http": stdAddr} {
			head := testenv.RawHead(t, addr, "GET /verify HTTP/1.1\r\nHost: authz\r\nX-Original-URI: "+uri+"\r\nConnection: close\r\n\r\n")
			if len(head) > limit {
				t.Errorf("%s, %s server: 401 head is %d bytes, over %d", name, server, len(head), limit)
			}
			if !bytes.Contains(head, []byte("\r\nX-Auth-Redirect: /login\r\n")) {
				t.Errorf("%s, %s server: want the plain login URL; head %.200q", name, server, head)
			}
		}
	}
	for _, cookie := range []string{big, three, relayed, token} {
		for server, addr := range map[string]string{"net/http": stdAddr} {
			head := testenv.RawHead(t, addr, "GET /verify?access_token=pass HTTP/1.1\r\nHost: authz\r\nCookie: connect.sid="+cookie+"\r\nConnection: close\r\n\r\n")
			if len(head) > limit {
				t.Errorf("%s server: 200 head is %d bytes, over %d", server, len(head), limit)
			}
			if !bytes.HasPrefix(head, []byte("HTTP/1.1 200 ")) || !bytes.Contains(head, []byte("\r\nX-Auth-User: ")) {
				t.Errorf("%s server: want 200 with the identity; head %.300q", server, head)
			}
		}
	}

	// What fits is kept, in flag order: the identity, then the email; the
	// name and roles would go past the cap.
	w := f.verify(three, "")
	if w.Header().Get("X-Auth-Email") != kb || w.Header().Get("X-Auth-Name") != "" || w.Header().Get("X-Auth-Roles") != "" {
		t.Errorf("headers kept: email %d bytes, name %d, roles %d; want the email only",
			len(w.Header().Get("X-Auth-Email")), len(w.Header().Get("X-Auth-Name")), len(w.Header().Get("X-Auth-Roles")))
	}
	// The token is kept before the extra headers; past the cap it is left
	// out, never the identity.
	if w := f.verify(token, "access_token=pass"); len(w.Header().Get(AccessTokenHeader)) != 2048 || w.Header().Get("X-Auth-Name") != "" {
		t.Errorf("token %d bytes, name %d; want the token and no name", len(w.Header().Get(AccessTokenHeader)), len(w.Header().Get("X-Auth-Name")))
	}
	if w := f.verify(relayed, "access_token=pass"); w.Header().Get(AccessTokenHeader) != "" || len(w.Header().Get("X-Auth-User")) != 2048 {
		t.Errorf("identity at its cap: token %d bytes, user %d; want the user and no token", len(w.Header().Get(AccessTokenHeader)), len(w.Header().Get("X-Auth-User")))
	}
	// A URI that fits once escaped is still carried.
	fits := "/" + strings.Repeat("%", 1000)
	if got := f.decide(Query{OriginalURI: fits}).Redirect; got != "/login?rd=%2F"+strings.Repeat("%25", 1000) {
		t.Errorf("a URI that fits: redirect %.60q…", got)
	}
	if got := testutil.ToFloat64(f.v.metrics.bounds.WithLabelValues("answer_header")); got == 0 {
		t.Error("answer_header hits not counted")
	}
}

// A configuration whose identity or login URL could not fit in an answer
// is refused at start, not discovered on a request.
func TestAnswerCapChecksTheConfiguration(t *testing.T) {
	for name, cfg := range map[string]Config{
		"identity cap": {Secrets: []string{"s"}, MaxIdentityHeaderBytes: 8192},
		"login URL":    {Secrets: []string{"s"}, LoginURL: "/" + strings.Repeat("l", 4000)},
		"tiny cap":     {Secrets: []string{"s"}, MaxAnswerHeaderBytes: 100},
	} {
		cfg.setDefaults()
		if err := cfg.validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	ok := Config{Secrets: []string{"s"}, MaxIdentityHeaderBytes: 8192, MaxAnswerHeaderBytes: 16384}
	ok.setDefaults()
	if err := ok.validate(); err != nil {
		t.Errorf("a raised cap: %v", err)
	}
}
