package e2e

import (
	"bufio"
	"context"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
)

// cluster is several authz instances behind one Redis, each asked directly
// (Nginx would pick one per request; asking each one is the strict test).
type cluster struct {
	t         *testing.T
	redis     *testenv.Redis
	instances []*testenv.Authz
	client    *http.Client
	site      *site // for signIn/store helpers
}

func newCluster(t *testing.T, n int, authzArgs ...string) *cluster {
	t.Helper()
	r := testenv.StartRedis(t)
	c := &cluster{t: t, redis: r, client: newClient()}
	c.site = &site{t: t, redis: r, rdb: r.Client(), client: c.client}
	for range n {
		c.instances = append(c.instances, testenv.StartAuthz(t, r.URL(), authzArgs...))
	}
	for _, a := range c.instances {
		testenv.WaitFor(t, 10*time.Second, "the logout subscription on "+a.Addr, func() bool {
			return metric(t, a, "authz_logout_subscribed") == 1
		})
	}
	return c
}

// verify asks instance a about cookie and returns the status.
func (c *cluster) verify(a *testenv.Authz, cookie string) int {
	c.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+a.Addr+"/verify", nil)
	req.Header.Set("Cookie", cookie)
	resp, err := c.client.Do(req)
	if err != nil {
		c.t.Fatalf("verify on %s: %v", a.Addr, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// everywhere checks that every instance answers want for cookie.
func (c *cluster) everywhere(cookie string, want int, what string) {
	c.t.Helper()
	for i, a := range c.instances {
		if got := c.verify(a, cookie); got != want {
			c.t.Errorf("%s: instance %d answered %d, want %d", what, i, got, want)
		}
	}
}

// cli runs an authz command against the cluster's Redis.
func (c *cluster) cli(args ...string) (string, error) {
	c.t.Helper()
	args = append(args, "--redis-url", c.redis.URL(), "--session-secret", testenv.SessionSecret)
	out, err := exec.Command(testenv.BuildAuthz(c.t), args...).CombinedOutput()
	return string(out), err
}

// metric sums every series of name on a's /metrics.
func metric(t *testing.T, a *testenv.Authz, name string) float64 { return metricB(t, a, name) }

func metricB(t testing.TB, a *testenv.Authz, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + a.MetricsAddr + "/metrics")
	if err != nil {
		t.Fatalf("scrape %s: %v", a.MetricsAddr, err)
	}
	defer resp.Body.Close()
	total := 0.0
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err == nil {
			total += v
		}
	}
	return total
}

func TestLogoutSessionReachesEveryInstance(t *testing.T) {
	t.Parallel()
	// A cache TTL of an hour: only the logout itself can explain a deny.
	c := newCluster(t, 3, "--cache-ttl", "1h", "--tracking=false")
	s := c.site
	mine, other := s.signIn(alice), s.signIn(alice)
	c.everywhere(mine.cookie, 200, "before logout")
	c.everywhere(other.cookie, 200, "before logout")

	out, err := c.cli("logout", "--session", strings.TrimPrefix(mine.cookie, "connect.sid="))
	if err != nil {
		t.Fatalf("authz logout --session: %v\n%s", err, out)
	}
	if !strings.Contains(out, "revoked session") || strings.Contains(out, mine.sid) {
		t.Errorf("output %q: want a revoked line naming the session only by hash", out)
	}
	for i, a := range c.instances {
		testenv.WaitFor(t, 2*time.Second, "instance "+strconv.Itoa(i)+" to deny the logged-out session", func() bool {
			return c.verify(a, mine.cookie) == 401
		})
	}
	c.everywhere(other.cookie, 200, "the user's other session")

	// Nothing matched: a clear message and exit status 1.
	out, err = c.cli("logout", "--session", mine.sid)
	if err == nil || !strings.Contains(out, "no session") {
		t.Errorf("second logout of the same session: err=%v out=%q; want exit 1 and 'no session'", err, out)
	}
}

