package authz

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/logout"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

func TestRevokeSessionSticks(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	sid, c := f.session(aliceJSON, time.Hour)
	_, other := f.session(aliceJSON, time.Hour)
	if w := f.verify(c, ""); w.Code != 200 {
		t.Fatalf("before logout: %d", w.Code)
	}
	found, err := f.v.RevokeSession(ctx, "", sid)
	if err != nil || !found {
		t.Fatalf("RevokeSession = %v, %v", found, err)
	}
	f.v.Invalidate(sid) // what the logout event does on every instance
	if w := f.verify(c, ""); w.Code != 401 {
		t.Fatalf("after logout: %d; want 401", w.Code)
	}
	// An Express request that loaded the session before the logout saves it
	// afterwards: the key is back, the session must stay dead.
	f.rdb.Set(ctx, "sess:"+sid, aliceJSON, time.Hour)
	f.v.Invalidate(sid)
	if w := f.verify(c, ""); w.Code != 401 {
		t.Fatalf("re-saved after logout: %d; want 401", w.Code)
	}
	if w := f.verify(other, ""); w.Code != 200 {
		t.Fatalf("the user's other session: %d; want 200", w.Code)
	}
	// The marker lives as long as the session could: maxAge is an hour.
	if ttl := f.rdb.TTL(ctx, "authz:revoked:sess:"+sid).Val(); ttl < 23*time.Hour {
		t.Errorf("marker TTL %v; want at least the store TTL (24h)", ttl)
	}
	if found, err := f.v.RevokeSession(ctx, "", "neverstoredneverstoredneverstore"); err != nil || found {
		t.Errorf("RevokeSession of nothing = %v, %v", found, err)
	}
}

