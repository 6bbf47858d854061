package signoff

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
	"github.com/authz/authz/logout"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

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
	scans := f.redis.Calls("scan")
	if _, err := f.s.RevokeUser(ctx, "", "nobody"); err != nil {
		t.Fatal(err)
	}
	oneWalk := f.redis.Calls("scan") - scans

	_, cookie := f.session(aliceJSON, time.Hour)
	_, other := f.session(aliceJSON, time.Hour)
	h := f.s.Endpoint(&lockedPub{}, EndpointConfig{})
	scans = f.redis.Calls("scan")
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
	if n := f.redis.Calls("scan") - scans; n >= 3*oneWalk {
		t.Errorf("six concurrent logouts of one user made %d SCAN calls; one walk makes %d, and they share at most two", n, oneWalk)
	}
	if w := f.verify(other, ""); w.Code != 401 {
		t.Errorf("alice's other session: %d; want 401", w.Code)
	}
	if got := testutil.ToFloat64(f.s.walks.done.WithLabelValues("ok")); got < 1 || got > 2 {
		t.Errorf("walks done = %v", got)
	}
}

// A walk stops when every request waiting for it has gone, and goes on
// while one still waits.
func TestUserLogoutWalkCancelledWithItsRequests(t *testing.T) {
	f := newFixture(t, nil)
	f.manySessions(60000)
	_, cookie := f.session(aliceJSON, time.Hour)
	h := f.s.Endpoint(&lockedPub{}, EndpointConfig{})
	scans := f.redis.Calls("scan")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() { done <- postLogout(h, ctx, cookie) }()
	testenv.WaitFor(t, 5*time.Second, "the walk to start", func() bool { return f.redis.Calls("scan") > scans+1 })
	cancel()
	<-done
	testenv.WaitFor(t, 5*time.Second, "the walk to stop", func() bool {
		return testutil.ToFloat64(f.s.walks.running) == 0
	})
	if got := testutil.ToFloat64(f.s.walks.done.WithLabelValues("cancelled")); got != 1 {
		t.Errorf("walks cancelled = %v; want 1", got)
	}
	// A complete logout after the abandoned one ends the session.
	if code := postLogout(h, context.Background(), cookie); code != http.StatusSeeOther {
		t.Fatalf("logout: %d", code)
	}
	if w := f.verify(cookie, ""); w.Code != 401 {
		t.Errorf("after logout: %d; want 401", w.Code)
	}
	if got := testutil.ToFloat64(f.s.walks.done.WithLabelValues("ok")); got > 1 {
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
	h := f.s.Endpoint(&lockedPub{}, EndpointConfig{})
	w := f.s.walks
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
	h := f.s.Endpoint(&lockedPub{}, EndpointConfig{})
	w := f.s.walks
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
