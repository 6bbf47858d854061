package authz

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
	"github.com/authz/authz/logout"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// netOutput is how many bytes Redis has sent its clients, from INFO stats.
func (f *fixture) netOutput() int64 {
	f.t.Helper()
	info, err := f.rdb.Info(context.Background(), "stats").Result()
	if err != nil {
		f.t.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if rest, ok := strings.CutPrefix(line, "total_net_output_bytes:"); ok {
			var n int64
			fmt.Sscanf(rest, "%d", &n)
			return n
		}
	}
	f.t.Fatal("no total_net_output_bytes in INFO stats")
	return 0
}

// A huge value under a session or token key is refused as invalid without
// crossing the network: before, the 32 MiB were downloaded whole, the read
// timed out, the answer was 503 and the breaker counted an outage.
func TestHugeValueIsRefusedUnread(t *testing.T) {
	f := newFixture(t, func(c *Config) {
		c.BreakerFailures = 1
		c.BreakerCooldown = time.Hour
		c.BearerTokens = true
	})
	ctx := context.Background()
	huge := `{"passport":{"user":"h"},"pad":"` + strings.Repeat("x", 32<<20) + `"}`
	_, cookie := f.session(huge, time.Hour)
	tok := TokenMark + strings.Repeat("A", 43)
	var key [tokenKeyLen]byte
	tokenKey(&key, tok)
	if err := f.rdb.Set(ctx, TokenPrefixDefault+string(key[1:]), huge, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	sid, wrongType := f.session(`x`, time.Hour)
	f.rdb.Del(ctx, "sess:"+sid)
	if err := f.rdb.HSet(ctx, "sess:"+sid, "passport", "alice").Err(); err != nil {
		t.Fatal(err)
	}
	_, alice := f.session(aliceJSON, time.Hour)

	before := f.netOutput()
	for range 3 {
		f.v.InvalidateAll()
		if w := f.verify(cookie, ""); w.Code != 401 {
			t.Fatalf("huge session: %d; want 401", w.Code)
		}
		if w := f.verify("", "", "Authorization", "Bearer "+tok); w.Code != 401 {
			t.Fatalf("huge token: %d; want 401", w.Code)
		}
		if w := f.verify(wrongType, ""); w.Code != 401 {
			t.Fatalf("session key holding a hash: %d; want 401", w.Code)
		}
	}
	if sent := f.netOutput() - before; sent > 16<<20 {
		t.Errorf("Redis sent %d bytes to refuse them: the values crossed the network", sent)
	}
	for r, want := range map[Reason]float64{ReasonSessionTooLarge: 3, ReasonInvalidToken: 3, ReasonInvalidSession: 3, ReasonStoreUnavailable: 0} {
		if got := testutil.ToFloat64(f.v.metrics.requests[r]); got != want {
			t.Errorf("%s answers = %v; want %v", r, got, want)
		}
	}
	if w := f.verify(alice, ""); w.Code != 200 {
		t.Errorf("another user after them: %d; want 200 (the breaker must not have opened)", w.Code)
	}
	if opens := f.v.breakers.opens(); opens != 0 {
		t.Errorf("the breaker opened %d times", opens)
	}
	// A user-wide logout walks every session: the huge one is skipped
	// unread too.
	before = f.netOutput()
	if n, err := f.v.RevokeUser(ctx, "", "alice"); n != 1 || err != nil {
		t.Errorf("RevokeUser = %d, %v; want alice's one session", n, err)
	}
	if sent := f.netOutput() - before; sent > 16<<20 {
		t.Errorf("Redis sent %d bytes for a user-wide logout: the huge value crossed the network", sent)
	}
}

// An Express request in flight during a logout saves the session back.
// authz refused it already; now it ends it for everyone (apps reading the
// session themselves see it gone) and for as long as the key could live:
// before, the key stayed, and its TTL, reset by the late save, outlived the
// marker set at logout.
func TestLateSaveAfterLogoutIsEndedAgain(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.StoreTTL = time.Hour })
	ctx := context.Background()
	for _, tt := range []struct {
		name string
		ttl  time.Duration // of the late save; 0: none
	}{
		{"save with a TTL past the marker's", 30 * 24 * time.Hour},
		{"save without TTL", 0},
	} {
		t.Run(tt.name, func(t *testing.T) {
			sid, cookie := f.session(aliceJSON, time.Hour)
			if w := f.verify(cookie, ""); w.Code != 200 {
				t.Fatalf("before logout: %d", w.Code)
			}
			if _, err := f.v.RevokeSession(ctx, "", sid); err != nil {
				t.Fatal(err)
			}
			f.v.Invalidate(sid)
			if err := f.rdb.Set(ctx, "sess:"+sid, aliceJSON, tt.ttl).Err(); err != nil {
				t.Fatal(err)
			}
			if w := f.verify(cookie, ""); w.Code != 401 {
				t.Fatalf("after the late save: %d; want 401", w.Code)
			}
			if n := f.rdb.Exists(ctx, "sess:"+sid).Val(); n != 0 {
				t.Errorf("the session saved back after logout is still in Redis for apps to read")
			}
			marker := f.rdb.PTTL(ctx, "authz:revoked:sess:"+sid).Val()
			switch {
			case tt.ttl == 0 && marker != -1:
				t.Errorf("marker TTL %v; want none, as the key had none", marker)
			case tt.ttl > 0 && marker < tt.ttl-time.Minute:
				t.Errorf("marker TTL %v; want at least the key's %v", marker, tt.ttl)
			}
		})
	}
	if got := testutil.ToFloat64(f.v.metrics.endedAgain.WithLabelValues("ok")); got != 2 {
		t.Errorf("authz_sessions_ended_again_total{result=ok} = %v; want 2", got)
	}
}

