package authz

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/authz/authz/internal/testenv"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/authz/authz/internal/fmtvectors"
)

// vectorReason is the reason the read path gives a vector's class.
var vectorReason = map[string]Reason{
	"ok":                 ReasonOK,
	"too_large":          ReasonCookieTooLarge,
	"malformed":          ReasonMalformedCookie,
	"bad_signature":      ReasonBadSignature,
	"expired":            ReasonExpired,
	"invalid_content":    ReasonInvalidSession,
	"invalid_session_id": ReasonInvalidSessionID,
}

// formatFixture is a Verifier of one format over a real redis-server, its
// clock at the vectors' now.
type formatFixture struct {
	t   testing.TB
	rdb *redis.Client
	v   *Verifier
}

func newFormatFixture(t testing.TB, rdb *redis.Client, now time.Time, cfg Config) *formatFixture {
	t.Helper()
	cfg.Now = func() time.Time { return now }
	cfg.RedisTimeout = time.Second
	cfg.UserPaths = [][]string{{"username"}}
	cfg.MaxCookieBytes = 4096
	v, err := New(cfg, rdb, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return &formatFixture{t: t, rdb: rdb, v: v}
}

func (f *formatFixture) decide(header string) Answer {
	return f.v.Decide(context.Background(), &Query{Cookies: []string{header}, Host: "app.example"})
}

func mustHexKey(t testing.TB, s string) []byte {
	if s == "" {
		return nil
	}
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// wantForContent is what the read path makes of an authentic cookie's
// content with --user-path username --revision-path rev, the user's
// current revision set to the cookie's own: an identity, an anonymous
// session, or an invalid one (a revision that is not an integer).
func wantForContent(t *testing.T, rdb *redis.Client, content json.RawMessage) Reason {
	var c map[string]any
	if err := json.Unmarshal(content, &c); err != nil {
		t.Fatal(err)
	}
	user, _ := c["username"].(string)
	if user == "" {
		return ReasonAnonymous
	}
	rev := int64(0)
	switch r := c["rev"].(type) {
	case nil:
	case float64:
		rev = int64(r)
	default:
		return ReasonInvalidSession
	}
	if err := rdb.Set(context.Background(), "authz:rev:"+user, rev, 0).Err(); err != nil {
		t.Fatal(err)
	}
	return ReasonOK
}

func TestFormatVectorsThroughTheReadPath(t *testing.T) {
	vs := fmtvectors.Committed(t)
	now := time.UnixMilli(vs.NowMS)
	r := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { rdb.Close() })

	for _, tc := range vs.ClientSessions {
		t.Run("client-sessions/"+tc.Name, func(t *testing.T) {
			var secrets []string
			if tc.Config.Secret != "" {
				secrets = []string{tc.Config.Secret}
			}
			f := newFormatFixture(t, rdb, now, Config{
				Format: FormatClientSessions, CookieName: tc.Config.CookieName, Secrets: secrets,
				EncryptionKey: mustHexKey(t, tc.Config.EncryptionKey), SignatureKey: mustHexKey(t, tc.Config.SignatureKey),
				EncryptionAlgorithm: tc.Config.EncryptionAlgorithm, SignatureAlgorithm: tc.Config.SignatureAlgorithm,
				RevisionPath: []string{"rev"},
			})
			want := vectorReason[tc.Want]
			if tc.Want == "ok" {
				want = wantForContent(t, rdb, tc.Content)
			}
			if tc.Cookie == "" {
				want = ReasonNoCookie // an empty cookie is none, as for express-session
			}
			name := tc.Config.CookieName
			if name == "" {
				name = "session_state"
			}
			if got := f.decide("other=1; " + name + "=" + tc.Cookie).Reason; got != want {
				t.Fatalf("reason %s, want %s", got, want)
			}
		})
	}
	for _, tc := range vs.CookieSession {
		t.Run("cookie-session/"+tc.Name, func(t *testing.T) {
			f := newFormatFixture(t, rdb, now, Config{
				Format: FormatCookieSession, CookieName: tc.Config.Name, Secrets: tc.Config.Keys,
				SignatureAlgorithm: tc.Config.Hash, RevisionPath: []string{"rev"},
			})
			want := vectorReason[tc.Want]
			if tc.Want == "ok" {
				want = wantForContent(t, rdb, tc.Content)
			}
			if got := f.decide(tc.Header).Reason; got != want {
				t.Fatalf("reason %s, want %s", got, want)
			}
		})
	}
	for _, tc := range vs.FastifySession {
		t.Run("fastify-session/"+tc.Name, func(t *testing.T) {
			if tc.Config.CookiePrefix != "" {
				t.Skip("authz reads @fastify/session's default cookiePrefix only")
			}
			f := newFormatFixture(t, rdb, now, Config{
				Format: FormatFastifySession, CookieName: tc.Config.CookieName, Secrets: tc.Config.Secrets,
				SignatureAlgorithm: tc.Config.Algorithm,
			})
			want := vectorReason[tc.Want]
			if tc.Want == "ok" {
				stored := `{"cookie":{"originalMaxAge":86400000,"expires":"` + now.Add(time.Hour).UTC().Format(time.RFC3339Nano) + `","httpOnly":true,"path":"/"},"username":"ann"}`
				if err := rdb.Set(context.Background(), "sess:"+tc.SID, stored, time.Hour).Err(); err != nil {
					t.Fatal(err)
				}
			}
			if got := f.decide(tc.Header).Reason; got != want {
				t.Fatalf("reason %s, want %s", got, want)
			}
		})
	}
}

// What ends a cookie that carries its session, as the read path sees it:
// the user's revision, a deny entry for the cookie, each heard through the
// logout event or tracking. (Package signoff writes them: its tests.)
func TestCookieFormatEnds(t *testing.T) {
	vs := fmtvectors.Committed(t)
	now := time.UnixMilli(vs.NowMS)
	r := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	tc := vs.ClientSessions[0] // ann, rev 3
	if tc.Want != "ok" || !strings.Contains(strings.Join(strings.Fields(string(tc.Content)), ""), `"username":"ann","rev":3`) {
		t.Fatalf("vector 0 is %q %s; want a valid session of ann", tc.Name, tc.Content)
	}
	f := newFormatFixture(t, rdb, now, Config{
		Format: FormatClientSessions, CookieName: tc.Config.CookieName, Secrets: []string{tc.Config.Secret},
		RevisionPath: []string{"rev"},
	})
	header := tc.Config.CookieName + "=" + tc.Cookie
	check := func(want Reason, why string) {
		t.Helper()
		if got := f.decide(header); got.Reason != want {
			t.Fatalf("%s: reason %s, want %s", why, got.Reason, want)
		} else if want == ReasonOK && got.Session.User != "ann" {
			t.Fatalf("%s: user %q", why, got.Session.User)
		}
	}
	check(ReasonStaleRevision, "ann has revision 0, the cookie 3")
	rdb.Set(ctx, "authz:rev:ann", 3, 0)
	f.v.InvalidateAll() // the refusal is cached briefly, and names no user
	check(ReasonOK, "the revisions agree")
	check(ReasonOK, "again, from the cache")

	ks, err := f.v.Keyspace("")
	if err != nil {
		t.Fatal(err)
	}
	id := CookieID(tc.Cookie)
	if key := ks.RevokedKey(id); key != "authz:revoked:sess:"+id {
		t.Fatalf("deny entry at %q", key)
	}
	rdb.Set(ctx, ks.RevokedKey(id), "1", time.Hour)
	f.v.Invalidate(id) // what the logout event does
	check(ReasonRevoked, "the cookie is denied")
	rdb.Del(ctx, ks.RevokedKey(id))
	f.v.KeysChanged([]string{ks.RevokedKey(id)}) // what tracking does
	check(ReasonOK, "the deny entry gone")

	if key := ks.RevisionKey("ann"); key != "authz:rev:ann" {
		t.Fatalf("revision at %q", key)
	}
	rdb.Incr(ctx, "authz:rev:ann")
	f.v.KeysChanged([]string{"authz:rev:ann"}) // tracking, without the event
	check(ReasonStaleRevision, "ann's revision moved on")

	// A revision that is not a number refuses every cookie of the user.
	rdb.Set(ctx, "authz:rev:ann", "three", 0)
	f.v.InvalidateAll()
	check(ReasonInvalidSession, "a revision that is not an integer")
	rdb.Set(ctx, "authz:rev:ann", strconv.Itoa(3), 0)
	f.v.InvalidateAll()
	check(ReasonOK, "the revision set back")

	st, err := ks.CookieSession(ctx, tc.Cookie)
	if err != nil || st.Reason != "" || st.ID != id || st.Session.User != "ann" || st.Session.Revision() != 3 {
		t.Fatalf("CookieSession = %+v, %v", st, err)
	}
}

func TestFormatConfig(t *testing.T) {
	r := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { rdb.Close() })
	for _, tc := range []struct {
		name string
		cfg  Config
		ok   bool
	}{
		{"client-sessions, one secret", Config{Format: FormatClientSessions, Secrets: []string{"s"}}, true},
		{"client-sessions, two secrets", Config{Format: FormatClientSessions, Secrets: []string{"s", "t"}}, false},
		{"client-sessions, keys only", Config{Format: FormatClientSessions, EncryptionKey: make([]byte, 32), SignatureKey: []byte("0123456789abcdef0123456789abcdef")}, true},
		{"client-sessions, a short key", Config{Format: FormatClientSessions, EncryptionKey: make([]byte, 31), SignatureKey: []byte("0123456789abcdef0123456789abcdef")}, false},
		{"cookie-session, unknown hash", Config{Format: FormatCookieSession, Secrets: []string{"k"}, SignatureAlgorithm: "md5"}, false},
		{"express-session with a revision path", Config{Secrets: []string{"s"}, RevisionPath: []string{"rev"}}, false},
		{"fastify-session with a revision path", Config{Format: FormatFastifySession, Secrets: []string{"s"}, RevisionPath: []string{"rev"}}, false},
		{"fastify-session", Config{Format: FormatFastifySession, Secrets: []string{"s"}}, true},
		{"no secret", Config{Format: FormatCookieSession}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.cfg, rdb, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
			if (err == nil) != tc.ok {
				t.Fatalf("New: %v, want ok=%v", err, tc.ok)
			}
		})
	}
	if _, err := ParseFormat("cookie-sessions"); err == nil {
		t.Fatal("ParseFormat took a misspelt format")
	}
	for _, f := range Formats {
		if g, err := ParseFormat(string(f)); err != nil || g != f {
			t.Fatalf("ParseFormat(%q) = %q, %v", f, g, err)
		}
	}
}

