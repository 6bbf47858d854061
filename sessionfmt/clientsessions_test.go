package sessionfmt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/authz/authz/internal/fmtvectors"
)

// encodeCS makes a client-sessions cookie as the library's encode does
// (secret-derived keys, aes256, sha256), for plaintexts and times the
// vectors do not cover. TestVectors ties the format to the real library.
func encodeCS(t testing.TB, secret, plaintext string, createdAt, duration int64) string {
	t.Helper()
	encKey, sigKey := deriveKey(secret, kdfEncryption), deriveKey(secret, kdfSignature)
	block, err := aes.NewCipher(encKey)
	if err != nil {
		t.Fatal(err)
	}
	iv := make([]byte, 16)
	for i := range iv {
		iv[i] = byte(i * 7)
	}
	pad := 16 - len(plaintext)%16
	pt := []byte(plaintext + strings.Repeat(string(rune(pad)), pad))
	ct := make([]byte, len(pt))
	cipher.NewCBCEncrypter(block, iv).CryptBlocks(ct, pt)
	h := hmac.New(sha256.New, sigKey)
	h.Write(iv)
	h.Write([]byte("."))
	h.Write(ct)
	h.Write([]byte("." + strconv.FormatInt(createdAt, 10) + "." + strconv.FormatInt(duration, 10)))
	b := base64.RawURLEncoding.EncodeToString
	return b(iv) + "." + b(ct) + "." + strconv.FormatInt(createdAt, 10) + "." + strconv.FormatInt(duration, 10) + "." + b(h.Sum(nil))
}

