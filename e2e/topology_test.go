package e2e

import (
	"context"
	"net"
	"net/http"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
	"github.com/redis/go-redis/v9"
)

// deployment is several authz instances on one Redis topology (Sentinel or
// Cluster), each asked directly, as cluster is for a single Redis.
type deployment struct {
	*cluster
	url string // --redis-url of the topology
}

func newDeployment(t *testing.T, url string, rdb redis.UniversalClient, n int, authzArgs ...string) *deployment {
	t.Helper()
	d := &deployment{cluster: &cluster{t: t, client: newClient()}, url: url}
	d.site = &site{t: t, rdb: rdb, client: d.client}
	for range n {
		d.instances = append(d.instances, testenv.StartAuthz(t, url, authzArgs...))
	}
	for _, a := range d.instances {
		testenv.WaitFor(t, 10*time.Second, "the logout subscription on "+a.Addr, func() bool {
			return metric(t, a, "authz_logout_subscribed") == 1
		})
	}
	return d
}

// cli runs an authz command against the deployment's Redis.
func (d *deployment) cli(args ...string) (string, error) {
	d.t.Helper()
	args = append(args, "--redis-url", d.url, "--session-secret", testenv.SessionSecret)
	out, err := exec.Command(testenv.BuildAuthz(d.t), args...).CombinedOutput()
	return string(out), err
}

