package sessionfmt

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/internal/fmtvectors"
)

// signFS signs sid as @fastify/cookie's signer does with sha256.
func signFS(secret, sid string) string {
	h := hmac.New(sha256.New, []byte(secret))
	h.Write([]byte(sid))
	return sid + "." + base64.RawStdEncoding.EncodeToString(h.Sum(nil))
}

func TestFastifySessionParse(t *testing.T) {
	const sid = "ByFQ5EZeFdH4-nPOAcyzIeGKPLKyJFAJ"
	f, err := NewFastifySession(FastifySessionOptions{Secrets: []string{"new secret", "old secret"}, MaxBytes: 300})
	if err != nil {
		t.Fatal(err)
	}
	pre, err := NewFastifySession(FastifySessionOptions{Secrets: []string{"new secret"}, CookiePrefix: "s:"})
	if err != nil {
		t.Fatal(err)
	}
	signed := signFS("new secret", sid)
	for _, tc := range []struct {
		name  string
		f     *FastifySession
		value string
		want  string
	}{
		{"first secret", f, signed, "ok"},
		{"second secret", f, signFS("old secret", sid), "ok"},
		{"percent-encoded", f, url.QueryEscape(signed), "ok"},
		{"bad escape kept raw, so refused", f, signed + "%G1", "bad_signature"},
		{"unknown secret", f, signFS("other", sid), "bad_signature"},
		{"no dot", f, sid, "malformed"},
		{"empty mac", f, sid + ".", "malformed"},
		{"empty", f, "", "malformed"},
		{"short id", f, signFS("new secret", "abc"), "invalid_session_id"},
		{"id with a dot, signed", f, signFS("new secret", "abcdefghijklmnop.q"), "invalid_session_id"},
		{"mac padded", f, signed + "=", "bad_signature"},
		{"oversized", f, strings.Repeat("a", 301), "too_large"},
		{"prefix", pre, "s:" + signed, "ok"},
		{"prefix encoded", pre, "s%3A" + signed, "ok"},
		{"prefix missing", pre, signed, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.f.Parse(tc.value)
			if class(err) != tc.want {
				t.Fatalf("Parse = %q, %v; want %s", got, err, tc.want)
			}
			if err == nil && got != sid {
				t.Fatalf("sid %q, want %q", got, sid)
			}
		})
	}
}

// TestFastifySessionNoChangedByte: no one-byte change of a valid cookie
// (as sent, percent-encoded or not) is accepted.
func TestFastifySessionNoChangedByte(t *testing.T) {
	v := fmtvectors.Committed(t)
	for _, tc := range v.FastifySession {
		if tc.Want != "ok" {
			continue
		}
		c := fsCodec(t, &tc)
		value, _ := c.Lookup([]string{tc.Header})
		eachChange(t, value, func(changed string) {
			if sid, err := c.Parse(changed); err == nil && sid == tc.SID {
				// A changed escape can decode to the same text
				// ("%2B" and "%2b", "+" and "%2B"): the same cookie.
				if dec, _ := url.PathUnescape(changed); dec == mustUnescape(t, value) {
					return
				}
				t.Fatalf("%s: accepted changed cookie %q", tc.Name, changed)
			} else if err == nil {
				t.Fatalf("%s: changed cookie %q gave another sid %q", tc.Name, changed, sid)
			}
		})
	}
}

func mustUnescape(t *testing.T, s string) string {
	t.Helper()
	d, err := url.PathUnescape(s)
	if err != nil {
		return s
	}
	return d
}