func TestLogoutUserEndsOnlyOlderSessions(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 3, "--cache-ttl", "1h", "--tracking=false")
	s := c.site
	old1, old2 := s.signIn(alice), s.signIn(alice)
	bobs := s.signIn(bob)
	for _, x := range []session{old1, old2, bobs} {
		c.everywhere(x.cookie, 200, "before logout")
	}

	out, err := c.cli("logout", "--user", "alice")
	if err != nil || !strings.Contains(out, "revoked 2 sessions") {
		t.Fatalf("authz logout --user alice: %v\n%s", err, out)
	}
	newer := s.signIn(alice)
	for _, x := range []session{old1, old2} {
		for i, a := range c.instances {
			testenv.WaitFor(t, 2*time.Second, "instance "+strconv.Itoa(i)+" to deny an older session", func() bool {
				return c.verify(a, x.cookie) == 401
			})
		}
	}
	c.everywhere(newer.cookie, 200, "a session created after the logout")
	c.everywhere(bobs.cookie, 200, "another user's session")

	// An app that had old1 loaded saves it again after the logout.
	s.store(old1, alice)
	c.everywhere(old1.cookie, 401, "an older session saved again by an app")

	// It holds across restarts: a fresh instance refuses them too.
	c.instances[0].Stop()
	c.instances[0] = testenv.StartAuthz(t, c.redis.URL(), "--cache-ttl", "1h")
	c.everywhere(old1.cookie, 401, "after a restart, an older session")
	c.everywhere(old2.cookie, 401, "after a restart, an older session")
	c.everywhere(newer.cookie, 200, "after a restart, the newer session")
}

func TestSessionDeletedWithoutEvent(t *testing.T) {
	t.Parallel()
	t.Run("tracking off: within the cache TTL", func(t *testing.T) {
		t.Parallel()
		c := newCluster(t, 1, "--cache-ttl", "300ms", "--tracking=false")
		x := c.site.signIn(bob)
		c.everywhere(x.cookie, 200, "before DEL")
		c.site.rdb.Del(context.Background(), "sess:"+x.sid)
		testenv.WaitFor(t, 2*time.Second, "the deleted session to be denied", func() bool {
			return c.verify(c.instances[0], x.cookie) == 401
		})
	})
	for _, mode := range []string{"reads", "bcast"} {
		t.Run("tracking "+mode+": at once", func(t *testing.T) {
			t.Parallel()
			// With 30 s of cache TTL only the invalidation can deny it
			// within the second.
			c := newCluster(t, 3, "--cache-ttl", "30s", "--tracking-mode", mode)
			for _, a := range c.instances {
				if metric(t, a, "authz_tracking_enabled") != 1 {
					t.Fatal("tracking not enabled")
				}
			}
			x := c.site.signIn(bob)
			c.everywhere(x.cookie, 200, "before DEL")
			c.site.rdb.Del(context.Background(), "sess:"+x.sid)
			for _, a := range c.instances {
				testenv.WaitFor(t, time.Second, "the deleted session to be denied", func() bool {
					return c.verify(a, x.cookie) == 401
				})
			}
			if mode != "reads" {
				return
			}
			// An instance hears only of what it read: writes to a
			// session only the first instance read reach the first
			// instance alone, once per read.
			y := c.site.signIn(alice)
			before := make([]float64, len(c.instances))
			for i, a := range c.instances {
				before[i] = metric(t, a, "authz_tracking_messages_total")
			}
			if got := c.verify(c.instances[0], y.cookie); got != 200 {
				t.Fatalf("verify = %d", got)
			}
			ctx := context.Background()
			for range 10 {
				c.site.rdb.Expire(ctx, "sess:"+y.sid, time.Hour)
			}
			testenv.WaitFor(t, time.Second, "the reader to hear of the write", func() bool {
				return metric(t, c.instances[0], "authz_tracking_messages_total") > before[0]
			})
			// A write after the message; Redis reports nothing more
			// until the next read. The probe is a key the first
			// instance reads again, so its message shows the first
			// ones have all arrived.
			c.site.rdb.Expire(ctx, "sess:"+y.sid, time.Hour)
			z := c.site.signIn(alice)
			c.verify(c.instances[0], z.cookie)
			c.site.rdb.Del(ctx, "sess:"+z.sid)
			testenv.WaitFor(t, time.Second, "the probe's message", func() bool {
				return metric(t, c.instances[0], "authz_tracking_messages_total") >= before[0]+2
			})
			if got := metric(t, c.instances[0], "authz_tracking_messages_total") - before[0]; got != 2 {
				t.Errorf("the reader got %v messages for 12 writes to two keys it read once each, want 2", got)
			}
			for i, a := range c.instances[1:] {
				if got := metric(t, a, "authz_tracking_messages_total") - before[i+1]; got != 0 {
					t.Errorf("instance %d, which read neither session, got %v invalidation messages", i+1, got)
				}
			}
		})
	}
}

