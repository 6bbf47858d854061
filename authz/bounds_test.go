package authz

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// clock is a settable Config.Now.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UnixNano())
	return c
}
func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestStaleIfError(t *testing.T) {
	for _, tc := range []struct {
		name      string
		stale     time.Duration
		advance   time.Duration
		logout    bool // a logout event for the session arrives during the outage
		lostSub   bool // the logout subscription drops during the outage
		untracked bool // tracking is off or does not cover the prefix
		want      int
		stalePlus float64
	}{
		{"off: fail closed", 0, 2 * time.Second, false, false, false, 503, 0},
		{"within the grace", 10 * time.Second, 2 * time.Second, false, false, false, 200, 1},
		{"past the grace", 10 * time.Second, 12 * time.Second, false, false, false, 503, 0},
		{"logged out meanwhile", 10 * time.Second, 2 * time.Second, true, false, false, 503, 0},
		{"subscription lost", 10 * time.Second, 2 * time.Second, false, true, false, 503, 0},
		{"untracked prefix", 10 * time.Second, 2 * time.Second, false, false, true, 503, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clk := newClock()
			f := newFixture(t, func(c *Config) {
				c.CacheTTL = time.Second
				c.StaleIfError = tc.stale
				c.Now = clk.now
				c.RedisTimeout = 200 * time.Millisecond
			})
			f.v.SetStaleGuard(func(string) bool { return !tc.untracked })
			sid, cookie := f.session(aliceJSON, time.Hour)
			if w := f.verify(cookie, ""); w.Code != 200 {
				t.Fatalf("before the outage: %d", w.Code)
			}
			f.redis.Stop()
			if tc.logout {
				f.v.Invalidate(sid)
			}
			if tc.lostSub {
				f.v.Subscribed(false)
			}
			clk.advance(tc.advance)
			before := testutil.ToFloat64(f.v.metrics.staleServed)
			w := f.verify(cookie, "")
			if w.Code != tc.want {
				t.Fatalf("Redis down, %v after caching: %d, want %d", tc.advance, w.Code, tc.want)
			}
			if w.Code == 200 && w.Header().Get("X-Auth-User") != "alice" {
				t.Errorf("stale allow without the identity: %q", w.Header().Get("X-Auth-User"))
			}
			if got := testutil.ToFloat64(f.v.metrics.staleServed) - before; got != tc.stalePlus {
				t.Errorf("authz_stale_allows_total grew by %v, want %v", got, tc.stalePlus)
			}
		})
	}
}

func TestStaleIfErrorNeverPastTheKeysExpiry(t *testing.T) {
	clk := newClock()
	f := newFixture(t, func(c *Config) {
		c.CacheTTL = time.Minute
		c.StaleIfError = time.Hour
		c.TouchInterval = -1 // sliding expiry would (rightly) move the key's expiry
		c.Now = clk.now
		c.RedisTimeout = 200 * time.Millisecond
	})
	_, cookie := f.session(aliceJSON, 3*time.Second) // the key expires in 3s
	f.v.SetStaleGuard(func(string) bool { return true })
	if w := f.verify(cookie, ""); w.Code != 200 {
		t.Fatalf("before the outage: %d", w.Code)
	}
	f.redis.Stop()
	clk.advance(5 * time.Second)
	if w := f.verify(cookie, ""); w.Code != 503 {
		t.Fatalf("a session whose key expired was served stale: %d", w.Code)
	}
}

func TestMaxPendingLoads(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.MaxPendingLoads = 2
		c.RedisTimeout = 10 * time.Second
	})
	var cookies []string
	for range 5 {
		_, c := f.session(aliceJSON, time.Hour)
		cookies = append(cookies, c)
	}
	// Redis answers nobody for 3s: the first two misses wait for it, the
	// rest are refused at once rather than queueing.
	admin := f.redis.Client()
	defer admin.Close()
	if err := admin.Do(context.Background(), "CLIENT", "PAUSE", 3000, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	codes := make([]int, len(cookies))
	var wg sync.WaitGroup
	for i, c := range cookies {
		wg.Go(func() { codes[i] = f.verify(c, "").Code })
	}
	wg.Wait()
	n := map[int]int{}
	for _, c := range codes {
		n[c]++
	}
	if n[200] != 2 || n[503] != 3 {
		t.Fatalf("answers %v, want two 200s (the reads in flight) and three 503s", n)
	}
	if got := testutil.ToFloat64(f.v.metrics.bounds.WithLabelValues("pending_loads")); got != 3 {
		t.Errorf("pending_loads hits = %v, want 3", got)
	}
	if f.v.pending.Load() != 0 {
		t.Errorf("%d reads still counted in flight", f.v.pending.Load())
	}
}

func TestIdentityHeaderCap(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.MaxIdentityHeaderBytes = 12 })
	_, long := f.session(`{"cookie":{},"passport":{"user":{"id":"a-very-long-user-id"}}}`, time.Hour)
	if w := f.verify(long, ""); w.Code != 401 {
		t.Errorf("identity over the cap: %d, want 401", w.Code)
	}
	_, short := f.session(`{"cookie":{},"passport":{"user":{"id":"alice","email":"alice@example.com"}}}`, time.Hour)
	w := f.verify(short, "")
	if w.Code != 200 || w.Header().Get("X-Auth-User") != "alice" || w.Header().Get("X-Auth-Email") != "" {
		t.Errorf("email over the cap: %d user=%q email=%q; want 200, alice, no email", w.Code, w.Header().Get("X-Auth-User"), w.Header().Get("X-Auth-Email"))
	}
	if got := testutil.ToFloat64(f.v.metrics.bounds.WithLabelValues("identity_header")); got != 2 {
		t.Errorf("identity_header hits = %v, want 2", got)
	}
}

// A touch that fails must not let a stale allow outlive the key: authz
// only trusts an expiry Redis confirmed.
func TestStaleIfErrorNotPastAFailedTouch(t *testing.T) {
	clk := newClock()
	f := newFixture(t, func(c *Config) {
		c.CacheTTL = time.Minute
		c.StaleIfError = time.Hour
		c.TouchInterval = time.Second
		c.Now = clk.now
		c.RedisTimeout = 200 * time.Millisecond
	})
	// maxAge as long as the TTL: the first request has nothing to slide.
	_, cookie := f.session(`{"cookie":{"originalMaxAge":10000},"passport":{"user":"carol"}}`, 10*time.Second)
	f.v.SetStaleGuard(func(string) bool { return true })
	if w := f.verify(cookie, ""); w.Code != 200 {
		t.Fatalf("before the outage: %d", w.Code)
	}
	f.redis.Stop()
	// A hit at 5s would slide the key to 15s, but Redis is down: the
	// touch fails (or is skipped by the open circuit).
	clk.advance(5 * time.Second)
	if w := f.verify(cookie, ""); w.Code != 200 {
		t.Fatalf("cache hit during the outage: %d", w.Code)
	}
	testenv.WaitFor(t, 5*time.Second, "the failed touch to finish", func() bool { return len(f.v.touches) == 0 })
	clk.advance(7 * time.Second) // 12s: the key expired at 10s
	if w := f.verify(cookie, ""); w.Code != 503 {
		t.Fatalf("stale allow past the key's expiry after a failed touch: %d", w.Code)
	}
}