// postLogout signs sess out through instance a's POST /logout.
func (d *deployment) postLogout(a *testenv.Authz, sess session) int {
	d.t.Helper()
	req, _ := http.NewRequest("POST", "http://"+a.Addr+"/logout", nil)
	req.Header.Set("Cookie", sess.cookie)
	req.Header.Set("Accept", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		d.t.Fatalf("POST /logout on %s: %v", a.Addr, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// deniedEverywhere waits until every instance answers 401 for sess.
func (d *deployment) deniedEverywhere(sess session, what string) {
	d.t.Helper()
	for i, a := range d.instances {
		testenv.WaitFor(d.t, 2*time.Second, "instance "+strconv.Itoa(i)+" to deny "+what, func() bool {
			return d.verify(a, sess.cookie) == 401
		})
	}
}

// logoutStory is what single sign-off must do on any topology: a CLI
// logout and a POST /logout reach every instance, a revoked session saved
// again by an app stays dead, and a user-wide logout finds sessions
// wherever they are stored.
func logoutStory(t *testing.T, d *deployment) {
	s := d.site
	a1, a2, a3 := s.signIn(alice), s.signIn(alice), s.signIn(alice)
	b := s.signIn(bob)
	for _, x := range []session{a1, a2, a3, b} {
		d.everywhere(x.cookie, 200, "before logout")
	}

	out, err := d.cli("logout", "--session", a1.sid)
	if err != nil {
		t.Fatalf("authz logout --session: %v\n%s", err, out)
	}
	d.deniedEverywhere(a1, "the session logged out with the CLI")

	if st := d.postLogout(d.instances[0], a2); st != http.StatusNoContent {
		t.Fatalf("POST /logout: %d, want 204", st)
	}
	d.deniedEverywhere(a2, "the session logged out with POST /logout")

	// An app that had a1 loaded saves it again: the marker keeps it dead.
	s.store(a1, alice)
	d.everywhere(a1.cookie, 401, "a logged-out session saved again by an app")

	// a1, saved again, is a session key of alice's once more, unless an
	// instance that read it beside its marker has ended it again already:
	// the user-wide logout finds a3 and maybe a1, and leaves neither.
	out, err = d.cli("logout", "--user", "alice")
	if err != nil || !(strings.Contains(out, "revoked 2 sessions") || strings.Contains(out, "revoked 1 sessions")) {
		t.Fatalf("authz logout --user alice: %v\n%s", err, out)
	}
	for _, x := range []session{a1, a3} {
		// One key a call: on a cluster the two may sit on two masters.
		if n, err := s.rdb.Exists(context.Background(), "sess:"+x.sid).Result(); err != nil || n != 0 {
			t.Fatalf("after the user-wide logout alice's session is still stored (%d, %v)", n, err)
		}
	}
	d.deniedEverywhere(a3, "a session ended by a user-wide logout")
	d.everywhere(b.cookie, 200, "another user's session")
}

func TestSentinelVerifyAndLogout(t *testing.T) {
	t.Parallel()
	s := testenv.StartSentinel(t)
	// An hour of cache TTL: only logout events and tracking can deny.
	d := newDeployment(t, s.URL(), s.Client(), 2, "--cache-ttl", "1h")
	for _, a := range d.instances {
		if metric(t, a, "authz_tracking_enabled") != 1 {
			t.Fatalf("tracking is off on %s; want it on the master of a Sentinel deployment", a.Addr)
		}
		if strings.Contains(a.Output(), "refused CLIENT TRACKING") {
			t.Errorf("%s tried tracking on a sentinel:\n%s", a.Addr, a.Output())
		}
	}
	logoutStory(t, d)

	// Tracking: a session deleted by someone else, without an event.
	x := d.site.signIn(bob)
	d.everywhere(x.cookie, 200, "before DEL")
	d.site.rdb.Del(context.Background(), "sess:"+x.sid)
	for _, a := range d.instances {
		testenv.WaitFor(t, time.Second, "a session an app deleted without an event to be denied on "+a.Addr, func() bool {
			return d.verify(a, x.cookie) == 401
		})
	}

	// The same through the flags rather than the URL, and session show.
	// "--" ends the flags: a session id may begin with "-".
	out, err := exec.Command(testenv.BuildAuthz(t), "session", "show",
		"--redis-sentinel-master", testenv.SentinelMaster,
		"--redis-sentinel-addrs", strings.Join(s.Addrs, ","),
		"--redis-url", "redis://ignored/0", "--", d.site.signIn(bob).sid).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "user     bob") {
		t.Errorf("authz session show with --redis-sentinel-*: %v\n%s", err, out)
	}
}

func TestClusterVerifyAndLogout(t *testing.T) {
	t.Parallel()
	c := testenv.StartCluster(t)
	d := newDeployment(t, c.URL(), c.Client(), 2, "--cache-ttl", "1h")
	d.trackingWhole()

	// The session key and its revocation marker must live on different
	// nodes, so the one-round-trip read (GET, PTTL, EXISTS marker) really
	// spans nodes: find such a session.
	var x session
	for i := 0; ; i++ {
		x = d.site.signIn(bob)
		if c.NodeOf("sess:"+x.sid) != c.NodeOf("authz:revoked:sess:"+x.sid) {
			break
		}
		if i == 100 {
			t.Fatal("100 sessions, each on the same node as its marker: the cluster's slots are not spread")
		}
	}
	d.everywhere(x.cookie, 200, "a session on another node than its marker would be")
	if out, err := d.cli("logout", "--session", x.sid); err != nil {
		t.Fatalf("authz logout: %v\n%s", err, out)
	}
	d.deniedEverywhere(x, "the logged-out session")
	d.site.store(x, bob)
	d.everywhere(x.cookie, 401, "a logged-out session saved again, its marker on another node")

	// alice's sessions spread over the masters; --user walks them all.
	logoutStory(t, d)

	out, err := exec.Command(testenv.BuildAuthz(t), "session", "show",
		"--redis-cluster-addrs", c.Nodes[1].Addr, "--", d.site.signIn(bob).sid).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "user     bob") {
		t.Errorf("authz session show with --redis-cluster-addrs: %v\n%s", err, out)
	}
}

// trackingWhole waits until every instance has a live invalidation
// connection on every master (authz_tracking_enabled).
func (d *deployment) trackingWhole() {
	d.t.Helper()
	for _, a := range d.instances {
		testenv.WaitFor(d.t, 10*time.Second, "tracking on every node for "+a.Addr, func() bool {
			return metric(d.t, a, "authz_tracking_enabled") == 1
		})
	}
}

// TestClusterSessionDeletedWithoutEvent: an app's plain DEL of a cached
// session, on each of the three masters, is refused on every instance
// within a second, with 30 s of cache TTL: each master reports it to each
// instance's invalidation connection on that master.
func TestClusterSessionDeletedWithoutEvent(t *testing.T) {
	t.Parallel()
	c := testenv.StartCluster(t)
	d := newDeployment(t, c.URL(), c.Client(), 3, "--cache-ttl", "30s")
	d.trackingWhole()
	for _, a := range d.instances {
		if !strings.Contains(a.Output(), "invalidation connection started") {
			t.Errorf("%s does not log its per-node invalidation connections:\n%s", a.Addr, a.Output())
		}
	}
	for n, node := range c.Nodes {
		var x session
		for i := 0; ; i++ {
			x = d.site.signIn(bob)
			if c.NodeOf("sess:"+x.sid) == node {
				break
			}
			if i == 200 {
				t.Fatalf("200 sessions, none on node %d", n)
			}
		}
		d.everywhere(x.cookie, 200, "before DEL")
		if err := d.site.rdb.Del(context.Background(), "sess:"+x.sid).Err(); err != nil {
			t.Fatal(err)
		}
		for i, a := range d.instances {
			testenv.WaitFor(t, time.Second, "instance "+strconv.Itoa(i)+" to deny a session deleted on node "+strconv.Itoa(n), func() bool {
				return d.verify(a, x.cookie) == 401
			})
		}
	}
	for _, a := range d.instances {
		if got := metric(t, a, "authz_tracking_messages_total"); got < 3 {
			t.Errorf("%s counted %v invalidation messages for three sessions deleted on three masters", a.Addr, got)
		}
	}
}

// TestClusterSlotMoveTracked moves a cached session's slot to another
// master, then an app deletes it there (a plain DEL): with 30 s of cache
// TTL it is refused on every instance within a second. The move ends the
// tracking of the key on its old master, and reads from the new one are
// armed for that master's invalidation connection.
func TestClusterSlotMoveTracked(t *testing.T) {
	t.Parallel()
	c := testenv.StartCluster(t)
	d := newDeployment(t, c.URL(), c.Client(), 2, "--cache-ttl", "30s")
	d.trackingWhole()
	x, key := moveSessionSlot(t, c, d)
	d.trackingWhole()
	d.everywhere(x.cookie, 200, "after the move, tracking whole")
	if err := d.site.rdb.Del(context.Background(), key).Err(); err != nil {
		t.Fatal(err)
	}
	for i, a := range d.instances {
		testenv.WaitFor(t, time.Second, "instance "+strconv.Itoa(i)+" to deny a session deleted after its slot moved", func() bool {
			return d.verify(a, x.cookie) == 401
		})
	}
}

// moveSessionSlot signs bob in and moves his session's slot to another
// master (IMPORTING, MIGRATING, MIGRATE, SETSLOT NODE) while every instance
// verifies it: the answer is 200 before, at each step and after. It
// returns the session and its key.
func moveSessionSlot(t *testing.T, c *testenv.Cluster, d *deployment) (session, string) {
	t.Helper()
	x := d.site.signIn(bob)
	key := "sess:" + x.sid
	to := c.Nodes[0]
	if c.NodeOf(key) == to {
		to = c.Nodes[1]
	}
	d.everywhere(x.cookie, 200, "before the move")
	c.MoveSlot(key, to, func(step string) {
		d.everywhere(x.cookie, 200, "while the slot is "+step)
	})
	if c.NodeOf(key) != to {
		t.Fatal("the slot did not move")
	}
	d.everywhere(x.cookie, 200, "after the move")
	return x, key
}

// result is one request of a load run.
type result struct {
	at     time.Time
	status int // 0: no answer at all
	sent   time.Time
	took   time.Duration
	cookie int
}

// load sends verify requests for cookies, round-robin over instances, from
// a few goroutines until stopped or until max requests were sent.
type load struct {
	mu   sync.Mutex
	out  []result
	sent int
	stop chan struct{}
	wg   sync.WaitGroup
}

func startLoad(instances []*testenv.Authz, cookies []string, workers, max int) *load {
	l := &load{stop: make(chan struct{})}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			c := &http.Client{Timeout: 5 * time.Second}
			for i := w; ; i += workers {
				l.mu.Lock()
				if l.sent >= max {
					l.mu.Unlock()
					return
				}
				l.sent++
				l.mu.Unlock()
				select {
				case <-l.stop:
					return
				default:
				}
				k := i % len(cookies)
				req, _ := http.NewRequest("GET", "http://"+instances[i%len(instances)].Addr+"/verify", nil)
				req.Header.Set("Cookie", cookies[k])
				start := time.Now()
				st := 0
				if resp, err := c.Do(req); err == nil {
					st = resp.StatusCode
					resp.Body.Close()
				}
				l.mu.Lock()
				l.out = append(l.out, result{sent: start, at: time.Now(), status: st, took: time.Since(start), cookie: k})
				l.mu.Unlock()
			}
		}()
	}
	return l
}