func TestLookupCookiePkg(t *testing.T) {
	for _, tc := range []struct {
		name  string
		lines []string
		want  string
		ok    bool
	}{
		{"alone", []string{"sessionId=abc"}, "abc", true},
		{"trimmed", []string{"a=1;\t sessionId = abc \t; b=2"}, "abc", true},
		{"quotes kept", []string{`sessionId="abc"`}, `"abc"`, true},
		{"first wins", []string{"sessionId=one; sessionId=two"}, "one", true},
		{"next line", []string{"a=1", "sessionId=two"}, "two", true},
		{"pair without =", []string{"junk; sessionId=abc"}, "abc", true},
		{"escaped kept", []string{"sessionId=a%2Bb"}, "a%2Bb", true},
		{"missing", []string{"sessionIdx=abc"}, "", false},
	} {
		got, ok := findCookiePkg(tc.lines, "sessionId")
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: got %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestFastifyExpired(t *testing.T) {
	now := time.Date(2026, 11, 28, 3, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, stored string
		expired      bool
		want         string
	}{
		{"future", `{"cookie":{"expires":"2026-11-28T03:00:00.001Z","originalMaxAge":1000},"user":"ann"}`, false, "ok"},
		{"exactly now", `{"cookie":{"expires":"2026-11-28T03:00:00.000Z"}}`, true, "ok"},
		{"past", `{"cookie":{"expires":"2026-11-28T02:59:59.999Z"}}`, true, "ok"},
		{"null expires", `{"cookie":{"expires":null,"originalMaxAge":null}}`, false, "ok"},
		{"no cookie", `{"user":"ann"}`, false, "ok"},
		{"not a date", `{"cookie":{"expires":"tomorrow"}}`, false, "invalid_content"},
		{"not an object", `[1]`, false, "invalid_content"},
		{"expires a number", `{"cookie":{"expires":5}}`, false, "invalid_content"},
	} {
		got, err := FastifyExpired([]byte(tc.stored), now)
		if got != tc.expired || class(err) != tc.want {
			t.Errorf("%s: %v, %v; want %v, %s", tc.name, got, err, tc.expired, tc.want)
		}
	}
}

func TestRevision(t *testing.T) {
	for _, tc := range []struct {
		name, content, path string
		want                int64
		err                 string
	}{
		{"top level", `{"rev":3}`, "rev", 3, "ok"},
		{"nested", `{"auth":{"rev":12}}`, "auth.rev", 12, "ok"},
		{"absent", `{"username":"ann"}`, "rev", 0, "ok"},
		{"parent absent", `{"username":"ann"}`, "auth.rev", 0, "ok"},
		{"zero", `{"rev":0}`, "rev", 0, "ok"},
		{"string", `{"rev":"3"}`, "rev", 0, "invalid_content"},
		{"object", `{"rev":{"n":1}}`, "rev", 0, "invalid_content"},
		{"null", `{"rev":null}`, "rev", 0, "invalid_content"},
		{"fraction", `{"rev":1.5}`, "rev", 0, "invalid_content"},
		{"exponent", `{"rev":1e3}`, "rev", 0, "invalid_content"},
		{"negative", `{"rev":-1}`, "rev", 0, "invalid_content"},
		{"beyond 2^53", `{"rev":9007199254740993}`, "rev", 0, "invalid_content"},
		{"parent not an object", `{"auth":5}`, "auth.rev", 0, "invalid_content"},
		{"duplicate keys, last wins as JSON.parse", `{"rev":1,"rev":2}`, "rev", 2, "ok"},
	} {
		got, err := Revision([]byte(tc.content), strings.Split(tc.path, "."))
		if got != tc.want || class(err) != tc.err {
			t.Errorf("%s: %d, %v; want %d, %s", tc.name, got, err, tc.want, tc.err)
		}
	}
	// The vectors' revisions, as the real libraries wrote them.
	v := fmtvectors.Committed(t)
	for _, tc := range v.ClientSessions {
		if tc.Want != "ok" {
			continue
		}
		_, err := Revision(tc.Content, []string{"rev"})
		wrongType := strings.Contains(tc.Name, "wrong type")
		if (err != nil) != wrongType {
			t.Errorf("client-sessions %s: Revision err = %v", tc.Name, err)
		}
	}
}