func TestRevokeUser(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	// Enough other sessions that the SCAN takes several steps.
	pipe := f.rdb.Pipeline()
	for i := range 2500 {
		pipe.Set(ctx, fmt.Sprintf("sess:other%027d", i), `{"passport":{"user":"someone"}}`, time.Hour)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	var old []string
	var oldSIDs []string
	for _, js := range []string{
		`{"cookie":{},"passport":{"user":"42"}}`,
		`{"cookie":{},"passport":{"user":42}}`,
		`{"cookie":{},"passport":{"user":{"id":42,"name":"ann"}}}`,
		`{"cookie":{},"user":{"id":42}}`,
		`{"cookie":{},"user":{"id":4.2e1}}`,
	} {
		sid, c := f.session(js, time.Hour)
		old = append(old, c)
		oldSIDs = append(oldSIDs, sid)
		if w := f.verify(c, ""); w.Code != 200 {
			t.Fatalf("before: %d", w.Code)
		}
	}
	_, keep := f.session(`{"cookie":{},"passport":{"user":"420"}}`, time.Hour)
	_, noTTL := f.session(`{"cookie":{},"passport":{"user":"42"}}`, 0)
	old = append(old, noTTL)

	n, err := f.v.RevokeUser(ctx, "", "42")
	if err != nil || n != 6 {
		t.Fatalf("RevokeUser = %d, %v; want 6", n, err)
	}
	f.v.InvalidateUser("", "42")
	_, fresh := f.session(`{"cookie":{},"passport":{"user":"42"}}`, time.Hour)
	for i, c := range old {
		if w := f.verify(c, ""); w.Code != 401 {
			t.Errorf("old session %d after user logout: %d; want 401", i, w.Code)
		}
	}
	for _, c := range []string{keep, fresh} {
		if w := f.verify(c, ""); w.Code != 200 {
			t.Errorf("session that should survive: %d", w.Code)
		}
	}
	f.rdb.Set(ctx, "sess:"+oldSIDs[0], `{"passport":{"user":"42"}}`, time.Hour)
	if w := f.verify(old[0], ""); w.Code != 401 {
		t.Errorf("re-saved old session: %d; want 401", w.Code)
	}
	if n := f.rdb.DBSize(ctx).Val(); n != 2500+2+1+6 {
		t.Errorf("keyspace holds %d keys; some other session was deleted?", n)
	}
}

func TestCacheFollowsSubscription(t *testing.T) {
	f := newFixture(t, func(c *Config) { c.CacheTTL = time.Hour })
	sid, c := f.session(bobJSON, time.Hour)
	f.v.Subscribed(false)
	gets := f.calls("getrange")
	f.verify(c, "")
	f.verify(c, "")
	if n := f.calls("getrange") - gets; n != 2 {
		t.Fatalf("subscription down: %d GETs for 2 requests; want 2 (no caching)", n)
	}
	f.v.Subscribed(true)
	f.verify(c, "")
	f.verify(c, "")
	if n := f.calls("getrange") - gets; n != 3 {
		t.Fatalf("subscription live: %d GETs; want 3 (cached again)", n)
	}
	// Tracking says the key changed: the next request reads it again.
	f.rdb.Del(context.Background(), "sess:"+sid)
	f.v.KeysChanged([]string{"sess:" + sid, "other:x"})
	if w := f.verify(c, ""); w.Code != 401 {
		t.Fatalf("after KeysChanged: %d; want 401", w.Code)
	}
	f.v.Logout(logout.Event{Kind: logout.KindUser, User: "nobody"})
}

type pubRecorder struct{ events []logout.Event }

func (p *pubRecorder) Publish(_ context.Context, e logout.Event) (int64, error) {
	p.events = append(p.events, e)
	return 1, nil
}

func TestLogoutEndpoint(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	pub := &pubRecorder{}
	h := f.v.LogoutHandler(pub, LogoutConfig{})
	post := func(cookie, query string, hdr ...string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "http://app.example/logout"+query, nil)
		if cookie != "" {
			req.Header.Set("Cookie", "connect.sid="+cookie)
		}
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		return w
	}

	sid, c := f.session(aliceJSON, time.Hour)
	w := post(c, "", "Origin", "http://app.example")
	if w.Code != http.StatusSeeOther || w.Header().Get("Location") != "/login" {
		t.Fatalf("logout: %d %q; want 303 to /login", w.Code, w.Header().Get("Location"))
	}
	if sc := w.Header().Get("Set-Cookie"); !strings.HasPrefix(sc, "connect.sid=;") || !strings.Contains(sc, "Max-Age=0") {
		t.Errorf("cookie not expired: %q", sc)
	}
	if f.rdb.Exists(ctx, "sess:"+sid).Val() != 0 {
		t.Error("session still in Redis")
	}
	if len(pub.events) != 1 || pub.events[0].Kind != logout.KindSession || pub.events[0].Session != sid {
		t.Errorf("published %+v", pub.events)
	}
	if w := f.verify(c, ""); w.Code != 401 {
		t.Errorf("verify after logout: %d", w.Code)
	}

	if w := post("", "", "Accept", "application/json"); w.Code != http.StatusNoContent {
		t.Errorf("logout without a session, JSON: %d; want 204", w.Code)
	}
	_, c = f.session(aliceJSON, time.Hour)
	if w := post(c, "", "Origin", "https://evil.example"); w.Code != http.StatusForbidden {
		t.Errorf("cross-site logout: %d; want 403", w.Code)
	}
	if w := post(c, "", "Sec-Fetch-Site", "cross-site"); w.Code != http.StatusForbidden {
		t.Errorf("cross-site logout (Sec-Fetch-Site): %d; want 403", w.Code)
	}
	req := httptest.NewRequest(http.MethodGet, "/logout", nil)
	gw := httptest.NewRecorder()
	h.ServeHTTP(gw, req)
	if gw.Code != http.StatusMethodNotAllowed {
		t.Errorf("GET /logout: %d; want 405", gw.Code)
	}

	// Everywhere: every session of the caller's user.
	_, other := f.session(aliceJSON, time.Hour)
	pub.events = nil
	if w := post(c, "?everywhere=1"); w.Code != http.StatusSeeOther {
		t.Fatalf("logout everywhere: %d", w.Code)
	}
	if w := f.verify(other, ""); w.Code != 401 {
		t.Errorf("alice's other session after logout everywhere: %d", w.Code)
	}
	if len(pub.events) != 1 || pub.events[0].Kind != logout.KindUser || pub.events[0].User != "alice" {
		t.Errorf("published %+v", pub.events)
	}

	f.redis.Stop()
	_, c2 := "", Sign("neverstoredneverstoredneverstore", testSecret)
	if w := post(c2, ""); w.Code != http.StatusServiceUnavailable {
		t.Errorf("logout with Redis down: %d; want 503", w.Code)
	}
}

// A user-wide logout whose read of one key fails (here an ACL denies it;
// a network error mid-pipeline does the same) reports the failure, even when
// another key of the same step is no string (WRONGTYPE, skipped): the
// pipeline reports only its first failed command, and the walk took that
// WRONGTYPE for the step's whole outcome, skipping the unread session and
// reporting success with it left.
func TestRevokeUserFailsOnAnUnreadKey(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	for i := range 100 { // no strings: skipped, as before
		if err := f.rdb.HSet(ctx, fmt.Sprintf("sess:hash%027d", i), "passport", "alice").Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.rdb.Set(ctx, "sess:denied00000000000000000000000000", aliceJSON, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if err := f.rdb.Do(ctx, "ACL", "SETUSER", "walker", "on", ">walkerpass", "+@all", "~sess:hash*", "~authz:*").Err(); err != nil {
		t.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: f.redis.Addr, Username: "walker", Password: "walkerpass", MaxRetries: -1, ContextTimeoutEnabled: true})
	t.Cleanup(func() { rdb.Close() })
	v, err := New(Config{Secrets: []string{testSecret}, RedisTimeout: time.Second}, rdb, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if n, err := v.RevokeUser(ctx, "", "alice"); err == nil {
		t.Errorf("RevokeUser = %d, nil with a session it could not read; want an error", n)
	}
}
