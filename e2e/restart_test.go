package e2e

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
)

// TestRestartUnderLoad restarts one of two authz instances behind the
// shipped Nginx config while clients keep sending GET and POST requests
// through it: the drain (SIGTERM: keep-alive off, then stop accepting,
// finish what is in flight) and Nginx's proxy_next_upstream together must
// lose no request.
func TestRestartUnderLoad(t *testing.T) {
	t.Parallel()
	// A --shutdown-delay long enough to see /readyz fail while it still
	// serves, even on a loaded machine.
	args := []string{"--shutdown-delay", "2s"}
	s, a1, a2 := newPairSite(t, args...)
	n := s.nginx
	sess := s.signIn(alice)

	l := startRestartLoad(t, n, sess.cookie, 8)
	defer l.stop()
	l.waitFor(t, 1000, "load before the restart")
	if metric(t, a1, "authz_verify_requests_total") == 0 || metric(t, a2, "authz_verify_requests_total") == 0 {
		t.Fatal("Nginx does not balance over both instances")
	}

	if err := a1.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 5*time.Second, "/readyz to fail during the shutdown delay", func() bool {
		resp, err := http.Get("http://" + a1.MetricsAddr + "/readyz")
		if err != nil {
			t.Fatalf("/readyz unreachable during the shutdown delay: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusServiceUnavailable
	})
	testenv.WaitFor(t, 15*time.Second, "authz to exit after SIGTERM", a1.Exited)
	if err := a1.Wait(); err != nil {
		t.Fatalf("authz exited with %v after SIGTERM, want status 0", err)
	}
	l.waitFor(t, l.ok.Load()+500, "load with one instance down")
	a1.Restart()
	l.waitFor(t, l.ok.Load()+1000, "load after the restart")
	l.stop()

	t.Logf("%d requests (%d POST): %d ok, %d failed; nginx retried on the other instance %d times",
		l.total.Load(), l.posts.Load(), l.ok.Load(), l.failed.Load(), upstreamErrors(n))
	if f := l.failed.Load(); f > 0 {
		t.Errorf("%d requests failed during the restart, want 0; first: %s", f, l.firstFailure())
	}
}

// TestCrashMidRequestRetried kills (SIGKILL, no drain) an instance while
// it holds auth subrequests of POSTs that Nginx has already sent: Nginx
// must send them on to the other instance. It does although it never
// retries a POST once sent, because an auth subrequest is a GET whatever
// the client's method (ngx_http_subrequest); so proxy_next_upstream needs
// no non_idempotent. Redis paused keeps the subrequests in flight.
func TestCrashMidRequestRetried(t *testing.T) {
	t.Parallel()
	// Long Redis timeouts and no breaker: authz waits out the sleep.
	args := []string{"--redis-timeout", "10s", "--redis-breaker-failures", "0"}
	s, a1, _ := newPairSite(t, args...)
	r, n := s.redis, s.nginx
	const posts = 4
	var cookies []string
	for range posts {
		cookies = append(cookies, s.signIn(alice).cookie) // new sessions: cache misses
	}
	if metric(t, a1, "authz_cache_misses_total") != 0 {
		t.Fatal("a1 read sessions before the test")
	}

	// Every command of every client waits for 3 s from now.
	if err := r.Client().Do(t.Context(), "CLIENT", "PAUSE", "3000", "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	l := &restartLoad{done: make(chan struct{})}
	c := &http.Client{Timeout: 15 * time.Second}
	for _, cookie := range cookies {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.total.Add(1)
			if err := l.one(c, n, "POST", strings.NewReader("a=1"), cookie); err != nil {
				l.failed.Add(1)
				l.mu.Lock()
				l.failure = err.Error()
				l.mu.Unlock()
				return
			}
			l.ok.Add(1)
		}()
	}
	// A miss is counted before Redis is asked: with Redis paused, one
	// means a subrequest Nginx sent to a1 is waiting there.
	testenv.WaitFor(t, 2*time.Second, "a POST subrequest waiting on Redis in a1", func() bool {
		return metric(t, a1, "authz_cache_misses_total") > 0
	})
	a1.Kill()
	l.wg.Wait()
	t.Logf("%d POSTs, %d ok; nginx retried %d subrequests on the other instance", posts, l.ok.Load(), upstreamErrors(n))
	if f := l.failed.Load(); f > 0 {
		t.Errorf("%d of %d POSTs whose subrequest was on the killed instance failed; first: %s", f, posts, l.firstFailure())
	}
}

// restartLoad is a fixed number of clients sending requests through Nginx in a
// loop until stop, or at the latest after a minute.
type restartLoad struct {
	ok, failed, total, posts atomic.Int64

	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
	mu      sync.Mutex
	failure string
}

func startRestartLoad(t *testing.T, n *testenv.Nginx, cookie string, clients int) *restartLoad {
	return startLoadConns(t, n, cookie, clients, true)
}

// startLoadConns is startRestartLoad with the clients' keep-alive to Nginx
// on or off.
func startLoadConns(t *testing.T, n *testenv.Nginx, cookie string, clients int, keepAlive bool) *restartLoad {
	l := &restartLoad{done: make(chan struct{})}
	deadline := time.Now().Add(time.Minute)
	for i := range clients {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			}, Transport: &http.Transport{DisableKeepAlives: !keepAlive}}
			for j := 0; time.Now().Before(deadline); j++ {
				select {
				case <-l.done:
					return
				default:
				}
				// Every fourth request a POST: Nginx treats those apart.
				method, body := "GET", io.Reader(nil)
				if (i+j)%4 == 0 {
					method, body = "POST", strings.NewReader("a=1")
					l.posts.Add(1)
				}
				l.total.Add(1)
				if err := l.one(c, n, method, body, cookie); err != nil {
					l.failed.Add(1)
					l.mu.Lock()
					if l.failure == "" {
						l.failure = err.Error()
					}
					l.mu.Unlock()
				} else {
					l.ok.Add(1)
				}
			}
		}()
	}
	return l
}

