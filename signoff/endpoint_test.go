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