// TestInvalidationConnectionKilled: the connection Redis sends
// invalidations to is killed while sessions are cached, and one of them is
// deleted at that moment, so its invalidation may be lost. It must not be
// allowed afterwards; and sessions cached once the connection is back, read
// through pooled connections armed for the old one, must still be reported.
func TestInvalidationConnectionKilled(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, "--cache-ttl", "30s")
	ctx := context.Background()
	var xs []session
	for range 5 {
		x := c.site.signIn(bob)
		c.everywhere(x.cookie, 200, "before")
		xs = append(xs, x)
	}
	connects := make([]float64, len(c.instances))
	for i, a := range c.instances {
		connects[i] = metric(t, a, "authz_logout_subscription_connects_total")
	}
	// KILL and DEL in one round trip: nothing runs between them. Then a
	// pause, so that go-redis's reconnection (which it makes before it
	// reports the lost connection) takes 300 ms instead of a few.
	pipe := c.site.rdb.Pipeline()
	pipe.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub")
	pipe.Del(ctx, "sess:"+xs[0].sid)
	pipe.Do(ctx, "CLIENT", "PAUSE", 300, "ALL")
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	deleted := time.Now()
	// From then until tracking is whole again no instance may allow the
	// deleted session: the cache is emptied and bypassed as soon as the
	// connection's end reaches authz, which is before the DEL's reply
	// reaches this test. lossNoticed is the time authz's goroutine may
	// take to run on a loaded machine; a live invalidation races the
	// same way. Answers 503 (a read timing out in the pause) fail closed.
	const lossNoticed = 50 * time.Millisecond
	checks, early := make([]int, len(c.instances)), make([]int, len(c.instances))
	testenv.WaitFor(t, 5*time.Second, "the subscription to come back on every instance", func() bool {
		whole := true
		for i, a := range c.instances {
			sent := time.Now()
			got := c.verify(a, xs[0].cookie)
			checks[i]++
			switch {
			case got == 200 && sent.Sub(deleted) < lossNoticed:
				early[i]++
			case got == 200:
				t.Fatalf("instance %d allowed the session deleted as its invalidation connection was killed, in a request sent %v after the DEL, before tracking was whole again", i, sent.Sub(deleted).Round(time.Millisecond))
			}
			whole = whole && metric(t, a, "authz_logout_subscription_connects_total") > connects[i] &&
				metric(t, a, "authz_tracking_enabled") == 1
		}
		return whole
	})
	t.Logf("from the DEL until tracking was whole again: checks per instance %v, allowed within %v of the DEL %v", checks, lossNoticed, early)
	c.everywhere(xs[0].cookie, 401, "after the reconnect, the session deleted as the connection died")
	for _, x := range xs[1:] {
		c.everywhere(x.cookie, 200, "after the reconnect, a live session")
	}
	c.site.rdb.Del(ctx, "sess:"+xs[1].sid)
	for _, a := range c.instances {
		testenv.WaitFor(t, time.Second, "a session cached after the reconnect to be denied once deleted", func() bool {
			return c.verify(a, xs[1].cookie) == 401
		})
	}
}

func TestLogoutLostWhileSubscriptionDown(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, "--cache-ttl", "1h", "--tracking=false")
	a := c.instances[0]
	x := c.site.signIn(bob)
	c.everywhere(x.cookie, 200, "before")
	connects := metric(t, a, "authz_logout_subscription_connects_total")

	// Kill the subscription and log out while it is down: the event has no
	// subscriber, and tracking is off. Only the flush on reconnect can save us.
	ctx := context.Background()
	if err := c.site.rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	c.site.rdb.Del(ctx, "sess:"+x.sid)
	c.site.rdb.Publish(ctx, "authz:logout", `{"v":1,"kind":"session","session":"`+x.sid+`"}`)
	testenv.WaitFor(t, 5*time.Second, "the subscription to come back", func() bool {
		return metric(t, a, "authz_logout_subscription_connects_total") > connects &&
			metric(t, a, "authz_logout_subscribed") == 1
	})
	if got := c.verify(a, x.cookie); got != 401 {
		t.Fatalf("after the reconnect the logged-out session got %d, want 401", got)
	}
	if metric(t, a, "authz_logout_subscription_drops_total") < 1 {
		t.Error("the drop was not counted")
	}
}