func (l *restartLoad) one(c *http.Client, n *testenv.Nginx, method string, body io.Reader, cookie string) error {
	req, err := http.NewRequest(method, n.URL("/orders"), body)
	if err != nil {
		return err
	}
	req.Header.Set("Cookie", cookie)
	resp, err := c.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), `"X-Auth-User":["alice"]`) {
		return fmt.Errorf("%s: status %d: %.200s", method, resp.StatusCode, b)
	}
	return nil
}

// waitFor waits until n requests have succeeded; failures do not stop the
// load, they are counted and reported at the end.
func (l *restartLoad) waitFor(t *testing.T, n int64, what string) {
	t.Helper()
	testenv.WaitFor(t, 20*time.Second, fmt.Sprintf("%s (%d ok requests)", what, n), func() bool {
		return l.ok.Load() >= n
	})
}

func (l *restartLoad) stop() {
	l.once.Do(func() { close(l.done) })
	l.wg.Wait()
}

func (l *restartLoad) firstFailure() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failure
}

// upstreamErrors counts the lines in which Nginx logged a failed try of
// an upstream: each one a subrequest it sent on to the next instance.
func upstreamErrors(n *testenv.Nginx) int {
	c := 0
	for _, line := range strings.Split(n.ErrorLog(), "\n") {
		if strings.Contains(line, "upstream: \"http://") && strings.Contains(line, "[error]") {
			c++
		}
	}
	return c
}

// TestNginxReloadUnderLoad reloads Nginx (SIGHUP, as `nginx -s reload`)
// while clients keep sending requests: old workers finish their requests
// over their keep-alive connections to authz, new ones open their own, and
// no request fails.
func TestNginxReloadUnderLoad(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	a := testenv.StartAuthz(t, r.URL())
	app := testenv.StartEcho(t)
	n := testenv.StartNginxReloadable(t, map[string]string{"AUTHZ_ADDR": a.Addr, "APP_ADDR": app.Addr, "LOGIN_ADDR": app.Addr})
	s := &site{t: t, redis: r, rdb: r.Client(), authz: a, nginx: n, client: newClient()}
	sess := s.signIn(alice)
	// A new connection per request from the clients: an old worker closes
	// its idle client connections on reload, and a POST a client sends on
	// one just then fails in the client (Go and browsers retry only GETs).
	// That race is between clients and Nginx; what is tested here is the
	// connections between Nginx and authz.
	l := startLoadConns(t, s.nginx, sess.cookie, 8, false)
	defer l.stop()
	l.waitFor(t, 500, "load before the reload")
	for i := range 3 {
		if err := s.nginx.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		testenv.WaitFor(t, 5*time.Second, "nginx to reload", func() bool {
			return strings.Count(s.nginx.ErrorLog(), "reconfiguring") > i
		})
		l.waitFor(t, l.ok.Load()+300, "load after a reload")
	}
	l.stop()
	t.Logf("%d requests over 3 reloads: %d ok, %d failed", l.total.Load(), l.ok.Load(), l.failed.Load())
	if f := l.failed.Load(); f > 0 {
		t.Errorf("%d requests failed across Nginx reloads, want 0; first: %s", f, l.firstFailure())
	}
}
