package signoff

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/authz"
	"github.com/authz/authz/logout"
)

type pubRecorder struct{ events []logout.Event }

func (p *pubRecorder) Publish(_ context.Context, e logout.Event) (int64, error) {
	p.events = append(p.events, e)
	return 1, nil
}

func TestLogoutEndpoint(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	pub := &pubRecorder{}
	h := f.s.Endpoint(pub, EndpointConfig{})
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
	_, c2 := "", authz.Sign("neverstoredneverstoredneverstore", testSecret)
	if w := post(c2, ""); w.Code != http.StatusServiceUnavailable {
		t.Errorf("logout with Redis down: %d; want 503", w.Code)
	}
}

// `authz logout`: a session named by its id or its cookie value, or a
// user, is ended and its event published, also when nothing was found
// (instances may still cache it).
func TestEndSessionAndUser(t *testing.T) {
	f := newFixture(t, nil)
	ctx := context.Background()
	pub := &pubRecorder{}
	sid, cookie := f.session(aliceJSON, time.Hour)
	sid2, _ := f.session(aliceJSON, time.Hour)
	for _, ref := range []string{cookie, sid2} {
		id, found, heard, err := f.s.EndSession(ctx, pub, "", ref)
		if err != nil || !found || heard != 1 {
			t.Fatalf("EndSession(%.8s…) = %q, %v, %d, %v", ref, id, found, heard, err)
		}
	}
	if len(pub.events) != 2 || pub.events[0].Session != sid || pub.events[1].Session != sid2 || pub.events[0].Kind != logout.KindSession {
		t.Errorf("published %+v", pub.events)
	}
	if _, found, _, err := f.s.EndSession(ctx, pub, "", sid); err != nil || found || len(pub.events) != 3 {
		t.Errorf("EndSession of an ended session: found %v, %v, %d events; want not found, published anyway", found, err, len(pub.events))
	}
	if _, _, _, err := f.s.EndSession(ctx, pub, "", "s:not.signed"); err == nil || len(pub.events) != 3 {
		t.Errorf("EndSession of a cookie signed by no secret: %v; want an error and no event", err)
	}
	f.session(bobJSON, time.Hour)
	f.session(bobJSON, time.Hour)
	if n, heard, err := f.s.EndUser(ctx, pub, "", "bob"); err != nil || n != 2 || heard != 1 {
		t.Errorf("EndUser(bob) = %d, %d, %v; want 2 sessions", n, heard, err)
	}
	if e := pub.events[len(pub.events)-1]; e.Kind != logout.KindUser || e.User != "bob" {
		t.Errorf("published %+v", e)
	}
	if n, _, err := f.s.EndUser(ctx, pub, "", "bob"); err != nil || n != 0 || len(pub.events) != 5 {
		t.Errorf("EndUser(bob) again = %d, %v, %d events; want none, published anyway", n, err, len(pub.events))
	}
}