// count is how many requests have been answered so far.
func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.out)
}

// finish stops the load and returns every result.
func (l *load) finish() []result {
	close(l.stop)
	l.wg.Wait()
	return l.out
}

// TestSentinelFailoverUnderLoad runs a bounded load on two instances while
// Sentinel fails the master over, and logs a session out before and during
// it. It reports how many requests failed and over how long; after the new
// master is up there must be no more failures, and a logged-out session
// must never be allowed. The failover is asked for (SENTINEL FAILOVER, as
// in maintenance) or forced by killing the master (a crash).
func TestSentinelFailoverUnderLoad(t *testing.T) {
	t.Parallel()
	t.Run("SENTINEL FAILOVER", func(t *testing.T) {
		t.Parallel()
		failoverUnderLoad(t, func(s *testenv.Sentinel) { s.Failover() })
	})
	t.Run("master killed", func(t *testing.T) {
		t.Parallel()
		failoverUnderLoad(t, func(s *testenv.Sentinel) {
			old := s.MasterAddr()
			s.Master().Kill()
			s.WaitMasterMoved(old, 20*time.Second)
		})
	})
}

func failoverUnderLoad(t *testing.T, failover func(*testenv.Sentinel)) {
	s := testenv.StartSentinel(t)
	d := newDeployment(t, s.URL(), s.Client(), 2)
	ctx := context.Background()
	var sessions []session
	var cookies []string
	for i := range 20 {
		u := alice
		if i%2 == 1 {
			u = bob
		}
		x := d.site.signIn(u)
		sessions = append(sessions, x)
		cookies = append(cookies, x.cookie)
	}
	// The sessions must be on the replica before it is promoted, as they
	// would be on a site that has been running for a while.
	if n, err := d.site.rdb.Do(ctx, "WAIT", 1, 2000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT 1: %d, %v", n, err)
	}
	const before, during, deleted = 0, 1, 2 // the sessions logged out
	if out, err := d.cli("logout", "--session", sessions[before].sid); err != nil {
		t.Fatalf("logout before the failover: %v\n%s", err, out)
	}
	d.deniedEverywhere(sessions[before], "the session logged out before the failover")

	const maxRequests = 200000 // a bound; the test stops the load long before
	l := startLoad(d.instances, cookies, 4, maxRequests)
	testenv.WaitFor(t, 10*time.Second, "the load to get going", func() bool { return l.count() >= 200 })
	start := time.Now()
	oldMaster := s.MasterAddr()
	// The moment any sentinel names the new master, an app deletes a
	// session there (express-session's destroy: a plain DEL).
	delDone := make(chan time.Time, 1)
	go func() { delDone <- deleteOnFirstNamed(t, s, oldMaster, "sess:"+sessions[deleted].sid) }()
	failover(s)
	up := time.Now()
	deletedAt := <-delDone
	t.Logf("failover %s -> %s: every sentinel names the new master %v after it began", oldMaster, s.MasterAddr(), up.Sub(start).Round(time.Millisecond))

	// Log a session out now; the CLI may fail while its own client catches
	// up, so retry it.
	var loggedOut time.Time
	testenv.WaitFor(t, 10*time.Second, "a logout to succeed after the failover", func() bool {
		_, err := d.cli("logout", "--session", sessions[during].sid)
		loggedOut = time.Now()
		return err == nil
	})
	// Enough more requests to show the new master serves everything.
	n := l.count()
	testenv.WaitFor(t, 20*time.Second, "2000 requests after the logout", func() bool { return l.count() >= n+2000 })
	results := l.finish()

	// A request sent once the logout or the DEL had completed must never
	// be allowed: no slack for propagation. One sent before may be (it
	// raced the logout).
	var failed []result
	var lateAllows int // allows of a session sent after its logout returned
	for _, r := range results {
		switch {
		case r.status == 200 && r.cookie == before:
			lateAllows++
			t.Errorf("the session logged out before the failover was allowed at %v", r.at.Sub(start))
		case r.status == 200 && r.cookie == during && r.sent.After(loggedOut):
			lateAllows++
			t.Errorf("stale allow: the session logged out after the failover was allowed in a request sent %v after its logout completed", r.sent.Sub(loggedOut))
		case r.status == 200 && r.cookie == deleted && r.sent.After(deletedAt):
			lateAllows++
			t.Errorf("stale allow: the session deleted on the new master as soon as it was named was allowed in a request sent %v after the DEL completed", r.sent.Sub(deletedAt))
		case r.status != 200 && r.status != 401:
			failed = append(failed, r)
		}
	}
	window := time.Duration(0)
	if len(failed) > 0 {
		window = failed[len(failed)-1].at.Sub(failed[0].at)
	}
	t.Logf("%d requests, %d failed (503 or no answer) over a window of %v; last failure %v after the new master was up; %d stale allows (of a session in a request sent after its logout or DEL completed; the DEL %v after the failover began)",
		len(results), len(failed), window.Round(time.Millisecond), lastAfter(failed, up), lateAllows, deletedAt.Sub(start).Round(time.Millisecond))
	for _, r := range failed {
		if r.at.After(up.Add(time.Second)) {
			t.Errorf("request failed (%d) %v after the new master was up", r.status, r.at.Sub(up).Round(time.Millisecond))
			break
		}
	}
	// The subscriber's reconnection backoff grew while there was no
	// master, so it may come back a little after the requests do.
	for _, a := range d.instances {
		testenv.WaitFor(t, 5*time.Second, "the subscription and tracking on "+a.Addr+" to be back on the new master", func() bool {
			return metric(t, a, "authz_logout_subscribed") == 1 && metric(t, a, "authz_tracking_enabled") == 1
		})
	}
}

