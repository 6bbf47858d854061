package frontdoor

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/testenv"
)

// Every /verify answer fits --max-answer-header-bytes, whatever the client
// sends and whatever the session holds, from either server: Nginx counts
// an answer larger than its proxy_buffer_size as a failure of the instance.
// The cap is the decider's (authz's test of the same name checks what it
// keeps); the fixed part of the head it leaves room for (status line,
// Date, Content-Length, Connection) is what the server adds.
func TestEveryAnswerFitsTheCap(t *testing.T) {
	name, _ := authz.ParseHeaderMapping("X-Auth-Name=passport.user.name")
	roles, _ := authz.ParseHeaderMapping("X-Auth-Roles=passport.user.roles")
	f := newFixture(t, func(c *authz.Config) {
		c.Headers = append(c.Headers, name, roles)
		c.AccessTokenPaths = [][]string{{"passport", "user", "accessToken"}}
	})
	narrow := startServer(t, f)
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
		for server, addr := range map[string]string{"narrow": narrow, "net/http": stdAddr} {
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
		for server, addr := range map[string]string{"narrow": narrow, "net/http": stdAddr} {
			head := testenv.RawHead(t, addr, "GET /verify?access_token=pass HTTP/1.1\r\nHost: authz\r\nCookie: connect.sid="+cookie+"\r\nConnection: close\r\n\r\n")
			if len(head) > limit {
				t.Errorf("%s server: 200 head is %d bytes, over %d", server, len(head), limit)
			}
			if !bytes.HasPrefix(head, []byte("HTTP/1.1 200 ")) || !bytes.Contains(head, []byte("\r\nX-Auth-User: ")) {
				t.Errorf("%s server: want 200 with the identity; head %.300q", server, head)
			}
		}
	}
}
