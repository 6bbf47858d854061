package e2e

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
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

// TestUserLogoutEndsWhenItsClientLeaves: a user-wide logout walk
// (POST /logout?everywhere=1, a pass over every session key) stops when
// the client that asked for it closes its connection, with either server:
// it is counted authz_logout_user_walks_total{result="cancelled"}, not run
// to its end for nobody. Redis holds writes back (CLIENT PAUSE WRITE), so
// the walk has read alice's sessions and waits to revoke them when the
// client leaves, however fast the machine.
func TestUserLogoutEndsWhenItsClientLeaves(t *testing.T) {
	t.Parallel()
	eachServer(t, userLogoutEndsWhenItsClientLeaves)
}

func userLogoutEndsWhenItsClientLeaves(t *testing.T, front ...string) {
	// Each Redis call of the walk may wait 4 s for the paused writes:
	// longer than the test takes to see the walk start and leave.
	s := newSite(t, append(front, "--redis-timeout", "1s")...)
	sess := s.signIn(alice)
	s.signIn(alice) // another of her sessions, for the walk to find
	ctx := context.Background()
	if err := s.rdb.Do(ctx, "CLIENT", "PAUSE", "20000", "WRITE").Err(); err != nil {
		t.Fatalf("CLIENT PAUSE: %v", err)
	}
	unpause := func() { s.rdb.Do(ctx, "CLIENT", "UNPAUSE") }
	t.Cleanup(unpause)

	c, err := net.Dial("tcp", s.authz.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /logout?everywhere=1 HTTP/1.1\r\nHost: authz\r\nCookie: "+sess.cookie+"\r\nContent-Length: 0\r\n\r\n")
	testenv.WaitFor(t, 5*time.Second, "the walk to start", func() bool {
		return metric(t, s.authz, "authz_logout_user_walks_running") == 1
	})
	c.Close()
	// The request ends at once (its handler logs the failure); the walk
	// ends when its blocked write returns.
	testenv.WaitFor(t, 5*time.Second, "the logout request to end with its client", func() bool {
		return strings.Contains(s.authz.Output(), "logout failed")
	})
	unpause()
	testenv.WaitFor(t, 10*time.Second, "the walk to end", func() bool {
		return metric(t, s.authz, "authz_logout_user_walks_running") == 0
	})
	for result, want := range map[string]float64{"cancelled": 1, "ok": 0} {
		if got := metricLabel(t, s.authz, "authz_logout_user_walks_total", `result="`+result+`"`); got != want {
			t.Errorf("authz_logout_user_walks_total{result=%q} = %v, want %v", result, got, want)
		}
	}
}
