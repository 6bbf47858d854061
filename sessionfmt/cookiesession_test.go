package sessionfmt

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"strings"
	"testing"

	"github.com/authz/authz/internal/fmtvectors"
)

// signCK signs "name=value" as keygrip does with sha1.
func signCK(key, name, value string) string {
	h := hmac.New(sha1.New, []byte(key))
	h.Write([]byte(name + "=" + value))
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

func TestCookieSessionOptions(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    CookieSessionOptions
		ok   bool
	}{
		{"defaults", CookieSessionOptions{Keys: []string{"k"}}, true},
		{"sha256", CookieSessionOptions{Keys: []string{"k"}, Hash: "SHA256"}, true},
		{"no keys", CookieSessionOptions{}, false},
		{"empty key", CookieSessionOptions{Keys: []string{"k", ""}}, false},
		{"md5", CookieSessionOptions{Keys: []string{"k"}, Hash: "md5"}, false},
	} {
		if _, err := NewCookieSession(tc.o); (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestCookieSessionParse(t *testing.T) {
	c, err := NewCookieSession(CookieSessionOptions{Keys: []string{"new", "old"}, MaxBytes: 400})
	if err != nil {
		t.Fatal(err)
	}
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	ann := b64(`{"username":"ann"}`)
	for _, tc := range []struct {
		name, value, sig, want string
	}{
		{"first key", ann, signCK("new", "session", ann), "ok"},
		{"second key", ann, signCK("old", "session", ann), "ok"},
		{"unknown key", ann, signCK("other", "session", ann), "bad_signature"},
		{"signed for another name", ann, signCK("new", "sess", ann), "bad_signature"},
		{"padded signature", ann, signCK("new", "session", ann) + "=", "bad_signature"},
		{"no signature", ann, "", "bad_signature"},
		{"empty value", "", signCK("new", "session", ""), "malformed"},
		{"unpadded value", strings.TrimRight(b64(`{"a":1}`), "="), signCK("new", "session", strings.TrimRight(b64(`{"a":1}`), "=")), "ok"},
		{"url alphabet", b64(`{"a":"??>"}`)[:4] + "-" + b64(`{"a":"??>"}`)[5:], signCK("new", "session", b64(`{"a":"??>"}`)[:4]+"-"+b64(`{"a":"??>"}`)[5:]), "invalid_content"},
		{"not JSON", b64("not json"), signCK("new", "session", b64("not json")), "invalid_content"},
		{"null", b64("null"), signCK("new", "session", b64("null")), "invalid_content"},
		{"unicode", b64(`{"u":"Zoë 🌍"}`), signCK("new", "session", b64(`{"u":"Zoë 🌍"}`)), "ok"},
		{"oversized", b64(`{"p":"` + strings.Repeat("x", 400) + `"}`), "x", "too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := c.Parse(nil, tc.value, tc.sig)
			if class(err) != tc.want {
				t.Fatalf("Parse = %v, want %s", err, tc.want)
			}
			if err == nil && !jsonObject(got) {
				t.Fatalf("content %q is not an object", got)
			}
		})
	}
}

// TestCookieSessionNoChangedByte: no one-byte change of the value or of the
// signature of a valid cookie is accepted.
func TestCookieSessionNoChangedByte(t *testing.T) {
	v := fmtvectors.Committed(t)
	for _, tc := range v.CookieSession {
		if tc.Want != "ok" {
			continue
		}
		c := ckCodec(t, &tc)
		eachChange(t, tc.Value, func(changed string) {
			if _, err := c.Parse(nil, changed, tc.Sig); err == nil {
				t.Fatalf("%s: accepted changed value %q", tc.Name, changed)
			}
		})
		eachChange(t, tc.Sig, func(changed string) {
			if _, err := c.Parse(nil, tc.Value, changed); err == nil {
				t.Fatalf("%s: accepted changed signature %q", tc.Name, changed)
			}
		})
	}
}

// TestLookupCookiesPkg pins the "cookies" package's reading of a header:
// the regular expression (?:^|;) *NAME=([^;]*), and cookies 0.9's quote
// removal.
func TestLookupCookiesPkg(t *testing.T) {
	for _, tc := range []struct {
		name       string
		lines      []string
		stripQuote bool
		want       string
		ok         bool
	}{
		{"alone", []string{"session=abc"}, false, "abc", true},
		{"after others", []string{"a=1; session=abc; b=2"}, false, "abc", true},
		{"no space", []string{"a=1;session=abc"}, false, "abc", true},
		{"many spaces", []string{"a=1;   session=abc"}, false, "abc", true},
		{"tab is not skipped", []string{"a=1;\tsession=abc"}, false, "", false},
		{"trailing space kept", []string{"session=abc ; b=2"}, false, "abc ", true},
		{"space before = is another name", []string{"session =abc"}, false, "", false},
		{"suffix name", []string{"xsession=abc"}, false, "", false},
		{"longer name", []string{"session.sig=abc"}, false, "", false},
		{"first wins", []string{"session=one; session=two"}, false, "one", true},
		{"first line wins", []string{"a=1", "session=one", "session=two"}, false, "one", true},
		{"empty value", []string{"session=; b=2"}, false, "", true},
		{"inside a value", []string{"a=x session=abc"}, false, "", false},
		{"quotes kept (0.7)", []string{`session="abc"`}, false, `"abc"`, true},
		{"quotes stripped (0.9)", []string{`session="abc"`}, true, "abc", true},
		{"lone leading quote (0.9)", []string{`session="abc`}, true, "ab", true},
		{"single quote char (0.9)", []string{`session="`}, true, "", true},
		{"percent kept", []string{"session=a%2Fb"}, false, "a%2Fb", true},
		{"missing", []string{"a=1"}, false, "", false},
		{"no lines", nil, false, "", false},
	} {
		got, ok := findCookiesPkg(tc.lines, "session", tc.stripQuote)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s: got %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}