// benchFormats are a valid cookie of each format, from the vectors, with
// a Verifier reading it.
func benchFormats(b *testing.B) (map[Format]*formatFixture, map[Format]string) {
	vs := fmtvectors.Committed(b)
	now := time.UnixMilli(vs.NowMS)
	r := testenv.StartRedis(b)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	b.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	fx := map[Format]*formatFixture{}
	headers := map[Format]string{}

	cs := vs.ClientSessions[0]
	fx[FormatClientSessions] = newFormatFixture(b, rdb, now, Config{Format: FormatClientSessions, CookieName: cs.Config.CookieName, Secrets: []string{cs.Config.Secret}, RevisionPath: []string{"rev"}})
	headers[FormatClientSessions] = "other=1; " + cs.Config.CookieName + "=" + cs.Cookie
	rdb.Set(ctx, "authz:rev:ann", 3, 0)

	ck := vs.CookieSession[0]
	fx[FormatCookieSession] = newFormatFixture(b, rdb, now, Config{Format: FormatCookieSession, Secrets: ck.Config.Keys, RevisionPath: []string{"rev"}})
	headers[FormatCookieSession] = "other=1; " + ck.Header

	fs := vs.FastifySession[0]
	fx[FormatFastifySession] = newFormatFixture(b, rdb, now, Config{Format: FormatFastifySession, Secrets: fs.Config.Secrets})
	headers[FormatFastifySession] = "other=1; " + fs.Header
	stored := `{"cookie":{"originalMaxAge":86400000,"expires":"` + now.Add(time.Hour).UTC().Format(time.RFC3339Nano) + `","httpOnly":true,"path":"/"},"username":"ann"}`
	rdb.Set(ctx, "sess:"+fs.SID, stored, time.Hour)

	fx[FormatExpressSession] = newFormatFixture(b, rdb, now, Config{Secrets: []string{testSecret}})
	sid := "benchformat0000000000000000000000"
	rdb.Set(ctx, "sess:"+sid, `{"cookie":{"originalMaxAge":null},"username":"ann"}`, time.Hour)
	headers[FormatExpressSession] = "other=1; connect.sid=" + Sign(sid, testSecret)
	return fx, headers
}