// lockedPub is a Publisher safe for concurrent logouts.
type lockedPub struct {
	mu sync.Mutex
	n  int
}

func (p *lockedPub) Publish(context.Context, logout.Event) (int64, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	return 1, nil
}

// manySessions stores n sessions of nobody in particular, so that a walk
// takes many SCAN steps.
func (f *fixture) manySessions(n int) {
	f.t.Helper()
	pipe := f.rdb.Pipeline()
	for i := range n {
		pipe.Set(context.Background(), fmt.Sprintf("sess:many%028d", i), `{"cookie":{},"passport":{"user":"someone"}}`, time.Hour)
	}
	if _, err := pipe.Exec(context.Background()); err != nil {
		f.t.Fatal(err)
	}
}

func postLogout(h http.Handler, ctx context.Context, cookie string) int {
	req := httptest.NewRequestWithContext(ctx, http.MethodPost, "http://app.example/logout?everywhere=1", nil)
	req.Header.Set("Cookie", "connect.sid="+cookie)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code
}

// Concurrent user-wide logouts of one user share at most two walks of the
// keyspace (the second for those arriving once the first scans): before,
// each request walked every session key itself (six at once, six walks).
func TestUserLogoutsShareOneWalk(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	f.manySessions(20000)
	// What one walk costs.
	scans := f.calls("scan")
	if _, err := f.v.RevokeUser(ctx, "", "nobody"); err != nil {
		t.Fatal(err)
	}
	oneWalk := f.calls("scan") - scans

	_, cookie := f.session(aliceJSON, time.Hour)
	_, other := f.session(aliceJSON, time.Hour)
	h := f.v.LogoutHandler(&lockedPub{}, LogoutConfig{})
	scans = f.calls("scan")
	var wg sync.WaitGroup
	codes := make([]int, 6)
	for i := range codes {
		wg.Go(func() { codes[i] = postLogout(h, ctx, cookie) })
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusSeeOther {
			t.Errorf("logout %d: %d; want 303", i, c)
		}
	}
	// Those arriving once the first walk scans share one more walk (it may
	// be past sessions created since); SCAN's COUNT is a hint: the same
	// keyspace may take a step more.
	if n := f.calls("scan") - scans; n >= 3*oneWalk {
		t.Errorf("six concurrent logouts of one user made %d SCAN calls; one walk makes %d, and they share at most two", n, oneWalk)
	}
	if w := f.verify(other, ""); w.Code != 401 {
		t.Errorf("alice's other session: %d; want 401", w.Code)
	}
	if got := testutil.ToFloat64(f.v.userWalks.done.WithLabelValues("ok")); got < 1 || got > 2 {
		t.Errorf("walks done = %v", got)
	}
}

// A walk stops when every request waiting for it has gone, and goes on
// while one still waits.
func TestUserLogoutWalkCancelledWithItsRequests(t *testing.T) {
	f := newFixture(t, nil)
	f.manySessions(60000)
	_, cookie := f.session(aliceJSON, time.Hour)
	h := f.v.LogoutHandler(&lockedPub{}, LogoutConfig{})
	scans := f.calls("scan")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- postLogout(h, ctx, cookie) }()
	testenv.WaitFor(t, 5*time.Second, "the walk to start", func() bool { return f.calls("scan") > scans+1 })
	cancel()
	<-done
	testenv.WaitFor(t, 5*time.Second, "the walk to stop", func() bool {
		return testutil.ToFloat64(f.v.userWalks.running) == 0
	})
	if got := testutil.ToFloat64(f.v.userWalks.done.WithLabelValues("cancelled")); got != 1 {
		t.Errorf("walks cancelled = %v; want 1", got)
	}
	// A complete logout after the abandoned one ends the session.
	if code := postLogout(h, context.Background(), cookie); code != http.StatusSeeOther {
		t.Fatalf("logout: %d", code)
	}
	if w := f.verify(cookie, ""); w.Code != 401 {
		t.Errorf("after logout: %d; want 401", w.Code)
	}
	if got := testutil.ToFloat64(f.v.userWalks.done.WithLabelValues("ok")); got > 1 {
		t.Errorf("walks done = %v; want at most 1 (none if the abandoned walk had reached the session)", got)
	}
}