func TestBadEventsAreCountedAndIgnored(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 1, "--cache-ttl", "1h", "--tracking=false")
	a := c.instances[0]
	x := c.site.signIn(bob)
	c.everywhere(x.cookie, 200, "before")
	ctx := context.Background()
	for _, bad := range []string{"not json", `{"v":2,"kind":"session","session":"x"}`, `{"v":1,"kind":"session"}`, `{"v":1,"kind":"user"}`, `{"v":1,"kind":"everything","session":"x"}`} {
		c.site.rdb.Publish(ctx, "authz:logout", bad)
	}
	testenv.WaitFor(t, 2*time.Second, "five rejected events", func() bool {
		return metric(t, a, "authz_logout_events_rejected_total") == 5
	})
	c.everywhere(x.cookie, 200, "after bad events")
	// The subscriber is still there and applies the next good event.
	out, err := c.cli("logout", "--session", x.sid)
	if err != nil {
		t.Fatalf("logout: %v\n%s", err, out)
	}
	testenv.WaitFor(t, 2*time.Second, "the good event to apply", func() bool {
		return c.verify(a, x.cookie) == 401
	})
	if a.Exited() {
		t.Fatal("authz exited")
	}
}

// TestNoCacheWithoutSubscription: authz whose logout subscription never
// comes up (its Redis user may not subscribe) never answers from its
// cache, from its first request on: nothing would tell it of a logout or of
// an app's DEL. The cache starts bypassed and only the live subscription
// turns it on.
func TestNoCacheWithoutSubscription(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	ctx := context.Background()
	admin := r.Client()
	if err := admin.Do(ctx, "ACL", "SETUSER", "app", "on", ">pw", "~*", "resetchannels", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	a := testenv.StartAuthz(t, "redis://app:pw@"+r.Addr+"/0", "--cache-ttl", "1h")
	c := &cluster{t: t, redis: r, instances: []*testenv.Authz{a}, client: newClient()}
	c.site = &site{t: t, redis: r, rdb: admin, client: c.client}
	x := c.site.signIn(bob)
	for range 3 {
		c.everywhere(x.cookie, 200, "a live session")
	}
	if err := admin.Del(ctx, "sess:"+x.sid).Err(); err != nil {
		t.Fatal(err)
	}
	c.everywhere(x.cookie, 401, "at once after an app deleted the session")
	if got := metric(t, a, "authz_cache_hits_total"); got != 0 {
		t.Errorf("%v answers from the cache without a logout subscription", got)
	}
	if metric(t, a, "authz_logout_subscribed") != 0 || !strings.Contains(a.Output(), "logout subscription lost") {
		t.Fatalf("the subscription was expected to fail (NOPERM):\n%s", a.Output())
	}
}

// Redis keeps what a connection read with the connection: when a reading
// connection closes (here CLIENT KILL TYPE normal; Redis's own timeout or
// go-redis dropping one does the same) its keys are no longer tracked, and
// an app's plain DEL afterwards is reported to nobody. Each instance finds
// the connection gone at its next heartbeat and empties its cache, so the
// deleted session is refused within about the second a plain DEL has
// anyway, not after the hour of cache.
func TestReadingConnectionsKilled(t *testing.T) {
	t.Parallel()
	c := newCluster(t, 2, "--cache-ttl", "1h")
	x := c.site.signIn(bob)
	c.everywhere(x.cookie, 200, "before the kill")
	// Each instance checks the connections it saw armed at its previous
	// heartbeat: wait until both have seen theirs.
	for i, a := range c.instances {
		testenv.WaitFor(t, 5*time.Second, "instance "+strconv.Itoa(i)+" to see its reading connections armed", func() bool {
			return metric(t, a, "authz_tracking_reading_connections") >= 1
		})
	}
	c.everywhere(x.cookie, 200, "cached, before the kill")
	ctx := context.Background()
	if err := c.site.rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
		t.Fatal(err)
	}
	if err := c.site.rdb.Del(ctx, "sess:"+x.sid).Err(); err != nil {
		t.Fatal(err)
	}
	for i, a := range c.instances {
		testenv.WaitFor(t, 3*time.Second, "instance "+strconv.Itoa(i)+" to deny a session deleted after its reading connections were killed", func() bool {
			return c.verify(a, x.cookie) == 401
		})
		if got := metric(t, a, "authz_tracking_readers_lost_total"); got < 1 {
			t.Errorf("instance %d: authz_tracking_readers_lost_total = %v, want >= 1", i, got)
		}
	}
}