// BenchmarkFormatCacheHit is a verify answered from the cache, per format:
// for client-sessions a hash of the cookie, for cookie-session its
// signature too, for the stored formats the signed id.
func BenchmarkFormatCacheHit(b *testing.B) {
	fx, headers := benchFormats(b)
	for _, f := range Formats {
		b.Run(string(f), func(b *testing.B) {
			x := fx[f]
			q := &Query{Cookies: []string{headers[f]}, Host: "app.example"}
			if a := x.v.Decide(context.Background(), q); a.Reason != ReasonOK {
				b.Fatalf("%s: %s", f, a.Reason)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if x.v.Decide(context.Background(), q).Reason != ReasonOK {
					b.Fatal("refused")
				}
			}
		})
	}
}

// BenchmarkFormatCacheMiss is a verify with the cache bypassed, per
// format: for client-sessions MAC, decryption and the revision read.
func BenchmarkFormatCacheMiss(b *testing.B) {
	fx, headers := benchFormats(b)
	for _, f := range Formats {
		b.Run(string(f), func(b *testing.B) {
			x := fx[f]
			x.v.bypass.Store(true)
			q := &Query{Cookies: []string{headers[f]}, Host: "app.example"}
			b.ReportAllocs()
			for b.Loop() {
				if a := x.v.Decide(context.Background(), q); a.Reason != ReasonOK {
					b.Fatalf("%s: %s", f, a.Reason)
				}
			}
		})
	}
}