// deleteOnFirstNamed polls every sentinel until one names a master other
// than old, deletes key there at once and returns when the DEL did. An app
// asking that sentinel could do the same; no authz instance may allow the
// session from then on.
func deleteOnFirstNamed(t *testing.T, s *testenv.Sentinel, old, key string) time.Time {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var sentinels []*redis.SentinelClient
	for _, a := range s.Addrs {
		c := redis.NewSentinelClient(&redis.Options{Addr: a})
		defer c.Close()
		sentinels = append(sentinels, c)
	}
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for ctx.Err() == nil {
		<-tick.C
		for _, c := range sentinels {
			addr, err := c.GetMasterAddrByName(ctx, testenv.SentinelMaster).Result()
			if err != nil || len(addr) != 2 || net.JoinHostPort(addr[0], addr[1]) == old {
				continue
			}
			m := redis.NewClient(&redis.Options{Addr: net.JoinHostPort(addr[0], addr[1])})
			defer m.Close()
			// The sentinel names it once it is promoted; retry anyway
			// in case it is still finishing.
			for ctx.Err() == nil {
				if err := m.Del(ctx, key).Err(); err == nil {
					return time.Now()
				}
			}
		}
	}
	t.Error("no sentinel named a new master")
	return time.Now()
}

// lastAfter is how long after t the last of rs happened (0 when none did).
func lastAfter(rs []result, t time.Time) time.Duration {
	if len(rs) == 0 || rs[len(rs)-1].at.Before(t) {
		return 0
	}
	return rs[len(rs)-1].at.Sub(t).Round(time.Millisecond)
}