// A user-wide logout arriving while a walk for the same user is scanning
// does not share that walk: its SCAN cursor may be past a session created
// since, which the request's own walk would find. It waits for one more
// walk, run when the scanning one ends.
func TestUserLogoutDoesNotJoinAWalkPastItsSessions(t *testing.T) {
	f := newFixture(t, nil)
	_, first := f.session(aliceJSON, time.Hour)
	h := f.v.LogoutHandler(&lockedPub{}, LogoutConfig{})
	w := f.v.userWalks
	reached, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	w.scanned = func() {
		// Only the first walk stops here: it has scanned, as one whose
		// cursor is past every session created from now on.
		once.Do(func() { close(reached); <-release })
	}
	waiting := func() int {
		w.mu.Lock()
		defer w.mu.Unlock()
		n := 0
		for _, c := range w.calls {
			for ; c != nil; c = c.next {
				n += c.refs
			}
		}
		return n
	}
	codes := make(chan int, 2)
	go func() { codes <- postLogout(h, context.Background(), first) }()
	<-reached
	_, later := f.session(aliceJSON, time.Hour) // created after the walk passed
	_, second := f.session(aliceJSON, time.Hour)
	go func() { codes <- postLogout(h, context.Background(), second) }()
	testenv.WaitFor(t, 5*time.Second, "the second logout to wait for a walk", func() bool { return waiting() == 2 })
	close(release)
	for range 2 {
		if c := <-codes; c != http.StatusSeeOther {
			t.Errorf("logout: %d; want 303", c)
		}
	}
	if w := f.verify(later, ""); w.Code != 401 {
		t.Errorf("session created before the second logout, after the first walk scanned: %d; want 401", w.Code)
	}
	if got := testutil.ToFloat64(w.done.WithLabelValues("ok")); got != 2 {
		t.Errorf("walks done = %v; want 2", got)
	}
	testenv.WaitFor(t, 5*time.Second, "the walks to end", func() bool { return testutil.ToFloat64(w.running) == 0 })
}

// The walk waited for by requests that arrived while another scanned is
// dropped, never run, once they have all left; the scanning one goes on for
// its own requests.
func TestUserLogoutNextWalkCancelledWithItsRequests(t *testing.T) {
	f := newFixture(t, nil)
	_, first := f.session(aliceJSON, time.Hour)
	h := f.v.LogoutHandler(&lockedPub{}, LogoutConfig{})
	w := f.v.userWalks
	reached, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	w.scanned = func() { once.Do(func() { close(reached); <-release }) }
	hasNext := func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, c := range w.calls {
			if c.next != nil && c.next.refs > 0 {
				return true
			}
		}
		return false
	}
	codes := make(chan int, 1)
	go func() { codes <- postLogout(h, context.Background(), first) }()
	<-reached
	_, second := f.session(aliceJSON, time.Hour) // the walk is past it
	ctx, cancel := context.WithCancel(context.Background())
	left := make(chan int, 1)
	go func() { left <- postLogout(h, ctx, second) }()
	testenv.WaitFor(t, 5*time.Second, "the second logout to wait for the next walk", hasNext)
	cancel()
	if c := <-left; c != http.StatusServiceUnavailable {
		t.Errorf("abandoned logout: %d; want 503", c)
	}
	if hasNext() {
		t.Error("the next walk is still waited for after its only request left")
	}
	close(release)
	if c := <-codes; c != http.StatusSeeOther {
		t.Errorf("first logout: %d; want 303", c)
	}
	testenv.WaitFor(t, 5*time.Second, "the walks to end", func() bool { return testutil.ToFloat64(w.running) == 0 })
	w.mu.Lock()
	n := len(w.calls)
	w.mu.Unlock()
	if n != 0 {
		t.Errorf("%d walks left in the table", n)
	}
	if got := testutil.ToFloat64(w.done.WithLabelValues("ok")); got != 1 {
		t.Errorf("walks done = %v; want 1: the next walk, abandoned, never runs", got)
	}
}