func TestTenantFileFormats(t *testing.T) {
	key := t.TempDir() + "/enc"
	if err := os.WriteFile(key, []byte("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ts, err := ParseTenants([]byte(`
tenants:
  - name: shop
    hosts: [shop.example]
    secrets: [s]
  - name: portal
    hosts: [portal.example]
    key_prefix: "portal:"
    format: client-sessions
    encryption_key_file: ` + key + `
    signature_algorithm: sha256
    revision_path: auth.rev
`))
	if err != nil {
		t.Fatal(err)
	}
	p := ts[1]
	if ts[0].Format != "" || p.Format != FormatClientSessions || len(p.EncryptionKey) != 32 || p.EncryptionKey[31] != 31 ||
		p.SignatureAlgorithm != "sha256" || strings.Join(p.RevisionPath, ".") != "auth.rev" {
		t.Fatalf("tenants %+v", ts)
	}
	for _, bad := range []string{"format: cookie-sessions", "encryption_key_file: /nonexistent", "revision_path: a..b"} {
		if _, err := ParseTenants([]byte("tenants:\n  - name: x\n    hosts: [x.example]\n    " + bad + "\n")); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

// FuzzCookieFormatsReadPath holds the whole read path, cache included, to
// the property the codecs' fuzz targets hold sessionfmt to: a cookie that
// differs from a valid one in any byte is never allowed, even right after
// the valid one was (a hit must not answer for a cookie it did not check).
func FuzzCookieFormatsReadPath(f *testing.F) {
	vs := fmtvectors.Committed(f)
	now := time.UnixMilli(vs.NowMS)
	r := testenv.StartRedis(f)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	f.Cleanup(func() { rdb.Close() })
	cs, ck := vs.ClientSessions[0], vs.CookieSession[0]
	csf := newFormatFixture(f, rdb, now, Config{Format: FormatClientSessions, CookieName: cs.Config.CookieName, Secrets: []string{cs.Config.Secret}})
	ckf := newFormatFixture(f, rdb, now, Config{Format: FormatCookieSession, Secrets: ck.Config.Keys})
	csValid := cs.Config.CookieName + "=" + cs.Cookie
	ckValid := ck.Header
	for _, h := range []string{csValid, ckValid} {
		f.Add(uint16(0), byte('x'))
		f.Add(uint16(len(h)-1), byte('A'))
	}
	// same reports whether a header names exactly the valid cookie, as
	// the library's own cookie parser reads it.
	csCodec := csf.v.tenants.Load().single.format.(*cookieFormat).cs
	ckCodec := ckf.v.tenants.Load().single.format.(*cookieFormat).ck
	sameCS := func(h string) bool { v, ok := csCodec.Lookup([]string{h}); return ok && v == cs.Cookie }
	sameCK := func(h string) bool {
		v, sig, ok := ckCodec.Lookup([]string{h})
		wv, wsig, _ := ckCodec.Lookup([]string{ck.Header})
		return ok && v == wv && sig == wsig
	}
	f.Fuzz(func(t *testing.T, pos uint16, b byte) {
		for _, c := range []struct {
			f     *formatFixture
			valid string
			same  func(string) bool
		}{{csf, csValid, sameCS}, {ckf, ckValid, sameCK}} {
			if a := c.f.decide(c.valid); a.Reason != ReasonOK {
				t.Fatalf("the valid cookie: %s", a.Reason)
			}
			h := []byte(c.valid)
			i := int(pos) % len(h)
			h[i] = b
			if a := c.f.decide(string(h)); a.Reason == ReasonOK && !c.same(string(h)) {
				t.Fatalf("allowed a changed cookie %q", h)
			}
		}
	})
}

// What an operator pastes for a cookie that carries its session names it
// only if it verifies: a cookie-session value comes with its signature.
func TestParseCookieRef(t *testing.T) {
	vs := fmtvectors.Committed(t)
	now := time.UnixMilli(vs.NowMS)
	r := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { rdb.Close() })
	ck, cs := vs.CookieSession[0], vs.ClientSessions[0]
	ckf := newFormatFixture(t, rdb, now, Config{Format: FormatCookieSession, Secrets: ck.Config.Keys})
	csf := newFormatFixture(t, rdb, now, Config{Format: FormatClientSessions, CookieName: cs.Config.CookieName, Secrets: []string{cs.Config.Secret}})
	ckKS, _ := ckf.v.Keyspace("")
	csKS, _ := csf.v.Keyspace("")
	value := ck.Header[len("session="):strings.Index(ck.Header, ";")]
	for _, tc := range []struct {
		ks  Keyspace
		ref string
		ok  bool
	}{
		{ckKS, ck.Header, true},
		{ckKS, value, false}, // the value alone is signed by nothing
		{ckKS, "session=eyJ1c2VybmFtZSI6IngifQ==; session.sig=UJaZ-wCWFuNBsidfi4AmKMRifqI", false},
		{csKS, cs.Cookie, true},
		{csKS, cs.Cookie[:len(cs.Cookie)-1] + "A", false},
	} {
		id, raw, err := tc.ks.ParseCookieRef(tc.ref)
		if (err == nil) != tc.ok {
			t.Errorf("ParseCookieRef(%q) = %q, %v; want ok=%v", tc.ref, id, err, tc.ok)
		}
		if tc.ok && (id != CookieID(raw) || raw == "") {
			t.Errorf("ParseCookieRef(%q) = %q, %q", tc.ref, id, raw)
		}
		if st, err := tc.ks.CookieSession(context.Background(), tc.ref); err != nil || (st.Reason == "" || st.Reason == ReasonStaleRevision) != tc.ok {
			t.Errorf("CookieSession(%q) = %+v, %v; want readable=%v", tc.ref, st, err, tc.ok)
		}
	}
}

// A stale allow of a cookie that carries its session needs tracking to
// cover both keys that can end it: its deny entry and its user's
// revision. A guard covering only the deny prefix (a tenant added by a
// reload under an untracked revision prefix) must not serve it stale: an
// INCR of the revision would go unheard.
func TestCookieStaleNeedsTheRevisionTracked(t *testing.T) {
	vs := fmtvectors.Committed(t)
	now := time.UnixMilli(vs.NowMS)
	r := testenv.StartRedis(t)
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { rdb.Close() })
	tc := vs.ClientSessions[0] // ann, rev 3
	rdb.Set(context.Background(), "authz:rev:ann", 3, 0)
	for _, revTracked := range []bool{true, false} {
		var clk atomic.Int64
		clk.Store(now.UnixNano())
		v, err := New(Config{
			Format: FormatClientSessions, CookieName: tc.Config.CookieName, Secrets: []string{tc.Config.Secret},
			RevisionPath: []string{"rev"}, UserPaths: [][]string{{"username"}}, MaxCookieBytes: 4096,
			CacheTTL: 100 * time.Millisecond, StaleIfError: time.Hour, RedisTimeout: 200 * time.Millisecond,
			Now: func() time.Time { return time.Unix(0, clk.Load()) },
		}, rdb, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		v.SetStaleGuard(func(p string) bool {
			return strings.HasPrefix(p, "authz:revoked:") || revTracked && strings.HasPrefix(p, "authz:rev:")
		})
		q := &Query{Cookies: []string{tc.Config.CookieName + "=" + tc.Cookie}, Host: "app.example"}
		if a := v.Decide(context.Background(), q); a.Reason != ReasonOK {
			t.Fatalf("before the outage: %s", a.Reason)
		}
		if !revTracked {
			r.Stop()
		}
		clk.Add(int64(200 * time.Millisecond))
		a := v.Decide(context.Background(), q)
		if revTracked {
			if a.Reason != ReasonOK {
				t.Fatalf("both prefixes tracked: %s, want ok", a.Reason)
			}
			continue
		}
		if a.Reason == ReasonOK {
			t.Fatalf("revision prefix untracked, Redis down: served stale")
		}
	}
}