func newCS(t testing.TB, o ClientSessionsOptions) *ClientSessions {
	t.Helper()
	c, err := NewClientSessions(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestClientSessionsOptions(t *testing.T) {
	k16, k24, k32, k48 := make([]byte, 16), make([]byte, 24), make([]byte, 32), make([]byte, 48)
	k48[0] = 1
	for _, tc := range []struct {
		name string
		o    ClientSessionsOptions
		ok   bool
	}{
		{"secret, defaults", ClientSessionsOptions{Secret: "s"}, true},
		{"secret, sha256-drop128", ClientSessionsOptions{Secret: "s", SignatureAlgorithm: "SHA256-drop128"}, true},
		// The derived keys are 32 bytes: the library refuses them for
		// aes128 (exactly 16) and sha384 (at least 48).
		{"secret, aes128", ClientSessionsOptions{Secret: "s", EncryptionAlgorithm: "aes128"}, false},
		{"secret, sha384", ClientSessionsOptions{Secret: "s", SignatureAlgorithm: "sha384"}, false},
		{"keys, aes128 + sha384", ClientSessionsOptions{EncryptionKey: k16, SignatureKey: k48, EncryptionAlgorithm: "aes128", SignatureAlgorithm: "sha384"}, true},
		{"keys, aes192 key too short", ClientSessionsOptions{EncryptionKey: k16, SignatureKey: k48, EncryptionAlgorithm: "aes192"}, false},
		{"keys, aes192", ClientSessionsOptions{EncryptionKey: k24, SignatureKey: k48, EncryptionAlgorithm: "aes192"}, true},
		{"keys equal", ClientSessionsOptions{EncryptionKey: k32, SignatureKey: k32}, false},
		{"one key only", ClientSessionsOptions{EncryptionKey: k32}, false},
		{"one key and a secret", ClientSessionsOptions{Secret: "s", SignatureKey: k48}, true},
		{"nothing", ClientSessionsOptions{}, false},
		{"unknown cipher", ClientSessionsOptions{Secret: "s", EncryptionAlgorithm: "aes256-gcm"}, false},
		{"unknown mac", ClientSessionsOptions{Secret: "s", SignatureAlgorithm: "sha1"}, false},
		{"= in name", ClientSessionsOptions{Secret: "s", CookieName: "a=b"}, false},
	} {
		_, err := NewClientSessions(tc.o)
		if (err == nil) != tc.ok {
			t.Errorf("%s: err = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
}

func TestClientSessionsParse(t *testing.T) {
	const secret = "unit secret"
	c := newCS(t, ClientSessionsOptions{CookieName: "session", Secret: secret, MaxBytes: 600})
	now := time.UnixMilli(1_800_000_000_000)
	ms := now.UnixMilli()
	day := int64(24 * time.Hour / time.Millisecond)
	valid := encodeCS(t, secret, `session={"username":"ann","rev":1}`, ms-1000, day)
	for _, tc := range []struct {
		name, cookie string
		now          time.Time
		want         string
	}{
		{"valid", valid, now, "ok"},
		{"valid, no expiry check", valid, time.Time{}, "ok"},
		// The library resets when createdAt + duration < now: equal is
		// still valid.
		{"expires exactly now", encodeCS(t, secret, `session={}`, ms-day, day), now, "ok"},
		{"expired a millisecond ago", encodeCS(t, secret, `session={}`, ms-day-1, day), now, "expired"},
		{"expired, shown anyway", encodeCS(t, secret, `session={}`, ms-day-1, day), time.Time{}, "ok"},
		{"wrong secret", encodeCS(t, "another secret", `session={}`, ms, day), now, "bad_signature"},
		{"other cookie name inside", encodeCS(t, secret, `admin={}`, ms, day), now, "invalid_content"},
		{"name prefix only", encodeCS(t, secret, `sessionX={}`, ms, day), now, "invalid_content"},
		{"array", encodeCS(t, secret, `session=[1]`, ms, day), now, "invalid_content"},
		{"string", encodeCS(t, secret, `session="ann"`, ms, day), now, "invalid_content"},
		{"trailing garbage", encodeCS(t, secret, `session={} x`, ms, day), now, "invalid_content"},
		{"unicode", encodeCS(t, secret, `session={"username":"Zoë 🌍"}`, ms, day), now, "ok"},
		{"oversized", encodeCS(t, secret, `session={"p":"`+strings.Repeat("x", 600)+`"}`, ms, day), now, "too_large"},
		{"createdAt beyond 2^53", encodeCS(t, secret, `session={}`, 9_007_199_254_740_993, day), now, "malformed"},
		{"negative duration", encodeCS(t, secret, `session={}`, ms, -1), now, "malformed"},
		{"padded base64", strings.Replace(valid, ".", "==.", 1), now, "malformed"},
		{"newline in base64", valid[:5] + "\n" + valid[5:], now, "malformed"},
		{"empty", "", now, "malformed"},
		{"dots only", "....", now, "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := c.Parse(nil, tc.cookie, tc.now)
			if class(err) != tc.want {
				t.Fatalf("Parse = %v, want %s", err, tc.want)
			}
			if err == nil && !jsonObject(s.Content) {
				t.Fatalf("content %q is not an object", s.Content)
			}
		})
	}
}

// TestClientSessionsNoChangedByte: no cookie that differs from a valid one
// in one byte (replaced, deleted or inserted) or cut short is accepted. The
// library itself accepts some (parseInt("0123"), base64 junk); sessionfmt
// must not.
func TestClientSessionsNoChangedByte(t *testing.T) {
	v := fmtvectors.Committed(t)
	now := time.UnixMilli(v.NowMS)
	for _, tc := range v.ClientSessions {
		if tc.Want != "ok" {
			continue
		}
		c := csCodec(t, &tc)
		eachChange(t, tc.Cookie, func(changed string) {
			if _, err := c.Parse(nil, changed, now); err == nil {
				t.Fatalf("%s: accepted changed cookie %q", tc.Name, changed)
			}
		})
	}
}

// eachChange calls f with every one-byte replacement (by printable ASCII
// and a few others), deletion and insertion of s, and every prefix.
func eachChange(t *testing.T, s string, f func(string)) {
	t.Helper()
	alts := []byte{0, '\n', '\r', ' ', '"', 0x80, 0xff}
	for c := byte(0x21); c < 0x7f; c++ {
		alts = append(alts, c)
	}
	for i := 0; i < len(s); i++ {
		for _, b := range alts {
			if b != s[i] {
				f(s[:i] + string([]byte{b}) + s[i+1:])
			}
		}
		f(s[:i] + s[i+1:])
		f(s[:i] + "A" + s[i:])
		f(s[:i])
	}
	f(s + "A")
	f(s + "=")
}

func TestJSInt(t *testing.T) {
	for _, tc := range []struct {
		s  string
		n  int64
		ok bool
	}{
		{"0", 0, true}, {"123", 123, true}, {"999999999999999", 999999999999999, true},
		{"", 0, false}, {"0123", 0, false}, {"123x", 0, false}, {"-1", 0, false}, {"+1", 0, false},
		{" 1", 0, false}, {"1e3", 0, false}, {"1.5", 0, false},
		{"9007199254740991", 1<<53 - 1, true}, {"9007199254740992", 0, false}, {"10000000000000000", 0, false},
	} {
		n, ok := jsInt(tc.s)
		if n != tc.n || ok != tc.ok {
			t.Errorf("jsInt(%q) = %d, %v; want %d, %v", tc.s, n, ok, tc.n, tc.ok)
		}
	}
}
