package e2e

import (
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
)

// TestHalfSentRequestsDoNotStarveNginx is the slow-client attack on a real
// authz behind the shipped Nginx config: connections that send part of a
// request and stop are closed after --read-header-timeout (not the 5
// minute idle timeout), and at --max-connections each new one takes the
// place of the one waiting longest, so Nginx is answered meanwhile, over
// its kept-alive connection or a new one that took an attacker's place.
func TestHalfSentRequestsDoNotStarveNginx(t *testing.T) {
	t.Parallel()
	eachServer(t, halfSentRequestsDoNotStarveNginx)
}

func halfSentRequestsDoNotStarveNginx(t *testing.T, front ...string) {
	const maxConns = 40
	s := newSite(t, append(front, "--max-connections", "40", "--read-header-timeout", "3s")...)
	sess := s.signIn(alice)
	// Nginx opens its connection to authz and keeps it.
	if r := s.get("/", sess.cookie); r.status != http.StatusOK {
		t.Fatalf("before: status %d, want 200", r.status)
	}

	for range 2 * maxConns {
		c, err := net.Dial("tcp", s.authz.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		io.WriteString(c, "GET /verify HTTP/1.1\r\nHost: authz\r\nCookie: connect.sid=")
	}
	testenv.WaitFor(t, 5*time.Second, "connections past the cap to be refused", func() bool {
		return metricLabel(t, s.authz, "authz_bounds_hit_total", `bound="connections"`) > 0
	})
	if r := s.get("/", sess.cookie); r.status != http.StatusOK {
		t.Fatalf("signed-in user while authz is at its connection cap: status %d, want 200 (over Nginx's kept-alive connection)", r.status)
	}
	testenv.WaitFor(t, 15*time.Second, "the half-sent requests to be closed", func() bool {
		return metric(t, s.authz, "authz_connections_open") <= 2 // Nginx's own
	})
	if got := metricLabel(t, s.authz, "authz_bounds_hit_total", `bound="read_header_timeout"`); got == 0 && len(front) == 0 {
		t.Errorf("authz_bounds_hit_total{bound=read_header_timeout} is 0 after closing half-sent requests")
	}
	if r := s.get("/", sess.cookie); r.status != http.StatusOK {
		t.Fatalf("after: status %d, want 200", r.status)
	}
}
