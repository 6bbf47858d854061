package signoff

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
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
	found, err := f.s.RevokeSession(ctx, "", sid)
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
	if found, err := f.s.RevokeSession(ctx, "", "neverstoredneverstoredneverstore"); err != nil || found {
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

	n, err := f.s.RevokeUser(ctx, "", "42")
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
	_, s, _ := build(t, authz.Config{Secrets: []string{testSecret}, RedisTimeout: time.Second}, rdb, io.Discard)
	if n, err := s.RevokeUser(ctx, "", "alice"); err == nil {
		t.Errorf("RevokeUser = %d, nil with a session it could not read; want an error", n)
	}
}

func TestTenantUserLogoutStaysInTenant(t *testing.T) {
	f := newFixture(t, func(c *authz.Config) { c.CacheTTL = time.Hour })
	ts, err := authz.ParseTenants([]byte(twoTenants))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.v.SetTenants(ts); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	f.tenantSession("sessions:acme:web:", "acme42acme42acme42acme42", `{"cookie":{},"passport":{"user":"42"}}`)
	f.tenantSession("sessions:globex:portal:", "glob42glob42glob42glob42", `{"cookie":{},"user":{"id":"42"}}`)
	n, err := f.s.RevokeUser(ctx, "acme", "42")
	if err != nil || n != 1 {
		t.Fatalf("RevokeUser(acme, 42) = %d, %v; want 1", n, err)
	}
	if _, _, err := f.v.Session(ctx, "globex", "glob42glob42glob42glob42"); err != nil {
		t.Fatalf("globex's user 42 was logged out by acme's logout: %v", err)
	}
	if _, _, err := f.v.Session(ctx, "acme", "acme42acme42acme42acme42"); !authz.IsNotFound(err) {
		t.Fatalf("acme's user 42 still has a session: %v", err)
	}
	if _, err := f.s.RevokeUser(ctx, "", "42"); err == nil {
		t.Error("RevokeUser without a tenant accepted while several are configured")
	}
	if _, err := f.s.RevokeUser(ctx, "initech", "42"); err == nil {
		t.Error("RevokeUser of an unknown tenant accepted")
	}
}

// An Express request in flight during a logout saves the session back.
// authz refused it already; now it ends it for everyone (apps reading the
// session themselves see it gone) and for as long as the key could live:
// before, the key stayed, and its TTL, reset by the late save, outlived the
// marker set at logout.
func TestLateSaveAfterLogoutIsEndedAgain(t *testing.T) {
	f := newFixture(t, func(c *authz.Config) { c.StoreTTL = time.Hour })
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
			if _, err := f.s.RevokeSession(ctx, "", sid); err != nil {
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
	if got := (counter(t, f.reg, "authz_sessions_ended_again_total", "ok")); got != 2 {
		t.Errorf("authz_sessions_ended_again_total{result=ok} = %v; want 2", got)
	}
}

// A user-wide logout walks every session: a huge value is skipped unread,
// as the read path refuses it unread (authz's TestHugeValueIsRefusedUnread),
// and so is a session key holding a hash.
func TestUserWalkSkipsAHugeValueUnread(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	huge := `{"passport":{"user":"h"},"pad":"` + strings.Repeat("x", 32<<20) + `"}`
	f.session(huge, time.Hour)
	sid, _ := f.session(`x`, time.Hour)
	f.rdb.Del(ctx, "sess:"+sid)
	if err := f.rdb.HSet(ctx, "sess:"+sid, "passport", "alice").Err(); err != nil {
		t.Fatal(err)
	}
	f.session(aliceJSON, time.Hour)
	before := f.redis.NetOutput()
	if n, err := f.s.RevokeUser(ctx, "", "alice"); n != 1 || err != nil {
		t.Errorf("RevokeUser = %d, %v; want alice's one session", n, err)
	}
	if sent := f.redis.NetOutput() - before; sent > 16<<20 {
		t.Errorf("Redis sent %d bytes for a user-wide logout: the huge value crossed the network", sent)
	}
}

// The write side reads the tenant table the read path routes with: a
// reload is seen by logout as it is by verify, with no table of its own to
// fall behind.
func TestTenantReloadSeenByLogout(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	if _, err := f.s.RevokeUser(ctx, "acme", "42"); err == nil {
		t.Fatal("RevokeUser of a tenant not loaded yet accepted")
	}
	ts, err := authz.ParseTenants([]byte(twoTenants))
	if err != nil {
		t.Fatal(err)
	}
	if err := f.v.SetTenants(ts); err != nil {
		t.Fatal(err)
	}
	sid := "acme42acme42acme42acme42"
	f.tenantSession("sessions:acme:web:", sid, `{"cookie":{},"passport":{"user":"42"}}`)
	if n, err := f.s.RevokeUser(ctx, "acme", "42"); err != nil || n != 1 {
		t.Fatalf("RevokeUser(acme, 42) after the reload = %d, %v; want 1", n, err)
	}
	// The endpoint routes by host through the same table.
	other := authz.Sign("acme43acme43acme43acme43", "acme-secret")
	f.tenantSession("sessions:acme:web:", "acme43acme43acme43acme43", `{"cookie":{},"passport":{"user":"43"}}`)
	req := httptest.NewRequest(http.MethodPost, "http://authz.internal/logout", nil)
	req.Header.Set("X-Forwarded-Host", "shop.acme.test")
	req.Header.Set("Cookie", "connect.sid="+other)
	w := httptest.NewRecorder()
	f.s.Endpoint(&lockedPub{}, EndpointConfig{}).ServeHTTP(w, req)
	if w.Code != http.StatusSeeOther || f.rdb.Exists(ctx, "sessions:acme:web:acme43acme43acme43acme43").Val() != 0 {
		t.Errorf("logout on a host of the reloaded table: %d, session left: %v", w.Code, f.rdb.Exists(ctx, "sessions:acme:web:acme43acme43acme43acme43").Val() != 0)
	}
}
