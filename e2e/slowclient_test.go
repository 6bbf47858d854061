package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
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

// TestBodilessRequestsDoNotStarveNginx is the slow-client attack with the
// header sent whole and the body it promises never sent, on connections
// answered before (authz's own server gives a new connection's first
// request its header deadline anyway): each is closed after
// --read-header-timeout, not the idle timeout (or never, as net/http did
// without a ReadTimeout), and --max-connections of them keep no new client
// out: authz's own server closes one to make room at once, net/http (which
// counts them as being answered) within the timeout.
func TestBodilessRequestsDoNotStarveNginx(t *testing.T) {
	t.Parallel()
	eachServer(t, bodilessRequestsDoNotStarveNginx)
}

func bodilessRequestsDoNotStarveNginx(t *testing.T, front ...string) {
	const maxConns = 10
	s := newSite(t, append(front, "--max-connections", "10", "--read-header-timeout", "2s")...)
	sess := s.signIn(alice)
	if r := s.get("/", sess.cookie); r.status != http.StatusOK {
		t.Fatalf("before: status %d, want 200", r.status)
	}
	ask := func(c net.Conn) error {
		io.WriteString(c, "GET /verify HTTP/1.1\r\nHost: authz\r\n\r\n")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil && resp.StatusCode != http.StatusUnauthorized {
			err = fmt.Errorf("status %d, want 401", resp.StatusCode)
		}
		return err
	}
	dial := func() net.Conn {
		c, err := net.Dial("tcp", s.authz.Addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// Up to the cap, each answered once (each new one past it takes the
	// place of an idle one), then each sends a header promising 100 bytes
	// and nothing more.
	var held []net.Conn
	for range maxConns {
		c := dial()
		if err := ask(c); err != nil {
			t.Fatalf("request before the body-less one: %v", err)
		}
		held = append(held, c)
	}
	start := time.Now()
	for _, c := range held {
		io.WriteString(c, "POST /verify HTTP/1.1\r\nHost: authz\r\nContent-Length: 100\r\n\r\n")
	}
	tries := 0
	testenv.WaitFor(t, 10*time.Second, "a new client to be answered", func() bool {
		tries++
		return ask(dial()) == nil
	})
	if len(front) == 0 && tries > 1 {
		t.Errorf("authz's own server answered a new client at the %dth try, want the first: a request still arriving makes room", tries)
	}
	for i, c := range held {
		if closed, _ := closedWithin(c, 10*time.Second-time.Since(start)); !closed {
			t.Fatalf("connection %d: a request without its body still held after 10s (header timeout 2s)", i)
		}
	}
	t.Logf("a new client answered at try %d; every body-less request closed after %v", tries, time.Since(start))
	if r := s.get("/", sess.cookie); r.status != http.StatusOK {
		t.Fatalf("after: status %d, want 200", r.status)
	}
}

// closedWithin reads c until the server closes it or d passes, and
// reports whether it closed (EOF or reset) and what it sent first.
func closedWithin(c net.Conn, d time.Duration) (bool, string) {
	c.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(c)
	var ne net.Error
	return err == nil || !(errors.As(err, &ne) && ne.Timeout()), string(b)
}

// TestMetricsListenerClosesSlowClients: the --metrics-listen server, too,
// closes a connection whose request does not come whole (its header, or
// the body its header promises) within 5 s, instead of holding it (and a
// goroutine) for as long as the client likes.
func TestMetricsListenerClosesSlowClients(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	a := testenv.StartAuthz(t, r.URL())
	for name, raw := range map[string]string{
		"half-sent header": "GET /metrics HTTP/1.1\r\nHost: m\r\n",
		"body never sent":  "GET /metrics HTTP/1.1\r\nHost: m\r\nContent-Length: 100\r\n\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c, err := net.Dial("tcp", a.MetricsAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			io.WriteString(c, raw)
			if closed, _ := closedWithin(c, 15*time.Second); !closed {
				t.Fatal("still open after 15 s")
			}
		})
	}
}
