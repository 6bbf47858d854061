package e2e

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/internal/testenv"
)

// rawAnswer sends req to addr exactly as written and returns the answer's
// status line, headers and body as one string, for a test that looks for a
// secret anywhere in what the client got.
func rawAnswer(t *testing.T, addr, req string) string {
	t.Helper()
	c := testenv.Send(t, addr, req)
	defer c.Close()
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%q: read the answer: %v", req, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%q: read the body: %v", req, err)
	}
	return fmt.Sprintf("%d\n%s\n%s", resp.StatusCode, strings.Join(flatten(resp.Header), "\n"), b)
}

// TestAuthAnswerNeverReachesTheBrowser: "internal" admits internal
// redirects as well as auth subrequests, so a service answering
// "X-Accel-Redirect: /_authz_token" (a download service that lets the
// client name the file's location, an error_page of an operator's) sends
// the browser's own request to authz's verify location, and Nginx hands
// authz's answer to the browser. Before, that answer carried the session's
// access token in X-Auth-Access-Token, from relaying and non-relaying
// locations alike; README promises the token never reaches the browser.
func TestAuthAnswerNeverReachesTheBrowser(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	a := testenv.StartAuthz(t, r.URL(), "--access-token-path", "passport.user.accessToken")
	// The service: /.../accel?to=X answers with X-Accel-Redirect: X, any
	// other path with the Authorization it got.
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if strings.HasSuffix(req.URL.Path, "/accel") {
			w.Header().Set("X-Accel-Redirect", req.URL.Query().Get("to"))
			return
		}
		fmt.Fprintln(w, req.Header.Get("Authorization"))
	}))
	t.Cleanup(app.Close)
	appAddr := app.Listener.Addr().String()
	n := testenv.StartNginxLocations(t, map[string]string{
		"AUTHZ_ADDR": a.Addr, "APP_ADDR": appAddr, "LOGIN_ADDR": appAddr,
	}, map[string]string{"relay.conf": relayLocations})

	const token = "at.alice.never-for-the-browser"
	sid := newSID()
	cookie := "connect.sid=" + authz.Sign(sid, testenv.SessionSecret)
	doc := `{"cookie":{"originalMaxAge":3600000,"path":"/","httpOnly":true},` +
		`"passport":{"user":{"id":"alice","roles":["admin"],"accessToken":"` + token + `"}}}`
	if err := r.Client().Set(context.Background(), "sess:"+sid, doc, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	landed := 0
	for _, to := range []string{"/_authz_token", "/_authz_token_required", "/_authz", "/_authz_admin"} {
		for _, from := range []string{"/orders/accel", "/api/accel", "/api-header/accel", "/static/accel", "/admin/accel"} {
			got := rawAnswer(t, n.Addr, "GET "+from+"?to="+to+" HTTP/1.1\r\nHost: site.test\r\nCookie: "+cookie+"\r\nConnection: close\r\n\r\n")
			if strings.Contains(got, token) {
				t.Errorf("%s redirected to %s: the browser got the access token:\n%s", from, to, got)
			}
			if strings.Contains(got, "X-Auth-User: alice") {
				landed++ // the redirect reached authz: the case this test is about
			}
		}
	}
	if landed == 0 {
		t.Fatal("no redirect reached authz's verify location: the test checks nothing")
	}
	// The relay itself still works: the token reaches the service.
	if got := rawAnswer(t, n.Addr, "GET /api/x HTTP/1.1\r\nHost: site.test\r\nCookie: "+cookie+"\r\nConnection: close\r\n\r\n"); !strings.HasSuffix(got, "Bearer "+token+"\n") {
		t.Errorf("/api/x: the service did not get the relayed token:\n%s", got)
	}
}

// TestTrickledBodiesDoNotKeepNginxOut: connections straight to authz that
// send a request to /logout, /verify or another path and then trickle a
// chunked body one byte at a time, so that data keeps arriving. With
// --stdlib-http, net/http reads the body a handler left unread after it
// returns; with no read deadline over the body each such connection
// counted as being answered for as long as the client kept trickling, and
// --max-connections of them kept Nginx's connections out: every user got
// the "unavailable" page. The body must arrive within
// --read-header-timeout (TestBodilessRequestsDoNotStarveNginx is the
// variant whose body never starts).
func TestTrickledBodiesDoNotKeepNginxOut(t *testing.T) {
	eachServer(t, func(t *testing.T, front ...string) {
		s, a1, a2 := newPairSite(t, append([]string{"--max-connections", "20", "--read-header-timeout", "1s"}, front...)...)
		u := s.signIn(alice)
		var conns []net.Conn
		t.Cleanup(func() {
			for _, c := range conns {
				c.Close()
			}
		})
		for _, a := range []*testenv.Authz{a1, a2} {
			for _, head := range []string{
				"POST /logout HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
				"POST /readyz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
				"POST /verify HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
			} {
				for range 20 {
					c, err := net.Dial("tcp", a.Addr)
					if err != nil {
						t.Fatal(err)
					}
					conns = append(conns, c)
					if _, err := io.WriteString(c, head); err != nil {
						t.Fatal(err)
					}
				}
			}
		}
		// One byte per connection every 100 ms, until the test ends.
		stop := make(chan struct{})
		trickled := make(chan struct{})
		go func() {
			defer close(trickled)
			for {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				for _, c := range conns {
					c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
					c.Write([]byte("a"))
				}
			}
		}()
		defer func() { close(stop); <-trickled }()
		testenv.WaitFor(t, 10*time.Second, "authz to close the trickling connections", func() bool {
			return metric(t, a1, "authz_connections_open") < 10 && metric(t, a2, "authz_connections_open") < 10
		})
		for i := range 10 {
			if st := s.get("/orders", u.cookie).status; st != http.StatusOK {
				t.Fatalf("request %d through nginx while clients trickle bodies: %d, want 200", i, st)
			}
		}
	})
}

// TestClientForwardedHeaderStopsAtTheProxy: RFC 7239's Forwarded, which
// neither proxy sets, reached services as the client sent it. Rack 3
// (Rails) reads its host= and proto= before X-Forwarded-Host, and Spring's
// ForwardedHeaderFilter honours it too, so a client could give such a
// service a host other than the one authz checked the request for (with
// tenants: acme's session served as globex's tenant), or a scheme for the
// links it builds.
func TestClientForwardedHeaderStopsAtTheProxy(t *testing.T) {
	t.Parallel()
	for name, s := range map[string]*site{"nginx": newSite(t), "caddy": caddySite(t)} {
		u := s.signIn(bob)
		for _, uri := range []string{"/orders", "/static/x", "/login"} {
			got := s.get(uri, u.cookie, "Forwarded", "host=evil.test;proto=https", "forwarded", `for="[::1]";host=evil.test`).echoed(t)
			if v := headerValues(got.Header, "Forwarded"); len(v) != 0 {
				t.Errorf("%s: %s reached the service with a client's Forwarded %q", name, uri, v)
			}
			if v := headerValues(got.Header, "X-Forwarded-Host"); len(v) != 1 || strings.Contains(v[0], "evil") {
				t.Errorf("%s: %s: X-Forwarded-Host %q, want the proxy's own", name, uri, v)
			}
		}
	}
}