// TestRedisFailureMidLoadFailsFast extends TestRedisOutageFailsClosedAndRecovers
// (one request at a time) to a bounded load, with Redis killed (connections
// refused) or frozen (SIGSTOP: connections open but no answer, the case
// where each request would wait out --redis-timeout were it not for the
// circuit breaker; TestBreakerFailsFastWhileRedisIsDown tests the breaker
// itself). authz must answer 503 fast, /readyz must say not ready, and
// it must recover when Redis is back.
func TestRedisFailureMidLoadFailsFast(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"killed", "frozen"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			const timeout = time.Second
			r := testenv.StartRedis(t)
			a := testenv.StartAuthz(t, r.URL(), "--redis-timeout", timeout.String(), "--cache-ttl", "100ms")
			st := &site{t: t, redis: r, rdb: r.Client(), client: newClient()}
			var cookies []string
			var sessions []session
			for i := range 50 {
				u := alice
				if i%2 == 1 {
					u = bob
				}
				x := st.signIn(u)
				sessions, cookies = append(sessions, x), append(cookies, x.cookie)
			}
			const maxRequests = 200000                                   // a bound; the test stops the load long before
			l := startLoad([]*testenv.Authz{a}, cookies, 4, maxRequests) // 4: workers below
			testenv.WaitFor(t, 10*time.Second, "the load to get going", func() bool { return l.count() >= 300 })
			down := time.Now()
			if mode == "killed" {
				r.Kill()
			} else {
				r.Signal(syscall.SIGSTOP)
			}
			testenv.WaitFor(t, 5*time.Second, "/readyz to say not ready", func() bool {
				return status(t, "http://"+a.MetricsAddr+"/readyz") == http.StatusServiceUnavailable
			})
			// Three seconds of outage: three breaker cooldowns.
			testenv.WaitFor(t, 10*time.Second, "three seconds of load on a failed Redis", func() bool {
				return time.Since(down) > 3*time.Second
			})
			back := time.Now()
			if mode == "killed" {
				r.Start()
				for _, x := range sessions { // no persistence: the app's users sign in again
					st.store(x, alice)
				}
			} else {
				r.Signal(syscall.SIGCONT)
			}
			testenv.WaitFor(t, 10*time.Second, "authz to allow again", func() bool {
				return st.verifyDirect(a, cookies[0]) == http.StatusOK
			})
			recovered := time.Now()
			if got := status(t, "http://"+a.MetricsAddr+"/readyz"); got != http.StatusOK {
				t.Errorf("after Redis came back /readyz answered %d", got)
			}
			results := l.finish()

			var failed, slow int
			var took []time.Duration
			for _, x := range results {
				if x.at.Before(down) || x.at.After(back) {
					continue
				}
				if x.status == http.StatusOK {
					continue // from the cache, for at most --cache-ttl
				}
				if x.status != http.StatusServiceUnavailable {
					t.Errorf("with Redis %s: status %d, want 503", mode, x.status)
				}
				failed++
				took = append(took, x.took)
				if x.took >= timeout {
					slow++
				}
			}
			slices.Sort(took)
			p50 := took[len(took)/2]
			t.Logf("Redis %s for %v: %d answers 503, median %v, %d waited out the %v timeout; allowed again %v after Redis was back",
				mode, back.Sub(down).Round(time.Millisecond), failed, p50, slow, timeout, recovered.Sub(back).Round(time.Millisecond))
			// Without the breaker every request would wait out the
			// timeout. With it, only the requests that open it (5, sent
			// by the 4 workers) and, each time a cooldown ends, the 4 that
			// try Redis again may wait: outage/cooldown+1 times.
			const workers, threshold, cooldown = 4, 5, time.Second
			if bound := threshold + workers*(int(back.Sub(down)/cooldown)+1); slow > bound {
				t.Errorf("%d requests waited out the timeout; want at most %d", slow, bound)
			}
		})
	}
}

// verifyDirect asks authz a (not through nginx) about cookie.
func (s *site) verifyDirect(a *testenv.Authz, cookie string) int {
	s.t.Helper()
	req, _ := http.NewRequest("GET", "http://"+a.Addr+"/verify", nil)
	req.Header.Set("Cookie", cookie)
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("verify on %s: %v", a.Addr, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestClusterSlotMove moves a session's slot to another master (a
// reshard) while authz keeps verifying it with its cache off: go-redis
// follows the ASK and MOVED redirects, so the answer never changes, and a
// logout afterwards still ends the session on every instance.
func TestClusterSlotMove(t *testing.T) {
	t.Parallel()
	c := testenv.StartCluster(t)
	d := newDeployment(t, c.URL(), c.Client(), 2, "--cache-ttl", "1ms", "--negative-cache-ttl", "0")
	x, _ := moveSessionSlot(t, c, d)
	if out, err := d.cli("logout", "--session", x.sid); err != nil {
		t.Fatalf("authz logout after the move: %v\n%s", err, out)
	}
	d.deniedEverywhere(x, "the session logged out after its slot moved")
}

// TestSentinelsDownMasterUp stops every sentinel while the master stays
// healthy: nothing about the master changed, so the logout subscription
// stays where it is and the cache stays on (restarting the subscription
// would need a sentinel to find the master again, and leave every request
// reading Redis until the sentinels came back).
func TestSentinelsDownMasterUp(t *testing.T) {
	t.Parallel()
	s := testenv.StartSentinel(t)
	d := newDeployment(t, s.URL(), s.Client(), 1, "--cache-ttl", "1h")
	a := d.instances[0]
	x := d.site.signIn(bob)
	d.everywhere(x.cookie, 200, "before the sentinels stop")
	s.StopSentinels()
	testenv.WaitFor(t, 10*time.Second, "authz to notice the sentinels are gone", func() bool {
		return strings.Count(a.Output(), "lost the sentinel watched") >= 3
	})
	if metric(t, a, "authz_logout_subscribed") != 1 {
		t.Fatalf("the logout subscription dropped with the sentinels, though the master is up:\n%s", a.Output())
	}
	hits := metric(t, a, "authz_cache_hits_total")
	d.everywhere(x.cookie, 200, "with the sentinels down")
	if metric(t, a, "authz_cache_hits_total") <= hits {
		t.Error("the cache is off with the sentinels down")
	}
	// A logout still reaches the instance: the subscription is live. (The
	// CLI talks to the master directly: it has no sentinel to ask.)
	out, err := exec.Command(testenv.BuildAuthz(t), "logout", "--session", x.sid,
		"--redis-url", s.Nodes[0].URL(), "--session-secret", testenv.SessionSecret).CombinedOutput()
	if err != nil {
		t.Fatalf("authz logout with the sentinels down: %v\n%s", err, out)
	}
	d.deniedEverywhere(x, "a session logged out while the sentinels are down")
}

// TestFrozenRedisDoesNotHangShutdown freezes Redis (SIGSTOP: connections
// are accepted by the kernel, nothing answers) and then stops authz: the
// logout subscription's reconnection must not hold up the exit.
func TestFrozenRedisDoesNotHangShutdown(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	a := testenv.StartAuthz(t, r.URL(), "--shutdown-timeout", "2s")
	testenv.WaitFor(t, 5*time.Second, "the logout subscription", func() bool { return metric(t, a, "authz_logout_subscribed") == 1 })
	r.Signal(syscall.SIGSTOP)
	defer r.Signal(syscall.SIGCONT)
	// Lost, then a reconnection that gave up on the frozen Redis instead of
	// waiting for it forever; the next one is likely under way when the
	// signal comes.
	testenv.WaitFor(t, 10*time.Second, "authz to give up a reconnection to the frozen Redis", func() bool {
		return strings.Count(a.Output(), "logout subscription lost") >= 2
	})
	if err := a.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	testenv.WaitFor(t, 10*time.Second, "authz to exit with Redis frozen", a.Exited)
}

// TestClusterFailoverNoStaleAllow: authz instances (reads-mode tracking,
// an hour of cache TTL) have sessions cached from one master when its
// replica takes over (CLUSTER FAILOVER). Right after, an app deletes one
// session on the new master (a plain DEL), and another is logged out with
// authz logout. The deleted one is refused on every instance within a
// second; the logged-out one is never allowed in a request sent after the
// logout completed. The demoted master cannot serve a stale read: a
// replica answers MOVED to a client that has not sent READONLY.
func TestClusterFailoverNoStaleAllow(t *testing.T) {
	t.Parallel()
	c := testenv.StartClusterReplicas(t)
	d := newDeployment(t, c.URL(), c.Client(), 2, "--cache-ttl", "1h")
	d.trackingWhole()
	master := c.Nodes[0]
	// Two sessions in master's slots, and one elsewhere.
	var x, y, z session
	for i, found := 0, 0; found < 3; i++ {
		s := d.site.signIn(bob)
		switch on := c.NodeOf("sess:" + s.sid); {
		case on == master && found == 0:
			x, found = s, 1
		case on == master && found == 1:
			y, found = s, 2
		case on != master && found == 2:
			z, found = s, 3
		}
		if i == 300 {
			t.Fatal("300 sessions and not two on the first master and one elsewhere")
		}
	}
	cookies := []string{x.cookie, y.cookie, z.cookie}
	const deleted, loggedOutIdx, other = 0, 1, 2
	for _, k := range cookies {
		d.everywhere(k, 200, "before the failover")
	}
	ctx := context.Background()
	om := redis.NewClient(&redis.Options{Addr: master.Addr})
	defer om.Close()
	if n, err := om.Do(ctx, "WAIT", 1, 2000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT 1 on the master: %d, %v", n, err)
	}

	l := startLoad(d.instances, cookies, 4, 200000)
	testenv.WaitFor(t, 10*time.Second, "the load to get going", func() bool { return l.count() >= 200 })
	replica := c.ReplicaOf(master)
	start := time.Now()
	c.Failover(replica)
	up := time.Now()

	// (a) An app deletes x on the new master the moment it took over.
	nm := redis.NewClient(&redis.Options{Addr: replica.Addr})
	defer nm.Close()
	var deletedAt time.Time
	testenv.WaitFor(t, 5*time.Second, "a DEL on the new master", func() bool {
		err := nm.Del(ctx, "sess:"+x.sid).Err()
		deletedAt = time.Now()
		return err == nil
	})
	// (b) Meanwhile, authz logout of y, retried while the CLI's own
	// client catches up; loggedOut is when the one that succeeded ended.
	bin := testenv.BuildAuthz(t)
	logout := make(chan time.Time, 1)
	go func() {
		for end := time.Now().Add(10 * time.Second); time.Now().Before(end); {
			err := exec.Command(bin, "logout", "--session", y.sid, "--redis-url", d.url, "--session-secret", testenv.SessionSecret).Run()
			if err == nil {
				logout <- time.Now()
				return
			}
		}
		close(logout)
	}()
	for i, a := range d.instances {
		testenv.WaitFor(t, time.Second-time.Since(deletedAt), "instance "+strconv.Itoa(i)+" to deny the session deleted on the new master", func() bool {
			return d.verify(a, x.cookie) == 401
		})
	}
	deniedBy := time.Since(deletedAt)
	loggedOut, ok := <-logout
	if !ok {
		t.Fatal("authz logout failed for 10 s after the failover")
	}
	n := l.count()
	testenv.WaitFor(t, 20*time.Second, "1000 requests after the logout", func() bool { return l.count() >= n+1000 })
	results := l.finish()

	var failed []result
	var stale, lateDeleted int
	var lastDeleted time.Duration
	for _, r := range results {
		switch {
		case r.status == 200 && r.cookie == loggedOutIdx && r.sent.After(loggedOut):
			stale++
			t.Errorf("stale allow: the session logged out after the failover was allowed in a request sent %v after its logout completed", r.sent.Sub(loggedOut))
		case r.status == 200 && r.cookie == deleted && r.sent.After(deletedAt):
			lateDeleted++
			lastDeleted = max(lastDeleted, r.sent.Sub(deletedAt))
		case r.status != 200 && r.status != 401:
			failed = append(failed, r)
		case r.cookie == other && r.status != 200:
			t.Errorf("a session on another master answered %d", r.status)
		}
	}
	window := time.Duration(0)
	if len(failed) > 0 {
		window = failed[len(failed)-1].at.Sub(failed[0].at)
	}
	t.Logf("CLUSTER FAILOVER took %v; %d requests, %d failed (503 or no answer) over %v, last %v after the new master was up; the DEL %v after it: every instance denied it %v later (%d allows of it after the DEL, the last sent %v after); the logout completed %v after the new master was up, %d stale allows after it",
		up.Sub(start).Round(time.Millisecond), len(results), len(failed), window.Round(time.Millisecond), lastAfter(failed, up),
		deletedAt.Sub(up).Round(time.Millisecond), deniedBy.Round(time.Millisecond), lateDeleted, lastDeleted.Round(time.Millisecond),
		loggedOut.Sub(up).Round(time.Millisecond), stale)
	d.trackingWhole()
	d.everywhere(z.cookie, 200, "after the failover, a session on another master")
	d.everywhere(y.cookie, 401, "after the failover, the logged-out session")
	// Why the demoted master cannot serve a stale read: as a replica it
	// redirects a client that has not sent READONLY (as authz's have not).
	testenv.WaitFor(t, 5*time.Second, "the old master to be a replica", func() bool {
		role, err := om.Do(ctx, "ROLE").Slice()
		return err == nil && len(role) > 0 && role[0] == "slave"
	})
	if err := om.Get(ctx, "sess:"+x.sid).Err(); err == nil || !strings.HasPrefix(err.Error(), "MOVED ") || !strings.HasSuffix(err.Error(), replica.Addr) {
		t.Errorf("the old master, now a replica, answered a read of its former slot with %v; want MOVED to %s", err, replica.Addr)
	}
}
